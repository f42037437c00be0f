"""The exactly equivalent algorithms a transposed convolution can run as, where each is valid, and how each runs.

* ``"lr_shuffle"``, :func:`lr_conv_core`: the LR convolution, periodic shuffling and the crop (one copy, shuffle
  and crop fused). Always valid: it is the layer's definition.
* ``"phases"``, :func:`phase_conv_core`: one stride-1 convolution per output phase with only the taps that land
  there, and only the outputs the crop keeps.
* ``"conv_transpose"``, :func:`conv_transpose_core`: torch's transposed convolution with the exactly re-indexed
  weight.

The computations take checked, batched arguments. Around them, what the route (:mod:`subpixel.dispatch`) asks of
an algorithm: :func:`phase_axes` (what the per-phase form needs to know of a key, or that it saves no work),
:func:`candidates` (where each algorithm is valid: exactness first), :func:`execute` (each algorithm with the
weight in the layout it needs, derived weights cached through :mod:`subpixel.derived`) and :func:`prepare` (a
plan's computation with everything but the tensors bound). A new algorithm is a computation here, a line in
:func:`candidates`, a branch in :func:`execute` and its name in :data:`subpixel.config.ALGORITHMS`.

**Validity.** An LR weight can hold entries where no ConvTranspose tap lands (kernel not divisible by the stride,
or dilation). ``"phases"`` and ``"conv_transpose"`` drop those entries, so they are valid only (a) when the weight
is zero there (:func:`zero_outside` with :func:`reachable_mask`, checked on the weight's values), and (b) when
autograd records a gradient of an LR weight, only if there are no such entries at all: the LR layer's gradient for
them is not zero, and an optimiser step would make them non-zero. A ConvTranspose-layout weight (or a
parametrization marked ``subpixel_fixed_taps = True``) has no such entries: every algorithm is valid, in training
too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from subpixel import config, derived, native
from subpixel._validation import ChannelOrder
from subpixel.geometry import (
    CONV,
    CONV_TRANSPOSE,
    AxisGeometry,
    Spec,
    WeightSource,
    conv_transpose_weight_to_lr,
    lr_weight_to_conv_transpose,
)
from subpixel.shuffle import convert_channel_order, memory_format_of, shuffle_crop

#: a plan's computation: ``call(x, weight, bias, per_call)`` on a batched input (see :func:`prepare`)
Prepared = Callable[[Tensor, Tensor, "Tensor | None", bool], Tensor]


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


# --- what the route asks of an algorithm -----------------------------------------------------------------------


def phase_axes(
    spec: Spec, geoms: Sequence[AxisGeometry], spatial: Sequence[int]
) -> tuple[tuple[AxisPhase, ...], ...] | None:
    """The per-axis phases of the per-phase form for one key, or ``None`` where it is no candidate: it would do
    more than ``config.phase_max_work`` of the LR form's multiply-adds, need more than ``config.phase_max_convs``
    convolutions, or none at all (the output is the bias alone)."""
    axes, fraction = phase_plan(spatial, spec.kernel_size, spec.strides, spec.dilations, geoms)
    if (
        fraction <= config.current.phase_max_work
        and math.prod(spec.strides) <= config.current.phase_max_convs
        and phase_conv_count(axes, spatial) > 0
    ):
        return tuple(tuple(a) for a in axes)
    return None


def candidates(
    spec: Spec,
    mask: Tensor | None,
    phases: Sequence[Sequence[AxisPhase]] | None,
    zero_outside_taps: bool,
    weight_grad: bool,
) -> list[str]:
    """The valid algorithms (module docstring): ``"lr_shuffle"`` always; the others where the weight's extra LR
    entries are zero (``mask``: :func:`reachable_mask`, ``None`` where there are none) and, when autograd records
    the weight, where it has none; ``"phases"`` where :func:`phase_axes` found it saves work."""
    cands = ["lr_shuffle"]
    if mask is None or (zero_outside_taps and not weight_grad):
        if phases is not None:
            cands.append("phases")
        if all(
            a < max(s, d) for a, s, d in zip(spec.output_padding, spec.strides, spec.dilations, strict=True)
        ):
            cands.append("conv_transpose")  # torch's own limit on output_padding
    return cands


def lr_order_for(spec: Spec, x: Tensor, weight_grad: bool) -> ChannelOrder:
    """The LR weight order to convolve with: DCR for a channels-last input (its shuffle is a block copy), except
    when autograd records an LR weight parameter and the compiled copy kernel shuffles CRD near bandwidth (no
    per-call reorder of the weight and its gradient)."""
    if spec.order == "dcr" or spec.groups != 1 or memory_format_of(x) == torch.contiguous_format:
        return spec.order
    if weight_grad and x.device.type == "cpu" and native.available():
        return spec.order
    return "dcr"


def execute(
    algorithm: str, plan_spec: Spec, geoms: Sequence[AxisGeometry], phases: Sequence[Sequence[AxisPhase]] | None,
    lr_order: ChannelOrder,
    x: Tensor, weight: Tensor, source: WeightSource, bias: Tensor | None, per_call: bool,
) -> Tensor:  # fmt: skip
    """Run one algorithm on checked, batched arguments; ``weight`` in LR (``source == "lr"``) or ConvTranspose
    (``"ct"``) layout; ``lr_order``: the order of the LR weight ``"lr_shuffle"`` convolves with
    (:func:`lr_order_for`). A derived weight is computed on every call where ``per_call`` (autograd records
    ``weight``, so that its gradient flows, or ``weight`` is a new tensor on every call), else cached
    (:func:`subpixel.derived.cached`).

    Shape:
        - x: ``(N, C_in, *L_in)``; weight: ``(C_out·R, C_in/groups, *K)`` (``"lr"``) or ``(C_in, C_out/groups,
          *k)`` (``"ct"``); output: ``(N, C_out, *L_out)``.
    """
    spec = plan_spec
    if algorithm == "conv_transpose":
        if source == "ct":
            w_ct = weight  # torch's own layer, exactly: the weight as it is
        else:
            fmt = memory_format_of(x)

            def make_ct() -> Tensor:
                w = lr_weight_to_conv_transpose(
                    weight, spec.kernel_size, spec.strides, spec.dilations, spec.groups, order=spec.order,
                    check=False,
                )  # fmt: skip
                return w.contiguous(memory_format=fmt)

            w_ct = make_ct() if per_call else derived.cached(weight, ("ct", spec, fmt), make_ct)  # type: ignore[assignment]
        return conv_transpose_core(
            x, w_ct, bias, spec.strides, spec.padding, spec.output_padding, spec.groups, spec.dilations
        )  # fmt: skip
    order = spec.order if algorithm == "phases" else lr_order
    fmt = memory_format_of(x)
    w = weight
    if source == "ct":

        def make_lr() -> Tensor:
            return conv_transpose_weight_to_lr(
                weight, spec.strides, spec.dilations, spec.groups, order=order, memory_format=fmt
            )

        w = make_lr() if per_call else derived.cached(weight, ("lr", spec, order, fmt), make_lr)  # type: ignore[assignment]
    elif order != spec.order:

        def make_dcr() -> Tensor:
            return convert_channel_order(weight, spec.strides, spec.order, order, dim=0).contiguous(
                memory_format=fmt
            )

        w = make_dcr() if per_call else derived.cached(weight, ("dcr", spec, fmt), make_dcr)  # type: ignore[assignment]
    if algorithm == "phases":
        return phase_conv_core(x, w, bias, phases, spec.groups, order)  # type: ignore[arg-type]
    return lr_conv_core(x, w, bias, geoms, spec.strides, spec.groups, order)


def prepare(
    algorithm: str,
    spec: Spec,
    geoms: tuple[AxisGeometry, ...],
    phases: tuple[tuple[AxisPhase, ...], ...] | None,
    lr_order: ChannelOrder,
    source: WeightSource,
) -> Prepared:
    """The plan's computation with everything but the tensors bound: torch's layer itself for a
    ConvTranspose-layout weight, else :func:`execute`."""
    if algorithm == "conv_transpose" and source == "ct":
        conv_transpose = CONV_TRANSPOSE[spec.ndim]
        arguments = (spec.strides, spec.padding, spec.output_padding, spec.groups, spec.dilations)

        def call(x: Tensor, weight: Tensor, bias: Tensor | None, per_call: bool) -> Tensor:
            return conv_transpose(x, weight, bias, *arguments)

        return call

    def call_execute(x: Tensor, weight: Tensor, bias: Tensor | None, per_call: bool) -> Tensor:
        return execute(algorithm, spec, geoms, phases, lr_order, x, weight, source, bias, per_call)

    return call_execute
