"""The one rule for every file a command writes, checked before any work.

* never over an input (``--force`` replaces an *output*, never an input; symlinks and hard links to an input count
  as the input);
* over an existing file only with ``--force``;
* into a folder that exists, or can be created, whose path does not run through a file;
* atomically (the writers use :mod:`subpixel._atomic`; nothing to check here).

A breach raises :class:`~subpixel.errors.SubpixelError` with one line that names the option, the path and what to
do; the command then exits 2 (:mod:`subpixel.cli._errors`) having written nothing.

Examples:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> photo = folder / "photo.png"
    >>> _ = photo.write_bytes(b"mine")
    >>> check_output(photo, option="-o", inputs=[photo], force=True)
    Traceback (most recent call last):
    ...
    subpixel.errors.SubpixelError: -o .../photo.png is an input of this command; --force replaces outputs, never inputs: choose another name
    >>> check_output(photo, option="-o")
    Traceback (most recent call last):
    ...
    subpixel.errors.SubpixelError: -o .../photo.png exists; pass --force to replace it, or choose another name
    >>> check_output(photo / "x.png", option="-o")
    Traceback (most recent call last):
    ...
    subpixel.errors.SubpixelError: -o .../photo.png/x.png: .../photo.png is a file, not a folder; choose another output path
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from subpixel.errors import SubpixelError

__all__ = ["blocking_file", "check_output", "same_file"]


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (through symlinks and hard links); ``False`` if one is missing.

    Examples:
        >>> same_file(Path("/nonexistent/a"), Path("/nonexistent/a"))
        True
    """
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def blocking_file(path: Path) -> Path | None:
    """The first existing non-folder among ``path``'s parents (what makes creating its folder fail), or ``None``.

    Examples:
        >>> blocking_file(Path("/nonexistent/out.png")) is None
        True
    """
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def check_output(
    path: Path,
    *,
    option: str,
    inputs: Iterable[Path] = (),
    force: bool = False,
    create_folder: bool = False,
) -> None:
    """Refuse to write ``path`` where the rule above forbids it.

    Args:
        path: the file the command will write.
        option: how the user named it (``"-o"``, ``"--json"``), for the message.
        inputs: the files the command reads.
        force: whether ``--force`` was given.
        create_folder: whether the command creates a missing folder (else it must exist).

    Raises:
        SubpixelError: the one-line reason; nothing has been written.
    """
    path = Path(path)
    for source in inputs:
        if same_file(path, Path(source)):
            raise SubpixelError(
                f"{option} {path} is an input of this command; --force replaces outputs, never inputs: "
                "choose another name"
            )
    if path.is_dir():
        raise SubpixelError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not force:
        raise SubpixelError(f"{option} {path} exists; pass --force to replace it, or choose another name")
    blocker = blocking_file(path)
    if blocker is not None:
        raise SubpixelError(f"{option} {path}: {blocker} is a file, not a folder; choose another output path")
    folder = path.parent
    if not create_folder and not folder.is_dir():
        raise SubpixelError(f"{option} {path}: the folder {folder} does not exist; create it first")
