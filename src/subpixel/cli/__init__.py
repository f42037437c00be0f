"""The ``subpixel`` command line: one package, one error-handling path.

Each command lives in its own module, which provides two functions:

* ``add_arguments(parser: argparse.ArgumentParser) -> None``
* ``run(args: argparse.Namespace) -> int`` (the exit code)

Modules are imported only when their command is chosen, so ``subpixel --help`` stays fast and a command whose
optional dependencies are missing does not break the others. Library modules never import this package.

Every command runs inside the same handler (:func:`subpixel.cli._errors.describe`): Ctrl-C prints
``subpixel CMD: interrupted`` and exits 130 (SIGTERM is turned into the same clean exit, so temporary files are
removed); a missing optional dependency names the extra to install; an ``OSError`` names the file and the
problem; a :class:`subpixel.errors.SubpixelError` (bad input) is printed as one line. Any other exception is a
bug and shows its traceback (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from subpixel.allocator import keep_freed_memory
from subpixel.cli._args import non_negative_int, positive_int
from subpixel.cli._errors import describe

__all__ = ["COMMANDS", "main", "non_negative_int", "positive_int"]

#: command name -> (module path, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("subpixel.cli.demo", "upscale a sample image with the bundled weights and report PSNR"),
    "convert-demo": (
        "subpixel.cli.convert_demo",
        "show that ConvTranspose and SubPixelConv agree, and time both",
    ),
    "train": ("subpixel.cli.train", "train a super-resolution model (RepESPCN or ESPCN)"),
    "evaluate": ("subpixel.cli.evaluate", "evaluate SR weights by the standard protocol (Y-PSNR/SSIM)"),
    "upscale": ("subpixel.cli.upscale", "upscale images, folders or videos"),
    "study": ("subpixel.cli.study", "LR-space vs HR-space networks at equal compute"),
    "onnx": ("subpixel.cli.onnx", "export and rewrite ONNX graphs (ConvTranspose <-> Conv + DepthToSpace)"),
}


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="subpixel",
        description="Upsampling layers as one exact operation, and ESPCN super-resolution.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception so that ``finally`` blocks (temporary files) run."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(name: str, rest: list[str]) -> int:
    module_path, help_text = COMMANDS[name]
    module = importlib.import_module(module_path)
    parser = argparse.ArgumentParser(prog=f"subpixel {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    # The commands run the same large tensors again and again (frames, tiles, batches): glibc then keeps freed
    # memory for reuse instead of faulting in fresh pages for each (a fifth of a video frame's time on 2 cores).
    keep_freed_memory()
    return int(module.run(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (usage errors exit through ``SystemExit(2)``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser = _top_parser()
        args = parser.parse_args(argv)
        if args.version:
            from subpixel import __version__

            print(__version__)
            return 0
        parser.print_help()
        return 0 if not argv else 2
    name, rest = argv[0], argv[1:]
    try:
        with _sigterm_raises():
            return _run(name, rest)
    except (Exception, KeyboardInterrupt) as exc:
        reported = describe(exc)
        if reported is None:
            raise
        message, code = reported
        if isinstance(exc, _Terminated):
            message, code = "terminated", 128 + signal.SIGTERM
        elif not isinstance(exc, KeyboardInterrupt):
            message = f"error: {message}"
        with contextlib.suppress(OSError):
            print(f"subpixel {name}: {message}", file=sys.stderr)
        return code
