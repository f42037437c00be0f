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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from subpixel import native
from subpixel._validation import ChannelOrder, as_tuple, check_ndim, check_order
from subpixel.shuffle import _memory_format, convert_channel_order, shuffle_crop

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

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@dataclass(frozen=True)
class AxisGeometry:
    """How one spatial axis of a ConvTranspose maps to an LR convolution + shuffle + crop.

    Attributes:
        lr_kernel: taps of the LR kernel, ``K = ⌊d (k-1) / s⌋ + 1``.
        pad_before: zero padding of the LR input before the first sample (negative: samples dropped).
        pad_after: zero padding of the LR input after the last sample (negative: samples dropped).
        crop: HR samples dropped at the start after the shuffle (``p mod s``).
        out_size: HR output length ``L_out``.
    """

    lr_kernel: int
    pad_before: int
    pad_after: int
    crop: int
    out_size: int


def lr_kernel_size(kernel_size: int, stride: int, dilation: int = 1) -> int:
    """Taps of the LR kernel for one axis: ``⌊dilation·(kernel_size−1) / stride⌋ + 1``.

    Examples:
        >>> lr_kernel_size(4, 2), lr_kernel_size(9, 3), lr_kernel_size(3, 2, dilation=2)
        (2, 3, 3)
    """
    return dilation * (kernel_size - 1) // stride + 1


def conv_transpose_output_size(
    in_size: int, kernel_size: int, stride: int, padding: int, output_padding: int, dilation: int
) -> int:
    """``(in_size − 1)·stride − 2·padding + dilation·(kernel_size − 1) + output_padding + 1``.

    Examples:
        >>> conv_transpose_output_size(8, 4, 2, 1, 0, 1)
        16
    """
    return (in_size - 1) * stride - 2 * padding + dilation * (kernel_size - 1) + output_padding + 1


