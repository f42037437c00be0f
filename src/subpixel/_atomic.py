"""Atomic file output: the one place in ``subpixel`` that writes a file under a temporary name and renames it.

Every file the package writes (images, weights, checkpoints, JSON, figures, ONNX models, videos) goes through
:func:`atomic_write` or its context-manager form :func:`atomic_output`:

* the content is written to ``.NAME.<pid>-<hex>.tmp.EXT`` in the destination folder (same file system, so the
  rename is atomic; the extension is kept so that writers which look at it still see the format) and renamed
  over ``path`` with :func:`os.replace` only once complete: a killed run never leaves a partial file under the
  final name;
* the file gets the permissions any other program's new files get, ``0o666 & ~umask`` (``tempfile.mkstemp``
  would make them ``0o600``);
* on any failure, ``KeyboardInterrupt`` included, the temporary file is removed and ``path`` is untouched;
* an ``OSError`` (read-only folder, disk full, ...) is raised again naming the *final* path, not the temporary
  one, so that a message shows the file the user asked for;
* a temporary left behind by a killed process (its ``pid`` no longer runs) is recognised by
  :func:`is_temporary` and removed by :func:`clean_temporaries`, which commands run on their output folders
  before they start.

Examples:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> _ = atomic_write(target, lambda tmp: tmp.write_text("done"))
    >>> target.read_text()
    'done'
    >>> with atomic_output(target) as tmp:
    ...     _ = tmp.write_text("again")
    ...     target.read_text(), is_temporary(tmp)
    ('done', True)
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('again', ['notes.txt'])
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_output", "atomic_write", "clean_temporaries", "is_temporary", "temporary_name"]

# .NAME.<pid>-<12 hex>.tmp[.EXT]; also the forms of earlier versions: .NAME.<hex>.tmp.EXT (imageio) and
# .NAME.<random>.tmp (tempfile.mkstemp), which carry no pid
_TEMPORARY = re.compile(r"^\..+\.(?:(?P<pid>\d+)-)?[0-9A-Za-z_]+\.tmp(?:\.[^.]*)?$")


def temporary_name(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name for ``path``, in the same folder: ``.STEM.<pid>-<hex>.tmp.SUFFIX``.

    Examples:
        >>> name = temporary_name("out/photo.png")
        >>> name.parent.as_posix(), name.name.startswith(".photo."), name.suffix, is_temporary(name)
        ('out', True, '.png', True)
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}")


def is_temporary(path: str | os.PathLike[str]) -> bool:
    """Whether ``path``'s name is one of :func:`temporary_name` (or of the package's earlier temporaries).

    Examples:
        >>> is_temporary(".photo.123-0123456789ab.tmp.png"), is_temporary(".x.1f2e3d4c5b6a.tmp.png")
        (True, True)
        >>> is_temporary("photo.png"), is_temporary(".hidden.png")
        (False, False)
    """
    return _TEMPORARY.match(Path(path).name) is not None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):  # another user's process, or not a pid at all
        return True
    return True


def clean_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries that killed processes left in ``folder`` (not recursive); return them.

    A temporary whose name carries the id of a running process is kept (another run may be writing it); one
    whose process is gone, or from an earlier version of the package (no id), is removed. Files that cannot be
    removed are skipped.

    Examples:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / ".a.999999999-0123456789ab.tmp.png").write_bytes(b"half")
        >>> _ = (folder / temporary_name(folder / "b.png").name).write_bytes(b"mine")
        >>> [p.name for p in clean_temporaries(folder)], len(list(folder.iterdir()))
        (['.a.999999999-0123456789ab.tmp.png'], 1)
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = match.group("pid")
        if pid is not None and _pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _naming(error: OSError, path: Path, tmp: Path) -> OSError:
    """``error`` again, naming ``path`` instead of the temporary file (errors about other files are kept)."""
    if error.filename is not None and os.fspath(error.filename) != os.fspath(tmp):
        return error
    if error.errno is None:
        return OSError(f"cannot write {path}: {error}")
    return OSError(error.errno, error.strerror or str(error), str(path))  # the errno's subclass, e.g. PermissionError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (created empty); rename it to ``path`` when the block succeeds.

    See the module docstring for the guarantees. The folder of ``path`` must exist.

    Args:
        path: the final file.

    Raises:
        OSError: the temporary cannot be created or renamed (the message names ``path``), or the block raised
            one (renamed the same way).
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        # O_EXCL: never reuse someone else's file; mode 0o666 is reduced by the umask like any program's output
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise _naming(exc, path, tmp) from None
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        except OSError as exc:
            renamed = _naming(exc, path, tmp)
            if renamed is exc:
                raise
            raise renamed from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then rename it to ``path``; return ``path``.

    ``write`` may write to the (existing, empty) temporary file by its name or replace it. See the module
    docstring for the guarantees; the folder of ``path`` must exist.

    Args:
        path: the final file.
        write: writes the content to the path it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    with atomic_output(path) as tmp:
        write(tmp)
    return path
