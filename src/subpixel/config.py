"""Every switch and tuning threshold of the core, in one place.

The environment is read once, when :mod:`subpixel` is imported; change a setting at run time with :func:`update`
(or for a block with :func:`override`), and read the environment again with :func:`reload`. The settings in force
are :data:`current` (a frozen :class:`Settings`; a change replaces it and forgets every cached plan).

=====================  ==========================  ========  ==================================================
setting                environment variable        default   meaning
=====================  ==========================  ========  ==================================================
``algorithm``          ``SUBPIXEL_ALGORITHM``      ``None``  force ``"lr_shuffle"``, ``"phases"`` or
                                                             ``"conv_transpose"`` where valid (``None`` /
                                                             ``"auto"``: the timed choice)
``timed_training``     ``SUBPIXEL_TIMED_TRAINING`` ``None``  ``True``: time every layer while autograd records;
                                                             ``False``: none (the LR form); ``None``: only
                                                             ConvTranspose-layout weights
``native``             ``SUBPIXEL_NATIVE``         ``True``  build and use the compiled copy kernel on the CPU
``native_timeout_s``   ``SUBPIXEL_NATIVE_TIMEOUT`` ``15``    seconds the kernel's first-use build may take
``cache_dir``          ``SUBPIXEL_CACHE_DIR``      ``None``  where the kernel is built (``None``:
                                                             ``$XDG_CACHE_HOME/subpixel`` or ``~/.cache/subpixel``)
``keep``                                           ``0.97``  another algorithm replaces the reference only when
                                                             timed at most this fraction of it
``phase_max_work``                                 ``0.95``  ``"phases"`` is a candidate where it does at most
                                                             this fraction of the LR form's multiply-adds
``phase_max_convs``                                ``64``    ... and needs at most this many convolutions
``plan_cache_size``                                ``512``   plans (and timed choices) kept
``reindex_min_elements``                           ``8192``  weights re-indexed in one pass from this size
``reindex_min_one_tap``                            ``65536`` ... from this size where a tap is one element
``reindex_blocked_from``                           ``262144`` ... in blocks (transposes) from this size
``native_small_bytes``                             ``65536`` copies below this run on one thread
=====================  ==========================  ========  ==================================================

Examples:
    >>> from subpixel import config
    >>> with config.override(algorithm="lr_shuffle"):
    ...     config.current.algorithm
    'lr_shuffle'
    >>> config.current.algorithm is None  # unless $SUBPIXEL_ALGORITHM is set
    True
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

from subpixel.errors import SubpixelError

__all__ = ["ALGORITHMS", "Algorithm", "Settings", "current", "on_change", "override", "reload", "update"]

#: an algorithm a transposed convolution in LR form may run (see :mod:`subpixel.algorithms`)
Algorithm = Literal["lr_shuffle", "phases", "conv_transpose"]
#: their names, in the order the timed choice lists them
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def check_algorithm(name: object, origin: str) -> str | None:
    """``name`` as an algorithm (``None`` for ``None`` or ``"auto"``); :class:`SubpixelError` naming ``origin``
    for anything else."""
    if name is None:
        return None
    if not isinstance(name, str) or name.strip().lower() not in (*ALGORITHMS, "auto"):
        raise SubpixelError(f"{origin} must be one of {(*ALGORITHMS, 'auto')}, got {name!r}")
    value = name.strip().lower()
    return None if value == "auto" else value


@dataclass(frozen=True)
class Settings:
    """The settings in force (see the table in the module docstring)."""

    algorithm: str | None = None
    timed_training: bool | None = None
    native: bool = True
    native_timeout_s: float = 15.0
    cache_dir: str | None = None
    keep: float = 0.97
    phase_max_work: float = 0.95
    phase_max_convs: int = 64
    plan_cache_size: int = 512
    reindex_min_elements: int = 8192
    reindex_min_one_tap: int = 1 << 16
    reindex_blocked_from: int = 1 << 18
    native_small_bytes: int = 1 << 16

    def __post_init__(self) -> None:
        check_algorithm(self.algorithm, "algorithm")
        if self.timed_training not in (None, True, False):
            raise SubpixelError(f"timed_training must be None, True or False, got {self.timed_training!r}")
        for name in ("keep", "phase_max_work"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise SubpixelError(f"{name} must be a number in (0, 1], got {value!r}")
        for name in (
            "phase_max_convs", "plan_cache_size", "reindex_min_elements", "reindex_min_one_tap",
            "reindex_blocked_from", "native_small_bytes",
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SubpixelError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.native_timeout_s, (int, float)) or self.native_timeout_s <= 0:
            raise SubpixelError(f"native_timeout_s must be a positive number, got {self.native_timeout_s!r}")


def _flag(environ: Mapping[str, str], name: str) -> bool | None:
    value = (environ.get(name) or "").strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def from_environ(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings the environment asks for (the defaults elsewhere).

    Raises:
        SubpixelError: ``$SUBPIXEL_ALGORITHM`` is not an algorithm name.
    """
    env = os.environ if environ is None else environ
    try:
        timeout = max(0.1, float(env.get("SUBPIXEL_NATIVE_TIMEOUT", "15")))
    except ValueError:
        timeout = 15.0
    return Settings(
        algorithm=check_algorithm(env.get("SUBPIXEL_ALGORITHM") or None, "$SUBPIXEL_ALGORITHM"),
        timed_training=_flag(env, "SUBPIXEL_TIMED_TRAINING"),
        native=_flag(env, "SUBPIXEL_NATIVE") is not False,
        native_timeout_s=timeout,
        cache_dir=env.get("SUBPIXEL_CACHE_DIR") or None,
    )


_listeners: list[Callable[[], None]] = []


def on_change(callback: Callable[[], None]) -> None:
    """Call ``callback()`` after every change of the settings (the dispatch forgets its plans)."""
    _listeners.append(callback)


def _set(settings: Settings) -> Settings:
    global current
    current = settings
    for callback in _listeners:
        callback()
    return settings


def update(**changes: object) -> Settings:
    """Change settings at run time (names of :class:`Settings`); returns the new settings.

    Raises:
        SubpixelError: an unknown setting or a value out of range.
    """
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(Settings)})
    if unknown:
        raise SubpixelError(
            f"unknown setting(s) {unknown}; known: {[f.name for f in dataclasses.fields(Settings)]}"
        )
    if "algorithm" in changes:
        changes["algorithm"] = check_algorithm(changes["algorithm"], "algorithm")
    return _set(dataclasses.replace(current, **changes))  # type: ignore[arg-type]


@contextmanager
def override(**changes: object) -> Iterator[Settings]:
    """:func:`update` for the block, then the settings before it (process-wide, not thread-local)."""
    before = current
    try:
        yield update(**changes)
    finally:
        _set(before)


def reload(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the environment (or ``environ``) again, as at import.

    Raises:
        SubpixelError: ``$SUBPIXEL_ALGORITHM`` is not an algorithm name (the settings are then unchanged).
    """
    global environment_error
    settings = from_environ(environ)
    environment_error = None
    return _set(settings)


def _initial() -> Settings:
    global environment_error
    try:
        return from_environ()
    except SubpixelError as exc:  # a bad $SUBPIXEL_ALGORITHM is reported where it is used, not at import
        environment_error = str(exc)
        return from_environ({**os.environ, "SUBPIXEL_ALGORITHM": ""})


#: the message of a bad ``$SUBPIXEL_ALGORITHM`` seen at import (raised by the first transposed convolution)
environment_error: str | None = None
#: the settings in force
current: Settings = _initial()
