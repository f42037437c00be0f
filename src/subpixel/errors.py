"""The one error type of the package.

Every error that ``subpixel`` raises on purpose about what it was given (an argument, a file, a weight) is a
:class:`SubpixelError`, with a message that names the argument or file, the value received and what was
expected. It subclasses ``ValueError``, so code that catches ``ValueError`` keeps working.

The command line turns a ``SubpixelError`` into one line and exit status 2; any other exception is a bug and is
shown with its traceback (exit 1), so that it gets reported.

Examples:
    >>> from subpixel.errors import SubpixelError
    >>> try:
    ...     raise SubpixelError("scale must be a positive int, got 0")
    ... except ValueError as exc:
    ...     print(exc)
    scale must be a positive int, got 0
"""

from __future__ import annotations

__all__ = ["SubpixelError"]


class SubpixelError(ValueError):
    """A user-facing error of ``subpixel``: wrong argument, unreadable file, unusable weights."""
