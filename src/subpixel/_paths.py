"""Paths in shipped records: relative, never the absolute paths of the machine that wrote them.

Training metadata (``subpixel train``'s JSON beside the weights) and the study's ``results.json`` are committed
and shipped; :func:`portable_paths` rewrites every absolute path in such a record relative to the working
directory, which is also how a relative path given on the command line was meant, so the record stays
reproducible (``Path(start) / recorded`` is the original path) without naming the machine's folders.

Examples:
    >>> portable_paths({"out": "/work/runs/x3", "data": ["../data/T91"], "steps": 10}, start="/work/main")
    {'out': '../runs/x3', 'data': ['../data/T91'], 'steps': 10}
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import Any

__all__ = ["portable_path", "portable_paths"]


def portable_path(path: str | os.PathLike[str], *, start: str | os.PathLike[str] | None = None) -> str:
    """``path`` relative to ``start`` (POSIX separators) when it is absolute, else unchanged.

    Args:
        path: a file or folder path.
        start: the folder the record is relative to (default: the working directory); must be absolute or is
            made absolute against the working directory.

    Returns:
        The relative path as a string; only its final name when no relative path exists (another drive).

    Examples:
        >>> portable_path("/work/shared/data/sr/T91", start="/work/main")
        '../shared/data/sr/T91'
        >>> portable_path("runs/x3", start="/anywhere")
        'runs/x3'
    """
    text = os.fspath(path)
    if not os.path.isabs(text):
        return text
    base = os.path.abspath(os.fspath(start) if start is not None else os.getcwd())
    try:
        return Path(os.path.relpath(text, base)).as_posix()
    except ValueError:  # Windows: another drive
        return PurePath(text).name


def portable_paths(record: Any, *, start: str | os.PathLike[str] | None = None) -> Any:
    """A copy of a JSON-like record with every absolute path string made relative (:func:`portable_path`).

    Dicts, lists and tuples are walked (tuples come back as lists, as JSON has them); strings that are absolute
    paths and :class:`os.PathLike` values are rewritten; everything else is kept as it is.

    Args:
        record: a JSON-serialisable value (e.g. the ``training`` metadata of a weights file).
        start: the folder the paths are made relative to (default: the working directory).

    Returns:
        The rewritten copy; ``record`` itself is not modified.
    """
    if isinstance(record, dict):
        return {key: portable_paths(value, start=start) for key, value in record.items()}
    if isinstance(record, list | tuple):
        return [portable_paths(value, start=start) for value in record]
    if isinstance(record, str | os.PathLike):
        return portable_path(record, start=start)
    return record
