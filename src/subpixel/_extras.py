"""Optional dependencies: which pip package and which extra of ``subpixel`` provide a module, and the one-line
message for one that is missing (the library's and the command line's).

Examples:
    >>> missing_dependency(ModuleNotFoundError("No module named 'PIL'", name="PIL.Image"))
    "needs pillow, which is not installed: pip install '.[sr]' in a clone of subpixel (or '.[all]' for everything)"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["EXTRAS", "INSTALL_HINT", "hint_missing", "install_hint", "missing_dependency", "one_line"]

#: How to install an extra: ``subpixel`` is installed from its source (a clone, or the repository's URL), not from
#: a package index. ``{extra}`` is the extra's name.
INSTALL_HINT = "pip install '.[{extra}]' in a clone of subpixel (or '.[all]' for everything)"

#: importable module -> (pip package, extra of ``subpixel`` that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "PIL": ("pillow", "sr"),
    "safetensors": ("safetensors", "sr"),
    "tqdm": ("tqdm", "sr"),
    "matplotlib": ("matplotlib", "sr"),
    "png": ("pypng", "sr"),
    "tifffile": ("tifffile", "sr"),
    "av": ("av", "video"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "skimage": ("scikit-image", "dev"),
}


def install_hint(extra: str) -> str:
    """How to install ``extra``.

    Examples:
        >>> install_hint("video")
        "pip install '.[video]' in a clone of subpixel (or '.[all]' for everything)"
    """
    return INSTALL_HINT.format(extra=extra)


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def missing_dependency(exc: ImportError) -> str:
    """The one-line message for a missing module: which package it is and how to install it."""
    module = (exc.name or "").split(".")[0]
    if module in EXTRAS:
        package, extra = EXTRAS[module]
        return f"needs {package}, which is not installed: {install_hint(extra)}"
    if module:
        return f"needs the Python module {module!r}, which is not installed ({one_line(exc)})"
    return f"cannot import a dependency: {one_line(exc)}"


@contextmanager
def hint_missing(what: str) -> Iterator[None]:
    """Re-raise a missing optional dependency inside the block as a ``ModuleNotFoundError`` whose message says
    what needs it and how to install it (the same ``name``, so callers can still tell which module it was).

    Examples:
        >>> with hint_missing("subpixel.upscale"):
        ...     raise ModuleNotFoundError("No module named 'av'", name="av")
        Traceback (most recent call last):
        ...
        ModuleNotFoundError: subpixel.upscale needs av, which is not installed: pip install '.[video]' in a clone of subpixel (or '.[all]' for everything)
    """
    try:
        yield
    except ImportError as exc:
        module = (exc.name or "").split(".")[0]
        if module not in EXTRAS:
            raise
        raise ModuleNotFoundError(f"{what} {missing_dependency(exc)}", name=exc.name) from exc
