"""Optional compiled kernels, built on first use; everything works without them: the copy kernel for the
shuffles and the weight re-indexing, and an in-place PReLU for the upscaling runner (:func:`prelu_`).

Periodic shuffling is a pure rearrangement of memory: a strided copy in which the axis the output is
contiguous along is not the one the input is contiguous along. PyTorch's ``copy_`` walks such copies element
by element along the output's axis and reaches a third to a half of a plain ``clone()``'s bandwidth on them (far
less for channels-last tensors in CRD order). ``strided_copy.c`` copies them block by block, so that both sides
stream: interleave / de-interleave loops (unrolled for factors 2–4, blocked 8×8), gathers and scatters through an
offset table for small blocks (a channels-last pixel), or tiles; :func:`_plan` picks one per layout.

:func:`gather_tiles` moves a ConvTranspose weight into its LR layout or back (:mod:`subpixel._reindex`) in one pass
through two offset tables, tile by tile over the (input, output) channel plane (``benchmarks/reindex.py`` times it
against the view chain, and with ``--no-native`` the torch copies that replace it without a compiler).

:func:`prelu_` applies a per-channel PReLU in place in one pass (``activations.c``): PyTorch's eager bfloat16
PReLU on the CPU takes a scalar pass, and the same composed from vectorised ops (``max(x, 0) + a·min(x, 0)``)
four passes and a temporary; in the bundled ×2 upscaling network that was a third of a frame's time.
:func:`prelu_quantize` applies it and quantizes the result to uint8 in the same pass, for the int8 runner.
:class:`LRConvShuffle` is an SR network's last layer (PReLU, the k×k convolution to r² channels, periodic shuffling,
bias and nearest skip) in one pass over 16-pixel blocks (``lr_conv.c``, on CPUs with AVX-512 BF16): a library
convolution pads the r² = 4 outputs of a ×2 layer to a 16-channel vector and costs as much as a 27→16 layer.

Image kernels (``pixels.c``): :func:`quantize_into` (8/16-bit rounding), :func:`colour_quantize_into` (YCbCr → RGB
and the rounding in one pass) and :func:`bicubic_upscale_into` (MATLAB's bicubic upscaling, separably).

The wheel stays pure Python. The first call compiles the ``.c`` files with the C compiler found as ``$CC`` or
``cc`` (``-O3 -march=native -fopenmp``, about a second) into a cache folder (``$SUBPIXEL_CACHE_DIR``, else
``$XDG_CACHE_HOME/subpixel``, else ``~/.cache/subpixel``) under a name that hashes the source, the flags, the
compiler and the CPU, and loads it with :mod:`ctypes`. The build is bounded (``$SUBPIXEL_NATIVE_TIMEOUT``, 15 s):
a compiler that hangs is killed with its process group. It runs on PyTorch's OpenMP runtime (the same
``libgomp.so.1``, already loaded by ``import torch``) with ``torch.get_num_threads()`` threads. Where there is no
compiler, the build fails, or ``SUBPIXEL_NATIVE=0`` is set, :func:`available` is ``False`` and the shuffles use
``Tensor.copy_`` (the tested fallback; results are bitwise identical, a copy does no arithmetic).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import math
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from subpixel import config

__all__ = [
    "CopyProgram",
    "LRConvShuffle",
    "available",
    "bicubic_upscale_into",
    "colour_quantize_into",
    "copy_into",
    "enabled",
    "info",
    "prelu_",
    "prelu_quantize",
    "quantize_into",
    "strided_copy",
]

_SOURCES = tuple(
    Path(__file__).with_name(name) for name in ("strided_copy.c", "activations.c", "pixels.c", "lr_conv.c")
)
_FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c11")
_ELEMENT_SIZES = (1, 2, 4, 8, 16)
_MAX_OUTER = 16

_state: dict[str, object] = {
    "lib": None,
    "fn": None,
    "gather": None,
    "prelu": None,
    "prelu_quantize": None,
    "quantize": None,
    "colour_quantize": None,
    "bicubic": None,
    "lr_conv": None,
    "lr_conv_available": False,
    "tried": False,
    "error": None,
    "path": None,
    "forced_off": False,
}


def _cache_dir() -> Path:
    if config.current.cache_dir:
        return Path(config.current.cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "subpixel"


def _cpu_key() -> str:
    """The CPU model and feature flags (``-march=native`` code is only valid on a CPU with these)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _build_timeout() -> float:
    """Seconds the first-use build may take in all (``$SUBPIXEL_NATIVE_TIMEOUT``, default 15; it takes about 1)."""
    return config.current.native_timeout_s


