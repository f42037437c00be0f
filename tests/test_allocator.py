"""subpixel.allocator: glibc keeps freed memory (checked by counting page faults, not by timing)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from subpixel.allocator import keep_freed_memory

_PROBE = """
import json, resource, sys
import torch
from subpixel.allocator import allocator_info, keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB: above glibc's largest automatic mmap threshold
del x
before = faults()
for _ in range(8):
    x = torch.empty(16 * 2**20).fill_(1.0)
    del x
print(json.dumps({"applied": applied, "faults": faults() - before, "info": allocator_info()}))
"""


def _probe(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    default, kept = _probe("default"), _probe("keep")
    pages = 64 * 2**20 // 4096
    assert default["applied"] is False and kept["applied"] is True
    assert kept["info"]["keep_freed_memory"] is True and default["info"]["keep_freed_memory"] is False
    # default glibc: every 64 MiB block is a fresh mmap, all its pages faulted in again (8 rounds)
    assert default["faults"] > 6 * pages
    # kept: the heap keeps the freed block; its pages are faulted in once or twice more (depending on where the
    # heap's top lies after `import subpixel`, which moves with unrelated changes to the package), not 8 times
    assert kept["faults"] < 3 * pages


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_bad_thresholds(bad: object) -> None:
    with pytest.raises(ValueError, match="threshold must be a positive int"):
        keep_freed_memory(mmap_threshold=bad)  # type: ignore[arg-type]
