"""The one error-handling path of the command line: user and environment errors become one line, not a traceback.

:func:`describe` turns an exception into ``(message, exit code)``, or ``None`` for a bug (whose traceback is
worth seeing):

=====================================  ===========================================================  =====
exception                              message                                                      exit
=====================================  ===========================================================  =====
``KeyboardInterrupt`` (Ctrl-C)         ``interrupted``                                              130
missing optional dependency            the package, and how to install the extra that has it        2
``OSError``                            the file and the problem (disk full, permission denied, ...)  1
:class:`subpixel.errors.SubpixelError`  its message, which names the argument or file                2
``MemoryError``                        out of memory, and what to lower                             1
=====================================  ===========================================================  =====

Any other exception, a plain ``ValueError`` from torch or numpy included, is a bug: ``describe`` returns ``None``
and the command shows the traceback (exit 1), so that it gets reported rather than mistaken for bad input.
"""

from __future__ import annotations

import errno
import importlib

from subpixel._extras import EXTRAS, INSTALL_HINT, install_hint, missing_dependency, one_line
from subpixel.errors import SubpixelError

__all__ = ["EXTRAS", "INSTALL_HINT", "describe", "install_hint", "missing_dependency", "require"]

_OS_HINTS: dict[int, str] = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EACCES: "choose a folder you can write to (or fix its permissions)",
    errno.EPERM: "choose a folder you can write to (or fix its permissions)",
    errno.EROFS: "choose a folder on a writable file system",
}


def require(*modules: str) -> None:
    """Import ``modules`` now, so that a command missing an optional dependency says so before any work.

    Raises:
        ModuleNotFoundError: the first one missing (:func:`describe` names the extra that installs it).
    """
    for module in modules:
        importlib.import_module(module)


def _os_error(exc: OSError) -> str:
    reason = exc.strerror or one_line(exc)
    where = exc.filename if exc.filename is not None else None
    message = f"{where}: {reason}" if where is not None and exc.strerror else reason
    if exc.filename2 is not None and exc.strerror:
        message = f"{where} -> {exc.filename2}: {reason}"
    hint = _OS_HINTS.get(exc.errno or -1)
    return f"{message}; {hint}" if hint else message


def describe(exc: BaseException) -> tuple[str, int] | None:
    """``(one-line message, exit code)`` for an error of the user or the environment; ``None`` for a bug.

    Examples:
        >>> describe(KeyboardInterrupt())
        ('interrupted', 130)
        >>> describe(OSError(errno.ENOSPC, "No space left on device", "out/x.png"))
        ('out/x.png: No space left on device; free some space or write somewhere else', 1)
        >>> describe(SubpixelError("--scale must be 2, 3 or 4, got 5"))
        ('--scale must be 2, 3 or 4, got 5', 2)
        >>> describe(ValueError("expected a 4-D tensor")) is None  # from torch or numpy: a bug
        True
        >>> describe(ZeroDivisionError()) is None
        True
    """
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, ImportError):
        return missing_dependency(exc), 2
    if isinstance(exc, OSError):
        return _os_error(exc), 1
    if isinstance(exc, SubpixelError):
        return one_line(exc), 2
    if isinstance(exc, MemoryError):
        return "out of memory; try smaller inputs or a smaller batch or memory budget", 1
    return None
