"""The exact ConvTranspose ↔ LR weight re-indexing in eager mode: two copies, with its own backward.

:func:`subpixel.geometry.conv_transpose_weight_to_lr` defines the map with views (zero-pad, dilate, flip, permute),
which tracing, ``torch.compile`` and export record as is; run eagerly, that chain makes four full copies, one of
them a permutation that ``Tensor.copy_`` walks element by element (8 ms for a 1024→512 k2 s2 weight on 2 cores,
against 0.5 ms for ``clone()``). The layers re-index their weight on every training step (a converted layer holds
the ConvTranspose weight), so here the same map is one pass of the compiled kernel where it is built
(:func:`subpixel.native.gather_tiles`: a tiled gather through two offset tables), else two passes of torch's:

1. a gather of the kernel taps, the same for every (input, output) channel pair: ``index_select`` along the taps
   of ``(C_in, C_out/g, taps)`` (a zero column appended where an LR tap has no ConvTranspose tap);
2. one permutation copy into the result's memory order (contiguous or channels-last), in blocks of 64 input
   channels where the tensor is large (the blocks keep both sides in cache).

The backward of each direction is the other direction (each ConvTranspose tap appears once in the LR weight; the
LR entries with no tap get no gradient), as :class:`torch.autograd.Function` pairs, so second derivatives work too.
Results are bitwise those of the view formulation (a copy does no arithmetic); the tests compare both.

Notation: ``k`` kernel, ``s`` stride, ``d`` dilation, ``K = ⌊d (k−1)/s⌋ + 1`` LR kernel per axis; ``S = ∏ s``,
``T = ∏ k`` ConvTranspose taps, ``P = ∏ K`` LR taps; ``G`` groups, ``I = C_in/G`` (``ci`` in the code),
``O = C_out/G``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from subpixel import config, native
from subpixel.shuffle import memory_format_of

__all__ = ["Reindex", "conv_transpose_to_lr", "faster_than_views", "lr_to_conv_transpose"]

#: dtypes the compiled kernel moves as raw bytes (real: no lazy conjugation to honour)
_RAW_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: input channels per block of the permutation copy
_BLOCK = 64


@dataclass(frozen=True)
class Reindex:
    """One weight geometry: the ConvTranspose kernel and its LR counterpart.

    Attributes:
        kernel: ``k`` per axis. strides: ``s``. dilations: ``d``. lr_kernel: ``K``. groups: ``G``.
        order: the LR channel order, ``"crd"`` (output channel, then phase) or ``"dcr"`` (phase first, ``G = 1``).
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    lr_kernel: tuple[int, ...]
    groups: int
    order: str


def faster_than_views(g: Reindex, numel: int) -> bool:
    """Whether the eager path beats the view chain for a weight of this geometry and size (measured by
    ``benchmarks/reindex.py``: small ``k = s`` weights, e.g. 128→64 k2 s2, are 10-25 % faster with the views)."""
    if numel < config.current.reindex_min_elements:
        return False
    return numel >= config.current.reindex_min_one_tap or math.prod(g.lr_kernel) > 1


