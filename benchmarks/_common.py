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

from subpixel import native
from subpixel.allocator import allocator_info, keep_freed_memory

__all__ = ["ROOT", "allocator_info", "geomean", "keep_freed_memory", "machine_info"]

ROOT = Path(__file__).resolve().parent.parent


def geomean(xs: list[float]) -> float:
    """Geometric mean (NaN for an empty list)."""
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


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
        "native_copy_kernel": native.info(),
        "threads": threads,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
