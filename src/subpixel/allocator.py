"""Keep freed memory in the process instead of handing it back to the kernel (glibc ``malloc`` only).

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves large blocks (above a threshold that
adapts up to 32 MiB) with ``mmap`` and returns freed memory at the top of the heap to the kernel once more than
twice that threshold is free. A computation that allocates a large temporary and then its result on every call
(an LR convolution's output, then the shuffled image) can then fault in fresh, zero-filled pages each time; on
small virtual machines that costs as much as the arithmetic. Caching allocators (jemalloc, tcmalloc, which
PyTorch's CPU performance guide suggests preloading) avoid it; so do two ``mallopt`` settings, which
:func:`keep_freed_memory` applies. They are process-wide, so the library never calls it by itself: a program
opts in (``benchmarks/layers.py --keep-freed-memory`` does, for both sides of its comparison).

The same settings from the shell, for any program: ``MALLOC_MMAP_THRESHOLD_=1073741824
MALLOC_TRIM_THRESHOLD_=2147483648``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

__all__ = ["allocator_info", "keep_freed_memory"]

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_ENV = ("LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")
_applied = False


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 31) -> bool:
    """Ask glibc's ``malloc`` to serve blocks below ``mmap_threshold`` bytes from the heap and to keep up to
    ``trim_threshold`` bytes of freed memory for reuse (process-wide; memory is reused, not leaked).

    Args:
        mmap_threshold: blocks at least this large still come from ``mmap`` (default 1 GiB).
        trim_threshold: free memory at the top of the heap beyond this is returned to the kernel (default 2 GiB).

    Returns:
        ``True`` if glibc accepted both settings; ``False`` where there is no glibc (macOS, Windows, musl) and
        nothing changed.

    Raises:
        ValueError: if a threshold is not a positive int.

    Examples:
        >>> from subpixel.allocator import allocator_info
        >>> isinstance(allocator_info()["keep_freed_memory"], bool)
        True
    """
    global _applied
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold, 2**31 - 1))) and bool(
        mallopt(_M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1))
    )
    _applied = _applied or ok
    return ok


def allocator_info() -> dict[str, object]:
    """The allocator settings that change CPU timings: the environment variables that are set, and whether
    :func:`keep_freed_memory` was applied in this process.

    Returns:
        ``{"env": {name: value, ...}, "keep_freed_memory": bool}``.
    """
    return {"env": {k: os.environ[k] for k in _ENV if k in os.environ}, "keep_freed_memory": _applied}