def _run_bounded(cmd: list[str], deadline: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` until ``deadline`` (a ``time.monotonic()`` value) in a process group of its own.

    On timeout the whole group is killed (a compiler driver's ``cc1``/``as``/``ld`` children, or whatever a ``$CC``
    script started) and reaped, so that nothing is left behind; then ``subprocess.TimeoutExpired`` is raised.
    """
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except BaseException as exc:  # the timeout, or an interruption: kill the group, reap the child
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise subprocess.TimeoutExpired(cmd, _build_timeout()) from None
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _build(cc: str) -> Path:
    """Compile the kernel (once per source, flags, compiler and CPU) and return the shared library's path.

    The compiler's runs share one deadline (:func:`_build_timeout`); a hanging compiler is killed with its
    process group, and the caller falls back to ``copy_``.
    """
    deadline = time.monotonic() + _build_timeout()
    version = _run_bounded([cc, "--version"], deadline).stdout
    key = hashlib.sha256(
        "\0".join(
            [*(src.read_text() for src in _SOURCES), " ".join(_FLAGS), cc, version, _cpu_key(), platform.platform()]
        ).encode()
    ).hexdigest()[:20]
    folder = _cache_dir()
    path = folder / f"strided_copy-{key}.so"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".strided_copy-", suffix=".so", dir=folder)
    os.close(fd)
    try:
        done = _run_bounded([cc, *_FLAGS, "-o", tmp, *map(str, _SOURCES)], deadline)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed ({done.returncode}): {done.stderr.strip()[:2000]}")
        os.replace(tmp, path)  # complete or absent: a killed build leaves no half-written library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _load() -> ctypes.CDLL | None:
    """The loaded kernel, building it on the first call; ``None`` (and the reason in :func:`info`) if unavailable."""
    if _state["tried"]:
        return _state["lib"]  # type: ignore[return-value]
    _state["tried"] = True
    if not config.current.native:
        _state["error"] = "disabled by SUBPIXEL_NATIVE"
        return None
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        _state["error"] = f"no C compiler found (CC={os.environ.get('CC', 'cc')!r})"
        return None
    try:
        path = _build(cc)
        lib = ctypes.CDLL(str(path))
        fn = lib.sp_copy_with_plan
        lib.sp_gather_tiles  # noqa: B018 - every entry point or none
        prelu = lib.sp_prelu_inplace
        prelu_quantize = lib.sp_prelu_quantize_u8
        quantize = lib.sp_quantize
        colour_quantize = lib.sp_colour_quantize
        bicubic = lib.sp_bicubic_upscale
        lr_conv = lib.sp_lr_conv_shuffle
        lr_conv_available = bool(lib.sp_lr_conv_available())
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
        _state["error"] = f"{type(exc).__name__}: {exc}"
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    gather = lib.sp_gather_tiles
    gather.argtypes = [ctypes.c_void_p, ctypes.c_void_p, *[ctypes.c_int64] * 12, ctypes.c_void_p, ctypes.c_void_p,
                       *[ctypes.c_int64] * 4]  # fmt: skip
    gather.restype = ctypes.c_int
    prelu.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64]
    prelu.restype = ctypes.c_int
    _state["lib"], _state["path"], _state["fn"], _state["gather"] = lib, str(path), fn, gather
    prelu_quantize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_float, ctypes.c_float, ctypes.c_int64]  # fmt: skip
    prelu_quantize.restype = ctypes.c_int
    quantize.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_void_p, *[ctypes.c_int64] * 8]
    quantize.restype = ctypes.c_int
    colour_quantize.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.c_void_p, *[ctypes.c_int64] * 7]  # fmt: skip
    colour_quantize.restype = ctypes.c_int
    bicubic.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 3, ctypes.c_void_p, *[ctypes.c_int64] * 7,
                        ctypes.c_void_p, ctypes.c_int64]  # fmt: skip
    bicubic.restype = ctypes.c_int
    _state["prelu"], _state["prelu_quantize"], _state["quantize"] = prelu, prelu_quantize, quantize
    _state["colour_quantize"], _state["bicubic"] = colour_quantize, bicubic
    lr_conv.argtypes = [ctypes.c_void_p, *[ctypes.c_int64] * 4, ctypes.c_void_p, ctypes.c_int64, *[ctypes.c_void_p] * 3,
                        ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]  # fmt: skip
    lr_conv.restype = ctypes.c_int
    _state["lr_conv"] = lr_conv
    _state["lr_conv_available"] = lr_conv_available
    return lib


def _check(rc: int, kernel: str) -> None:
    """Raise for a kernel's return code: 0 is done, -2 is memory it could not have for its buffers, anything else
    arguments it refused (which the wrappers here never pass)."""
    if rc == -2:
        raise MemoryError(f"{kernel} kernel: out of memory for its buffers")
    if rc != 0:
        raise RuntimeError(f"{kernel} kernel returned {rc}")


def _library() -> ctypes.CDLL | None:
    """The loaded kernels, or ``None`` where they are unavailable or switched off (:func:`enabled`)."""
    return None if _state["forced_off"] else _load()


def available() -> bool:
    """Whether the compiled kernel is in use (building it now if this is the first question)."""
    return _library() is not None


def info() -> dict[str, object]:
    """``{"available": bool, "path": library or None, "error": why not or None}`` (for benchmarks and bug reports)."""
    ok = available()
    return {
        "available": ok,
        "path": _state["path"],
        "error": None if ok else _state["error"] or "switched off",
    }


@contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Switch the compiled kernel off (``False``) or back on (``True``) inside a ``with`` block (tests, benchmarks).

    Examples:
        >>> with enabled(False):
        ...     available()
        False
    """
    before = _state["forced_off"]
    _state["forced_off"] = not flag
    try:
        yield
    finally:
        _state["forced_off"] = before


_DIRECT, _GATHER, _SCATTER = 0, 1, 2
_Outer = ctypes.c_int64 * _MAX_OUTER


class _Plan(ctypes.Structure):
    """One copy's plan, as ``sp_plan_t`` in ``strided_copy.c`` (passed by address: three arguments per call)."""

    _fields_ = [
        ("elsize", ctypes.c_int64),
        ("n_outer", ctypes.c_int64),
        ("outer_size", _Outer),
        ("outer_src", _Outer),
        ("outer_dst", _Outer),
        *[(name, ctypes.c_int64) for name in ("n_rows", "ssr", "dsr", "chunk_r", "na", "ssa", "dsa")],
        *[(name, ctypes.c_int64) for name in ("nb", "ssb", "dsb", "mode", "threads")],
        ("table", ctypes.c_void_p),
    ]


_MAX_TABLE = 512  # blocks up to this many elements may be copied through an offset table


def _dense_block(dims: list[tuple[int, int, int]], side: int) -> list[int]:
    """Indices of the innermost axes that are one dense run on ``side`` (1: src, 2: dst), as long as the run stays
    within the table size: the block a table-driven copy walks in order on that side."""
    order = sorted(range(len(dims)), key=lambda k: dims[k][side])
    block: list[int] = []
    size = 1
    for k in order:
        if dims[k][side] != size or size * dims[k][0] > _MAX_TABLE:
            break
        block.append(k)
        size *= dims[k][0]
    return block


def _split_for_table(dims: list[tuple[int, int, int]], side: int) -> list[tuple[int, int, int]]:
    """``dims`` with the axis that continues the dense run on ``side`` split in two where it is too long to join the
    table whole, so that a small block (a channels-last pixel of few channels) grows to tens of elements."""
    block = _dense_block(dims, side)
    size = math.prod(dims[k][0] for k in block)
    if size >= 64:
        return dims
    for k, (n, s, d) in enumerate(dims):
        if k not in block and (s, d)[side - 1] == size:
            q = max((q for q in range(2, n) if n % q == 0 and size * q <= _MAX_TABLE), default=0)
            if q:
                return [*dims[:k], (n // q, s * q, d * q), (q, s, d), *dims[k + 1 :]]
    return dims


def _offsets(block: list[tuple[int, int, int]], side: int) -> list[int]:
    """Offsets on the other side of every element of a dense block, in the block's own (row-major) order."""
    other = 3 - side
    offsets = [0]
    for n, *strides in sorted(block, key=lambda t: t[side]):  # innermost first
        step = strides[other - 1]
        offsets = [i * step + o for i in range(n) for o in offsets]
    return offsets


@lru_cache(maxsize=1024)
def _plan(
    sizes: tuple[int, ...],
    src_strides: tuple[int, ...],
    dst_strides: tuple[int, ...],
    threads: int,
    itemsize: int,
) -> _Plan | None:
    """Reduce a strided copy to the kernel's form (see ``strided_copy.c``): outer axes, a row axis, and a block of
    axes A (dst-contiguous) and B (src-contiguous). ``None`` if the copy does not fit the kernel."""
    merged = _merged_axes(sizes, src_strides, dst_strides)
    if merged is None:
        return None
    block = _block(merged, itemsize)
    rest, n_rows, ssr, dsr = _rows(block)
    if len(rest) > _MAX_OUTER:
        return None
    n_items = math.prod(m[0] for m in rest)
    total_bytes = n_items * n_rows * block.na * block.nb * itemsize
    threads = 1 if total_bytes < config.current.native_small_bytes else threads
    chunk_r = n_rows
    if n_items < 8 * threads and n_rows > 1:  # too few outer items to share: split the rows as well
        chunk_r = max(1, -(-n_rows // -(-8 * threads // n_items)))
    plan = _Plan(
        elsize=itemsize,
        n_outer=len(rest),
        outer_size=_Outer(*(m[0] for m in rest)),
        outer_src=_Outer(*(m[1] for m in rest)),
        outer_dst=_Outer(*(m[2] for m in rest)),
        n_rows=n_rows,
        ssr=ssr,
        dsr=dsr,
        chunk_r=chunk_r,
        na=block.na,
        ssa=block.ssa,
        dsa=block.dsa,
        nb=block.nb,
        ssb=block.ssb,
        dsb=block.dsb,
        mode=block.mode,
        threads=threads,
    )
    if block.table:
        plan.keep_alive = (ctypes.c_int64 * len(block.table))(*block.table)
        plan.table = ctypes.cast(plan.keep_alive, ctypes.c_void_p)
    return plan


def _merged_axes(
    sizes: tuple[int, ...], src_strides: tuple[int, ...], dst_strides: tuple[int, ...]
) -> list[tuple[int, int, int]] | None:
    """The copy's axes as ``(size, src stride, dst stride)``, outermost (largest dst stride) first, without axes
    of size 1 and with axes that are one run on both sides merged; ``None`` for negative strides or dst elements
    that alias."""
    dims = [(n, s, d) for n, s, d in zip(sizes, src_strides, dst_strides, strict=True) if n != 1]
    if any(s < 0 or d <= 0 for _, s, d in dims):  # negative strides, or dst elements that alias
        return None
    dims = dims or [(1, 1, 1)]
    dims.sort(key=lambda t: (t[2], t[1]), reverse=True)  # outermost (largest dst stride) first
    merged = [dims[0]]
    for n, s, d in dims[1:]:  # merge axes that are one run on both sides
        pn, ps, pd = merged[-1]
        if ps == s * n and pd == d * n:
            merged[-1] = (pn * n, s, d)
        else:
            merged.append((n, s, d))
    return merged


@dataclass
class _Block:
    """The innermost block of a copy: axes A (``na`` elements, strides ``ssa``/``dsa``) and B, or a table of
    offsets (``mode`` gather or scatter); the axes left (``rest``) become the rows and the outer loops."""

    mode: int
    table: list[int] | None
    na: int
    ssa: int
    dsa: int
    nb: int
    ssb: int
    dsb: int
    rest: list[tuple[int, int, int]]
    #: the rows follow the src side (a scatter, or one src row de-interleaved into several dst rows)
    src_rows: bool


def _block(merged: list[tuple[int, int, int]], itemsize: int) -> _Block:
    """Choose the innermost block: the dst-contiguous axis A and the src-contiguous axis B, unrolled where one src
    row de-interleaves into a few dst rows (or a few into one), else a table gather or scatter where the dense
    block on one side holds 8 elements or more, else A and B as they are."""
    a = min(range(len(merged)), key=lambda k: (merged[k][2], -merged[k][0]))
    b = min(range(len(merged)), key=lambda k: (merged[k][1], -merged[k][0]))
    na, ssa, dsa = merged[a]
    nb, ssb, dsb = merged[b] if a != b else (1, 0, 0)
    rest = [m for k, m in enumerate(merged) if k not in (a, b)]
    # one src row into nb dst rows; beyond 4 rows (8: blocked) a table scatter is faster, unless the rows are far apart
    deinterleave = (
        ssa == nb and na >= 16 and (2 <= nb <= 4 or nb == 8 or (nb <= 16 and dsb * itemsize >= 1 << 14))
    )
    interleave = 2 <= na <= 16 and dsb == na and nb >= 16  # na src rows into one dst row
    unrolled = dsa == 1 and ssb == 1 and (deinterleave or interleave)
    mode, table = _DIRECT, None
    if a != b and not unrolled:
        dims_dst, dims_src = _split_for_table(merged, 2), _split_for_table(merged, 1)
        dst_block, src_block = _dense_block(dims_dst, 2), _dense_block(dims_src, 1)
        size_dst = math.prod(dims_dst[k][0] for k in dst_block)
        size_src = math.prod(dims_src[k][0] for k in src_block)
        if max(size_dst, size_src) >= 8:  # gathers (contiguous writes) beat scatters where both apply
            mode, side, block, dims = (
                (_GATHER, 2, dst_block, dims_dst) if size_dst >= 8 else (_SCATTER, 1, src_block, dims_src)
            )
            table = _offsets([dims[k] for k in block], side)
            na, ssa, dsa, nb, ssb, dsb = len(table), 0, 0, 1, 0, 0
            rest = [m for k, m in enumerate(dims) if k not in block]
    src_rows = mode == _SCATTER or (unrolled and deinterleave)
    return _Block(mode, table, na, ssa, dsa, nb, ssb, dsb, rest, src_rows)


def _rows(block: _Block) -> tuple[list[tuple[int, int, int]], int, int, int]:
    """The outer axes (outermost first) and the row axis ``(n_rows, src stride, dst stride)`` of the axes the
    block leaves: the loops follow the side the block is dense on, the innermost is the row axis; trailing outer
    axes nearer than the rows on the src side are swept inside tiles of rows."""
    rest = list(block.rest)
    if rest:  # loops follow the side the block is dense on; the innermost is the row axis
        side = 1 if block.src_rows else 2
        rest.sort(key=lambda t: (t[side], t[0]), reverse=True)
        n_rows, ssr, dsr = rest.pop()
    else:
        n_rows, ssr, dsr = 1, 0, 0
    inner = 0  # trailing outer axes nearer than the rows on the src side (e.g. the phases of a DCR unshuffle)
    while (
        inner < len(rest) and rest[-1 - inner][1] < ssr and math.prod(m[0] for m in rest[-1 - inner :]) <= 64
    ):
        inner += 1
    if inner and block.mode != _SCATTER and n_rows >= 32:
        # sweep them inside tiles of rows, so that a tile's src lines are read once for all their values
        q = max((q for q in range(2, 33) if n_rows % q == 0), default=0)
        if q:
            rest.insert(len(rest) - inner, (n_rows // q, ssr * q, dsr * q))
            n_rows = q
    return rest, n_rows, ssr, dsr


def strided_copy(dst: Tensor, src: Tensor) -> bool:
    """``dst.copy_(src)`` with the compiled kernel, for same-shape, same-dtype CPU tensors (views allowed).

    Returns ``False``, having done nothing, where the kernel does not apply (kernel unavailable, other devices,
    dtypes or shapes that differ, negative strides, tensor subclasses, pending conjugation or negation, a copy
    autograd has to record); the caller then uses ``copy_``.

    Shape:
        - dst, src: any, equal.
    """
    if (
        dst.device.type != "cpu"
        or src.device.type != "cpu"
        or dst.dtype != src.dtype
        or dst.shape != src.shape
        or dst.element_size() not in _ELEMENT_SIZES
        or type(dst) is not Tensor
        or type(src) not in (Tensor, torch.nn.Parameter)
        or src.is_conj()  # lazy conjugation or negation: a raw copy would drop it
        or src.is_neg()
        or dst.is_conj()
        or dst.is_neg()
        or (
            torch.is_grad_enabled() and (dst.requires_grad or src.requires_grad)
        )  # autograd must see the copy
    ):
        return False
    if _library() is None:
        return False
    if dst.numel() == 0:
        return True
    plan = _plan(tuple(dst.shape), src.stride(), dst.stride(), torch.get_num_threads(), dst.element_size())
    if plan is None:
        return False
    _run(src.data_ptr(), dst.data_ptr(), ctypes.addressof(plan))
    return True


def prelu_(x: Tensor, weight: Tensor) -> bool:
    """``x`` replaced in place by ``prelu(x, weight)`` with the compiled kernel: one pass over memory.

    Equal to :func:`torch.nn.functional.prelu` in value: a negative value becomes its product with the
    channel's slope, rounded once to ``x``'s dtype (as PyTorch rounds it); other values are kept bit for bit (a
    product that underflows may differ from PyTorch's in the sign of its zero). For bfloat16 and
    float32 CPU tensors, contiguous or channels-last, that autograd does not record; returns ``False``, having
    done nothing, anywhere else (the caller then composes it from torch ops).

    Shape:
        - x: ``(N, C, *spatial)``; weight: ``(C,)`` or ``(1,)``, in ``x``'s dtype.
    """
    if (
        x.device.type != "cpu"
        or x.dtype not in (torch.bfloat16, torch.float32)
        or weight.dtype != x.dtype
        or type(x) is not Tensor
        or x.dim() < 2
        or weight.dim() != 1
        or weight.numel() not in (1, x.shape[1])
        or (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    ):
        return False
    if x.is_contiguous():
        outer, channels, inner = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    elif x.dim() in (4, 5) and x.is_contiguous(
        memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    ):
        outer, channels, inner = x.numel() // max(x.shape[1], 1), x.shape[1], 1
    else:
        return False
    if _library() is None:
        return False
    if x.numel() == 0:
        return True
    slopes = weight.detach().to(torch.float32).expand(channels).contiguous()
    rc = _state["prelu"](  # type: ignore[operator]
        x.data_ptr(), outer, channels, inner, slopes.data_ptr(), x.element_size(), torch.get_num_threads()
    )
    _check(rc, "prelu")
    return True


def prelu_quantize(x: Tensor, out: Tensor, weight: Tensor, scale: float, zero_point: int) -> bool:
    """``out`` set to ``x`` through a per-channel PReLU, quantized to uint8, with the compiled kernel (one pass).

    ``out = clamp(round(prelu(x, weight) / scale) + zero_point, 0, 255)``, rounding half to even, computed in
    float32 as ``prelu(x) · (1 / scale) + zero_point`` (the activation between two int8 convolutions of
    :mod:`subpixel.upscaling.int8`). For a channels-last bfloat16 CPU tensor ``x`` and a channels-last uint8 ``out``
    of its shape; returns ``False``, having done nothing, anywhere else (the caller then composes it from torch ops).

    Shape:
        - x, out: ``(N, C, H, W)``; weight: ``(C,)``.
    """
    if (
        x.device.type != "cpu"
        or out.device.type != "cpu"
        or x.dtype != torch.bfloat16
        or out.dtype != torch.uint8
        or x.dim() != 4
        or out.shape != x.shape
        or weight.shape != (x.shape[1],)
        or not x.is_contiguous(memory_format=torch.channels_last)
        or not out.is_contiguous(memory_format=torch.channels_last)
        or not (scale > 0 and 0 <= zero_point <= 255)
    ):
        return False
    if _library() is None:
        return False
    if x.numel() == 0:
        return True
    slopes = weight.detach().to(torch.float32).contiguous()
    rc = _state["prelu_quantize"](  # type: ignore[operator]
        x.data_ptr(), out.data_ptr(), x.numel() // x.shape[1], x.shape[1], slopes.data_ptr(), 1.0 / scale,
        float(zero_point), torch.get_num_threads(),
    )  # fmt: skip
    _check(rc, "prelu_quantize")
    return True


def _image_arguments_fit(dst: Tensor, src: Tensor, dst_dtypes: tuple[torch.dtype, ...]) -> bool:
    """Whether ``dst`` / ``src`` (3-D, CPU, float32 source, non-negative strides) are what the image kernels take."""
    return (
        src.device.type == "cpu"
        and dst.device.type == "cpu"
        and src.dtype == torch.float32
        and dst.dtype in dst_dtypes
        and src.dim() == 3
        and dst.dim() == 3
        and min((*src.stride(), *dst.stride()), default=0) >= 0
        and not (torch.is_grad_enabled() and src.requires_grad)
    )


def quantize_into(dst: Tensor, src: Tensor) -> bool:
    """``dst[:] = quantize(src)`` with the compiled kernel, in one pass: NaN → 0, clamped to [0, 1], times 255
    (uint8 ``dst``) or 65535 (uint16), rounded half up in float64, the integers of
    :func:`subpixel.imageio.quantize` exactly; ``dst`` and ``src`` may have any strides (an ``(h, w, C)`` image
    seen as ``(C, h, w)``, say). Returns ``False``, having done nothing, where the kernel does not apply (kernel
    unavailable, other devices or dtypes, shapes that differ, negative strides).

    Shape:
        - dst: ``(C, h, w)`` uint8 or uint16; src: ``(C, h, w)`` float32, C ≤ 4.
    """
    if not _image_arguments_fit(dst, src, (torch.uint8, torch.uint16)) or src.shape != dst.shape:
        return False
    if not 1 <= src.shape[0] <= 4 or _library() is None:
        return False
    channels, height, width = src.shape
    rc = _state["quantize"](  # type: ignore[operator]
        src.data_ptr(), *src.stride(), dst.data_ptr(), *dst.stride(), channels, height, width,
        8 * dst.element_size(), torch.get_num_threads(),
    )  # fmt: skip
    _check(rc, "quantize")
    return True


def colour_quantize_into(dst: Tensor, src: Tensor, matrix: Sequence[Sequence[float]], offset: Sequence[float]) -> bool:
    """``dst[:] = quantize(matrix @ src + offset)`` with the compiled kernel, in one pass over memory: a colour
    conversion (YCbCr to RGB, say) and the rounding of :func:`subpixel.imageio.quantize` (NaN → 0, clamped to
    [0, 1], times 255 or 65535, rounded half up), the affine evaluated in float64 for each pixel as
    ``((m[c][0]·s0 + m[c][1]·s1) + m[c][2]·s2) + offset[c]``. Any strides (an ``(h, w, 3)`` image seen as
    ``(3, h, w)``). Returns ``False``, having done nothing, where the kernel does not apply.

    Shape:
        - dst: ``(3, h, w)`` uint8 or uint16; src: ``(3, h, w)`` float32; matrix ``3×3``; offset ``3``.
    """
    if not _image_arguments_fit(dst, src, (torch.uint8, torch.uint16)) or src.shape != dst.shape or src.shape[0] != 3:
        return False
    if _library() is None:
        return False
    rows = [[float(v) for v in row] for row in matrix]
    shift = [float(v) for v in offset]
    if [len(row) for row in rows] != [3, 3, 3] or len(shift) != 3:
        raise ValueError(f"matrix must be 3×3 and offset of length 3, got {rows} and {shift}")
    m = (ctypes.c_double * 9)(*(v for row in rows for v in row))
    b = (ctypes.c_double * 3)(*shift)
    _, height, width = src.shape
    rc = _state["colour_quantize"](  # type: ignore[operator]
        src.data_ptr(), *src.stride(), m, b, dst.data_ptr(), *dst.stride(), height, width, 8 * dst.element_size(),
        torch.get_num_threads(),
    )  # fmt: skip
    _check(rc, "colour_quantize")
    return True


def bicubic_upscale_into(dst: Tensor, src: Tensor, taps: Tensor) -> bool:
    """``dst[:] =`` MATLAB's bicubic upscaling of ``src`` by ``r = taps.shape[0]`` (edges repeated), with the
    compiled kernel: per plane a vertical then a horizontal 5-tap pass in float32, ``dst`` written once.
    ``taps[q]`` are the weights of LR samples ``i - 2 … i + 2`` for output phase ``q``
    (:func:`subpixel.bicubic.interpolation_taps`). Returns ``False``, having done nothing, where the kernel does
    not apply (kernel unavailable, other devices or dtypes, shapes that do not match).

    Shape:
        - src: ``(P, h, w)`` float32; dst: ``(P, h·r, w·r)`` float32; taps: ``(r, 5)``.
    """
    if not _image_arguments_fit(dst, src, (torch.float32,)) or taps.dim() != 2 or taps.shape[1] != 5:
        return False
    r = taps.shape[0]
    planes, height, width = src.shape
    if dst.shape != (planes, height * r, width * r) or height == 0 or width == 0:
        return False
    if _library() is None:
        return False
    weights = taps.detach().to(device="cpu", dtype=torch.float32).contiguous()
    rc = _state["bicubic"](  # type: ignore[operator]
        src.data_ptr(), *src.stride(), dst.data_ptr(), *dst.stride(), planes, height, width, r, weights.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    _check(rc, "bicubic")
    return True


class LRConvShuffle:
    """An SR network's last layer in one compiled pass: ``PReLU -> k×k convolution to r² channels -> periodic
    shuffling (+ bias) + nearest-neighbour skip``, written straight into the HR float32 plane (``lr_conv.c``).

    Built once from the layer's weights (packed as bfloat16 channel pairs); :meth:`__call__` returns ``None``
    where the kernel does not apply (no C compiler, a CPU without AVX-512 BF16, other shapes or dtypes), and the
    caller composes the same from torch ops. The convolution accumulates exact bfloat16 products in float32 (as
    oneDNN's bf16 convolution does) and, unlike it, does not round its output to bfloat16.

    Args:
        weight: ``(r², C, k, k)`` (C ≥ 2, k odd; the layer pads by ``k // 2`` with zeros); bias ``(r²,)``; slope
            ``(C,)`` or ``(1,)``: the PReLU applied to the layer's input; scale: ``r`` in 2..4.

    Shape:
        ``x (N, C, h, w)`` bfloat16 channels-last, ``skip (N, 1, h, w)`` float32 or ``None`` ->
        ``(N, 1, h·r, w·r)`` float32.
    """

    def __init__(self, weight: Tensor, bias: Tensor, slope: Tensor, scale: int) -> None:
        oc, c, k, k2 = weight.shape
        self.ok = 2 <= scale <= 4 and oc == scale * scale and c >= 2 and k == k2 and k % 2 == 1 and bias.shape == (oc,)
        self.scale, self.channels, self.k, self.pairs = scale, c, k, (c + 1) // 2
        w = torch.zeros(oc, 2 * self.pairs, k, k, dtype=torch.bfloat16)
        w[:, :c] = weight.detach().to("cpu", torch.bfloat16)
        # (k, k, pairs, oc, 2): one 32-bit word per (tap, pair, output), even channel in the low half
        self.packed = w.view(oc, self.pairs, 2, k, k).permute(3, 4, 1, 0, 2).contiguous()
        self.bias = bias.detach().to("cpu", torch.float32).contiguous()
        self.slope = slope.detach().to("cpu", torch.bfloat16).to(torch.float32).expand(c).contiguous()

    def __call__(self, x: Tensor, skip: Tensor | None) -> Tensor | None:
        n, c, h, w = x.shape
        if (
            not self.ok
            or c != self.channels
            or x.device.type != "cpu"
            or x.dtype != torch.bfloat16
            or not x.is_contiguous(memory_format=torch.channels_last)
            or h == 0
            or w == 0
            or (skip is not None and (skip.dtype != torch.float32 or skip.shape != (n, 1, h, w)))
            or (torch.is_grad_enabled() and x.requires_grad)
            or _library() is None
            or not _state["lr_conv_available"]
        ):
            return None
        out = torch.empty((n, 1, h * self.scale, w * self.scale), dtype=torch.float32)
        lr = None if skip is None else skip.contiguous()
        rc = _state["lr_conv"](  # type: ignore[operator]
            x.data_ptr(), n, h, w, c, self.slope.data_ptr(), self.k, self.packed.data_ptr(), self.bias.data_ptr(),
            None if lr is None else lr.data_ptr(), self.scale, out.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        _check(rc, "lr_conv")
        return out


def _run(src: int, dst: int, plan: int) -> None:
    rc = _state["fn"](src, dst, plan)  # type: ignore[operator]
    if rc != 0:  # cannot happen for plans built here (its -2 is too many outer axes, not memory)
        raise RuntimeError(f"strided_copy kernel returned {rc}")


class CopyProgram:
    """Several copies between views of two base tensors, planned once and replayed on new tensors of the same
    layout (a shuffle with a crop is 2–8 such copies; replaying skips building views and plans on every call).

    Build one with :meth:`build`; :meth:`run` then does ``dst_view.copy_(src_view)`` for every pair, for any
    ``dst_base`` / ``src_base`` with the same shapes, strides and dtype as the ones it was built from.
    """

    def __init__(self, steps: list[tuple[int, int, _Plan]]) -> None:
        self._steps = [(s, d, ctypes.addressof(p)) for s, d, p in steps]
        self._plans = [p for _, _, p in steps]  # keep alive

    @staticmethod
    def build(pairs: list[tuple[Tensor, Tensor]], dst_base: Tensor, src_base: Tensor) -> CopyProgram | None:
        """Plan ``dst_view.copy_(src_view)`` for each ``(dst_view, src_view)`` (views of ``dst_base`` and
        ``src_base``); ``None`` where the kernel is unavailable or a copy does not fit it."""
        if not available() or dst_base.dtype != src_base.dtype:
            return None
        size = dst_base.element_size()
        threads = torch.get_num_threads()
        steps = []
        for dst, src in pairs:
            if dst.shape != src.shape or dst.dtype != dst_base.dtype or src.dtype != src_base.dtype:
                return None
            if dst.numel() == 0:
                continue
            plan = _plan(tuple(dst.shape), src.stride(), dst.stride(), threads, size)
            if plan is None:
                return None
            src_off = (src.storage_offset() - src_base.storage_offset()) * size
            dst_off = (dst.storage_offset() - dst_base.storage_offset()) * size
            steps.append((src_off, dst_off, plan))
        return CopyProgram(steps)

    def run(self, dst_base: Tensor, src_base: Tensor) -> None:
        """Replay the copies on ``dst_base`` and ``src_base`` (same layouts as at :meth:`build`; not checked)."""
        s, d = src_base.data_ptr(), dst_base.data_ptr()
        for src_off, dst_off, plan in self._steps:
            _run(s + src_off, d + dst_off, plan)


def copy_into(dst: Tensor, src: Tensor) -> Tensor:
    """``dst.copy_(src)`` for same-shape, same-dtype tensors, through the compiled kernel where it applies.

    Shape:
        - dst, src: any, equal.
    """
    if not strided_copy(dst, src):
        dst.copy_(src)
    return dst


#: bytes of source (or destination) rows a tile of :func:`gather_tiles` keeps in cache
_TILE_BYTES = 96 * 1024
#: scattered source rows a tile of :func:`gather_tiles` reads, writing a ConvTranspose weight
_TILE_ROWS = 256


def gather_tiles(
    dst: Tensor,
    src: Tensor,
    sizes: tuple[int, int, int],
    src_strides: tuple[int, int, int],
    dst_strides: tuple[int, int, int],
    src_offsets: Tensor,
    dst_offsets: Tensor,
    *,
    x_inner: bool,
    inner_taps: int = 1,
) -> bool:
    """``dst[g·dg + x·dx + y·dy + dst_offsets[j]] = src[g·sg + x·sx + y·sy + src_offsets[j]]`` (``0`` where
    ``src_offsets[j] < 0``) for every ``(g, x, y) < sizes`` and ``j``: the weight re-indexing of
    :mod:`subpixel._reindex` in one pass (``x``, ``y`` the input and output channels, ``j`` the kernel taps), walking
    ``(x, y)`` in tiles sized to stay in cache. Strides and offsets in elements from the tensors' ``data_ptr``.
    ``x_inner``: the destination is densest along ``x`` and its ``inner_taps`` innermost taps (an LR weight), else
    along ``y`` and ``j`` (a ConvTranspose weight). Returns ``False`` (nothing written) where the kernel is
    unavailable or the element size is not 2, 4 or 8 bytes; the caller then copies with torch.

    Shape:
        - src_offsets, dst_offsets: ``(J,)``, int64, on the CPU, contiguous.
    """
    size = dst.element_size()
    if (
        size not in (2, 4, 8)
        or src.dtype != dst.dtype
        or src.device.type != "cpu"
        or dst.device.type != "cpu"
    ):
        return False
    if not available():
        return False
    nj = src_offsets.numel()
    tx = min(sizes[1], 32)
    if x_inner:  # the tile's source rows (ConvTranspose taps) stay in cache
        ty = _TILE_BYTES // max(1, tx * nj * size)
    else:  # the tile reads ty·J scattered LR rows: few enough for the TLB and L1
        ty = _TILE_ROWS // max(1, nj)
    ty = max(1, min(sizes[2], ty))
    rc = _state["gather"](  # type: ignore[operator]
        src.data_ptr(), dst.data_ptr(), size, *sizes, nj, inner_taps, *src_strides, *dst_strides,
        src_offsets.data_ptr(), dst_offsets.data_ptr(), tx, ty, int(x_inner), torch.get_num_threads(),
    )  # fmt: skip
    return rc == 0
