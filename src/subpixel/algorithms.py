"""The exactly equivalent algorithms a transposed convolution can run as (chosen by :mod:`subpixel.dispatch`).

* :func:`lr_conv_core`: the LR convolution, periodic shuffling and the crop (one copy, shuffle and crop fused);
* :func:`phase_conv_core`: one stride-1 convolution per output phase with only the taps that land there;
* :func:`conv_transpose_core`: torch's transposed convolution with the exactly re-indexed weight.

All take checked, batched arguments; :mod:`subpixel.dispatch` validates, plans and says where each is valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from subpixel import native
from subpixel._validation import ChannelOrder
from subpixel.geometry import CONV, CONV_TRANSPOSE, AxisGeometry
from subpixel.shuffle import memory_format_of, shuffle_crop


def lr_conv_core(
    x: Tensor,
    weight_lr: Tensor,
    bias: Tensor | None,
    geoms: Sequence[AxisGeometry],
    strides: Sequence[int],
    groups: int,
    order: ChannelOrder,
) -> Tensor:
    """The computation of :func:`lr_conv_shuffle` on checked arguments (batched ``x``, geometry known).

    Asymmetric LR padding is done by the convolution itself (padding ``max(before, after)``, then a view that
    drops the extra leading outputs; the extra trailing ones are never read) rather than by a padded copy of the
    input; negative padding is a view of the input.
    """
    bias_lr = None
    if bias is not None:
        r_total = math.prod(strides)
        bias_lr = bias.repeat_interleave(r_total) if order == "crd" else bias.repeat(r_total)
    spatial = x.shape[2:]
    keep = [
        slice(max(-g.pad_before, 0), size - max(-g.pad_after, 0))
        for g, size in zip(geoms, spatial, strict=True)
    ]
    if any(k.start or k.stop != size for k, size in zip(keep, spatial, strict=True)):
        if any(k.stop <= k.start for k in keep):  # every input sample lies outside the output: bias only
            c_out = weight_lr.shape[0] // math.prod(strides)
            shape = (x.shape[0], c_out, *(g.out_size for g in geoms))
            out = torch.empty(
                shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x)
            ).zero_()
            return out if bias is None else out.add_(bias.reshape(c_out, *([1] * len(geoms))))
        x = x[(slice(None), slice(None), *keep)]
    pads = tuple(max(g.pad_before, g.pad_after, 0) for g in geoms)
    z = CONV[len(geoms)](x, weight_lr, bias_lr, 1, pads, 1, groups)
    skip = [p - max(g.pad_before, 0) for p, g in zip(pads, geoms, strict=True)]
    memory_format = memory_format_of(z)
    if any(skip):
        z = z[(slice(None), slice(None), *(slice(k, None) for k in skip))]
    # one copy: shuffle and crop fused (falls back to shuffle-then-crop under export/tracing; see shuffle_crop)
    return shuffle_crop(
        z, strides, order, [g.crop for g in geoms], [g.out_size for g in geoms], memory_format=memory_format
    )


@dataclass(frozen=True)
class AxisPhase:
    """One phase of one axis in the per-phase form (see :func:`phase_plan`)."""

    phase: int  # φ: LR weight rows of this phase
    tap_lo: int  # first LR tap holding a real tap of this phase
    taps: int  # K_φ: LR taps from tap_lo through the last real one (0: no tap lands on this phase)
    start: int  # m0: first HR output of this phase (after the crop)
    count: int  # n_φ: HR outputs of this phase
    pad_before: int  # LR padding before the input for the K_φ-tap stride-1 conv (negative: samples dropped)
    pad_after: int  # LR padding after the input (negative: samples dropped)


def _axis_phases(in_size: int, k: int, s: int, d: int, g: AxisGeometry) -> list[AxisPhase]:
    """Per-phase convolutions of one axis: phase ``φ`` uses LR taps ``K-1-⌊t d/s⌋`` for ``t d ≡ φ (mod s)``.

    HR output ``m`` (after the crop) is LR position ``u = (m + crop - φ) / s`` of phase ``φ``; the outputs of
    phase ``φ`` are ``m0, m0 + s, ...`` with ``m0 = (φ - crop) mod s``.
    """
    k_lr = g.lr_kernel
    phases = []
    for phi in range(s):
        js = [k_lr - 1 - (t * d) // s for t in range(k) if (t * d) % s == phi]
        m0 = (phi - g.crop) % s
        count = max(0, -(-(g.out_size - m0) // s))
        if not js:
            phases.append(AxisPhase(phi, 0, 0, m0, count, 0, 0))
            continue
        lo, taps = min(js), max(js) - min(js) + 1
        shift = (m0 + g.crop - phi) // s  # LR position of the phase's first output
        before = g.pad_before - shift - lo
        after = count - in_size - before + taps - 1
        phases.append(AxisPhase(phi, lo, taps, m0, count, before, after))
    return phases


def phase_plan(
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    geoms: Sequence[AxisGeometry],
) -> tuple[list[list[AxisPhase]], float]:
    """Per-axis phases and the fraction of the LR form's multiply-adds the per-phase convolutions need."""
    axes = [
        _axis_phases(n, k, s, d, g)
        for n, k, s, d, g in zip(spatial, kernel_size, strides, dilations, geoms, strict=True)
    ]
    fraction = 1.0
    for phases, s, g in zip(axes, strides, geoms, strict=True):
        n_lr = -(-(g.crop + g.out_size) // s)
        fraction *= sum(p.taps * p.count for p in phases) / (s * g.lr_kernel * n_lr)
    return axes, fraction


def phase_conv_core(
    x: Tensor,
    weight_lr: Tensor,
    bias: Tensor | None,
    axes: Sequence[Sequence[AxisPhase]],
    groups: int,
    order: ChannelOrder,
) -> Tensor:
    """The computation of :func:`lr_conv_shuffle` as one stride-1 conv per phase combination, each with only the
    LR taps where real taps land, written into the output's phase slices (valid only when
    :func:`zero_outside` with :func:`reachable_mask`; no LR output is computed that the crop throws away).

    Shape:
        - x: ``(N, C_in, *L_in)`` (batched, checked); weight_lr: ``(C_out·R, C_in/groups, *K)``.
        - output: ``(N, C_out, *L_out)``.
    """
    n = len(axes)
    r_total = math.prod(len(p) for p in axes)
    c_out = weight_lr.shape[0] // r_total
    if order == "crd":
        w_all = weight_lr.reshape(c_out, r_total, *weight_lr.shape[1:])
    else:
        w_all = weight_lr.reshape(r_total, c_out, *weight_lr.shape[1:]).transpose(0, 1)
    out_sizes = [sum(p.count for p in phases) for phases in axes]
    shape = (x.shape[0], c_out, *out_sizes)
    out: Tensor | None = None  # allocated in the memory format of the convolutions' output (as torch's layer)
    spatial = x.shape[2:]
    bias_only = []
    for phase, combo, index, keep in _phase_jobs(axes, spatial):
        if keep is None:
            bias_only.append(index)
            continue
        w = w_all[(slice(None), phase, slice(None), *(slice(p.tap_lo, p.tap_lo + p.taps) for p in combo))]
        xi = x
        if any(k.start or k.stop != size for k, size in zip(keep, spatial, strict=True)):
            xi = x[(slice(None), slice(None), *keep)]
        pads = tuple(max(p.pad_before, p.pad_after, 0) for p in combo)
        y = CONV[n](xi, w, bias, 1, pads, 1, groups)
        if out is None:
            out = torch.empty(shape, dtype=y.dtype, device=y.device, memory_format=memory_format_of(y))
        skip = [q - max(p.pad_before, 0) for q, p in zip(pads, combo, strict=True)]
        y = y[(slice(None), slice(None), *(slice(k, k + p.count) for k, p in zip(skip, combo, strict=True)))]
        native.copy_into(out[index], y)
    if out is None:
        out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
    for index in bias_only:
        target = out[index]
        if bias is None:
            target.zero_()
        else:
            target.copy_(bias.reshape(c_out, *([1] * n)).expand_as(target))
    return out


def _phase_jobs(
    axes: Sequence[Sequence[AxisPhase]], spatial: Sequence[int]
) -> Iterator[tuple[int, tuple[AxisPhase, ...], tuple[slice, ...], list[slice] | None]]:
    """``(phase, combo, output index, input crop)`` for every phase combination with outputs; the crop is
    ``None`` where the phase's outputs are the bias only (no tap lands on it, or its outputs see no input)."""
    for phase, combo in enumerate(_product(axes)):
        if any(p.count == 0 for p in combo):
            continue
        index = (
            slice(None),
            slice(None),
            *(slice(p.start, None, len(a)) for p, a in zip(combo, axes, strict=True)),
        )
        if any(p.taps == 0 for p in combo):
            yield phase, combo, index, None
            continue
        keep = [
            slice(max(-p.pad_before, 0), size - max(-p.pad_after, 0))
            for p, size in zip(combo, spatial, strict=True)
        ]
        yield phase, combo, index, (None if any(k.stop <= k.start for k in keep) else keep)


def phase_conv_count(axes: Sequence[Sequence[AxisPhase]], spatial: Sequence[int]) -> int:
    """How many convolutions :func:`phase_conv_core` runs (0: the output is the bias alone, which no gradient
    reaches: the per-phase form is then no candidate)."""
    return sum(keep is not None for *_, keep in _phase_jobs(axes, spatial))


def _product(axes: Sequence[Sequence[AxisPhase]]) -> list[tuple[AxisPhase, ...]]:
    """Row-major product of the per-axis phases (the flat phase index of CRD/DCR channel order)."""
    combos: list[tuple[AxisPhase, ...]] = [()]
    for phases in axes:
        combos = [(*c, p) for c in combos for p in phases]
    return combos


def reachable_mask(kernel_size: Sequence[int], strides: Sequence[int], dilations: Sequence[int]) -> Tensor:
    """Boolean ``(R, *K)``: the LR weight entries (phase row-major, LR tap) that a ConvTranspose tap lands on.

    Entry ``(φ, j)`` of an axis is reached by tap ``t`` when ``t·d ≡ φ (mod s)`` and ``j = K − 1 − ⌊t·d / s⌋``;
    the others exist only in the LR form (zero in a converted weight, free parameters when trained as LR).
    """
    per_axis = []
    for k, s, d in zip(kernel_size, strides, dilations, strict=True):
        k_lr = d * (k - 1) // s + 1
        m = torch.zeros(s, k_lr, dtype=torch.bool)
        for t in range(k):
            m[(t * d) % s, k_lr - 1 - (t * d) // s] = True
        per_axis.append(m)
    mask = per_axis[0]
    for m in per_axis[1:]:
        r, kk = mask.shape[0], mask.shape[1:]
        mask = mask.reshape(r, 1, *kk, *([1] * (m.dim() - 1))) & m.reshape(
            1, m.shape[0], *([1] * len(kk)), -1
        )
        mask = mask.reshape(r * m.shape[0], *kk, m.shape[1])
    return mask


def zero_outside(weight_lr: Tensor, mask: Tensor, order: ChannelOrder) -> bool:
    """Whether ``weight_lr`` is zero wherever ``mask`` (``(R, *K)``, phases row-major) is ``False``.

    Shape:
        - weight_lr: ``(C_out·R, C_in/groups, *K)`` in ``order``.
    """
    r_total = mask.shape[0]
    with torch.no_grad():
        w = weight_lr.detach()
        if order == "crd":
            w = w.reshape(-1, r_total, *w.shape[1:]).transpose(0, 1)
        else:
            w = w.reshape(r_total, -1, *w.shape[1:])
        outside = (~mask).to(w.device).unsqueeze(1).unsqueeze(1)  # (R, 1, 1, *K)
        return not bool((w != 0).logical_and(outside).any())


def conv_transpose_core(
    x: Tensor,
    weight_ct: Tensor,
    bias: Tensor | None,
    strides: Sequence[int],
    padding: Sequence[int],
    output_padding: Sequence[int],
    groups: int,
    dilations: Sequence[int],
) -> Tensor:
    """Torch's transposed convolution (oneDNN's deconvolution primitive on the CPU) with the ConvTranspose weight
    ``weight_ct = lr_weight_to_conv_transpose(weight_lr, ...)``: exact when the LR weight is zero where no tap
    lands (:func:`zero_outside` with :func:`reachable_mask`).

    Shape:
        - x: ``(N, C_in, *L_in)``; weight_ct: ``(C_in, C_out/groups, *k)``; output: ``(N, C_out, *L_out)``.
    """
    return CONV_TRANSPOSE[x.dim() - 2](
        x, weight_ct, bias, tuple(strides), tuple(padding), tuple(output_padding), groups, tuple(dilations)
    )
