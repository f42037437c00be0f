"""What every benchmark records beside its numbers: machine, versions, threads, load and commit."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def geomean(xs: list[float]) -> float:
    """Geometric mean (NaN for an empty list)."""
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


_MALLOC_ENV = ("LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")
_kept_freed_memory = False


def keep_freed_memory() -> bool:
    """Tell glibc's ``malloc`` to keep freed memory for reuse instead of returning it to the kernel.

    By default glibc serves blocks above its mmap threshold (at most 32 MiB) with ``mmap`` and gives freed memory
    at the top of the heap back once more than twice that is free. A layer that allocates a large temporary (the
    LR convolution's output) and then its result can make every call fault in fresh, zeroed pages: on this VM that
    costs as much as the convolution. Caching allocators (jemalloc, tcmalloc: PyTorch's CPU tuning guide suggests
    them) and these two ``mallopt`` settings (the same as ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
    in the environment) keep the pages. It changes the whole process, so both sides of a comparison alike.

    Returns:
        ``True`` when the settings were applied (glibc found), ``False`` otherwise.
    """
    global _kept_freed_memory
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31))
    except (OSError, AttributeError):
        ok = False
    _kept_freed_memory = ok
    return ok


def allocator_info() -> dict[str, object]:
    """The allocator settings that change timings: environment variables set, and :func:`keep_freed_memory`."""
    return {
        "env": {k: os.environ[k] for k in _MALLOC_ENV if k in os.environ},
        "keep_freed_memory": _kept_freed_memory,
    }


def machine_info(threads: int, script: str, **extra: object) -> dict[str, object]:
    """Machine, versions, thread count, load and commit (``+dirty`` when ``src`` or ``script`` has uncommitted edits).

    Args:
        threads: the torch (or runtime) thread count the benchmark used.
        script: the benchmark's path relative to the repository root, checked for uncommitted edits.
        extra: further entries (other libraries' versions).
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": platform.node(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        **extra,
        "allocator": allocator_info(),
        "threads": threads,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
