r"""The three forms of an upsampling convolution, and the exact maps between their weights.

A transposed convolution (ConvTranspose) with stride ``s``, kernel ``k``, padding ``p``, dilation ``d`` and
output padding ``a`` computes, along each spatial axis (bias omitted),

.. math:: y[m] = \sum_{n, t \,:\, n s + t d - p = m} x[n]\, W[t],
          \qquad L_{out} = (L_{in} - 1) s - 2p + d (k - 1) + a + 1.

It equals, exactly:

1. the **fractionally strided** (sub-pixel, HR-space) convolution: insert ``s - 1`` zeros between input samples,
   pad by ``d(k-1) - p`` (left) and ``d(k-1) - p + a`` (right), and correlate with the *flipped* kernel at stride 1
   (:func:`fractionally_strided_conv`);
2. a **convolution in LR space followed by periodic shuffling** (:func:`lr_conv_shuffle`). Write the uncropped
   output index ``q = m + p = u s + φ`` with phase ``φ ∈ [0, s)``. Tap ``t`` lands at offset ``t d = a_t s + φ_t``
   (``a_t = ⌊t d / s⌋``, ``φ_t = t d mod s``), so phase ``φ`` of LR position ``u`` collects
   ``Σ_{t: φ_t = φ} x[u - a_t] W[t]``: a stride-1 correlation in LR space with a kernel of
   ``K = ⌊d (k-1) / s⌋ + 1`` taps whose entry ``K - 1 - a_t`` is ``W[t]`` (the flip), and zeros where no tap lands.
   The ``s`` phases become ``s`` output channels per channel, which periodic shuffling interleaves; a crop of
   ``p mod s`` samples at the start and a length of ``L_out`` finish the job. Only the LR outputs that survive the
   crop are computed: the LR padding is ``K - 1 - ⌊p / s⌋`` before and whatever the output length needs after
   (negative padding crops the input). See :func:`lr_geometry`.

In weight terms (:func:`conv_transpose_weight_to_lr`): dilate each kernel axis by ``d``, zero-pad it to ``K·s``
taps, split it into ``(K, s)`` = (LR tap, phase), flip the LR-tap axis, and move the phases next to the output
channel (``"crd"`` order: LR channel ``c·R + φ`` with ``R = ∏ s``). Groups map to groups: output channels of group
``g`` stay in the ``g``-th block. The inverse (:func:`lr_weight_to_conv_transpose`) undoes each step; an LR weight
with non-zero entries where no tap lands (possible after training an LR layer freely) has no ConvTranspose
equivalent with the same kernel size, and is refused unless ``check=False``.

Where the code lives: the three forms are here (:func:`conv_transpose`, :func:`fractionally_strided_conv`,
:func:`lr_conv_shuffle`, the route every LR-form call takes, layers included); the geometry and the weight maps in
:mod:`subpixel.geometry` (their public names are re-exported here), the algorithms the LR form can run as (LR conv
+ shuffle + crop, per-phase convolutions, torch's transposed convolution with the re-indexed weight) in
:mod:`subpixel.algorithms`, and the plan that picks one in :mod:`subpixel.dispatch`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from subpixel import config
from subpixel._validation import ChannelOrder, as_tuple
from subpixel.algorithms import lr_conv_core
from subpixel.dispatch import CallSite, forcing, plan_call, weight_source
from subpixel.eager import is_eager_plain
from subpixel.geometry import (
    CONV,
    CONV_TRANSPOSE,
    AxisGeometry,
    Spec,
    WeightSource,
    check_groups,
    check_input,
    conv_transpose_output_size,
    conv_transpose_weight_to_lr,
    lr_geometry,
    lr_kernel_size,
    lr_weight_to_conv_transpose,
    output_padding_for_size,
    spatial_dims,
)
from subpixel.plans import generation

__all__ = [
    "AxisGeometry",
    "conv_transpose",
    "conv_transpose_output_size",
    "conv_transpose_weight_to_lr",
    "fractionally_strided_conv",
    "lr_conv_shuffle",
    "lr_geometry",
    "lr_kernel_size",
    "lr_weight_to_conv_transpose",
    "output_padding_for_size",
]

IntOrTuple = int | Sequence[int]


def _pad_or_crop(x: Tensor, before: Sequence[int], after: Sequence[int]) -> Tensor:
    """Zero-pad (positive) or crop (negative) the trailing spatial axes of ``x``."""
    pads: list[int] = []
    for b, a in zip(reversed(before), reversed(after), strict=True):
        pads += [b, a]
    if not any(pads):
        return x
    return F.pad(x, pads)


def conv_transpose(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> Tensor:
    """Torch's own transposed convolution for 1, 2 or 3 spatial dims (the reference the other forms equal).

    Shape:
        - input: ``(N, C_in, *L_in)``; weight: ``(C_in, C_out/groups, *k)``.
        - output: ``(N, C_out, *L_out)``, ``L_out = (L_in − 1)·s − 2p + d·(k − 1) + output_padding + 1``.

    Examples:
        >>> conv_transpose(torch.randn(1, 4, 8), torch.randn(4, 2, 4), stride=2, padding=1).shape
        torch.Size([1, 2, 16])
    """
    n = spatial_dims(weight, "weight")
    return CONV_TRANSPOSE[n](input, weight, bias, stride, padding, output_padding, groups, dilation)


def fractionally_strided_conv(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> Tensor:
    """The sub-pixel (fractionally strided) convolution: zero-insertion, padding, stride-1 conv, flipped kernel.

    Equals :func:`conv_transpose` with the same arguments; it is the HR-space form the paper starts from, and
    does ``∏ s`` times the work of the LR form.

    Args:
        input: the LR input.
        weight: the ConvTranspose weight (not flipped; this function flips it).
        bias: optional bias ``(C_out,)``.
        stride, padding, output_padding, groups, dilation: as for ConvTranspose.

    Shape:
        - input: ``(N, C_in, *L_in)`` or ``(C_in, *L_in)``; weight: ``(C_in, C_out/groups, *k)``.
        - output: ``(N, C_out, *L_out)`` as for :func:`conv_transpose`.

    Examples:
        >>> x, w = torch.randn(2, 4, 5, 5, dtype=torch.float64), torch.randn(4, 3, 3, 3, dtype=torch.float64)
        >>> y = fractionally_strided_conv(x, w, stride=2, padding=1, output_padding=1)
        >>> y.shape, bool(torch.allclose(y, conv_transpose(x, w, stride=2, padding=1, output_padding=1)))
        (torch.Size([2, 3, 10, 10]), True)
    """
    n = spatial_dims(weight, "weight")
    strides = as_tuple(stride, n, "stride", minimum=1)
    pads = as_tuple(padding, n, "padding", minimum=0)
    out_pads = as_tuple(output_padding, n, "output_padding", minimum=0)
    dilations = as_tuple(dilation, n, "dilation", minimum=1)
    c_in, c_out_g = weight.shape[0], weight.shape[1]
    check_groups(c_in, groups, "weight.shape[0] (in_channels)")
    x, batched = check_input(input, n, c_in)
    # zero-insertion: (N, C, L) -> (N, C, (L - 1)·s + 1)
    if any(s > 1 for s in strides):
        spatial = x.shape[2:]
        up = x.new_zeros(
            (*x.shape[:2], *[(length - 1) * s + 1 for length, s in zip(spatial, strides, strict=True)])
        )
        up[(slice(None), slice(None), *(slice(None, None, s) for s in strides))] = x
        x = up
    kernel = weight.shape[2:]
    before = [d * (k - 1) - p for k, p, d in zip(kernel, pads, dilations, strict=True)]
    after = [b + a for b, a in zip(before, out_pads, strict=True)]
    x = _pad_or_crop(x, before, after)
    # (C_in, C_out/g, *k) -> (C_out, C_in/g, *k), flipped in space
    w = weight.reshape(groups, c_in // groups, c_out_g, *kernel).transpose(1, 2)
    w = w.reshape(groups * c_out_g, c_in // groups, *kernel).flip(list(range(2, 2 + n)))
    y = CONV[n](x, w, bias, 1, 0, dilations, groups)
    return y if batched else y.squeeze(0)


def lr_conv_shuffle(
    input: Tensor,
    weight_lr: Tensor | None,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    kernel_size: IntOrTuple | None = None,
    *,
    order: ChannelOrder = "crd",
    algorithm: str | None = None,
    weight_ct: Tensor | None = None,
    fixed_taps: bool = False,
    fresh_weight: bool = False,
    site: CallSite | None = None,
) -> Tensor:
    """A transposed convolution computed as a stride-1 convolution in LR space, periodic shuffling and a crop.

    With ``weight_lr = conv_transpose_weight_to_lr(weight, stride, dilation, groups)`` this equals
    ``conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation)``. It is the route
    of every transposed convolution in LR form (:class:`~subpixel.SubPixelConvNd` calls it too): validate, plan
    (cached; :mod:`subpixel.dispatch`) and run the plan's algorithm, the LR form or an exactly equivalent one
    where it is valid and faster (:mod:`subpixel.algorithms`).

    Args:
        input: the LR input.
        weight_lr: the LR weight (see :func:`conv_transpose_weight_to_lr`); ``None`` when ``weight_ct`` is given.
        bias: optional bias, one per output channel ``(C_out,)``.
        stride: the ConvTranspose stride = the shuffle factor.
        padding, output_padding, groups, dilation: as for ConvTranspose.
        kernel_size: the ConvTranspose kernel size ``k`` (sets the output size); by default the largest ``k``
            whose LR kernel is ``weight_lr``'s, i.e. ``K·s`` for dilation 1.
        order: channel order of ``weight_lr``.
        algorithm: force an exactly equivalent algorithm (``"lr_shuffle"``, ``"phases"``, ``"conv_transpose"``)
            where it is valid; ``None``/``"auto"``: :func:`subpixel.dispatch.force_algorithm`,
            ``$SUBPIXEL_ALGORITHM``, else the automatic choice.
        weight_ct: instead of ``weight_lr``, the ConvTranspose-layout weight the LR weight is an exact
            re-indexing of (:func:`conv_transpose_weight_to_lr` with ``order``): ``"conv_transpose"`` then runs
            torch's layer on it as it is, and the other algorithms re-index it (on every call while autograd
            records it, so that its gradient flows; cached otherwise). Layers converted from a ConvTranspose hold
            their weight so (:class:`subpixel.reparametrize.ConvTransposeToLR`).
        fixed_taps: the caller's guarantee that the LR entries no ConvTranspose tap reaches are zero by
            construction and that their gradients are discarded (the LR weight is computed from a
            ConvTranspose-layout parameter, e.g. by a parametrization marked ``subpixel_fixed_taps = True``): the
            other algorithms are then valid while autograd records the weight too.
        fresh_weight: the weight is a new tensor on every call (computed by a parametrization such as weight
            norm): weights derived from it are then computed on every call rather than cached, and the timed
            choice counts that cost.
        site: the caller's :class:`~subpixel.dispatch.CallSite` (a layer's), where the last plan is kept for the
            next call.

    Returns:
        The HR output, contiguous in the memory format of the LR convolution's output (``channels_last`` input:
        ``channels_last`` output, as torch's ConvTranspose gives).

    Shape:
        - input: ``(N, C_in, *L_in)`` or ``(C_in, *L_in)``.
        - weight_lr: ``(C_out·R, C_in/groups, *K)``, ``R = ∏ s``; weight_ct: ``(C_in, C_out/groups, *k)``.
        - output: ``(N, C_out, *L_out)``, ``L_out = (L_in − 1)·s − 2p + d·(k − 1) + output_padding + 1`` (no
          ``N`` for an unbatched input).

    Examples:
        >>> x = torch.randn(1, 64, 8, 8, dtype=torch.float64)
        >>> w = torch.randn(64, 32, 4, 4, dtype=torch.float64)
        >>> lr = conv_transpose_weight_to_lr(w, stride=2)
        >>> y = lr_conv_shuffle(x, lr, stride=2, padding=1, kernel_size=4)
        >>> y.shape, bool(torch.allclose(y, conv_transpose(x, w, stride=2, padding=1)))
        (torch.Size([1, 32, 16, 16]), True)
    """
    weight, source = weight_source(weight_lr, weight_ct)
    check = None
    if site is not None and is_eager_plain(input, weight):
        # everything the site's plan was made for that can change between calls (inline: the per-call cost of a
        # small layer's steady state)
        grad = torch.is_grad_enabled()
        forced = algorithm
        if forced is None:
            stack = forcing.stack
            forced = stack[-1] if stack else config.current.algorithm
        check = (
            input.shape, input.stride(), input.dtype, input.device, weight.shape, weight.dtype, source,
            bias is None, stride, padding, output_padding, groups, dilation, kernel_size, order,
            grad and (input.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad),
            forced, fixed_taps, fresh_weight, torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
            generation[0],
        )  # fmt: skip
        if site.check == check:  # the steady state: the prepared call
            p = site.plan
            per_call = fresh_weight or (grad and weight.requires_grad)
            if site.batched:
                return p.call(input, weight, bias, per_call)  # type: ignore[union-attr]
            return p.call(input.unsqueeze(0), weight, bias, per_call).squeeze(0)  # type: ignore[union-attr]
    p, batched, spec, geoms = plan_call(
        input, weight, source, bias, stride, padding, output_padding, groups, dilation, kernel_size, order,
        algorithm, fixed_taps, fresh_weight,
    )  # fmt: skip
    x = input if batched else input.unsqueeze(0)
    if p is None:
        y = _unplanned(x, weight, source, bias, spec, geoms)
    else:
        if site is not None and check is not None:
            site.check, site.plan, site.batched = (None if p.reads_values else check), p, batched
        per_call = fresh_weight or (weight.requires_grad and torch.is_grad_enabled())
        y = p.call(x, weight, bias, per_call)
    return y if batched else y.squeeze(0)


def _unplanned(
    x: Tensor, weight: Tensor, source: WeightSource, bias: Tensor | None, spec: Spec, geoms: Sequence[AxisGeometry]
) -> Tensor:
    """Traced, compiled, exported, transformed: the exportable conv + shuffle graph (the LR form, the layer's own
    arithmetic), the LR weight re-indexed from a ConvTranspose-layout one on every call.

    Shape:
        - x: ``(N, C_in, *L_in)`` (batched, checked); output: ``(N, C_out, *L_out)``.
    """
    w = weight
    if source == "ct":
        w = conv_transpose_weight_to_lr(weight, spec.strides, spec.dilations, spec.groups, order=spec.order)
    return lr_conv_core(x, w, bias, geoms, spec.strides, spec.groups, spec.order)