@lru_cache(maxsize=512)
def _tap_maps(g: Reindex) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(lr_from_ct, ct_to_lr)``: for each LR tap position (C order over ``(a_1..a_n, K_1..K_n)``, ``a`` the phase)
    the ConvTranspose tap it holds (``-1``: none, a zero), and for each ConvTranspose tap (C order over ``k``) its LR
    position. Along an axis, tap ``t`` lies at ``p = d·t`` of the dilated kernel, in phase ``p mod s`` at the
    flipped LR tap ``K − 1 − ⌊p / s⌋``."""
    n = len(g.kernel)
    S, P = math.prod(g.strides), math.prod(g.lr_kernel)
    lr_from_ct = [-1] * (S * P)
    ct_to_lr = []
    for t, taps in enumerate(_c_order(g.kernel)):
        phase, lr_tap = [], []
        for i in range(n):
            p = g.dilations[i] * taps[i]
            phase.append(p % g.strides[i])
            lr_tap.append(g.lr_kernel[i] - 1 - p // g.strides[i])
        pos = _flat(phase, g.strides) * P + _flat(lr_tap, g.lr_kernel)
        lr_from_ct[pos] = t
        ct_to_lr.append(pos)
    return tuple(lr_from_ct), tuple(ct_to_lr)


def _c_order(sizes: tuple[int, ...]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for size in sizes:
        out = [(*prefix, i) for prefix in out for i in range(size)]
    return out


def _flat(index: list[int], sizes: tuple[int, ...]) -> int:
    flat = 0
    for i, size in zip(index, sizes, strict=True):
        flat = flat * size + i
    return flat


@lru_cache(maxsize=512)
def _gather_index(g: Reindex, direction: str, device: torch.device) -> tuple[Tensor | None, bool]:
    """``(index, zero)``: the ``index_select`` index of the tap gather (``None`` where it is the identity) and
    whether it reads an appended zero column. ``"to_lr"``: for each LR position, the ConvTranspose tap, or ``T``
    (the zero column) where there is none; ``"to_ct"``: for each ConvTranspose tap, its LR position."""
    lr_from_ct, ct_to_lr = _tap_maps(g)
    taps = len(ct_to_lr)
    index = [taps if t < 0 else t for t in lr_from_ct] if direction == "to_lr" else list(ct_to_lr)
    if list(lr_from_ct) == list(range(taps)):  # every LR position holds the tap of the same index
        return None, False
    zero = direction == "to_lr" and min(lr_from_ct) < 0
    return torch.tensor(index, dtype=torch.long, device=device), zero


def _tap_offsets(sizes: tuple[int, ...], strides: tuple[int, ...]) -> list[int]:
    """Offset of each tap (C order over ``sizes``) for the given per-axis strides."""
    return [sum(i * st for i, st in zip(index, strides, strict=True)) for index in _c_order(sizes)]


@lru_cache(maxsize=256)
def _native_tables(
    g: Reindex, direction: str, src_strides: tuple[int, ...], dst_strides: tuple[int, ...], ci: int, cog: int
) -> tuple[tuple[int, int, int], tuple[int, int, int], Tensor, Tensor]:
    """``(src_strides, dst_strides, src_offsets, dst_offsets)`` of :func:`subpixel.native.gather_tiles` for one
    direction and the two tensors' strides: ``(g, x, y) = (group, input channel, output channel)``; ``j`` runs over
    the destination's taps (LR positions ``(a, K)`` for ``"to_lr"``, ConvTranspose taps for ``"to_ct"``)."""
    S, P = math.prod(g.strides), math.prod(g.lr_kernel)
    lr_from_ct, ct_to_lr = _tap_maps(g)
    ct, lr = (src_strides, dst_strides) if direction == "to_lr" else (dst_strides, src_strides)
    ct_taps = _tap_offsets(g.kernel, ct[2:])
    k_off = _tap_offsets(g.lr_kernel, lr[2:])
    if g.order == "dcr":  # LR channel a·O + o
        lr_pos = [(q // P) * cog * lr[0] + k_off[q % P] for q in range(S * P)]
        lr_gxy = (0, lr[1], lr[0])
    else:  # LR channel (g·O + o)·S + a
        lr_pos = [(q // P) * lr[0] + k_off[q % P] for q in range(S * P)]
        lr_gxy = (cog * S * lr[0], lr[1], S * lr[0])
    ct_gxy = (ci * ct[0], ct[0], ct[1])
    if direction == "to_lr":
        src_off = [-1 if t < 0 else ct_taps[t] for t in lr_from_ct]
        return ct_gxy, lr_gxy, _i64(src_off), _i64(lr_pos)
    return lr_gxy, ct_gxy, _i64([lr_pos[q] for q in ct_to_lr]), _i64(ct_taps)


def _i64(values: list[int]) -> Tensor:
    return torch.tensor(values, dtype=torch.long)


def _native_usable(src: Tensor) -> bool:
    """Whether :func:`_native` can move ``src``: on the CPU, a real floating dtype without a lazy negation (a raw
    copy would drop it, and a complex view's conjugation), with the kernel built."""
    return src.device.type == "cpu" and src.dtype in _RAW_DTYPES and not src.is_neg() and native.available()


def _native(direction: str, src: Tensor, dst: Tensor, g: Reindex, ci: int, cog: int) -> bool:
    """The re-indexing in one tiled pass of the compiled kernel (:func:`subpixel.native.gather_tiles`), for a
    ``src`` that :func:`_native_usable` accepts; ``False`` if the kernel refused it (the torch copies run)."""
    src_st, dst_st, src_off, dst_off = _native_tables(g, direction, src.stride(), dst.stride(), ci, cog)
    if direction == "to_lr":  # LR destination: dense along the input channels, then (contiguous) the LR taps
        inner = math.prod(g.lr_kernel) if dst_st[1] == math.prod(g.lr_kernel) else 1
        return native.gather_tiles(dst, src, (g.groups, ci, cog), src_st, dst_st, src_off, dst_off,
                                   x_inner=True, inner_taps=inner)  # fmt: skip
    return native.gather_tiles(dst, src, (g.groups, ci, cog), src_st, dst_st, src_off, dst_off, x_inner=False)


def _permuted_copy(src: Tensor, block_dim: int, across_dim: int) -> Tensor:
    """``src.contiguous()`` for a view that transposes ``block_dim`` and ``across_dim``: one copy, in blocks of
    :data:`_BLOCK` along ``block_dim`` when both are longer than a block (a large transpose, which ``copy_`` alone
    walks with cache misses on one side)."""
    out = torch.empty(src.shape, dtype=src.dtype, device=src.device)
    size = src.shape[block_dim]
    if (
        src.numel() < config.current.reindex_blocked_from
        or size <= _BLOCK
        or src.shape[across_dim] <= _BLOCK
        or src.device.type != "cpu"
    ):
        return out.copy_(src)
    for start in range(0, size, _BLOCK):
        stop = min(start + _BLOCK, size)
        out.narrow(block_dim, start, stop - start).copy_(src.narrow(block_dim, start, stop - start))
    return out


def _ct_to_lr(w: Tensor, g: Reindex, channels_last: bool) -> Tensor:
    """ConvTranspose weight ``(G·I, O, *k)`` → LR weight ``(G·O·S, I, *K)`` (``(S·O, I, *K)`` in DCR order),
    contiguous or channels-last."""
    n = len(g.kernel)
    cin, cog = w.shape[0], w.shape[1]
    G, ci, S, P = g.groups, cin // g.groups, math.prod(g.strides), math.prod(g.lr_kernel)
    channels_last = channels_last and n > 1  # a 1-D weight has one layout
    fmt = (
        (torch.channels_last if n == 2 else torch.channels_last_3d)
        if channels_last
        else torch.contiguous_format
    )
    if _native_usable(w):
        out = torch.empty((G * cog * S, ci, *g.lr_kernel), dtype=w.dtype, device=w.device, memory_format=fmt)
        if _native("to_lr", w, out, g, ci, cog):
            return out
    index, zero = _gather_index(g, "to_lr", w.device)
    taps = math.prod(g.kernel)
    if (
        memory_format_of(w) is not torch.contiguous_format
    ):  # memory (C_in, *k, O): gather along dim 1 of (C_in, T, O)
        src = w.permute(0, *range(2, 2 + n), 1).reshape(cin, taps, cog)
        if index is not None:
            if zero:
                src = torch.cat([src, src.new_zeros(cin, 1, cog)], dim=1)
            src = src.index_select(1, index)
        blocks = src.view(G, ci, S, P, cog).permute(0, 1, 4, 2, 3)  # (G, I, O, S, P)
    else:
        # index_select along the last dim of a 2-D view: 8x faster than along the last of a 3-D one
        src = w.reshape(cin * cog, taps)
        if index is not None:
            if zero:
                src = torch.nn.functional.pad(src, (0, 1))
            src = src.index_select(1, index)
        blocks = src.view(G, ci, cog, S, P)
    if g.order == "dcr":  # (1, I, O, S, P) -> output channels (S, O)
        lead = blocks.permute(3, 2, 1, 4, 0).squeeze(-1)  # (S, O, I, P)
    elif blocks.is_contiguous():  # O and S adjacent on both sides: one axis for the copy
        lead = blocks.view(G, ci, cog * S, P).permute(0, 2, 1, 3)  # (G, O·S, I, P)
    else:
        lead = blocks.permute(0, 2, 3, 1, 4)  # (G, O, S, I, P)
    k = lead.dim() - 2  # output-channel axes
    if channels_last:  # memory (O', *K, I)
        perm = [*range(k), k + 1, k]
        out = _permuted_copy(lead.permute(perm), block_dim=k + 1, across_dim=k - 1)
        out = out.reshape(G * cog * S, *g.lr_kernel, ci)
        return out.permute(0, n + 1, *range(1, n + 1))
    out = _permuted_copy(lead, block_dim=k, across_dim=k - 1)
    return out.view(G * cog * S, ci, *g.lr_kernel)


def _lr_to_ct(lr: Tensor, g: Reindex) -> Tensor:
    """LR weight ``(G·O·S, I, *K)`` (any strides) → ConvTranspose weight ``(G·I, O, *k)``, contiguous; LR entries no
    tap reaches are dropped."""
    n = len(g.kernel)
    G, ci, S, P = g.groups, lr.shape[1], math.prod(g.strides), math.prod(g.lr_kernel)
    cog = lr.shape[0] // (G * S)
    if _native_usable(lr):
        out = torch.empty((G * ci, cog, *g.kernel), dtype=lr.dtype, device=lr.device)
        if _native("to_ct", lr, out, g, ci, cog):
            return out
    if memory_format_of(lr) is not torch.contiguous_format:  # memory (O', *K, I)
        mat = lr.permute(0, *range(2, 2 + n), 1).reshape(lr.shape[0], P, ci).transpose(1, 2)
    else:
        mat = lr.reshape(lr.shape[0], ci, P)
    if g.order == "dcr":
        blocks = mat.view(S, cog, ci, P).permute(2, 1, 0, 3)  # (I, O, S, P)
        src = _permuted_copy(blocks, block_dim=1, across_dim=0)
    else:
        blocks = mat.view(G, cog * S, ci, P).permute(0, 2, 1, 3)  # (G, I, O·S, P)
        src = _permuted_copy(blocks, block_dim=2, across_dim=1)
    src = src.view(G * ci * cog, S * P)
    index, _ = _gather_index(g, "to_ct", lr.device)
    if index is not None:
        src = src.index_select(1, index)
    return src.view(G * ci, cog, *g.kernel)


class _ToLR(torch.autograd.Function):
    @staticmethod
    def forward(w: Tensor, g: Reindex, channels_last: bool) -> Tensor:  # type: ignore[override]
        return _ct_to_lr(w, g, channels_last)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.g = inputs[1]

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return _ToCT.apply(grad, ctx.g), None, None


class _ToCT(torch.autograd.Function):
    @staticmethod
    def forward(lr: Tensor, g: Reindex) -> Tensor:  # type: ignore[override]
        return _lr_to_ct(lr, g)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.g = inputs[1]
        ctx.channels_last = memory_format_of(inputs[0]) is not torch.contiguous_format

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return _ToLR.apply(grad, ctx.g, ctx.channels_last), None


def conv_transpose_to_lr(weight: Tensor, g: Reindex, *, channels_last: bool = False) -> Tensor:
    """The LR weight of a ConvTranspose weight (differentiable; eager mode only).

    Shape:
        - weight: ``(G·I, O, *k)``; output: ``(G·O·S, I, *K)`` (CRD) or ``(S·O, I, *K)`` (DCR), channels-last
          strides when ``channels_last``.
    """
    return _ToLR.apply(weight, g, channels_last)


def lr_to_conv_transpose(weight_lr: Tensor, g: Reindex) -> Tensor:
    """The ConvTranspose weight of an LR weight, dropping entries no tap reaches (differentiable; eager mode only).

    Shape:
        - weight_lr: ``(G·O·S, I, *K)``; output: ``(G·I, O, *k)``, contiguous.
    """
    return _ToCT.apply(weight_lr, g)