def lr_geometry(
    in_size: int, kernel_size: int, stride: int, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> AxisGeometry:
    """LR padding and HR crop that make ``LR conv → shuffle → crop`` equal one axis of a ConvTranspose.

    Args:
        in_size: input length ``L_in`` along the axis.
        kernel_size, stride, padding, output_padding, dilation: the ConvTranspose's parameters on this axis.

    Returns:
        The :class:`AxisGeometry`; the LR convolution produces
        ``in_size + pad_before + pad_after − lr_kernel + 1 = ⌈(crop + out_size) / stride⌉`` samples.

    Raises:
        ValueError: if the output would be empty.

    Examples:
        >>> lr_geometry(8, kernel_size=4, stride=2, padding=1)     # DCGAN: pad 1, crop 1
        AxisGeometry(lr_kernel=2, pad_before=1, pad_after=1, crop=1, out_size=16)
        >>> lr_geometry(10, kernel_size=9, stride=3, padding=3)    # ESPCN layer: 'same' LR conv, no crop
        AxisGeometry(lr_kernel=3, pad_before=1, pad_after=1, crop=0, out_size=30)
    """
    out_size = conv_transpose_output_size(in_size, kernel_size, stride, padding, output_padding, dilation)
    if out_size < 1:
        raise ValueError(
            f"the transposed convolution's output would have size {out_size} along an axis "
            f"(input size {in_size}, kernel {kernel_size}, stride {stride}, padding {padding}, "
            f"output_padding {output_padding}, dilation {dilation}); expected at least 1"
        )
    k_lr = lr_kernel_size(kernel_size, stride, dilation)
    crop = padding % stride
    pad_before = k_lr - 1 - padding // stride
    n_lr_out = -(-(crop + out_size) // stride)
    pad_after = n_lr_out - in_size - pad_before + k_lr - 1
    return AxisGeometry(k_lr, pad_before, pad_after, crop, out_size)


def output_padding_for_size(
    in_spatial: Sequence[int],
    output_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """The output padding that gives ``output_size``, as ``nn.ConvTranspose*.forward(input, output_size)`` does.

    Args:
        in_spatial: spatial size of the input, one int per axis.
        output_size: wanted output size: the spatial sizes, or the full shape (``N, C`` then the spatial sizes).

    Raises:
        ValueError: if ``output_size`` has the wrong length or is out of the reachable range.

    Examples:
        >>> output_padding_for_size([8, 8], [17, 16], [4, 4], [2, 2], [1, 1], [1, 1])
        (1, 0)
    """
    n = len(in_spatial)
    size = [int(s) for s in output_size]
    if len(size) == n + 2 or (len(size) == n + 1):
        size = size[-n:]
    if len(size) != n:
        raise ValueError(
            f"output_size must have {n} or {n + 2} elements (spatial sizes, or the full shape), got {output_size!r}"
        )
    result = []
    for i in range(n):
        smallest = conv_transpose_output_size(
            in_spatial[i], kernel_size[i], stride[i], padding[i], 0, dilation[i]
        )
        largest = smallest + stride[i] - 1
        if not smallest <= size[i] <= largest:
            raise ValueError(
                f"requested an output size of {list(output_size)}, but valid sizes on axis {i} range from "
                f"{smallest} to {largest} (for an input of spatial size {list(in_spatial)})"
            )
        result.append(size[i] - smallest)
    return tuple(result)


def _spatial_dims(weight: Tensor, name: str) -> int:
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        raise ValueError(
            f"{name} must have 3, 4 or 5 dims (channels, channels, then 1 to 3 kernel dims), "
            f"got shape {tuple(weight.shape)}"
        )
    return n


def _check_groups(channels: int, groups: int, name: str) -> None:
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if channels % groups != 0:
        raise ValueError(f"{name} ({channels}) must be divisible by groups ({groups})")


def conv_transpose_weight_to_lr(
    weight: Tensor,
    stride: IntOrTuple,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    order: ChannelOrder = "crd",
) -> Tensor:
    """Convert a ConvTranspose weight into the weight of the equivalent LR convolution (exact, no arithmetic).

    Args:
        weight: ConvTranspose weight.
        stride: the ConvTranspose's stride (the shuffle factor), an int or one per axis.
        dilation: the ConvTranspose's dilation.
        groups: the ConvTranspose's groups.
        order: channel order of the result, ``"crd"`` (default) or ``"dcr"`` (``groups == 1`` only).

    Returns:
        The LR weight, for a stride-1 convolution with ``groups`` groups followed by ``pixel_shuffle(·, stride)``.

    Shape:
        - weight: ``(C_in, C_out/groups, k_1, .., k_n)``.
        - output: ``(C_out·R, C_in/groups, K_1, .., K_n)`` with ``R = ∏ s_i`` and
          ``K_i = ⌊d_i (k_i − 1) / s_i⌋ + 1``.

    Examples:
        >>> w = torch.randn(64, 32, 4, 4)                        # ConvTranspose2d(64, 32, 4, stride=2)
        >>> conv_transpose_weight_to_lr(w, stride=2).shape
        torch.Size([128, 64, 2, 2])
        >>> w1 = torch.arange(5.0).reshape(1, 1, 5)               # taps 0..4, stride 2
        >>> conv_transpose_weight_to_lr(w1, stride=2)[:, 0]       # phase 0: taps 4, 2, 0; phase 1: 0 (pad), 3, 1
        tensor([[4., 2., 0.],
                [0., 3., 1.]])
    """
    order = check_order(order)
    n = _spatial_dims(weight, "weight")
    strides = as_tuple(stride, n, "stride", minimum=1)
    dilations = as_tuple(dilation, n, "dilation", minimum=1)
    c_in, c_out_g = weight.shape[0], weight.shape[1]
    _check_groups(c_in, groups, "weight.shape[0] (in_channels)")
    if order == "dcr" and groups != 1:
        raise ValueError(
            f"order='dcr' needs groups == 1 (phases of all groups interleave), got groups={groups}"
        )
    kernel = tuple(weight.shape[2:])
    k_lr = [lr_kernel_size(k, s, d) for k, s, d in zip(kernel, strides, dilations, strict=True)]
    full = weight.new_zeros((c_in, c_out_g, *[kk * s for kk, s in zip(k_lr, strides, strict=True)]))
    taps = tuple(slice(0, d * (k - 1) + 1, d) for k, d in zip(kernel, dilations, strict=True))
    full[(slice(None), slice(None), *taps)] = weight
    split: list[int] = []
    for kk, s in zip(k_lr, strides, strict=True):
        split += [kk, s]
    # (G, C_in/g, C_out/g, K_1, s_1, .., K_n, s_n)
    full = full.reshape(groups, c_in // groups, c_out_g, *split)
    full = full.flip([3 + 2 * i for i in range(n)])
    # -> (G, C_out/g, s_1..s_n, C_in/g, K_1..K_n)
    perm = [0, 2, *[4 + 2 * i for i in range(n)], 1, *[3 + 2 * i for i in range(n)]]
    lr = full.permute(perm).reshape(groups * c_out_g * math.prod(strides), c_in // groups, *k_lr)
    if order == "dcr":
        lr = convert_channel_order(lr, strides, "crd", "dcr", dim=0)
    return lr.contiguous()


def lr_weight_to_conv_transpose(
    weight_lr: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    order: ChannelOrder = "crd",
    check: bool = True,
) -> Tensor:
    """Convert an LR convolution weight back into the ConvTranspose weight (the inverse of
    :func:`conv_transpose_weight_to_lr`).

    Args:
        weight_lr: LR weight.
        kernel_size: the ConvTranspose's kernel size ``k``, an int or one per axis.
        stride: the shuffle factor ``s``.
        dilation: the ConvTranspose's dilation ``d``.
        groups: groups of the LR convolution (and of the ConvTranspose).
        order: channel order of ``weight_lr``.
        check: raise if ``weight_lr`` has non-zero entries where no ConvTranspose tap lands (those would be lost).

    Returns:
        The ConvTranspose weight.

    Shape:
        - weight_lr: ``(C_out·R, C_in/groups, K_1, .., K_n)`` with ``K_i = ⌊d_i (k_i − 1) / s_i⌋ + 1``.
        - output: ``(C_in, C_out/groups, k_1, .., k_n)``.

    Raises:
        ValueError: on shapes that do not fit, or (with ``check``) on entries no tap reaches.

    Examples:
        >>> w = torch.randn(8, 4, 3, 3)
        >>> lr = conv_transpose_weight_to_lr(w, stride=2)
        >>> bool(torch.equal(lr_weight_to_conv_transpose(lr, kernel_size=3, stride=2), w))
        True
    """
    order = check_order(order)
    n = _spatial_dims(weight_lr, "weight_lr")
    kernel = as_tuple(kernel_size, n, "kernel_size", minimum=1)
    strides = as_tuple(stride, n, "stride", minimum=1)
    dilations = as_tuple(dilation, n, "dilation", minimum=1)
    k_lr = [lr_kernel_size(k, s, d) for k, s, d in zip(kernel, strides, dilations, strict=True)]
    if list(weight_lr.shape[2:]) != k_lr:
        raise ValueError(
            f"weight_lr must have LR kernel size {tuple(k_lr)} for kernel_size={kernel}, stride={strides}, "
            f"dilation={dilations}, got shape {tuple(weight_lr.shape)}"
        )
    r_total = math.prod(strides)
    _check_groups(weight_lr.shape[0], groups * r_total, f"weight_lr.shape[0] (out_channels·{r_total})")
    if order == "dcr":
        if groups != 1:
            raise ValueError(f"order='dcr' needs groups == 1, got groups={groups}")
        weight_lr = convert_channel_order(weight_lr, strides, "dcr", "crd", dim=0)
    c_out_g = weight_lr.shape[0] // (groups * r_total)
    c_in_g = weight_lr.shape[1]
    x = weight_lr.reshape(groups, c_out_g, *strides, c_in_g, *k_lr)
    # (G, C_out/g, s_1..s_n, C_in/g, K_1..K_n) -> (G, C_in/g, C_out/g, K_1, s_1, .., K_n, s_n)
    perm = [0, 2 + n, 1]
    for i in range(n):
        perm += [3 + n + i, 2 + i]
    x = x.permute(perm).flip([3 + 2 * i for i in range(n)])
    full = x.reshape(groups * c_in_g, c_out_g, *[kk * s for kk, s in zip(k_lr, strides, strict=True)])
    taps = (
        slice(None),
        slice(None),
        *(slice(0, d * (k - 1) + 1, d) for k, d in zip(kernel, dilations, strict=True)),
    )
    weight = full[taps].contiguous()
    if check:
        rest = full.clone()
        rest[taps] = 0
        if torch.count_nonzero(rest) > 0:
            raise ValueError(
                f"weight_lr has non-zero entries (max |w| = {rest.abs().max().item():.3g}) at LR positions that no "
                f"ConvTranspose tap of kernel_size={kernel}, stride={strides}, dilation={dilations} reaches; "
                "converting would change the layer. Pass check=False to drop them, or use a kernel_size that is "
                "a multiple of the stride with dilation 1"
            )
    return weight


def _check_input(input: Tensor, n: int, in_channels: int, name: str = "input") -> tuple[Tensor, bool]:
    """Add a batch dim to an unbatched input; check the channel count."""
    if input.dim() == n + 1:
        input, batched = input.unsqueeze(0), False
    elif input.dim() == n + 2:
        batched = True
    else:
        raise ValueError(
            f"{name} must have {n + 2} dims (N, C, *spatial) or {n + 1} (C, *spatial) for a {n}-D layer, "
            f"got shape {tuple(input.shape)}"
        )
    if input.shape[1] != in_channels:
        raise ValueError(f"{name} must have {in_channels} channels, got shape {tuple(input.shape)}")
    return input, batched


def _pad_or_crop(x: Tensor, before: Sequence[int], after: Sequence[int]) -> Tensor:
    """Zero-pad (positive) or crop (negative) the trailing spatial axes of ``x``."""
    pads: list[int] = []
    for b, a in zip(reversed(before), reversed(after), strict=True):
        pads += [b, a]
    if not any(pads):
        return x
    return F.pad(x, pads)


def _lr_conv_core(
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
            out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=_memory_format(x)).zero_()
            return out if bias is None else out.add_(bias.reshape(c_out, *([1] * len(geoms))))
        x = x[(slice(None), slice(None), *keep)]
    pads = tuple(max(g.pad_before, g.pad_after, 0) for g in geoms)
    z = _CONV[len(geoms)](x, weight_lr, bias_lr, 1, pads, 1, groups)
    skip = [p - max(g.pad_before, 0) for p, g in zip(pads, geoms, strict=True)]
    memory_format = _memory_format(z)
    if any(skip):
        z = z[(slice(None), slice(None), *(slice(k, None) for k in skip))]
    # one copy: shuffle and crop fused (falls back to shuffle-then-crop under export/tracing; see shuffle_crop)
    return shuffle_crop(
        z, strides, order, [g.crop for g in geoms], [g.out_size for g in geoms], memory_format=memory_format
    )


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
    n = check_ndim(weight.dim() - 2, "weight.dim() - 2")
    return _CONV_T[n](input, weight, bias, stride, padding, output_padding, groups, dilation)


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
    n = _spatial_dims(weight, "weight")
    strides = as_tuple(stride, n, "stride", minimum=1)
    pads = as_tuple(padding, n, "padding", minimum=0)
    out_pads = as_tuple(output_padding, n, "output_padding", minimum=0)
    dilations = as_tuple(dilation, n, "dilation", minimum=1)
    c_in, c_out_g = weight.shape[0], weight.shape[1]
    _check_groups(c_in, groups, "weight.shape[0] (in_channels)")
    x, batched = _check_input(input, n, c_in)
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
    y = _CONV[n](x, w, bias, 1, 0, dilations, groups)
    return y if batched else y.squeeze(0)


def lr_conv_shuffle(
    input: Tensor,
    weight_lr: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
    kernel_size: IntOrTuple | None = None,
    *,
    order: ChannelOrder = "crd",
) -> Tensor:
    """A transposed convolution computed as a stride-1 convolution in LR space, periodic shuffling and a crop.

    With ``weight_lr = conv_transpose_weight_to_lr(weight, stride, dilation, groups)`` this equals
    ``conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation)``.

    Args:
        input: the LR input.
        weight_lr: the LR weight (see :func:`conv_transpose_weight_to_lr`).
        bias: optional bias, one per output channel ``(C_out,)``.
        stride: the ConvTranspose stride = the shuffle factor.
        padding, output_padding, groups, dilation: as for ConvTranspose.
        kernel_size: the ConvTranspose kernel size ``k`` (sets the output size); by default the largest ``k``
            whose LR kernel is ``weight_lr``'s, i.e. ``K·s`` for dilation 1.
        order: channel order of ``weight_lr``.

    Returns:
        The HR output, contiguous in the memory format of the LR convolution's output (``channels_last`` input:
        ``channels_last`` output, as torch's ConvTranspose gives).

    Shape:
        - input: ``(N, C_in, *L_in)`` or ``(C_in, *L_in)``.
        - weight_lr: ``(C_out·R, C_in/groups, *K)``, ``R = ∏ s``.
        - output: ``(N, C_out, *L_out)``, ``L_out = (L_in − 1)·s − 2p + d·(k − 1) + output_padding + 1``.

    Examples:
        >>> x = torch.randn(1, 64, 8, 8, dtype=torch.float64)
        >>> w = torch.randn(64, 32, 4, 4, dtype=torch.float64)
        >>> lr = conv_transpose_weight_to_lr(w, stride=2)
        >>> y = lr_conv_shuffle(x, lr, stride=2, padding=1, kernel_size=4)
        >>> y.shape, bool(torch.allclose(y, conv_transpose(x, w, stride=2, padding=1)))
        (torch.Size([1, 32, 16, 16]), True)
    """
    order = check_order(order)
    n = _spatial_dims(weight_lr, "weight_lr")
    strides = as_tuple(stride, n, "stride", minimum=1)
    pads = as_tuple(padding, n, "padding", minimum=0)
    out_pads = as_tuple(output_padding, n, "output_padding", minimum=0)
    dilations = as_tuple(dilation, n, "dilation", minimum=1)
    k_lr = tuple(weight_lr.shape[2:])
    if kernel_size is None:
        kernel = tuple(((kk * s - 1) // d) + 1 for kk, s, d in zip(k_lr, strides, dilations, strict=True))
    else:
        kernel = as_tuple(kernel_size, n, "kernel_size", minimum=1)
    r_total = math.prod(strides)
    _check_groups(weight_lr.shape[0], groups * r_total, f"weight_lr.shape[0] (out_channels·{r_total})")
    x, batched = _check_input(input, n, weight_lr.shape[1] * groups)
    geoms = [
        lr_geometry(length, k, s, p, a, d)
        for length, k, s, p, a, d in zip(x.shape[2:], kernel, strides, pads, out_pads, dilations, strict=True)
    ]
    if [g.lr_kernel for g in geoms] != list(k_lr):
        raise ValueError(
            f"weight_lr has LR kernel size {k_lr}, but kernel_size={kernel}, stride={strides}, "
            f"dilation={dilations} need {tuple(g.lr_kernel for g in geoms)}"
        )
    c_out = weight_lr.shape[0] // r_total
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")
    y = _lr_conv_core(x, weight_lr, bias, geoms, strides, groups, order)
    return y if batched else y.squeeze(0)


@dataclass(frozen=True)
class _AxisPhase:
    """One phase of one axis in the per-phase form (see :func:`_phase_plan`)."""

    phase: int  # φ: LR weight rows of this phase
    tap_lo: int  # first LR tap holding a real tap of this phase
    taps: int  # K_φ: LR taps from tap_lo through the last real one (0: no tap lands on this phase)
    start: int  # m0: first HR output of this phase (after the crop)
    count: int  # n_φ: HR outputs of this phase
    pad_before: int  # LR padding before the input for the K_φ-tap stride-1 conv (negative: samples dropped)
    pad_after: int  # LR padding after the input (negative: samples dropped)


def _axis_phases(in_size: int, k: int, s: int, d: int, g: AxisGeometry) -> list[_AxisPhase]:
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
            phases.append(_AxisPhase(phi, 0, 0, m0, count, 0, 0))
            continue
        lo, taps = min(js), max(js) - min(js) + 1
        shift = (m0 + g.crop - phi) // s  # LR position of the phase's first output
        before = g.pad_before - shift - lo
        after = count - in_size - before + taps - 1
        phases.append(_AxisPhase(phi, lo, taps, m0, count, before, after))
    return phases


def _phase_plan(
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    geoms: Sequence[AxisGeometry],
) -> tuple[list[list[_AxisPhase]], float]:
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


def _phase_mask(axes: Sequence[Sequence[_AxisPhase]], k_lr: Sequence[int], device: torch.device) -> Tensor:
    """Boolean ``(R, *K)``: the LR weight entries inside each phase's trimmed tap range (row-major phases)."""
    per_axis = []
    for phases, kk in zip(axes, k_lr, strict=True):
        m = torch.zeros(len(phases), kk, dtype=torch.bool, device=device)
        for p in phases:
            m[p.phase, p.tap_lo : p.tap_lo + p.taps] = True
        per_axis.append(m)
    mask = per_axis[0]
    for m in per_axis[1:]:  # outer product over axes, phases row-major
        r, kk = mask.shape[0], mask.shape[1:]
        mask = mask.reshape(r, 1, *kk, *([1] * (m.dim() - 1))) & m.reshape(
            1, m.shape[0], *([1] * len(kk)), -1
        )
        mask = mask.reshape(r * m.shape[0], *kk, m.shape[1])
    return mask


def _phase_weight_valid(weight_lr: Tensor, axes: Sequence[Sequence[_AxisPhase]], order: ChannelOrder) -> bool:
    """Whether the LR weight is zero outside each phase's trimmed tap range (true for converted ConvTranspose
    weights, not necessarily for freely trained LR weights): the condition of :func:`_phase_conv_core`."""
    r_total = math.prod(len(p) for p in axes)
    k_lr = weight_lr.shape[2:]
    mask = _phase_mask(axes, k_lr, weight_lr.device)
    with torch.no_grad():
        w = weight_lr.detach()
        if order == "crd":
            w = w.reshape(-1, r_total, *w.shape[1:]).transpose(0, 1)
        else:
            w = w.reshape(r_total, -1, *w.shape[1:])
        outside = ~mask  # (R, *K)
        w = w.reshape(r_total, -1, *k_lr)
        return not bool(w.masked_select(outside.unsqueeze(1).expand_as(w)).any())


def _phase_conv_core(
    x: Tensor,
    weight_lr: Tensor,
    bias: Tensor | None,
    axes: Sequence[Sequence[_AxisPhase]],
    groups: int,
    order: ChannelOrder,
) -> Tensor:
    """The computation of :func:`lr_conv_shuffle` as one stride-1 conv per phase combination, each with only the
    LR taps where real taps land, written into the output's phase slices (valid only when
    :func:`_phase_weight_valid`; no LR output is computed that the crop throws away).

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
    for phase, combo in enumerate(_product(axes)):
        if any(p.count == 0 for p in combo):
            continue
        index = (
            slice(None),
            slice(None),
            *(slice(p.start, None, len(a)) for p, a in zip(combo, axes, strict=True)),
        )
        if any(p.taps == 0 for p in combo):  # no tap lands on this phase: bias only
            bias_only.append(index)
            continue
        w = w_all[(slice(None), phase, slice(None), *(slice(p.tap_lo, p.tap_lo + p.taps) for p in combo))]
        keep = [
            slice(max(-p.pad_before, 0), size - max(-p.pad_after, 0))
            for p, size in zip(combo, spatial, strict=True)
        ]
        xi = x
        if any(k.start or k.stop != size for k, size in zip(keep, spatial, strict=True)):
            xi = x[(slice(None), slice(None), *keep)]
        pads = tuple(max(p.pad_before, p.pad_after, 0) for p in combo)
        y = _CONV[n](xi, w, bias, 1, pads, 1, groups)
        if out is None:
            out = torch.empty(shape, dtype=y.dtype, device=y.device, memory_format=_memory_format(y))
        skip = [q - max(p.pad_before, 0) for q, p in zip(pads, combo, strict=True)]
        y = y[(slice(None), slice(None), *(slice(k, k + p.count) for k, p in zip(skip, combo, strict=True)))]
        native.copy_into(out[index], y)
    if out is None:
        out = x.new_empty(shape)
    for index in bias_only:
        target = out[index]
        if bias is None:
            target.zero_()
        else:
            target.copy_(bias.reshape(c_out, *([1] * n)).expand_as(target))
    return out


def _product(axes: Sequence[Sequence[_AxisPhase]]) -> list[tuple[_AxisPhase, ...]]:
    """Row-major product of the per-axis phases (the flat phase index of CRD/DCR channel order)."""
    combos: list[tuple[_AxisPhase, ...]] = [()]
    for phases in axes:
        combos = [(*c, p) for c in combos for p in phases]
    return combos
