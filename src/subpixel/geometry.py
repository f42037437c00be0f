"""Geometry of the exact maps between a transposed convolution and its LR form: sizes, paddings, crops, weights.

:func:`lr_geometry` says how one spatial axis of a ConvTranspose becomes a stride-1 LR convolution, a shuffle and a
crop; :func:`conv_transpose_weight_to_lr` and :func:`lr_weight_to_conv_transpose` map the weights (exact
re-indexing, no arithmetic); :func:`validate` checks the arguments of a call in LR form into a :class:`Spec` and
the per-axis geometry. The public names are re-exported by :mod:`subpixel.functional`, which explains the
forms; :mod:`subpixel.algorithms` computes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from subpixel import _reindex
from subpixel._validation import ChannelOrder, as_tuple, check_order
from subpixel.eager import is_eager_plain
from subpixel.errors import SubpixelError
from subpixel.shuffle import convert_channel_order

__all__ = [
    "AxisGeometry",
    "Spec",
    "WeightSource",
    "conv_transpose_output_size",
    "conv_transpose_weight_to_lr",
    "lr_geometry",
    "lr_kernel_size",
    "lr_weight_to_conv_transpose",
    "output_padding_for_size",
    "validate",
]

IntOrTuple = int | Sequence[int]

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


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
        raise SubpixelError(
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
        raise SubpixelError(
            f"output_size must have {n} or {n + 2} elements (spatial sizes, or the full shape), got {output_size!r}"
        )
    result = []
    for i in range(n):
        smallest = conv_transpose_output_size(
            in_spatial[i], kernel_size[i], stride[i], padding[i], 0, dilation[i]
        )
        largest = smallest + stride[i] - 1
        if not smallest <= size[i] <= largest:
            raise SubpixelError(
                f"requested an output size of {list(output_size)}, but valid sizes on axis {i} range from "
                f"{smallest} to {largest} (for an input of spatial size {list(in_spatial)})"
            )
        result.append(size[i] - smallest)
    return tuple(result)


def spatial_dims(weight: Tensor, name: str) -> int:
    n = weight.dim() - 2
    if n not in (1, 2, 3):
        raise SubpixelError(
            f"{name} must have 3, 4 or 5 dims (channels, channels, then 1 to 3 kernel dims), "
            f"got shape {tuple(weight.shape)}"
        )
    return n


def check_groups(channels: int, groups: int, name: str) -> None:
    if not isinstance(groups, int) or groups < 1:
        raise SubpixelError(f"groups must be a positive int, got {groups!r}")
    if channels % groups != 0:
        raise SubpixelError(f"{name} ({channels}) must be divisible by groups ({groups})")


def conv_transpose_weight_to_lr(
    weight: Tensor,
    stride: IntOrTuple,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    *,
    order: ChannelOrder = "crd",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Tensor:
    """Convert a ConvTranspose weight into the weight of the equivalent LR convolution (exact, no arithmetic).

    Args:
        weight: ConvTranspose weight.
        stride: the ConvTranspose's stride (the shuffle factor), an int or one per axis.
        dilation: the ConvTranspose's dilation.
        groups: the ConvTranspose's groups.
        order: channel order of the result, ``"crd"`` (default) or ``"dcr"`` (``groups == 1`` only).
        memory_format: of the result (``torch.channels_last`` for a 4-D, ``channels_last_3d`` for a 5-D weight).

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
    n = spatial_dims(weight, "weight")
    strides = as_tuple(stride, n, "stride", minimum=1)
    dilations = as_tuple(dilation, n, "dilation", minimum=1)
    c_in, c_out_g = weight.shape[0], weight.shape[1]
    check_groups(c_in, groups, "weight.shape[0] (in_channels)")
    if order == "dcr" and groups != 1:
        raise SubpixelError(
            f"order='dcr' needs groups == 1 (phases of all groups interleave), got groups={groups}"
        )
    wanted = {torch.channels_last: 4, torch.channels_last_3d: 5}.get(memory_format)
    if wanted is not None and weight.dim() != wanted:
        raise SubpixelError(
            f"memory_format={memory_format} needs a {wanted}-D weight, got shape {tuple(weight.shape)}"
        )
    kernel = tuple(weight.shape[2:])
    k_lr = [lr_kernel_size(k, s, d) for k, s, d in zip(kernel, strides, dilations, strict=True)]
    g = _reindex.Reindex(kernel, strides, dilations, tuple(k_lr), groups, order)
    if _reindex.faster_than_views(g, weight.numel()) and is_eager_plain(weight):
        channels_last = memory_format in (torch.channels_last, torch.channels_last_3d)
        return _reindex.conv_transpose_to_lr(weight, g, channels_last=channels_last)
    # the definition, as views (recorded by tracing, compiling and export; the eager path gives the same bits)
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
    return lr.contiguous(memory_format=memory_format)


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
    n = spatial_dims(weight_lr, "weight_lr")
    kernel = as_tuple(kernel_size, n, "kernel_size", minimum=1)
    strides = as_tuple(stride, n, "stride", minimum=1)
    dilations = as_tuple(dilation, n, "dilation", minimum=1)
    k_lr = [lr_kernel_size(k, s, d) for k, s, d in zip(kernel, strides, dilations, strict=True)]
    if list(weight_lr.shape[2:]) != k_lr:
        raise SubpixelError(
            f"weight_lr must have LR kernel size {tuple(k_lr)} for kernel_size={kernel}, stride={strides}, "
            f"dilation={dilations}, got shape {tuple(weight_lr.shape)}"
        )
    r_total = math.prod(strides)
    check_groups(weight_lr.shape[0], groups * r_total, f"weight_lr.shape[0] (out_channels·{r_total})")
    if order == "dcr" and groups != 1:
        raise SubpixelError(f"order='dcr' needs groups == 1, got groups={groups}")
    g = _reindex.Reindex(kernel, strides, dilations, tuple(k_lr), groups, order)
    if not check and _reindex.faster_than_views(g, weight_lr.numel()) and is_eager_plain(weight_lr):
        return _reindex.lr_to_conv_transpose(weight_lr, g)
    if order == "dcr":
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
        _refuse_dropped_taps(full, taps, kernel, strides, dilations)
    return weight


def _refuse_dropped_taps(
    full: Tensor, taps: tuple[slice, ...], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> None:
    """:class:`SubpixelError` where ``full`` (the LR weight re-indexed to ``K·s`` taps per axis) is non-zero off
    ``taps`` (the ConvTranspose's taps): converting would drop those entries.

    Shape:
        - full: ``(C_in, C_out/groups, K_1·s_1, .., K_n·s_n)``.
    """
    rest = full.clone()
    rest[taps] = 0
    if torch.count_nonzero(rest) > 0:
        raise SubpixelError(
            f"weight_lr has non-zero entries (max |w| = {rest.abs().max().item():.3g}) at LR positions that no "
            f"ConvTranspose tap of kernel_size={kernel}, stride={strides}, dilation={dilations} reaches; "
            "converting would change the layer. Pass check=False to drop them, or use a kernel_size that is "
            "a multiple of the stride with dilation 1"
        )


#: the layout of the weight a call gives: ``"lr"`` (``weight_lr``) or ``"ct"`` (ConvTranspose, ``weight_ct``)
WeightSource = Literal["lr", "ct"]


class Spec(NamedTuple):
    """The validated arguments of one transposed convolution in LR form (everything but the tensors)."""

    ndim: int
    strides: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilations: tuple[int, ...]
    kernel_size: tuple[int, ...]
    groups: int
    order: ChannelOrder


def validate(
    input: Tensor,
    weight: Tensor,
    source: WeightSource,
    bias: Tensor | None,
    stride: object,
    padding: object,
    output_padding: object,
    groups: int,
    dilation: object,
    kernel_size: object,
    order: str,
) -> tuple[Spec, tuple[AxisGeometry, ...], bool]:
    """The checks of :func:`~subpixel.functional.lr_conv_shuffle`; the spec, geometry and whether ``input`` has a
    batch dimension. ``weight`` is the LR weight (``source == "lr"``) or the ConvTranspose weight (``"ct"``).

    Shape:
        - input: ``(N, C_in, *L_in)`` or ``(C_in, *L_in)``; weight: ``(C_out·R, C_in/groups, *K)`` (``"lr"``) or
          ``(C_in, C_out/groups, *k)`` (``"ct"``); bias: ``(C_out,)``.
    """
    order = check_order(order)
    name = "weight_lr" if source == "lr" else "weight_ct"
    n = spatial_dims(weight, name)
    strides = as_tuple(stride, n, "stride", minimum=1)  # type: ignore[arg-type]
    pads = as_tuple(padding, n, "padding", minimum=0)  # type: ignore[arg-type]
    out_pads = as_tuple(output_padding, n, "output_padding", minimum=0)  # type: ignore[arg-type]
    dilations = as_tuple(dilation, n, "dilation", minimum=1)  # type: ignore[arg-type]
    r_total = math.prod(strides)
    if source == "ct":
        kernel = tuple(weight.shape[2:])
        if kernel_size is not None and as_tuple(kernel_size, n, "kernel_size", minimum=1) != kernel:  # type: ignore[arg-type]
            raise SubpixelError(f"weight_ct has kernel size {kernel}, but kernel_size={kernel_size!r}")
        check_groups(weight.shape[0], groups, "weight_ct.shape[0] (in_channels)")
        lr_shape = (weight.shape[1] * groups * r_total, weight.shape[0] // groups)
        k_lr = tuple(lr_kernel_size(kk, s, d) for kk, s, d in zip(kernel, strides, dilations, strict=True))
        in_channels = weight.shape[0]
    else:
        k_lr = tuple(weight.shape[2:])
        if kernel_size is None:
            kernel = tuple(((kk * s - 1) // d) + 1 for kk, s, d in zip(k_lr, strides, dilations, strict=True))
        else:
            kernel = as_tuple(kernel_size, n, "kernel_size", minimum=1)  # type: ignore[arg-type]
        lr_shape = tuple(weight.shape[:2])
        in_channels = weight.shape[1] * groups
    check_groups(lr_shape[0], groups * r_total, f"weight_lr.shape[0] (out_channels·{r_total})")
    if order == "dcr" and groups != 1:
        raise SubpixelError(f"order='dcr' needs groups == 1, got groups={groups}")
    x, batched = check_input(input, n, in_channels)
    geoms = tuple(
        lr_geometry(length, k, s, p, a, d)
        for length, k, s, p, a, d in zip(x.shape[2:], kernel, strides, pads, out_pads, dilations, strict=True)
    )
    if tuple(g.lr_kernel for g in geoms) != k_lr:
        raise SubpixelError(
            f"weight_lr has LR kernel size {k_lr}, but kernel_size={kernel}, stride={strides}, "
            f"dilation={dilations} need {tuple(g.lr_kernel for g in geoms)}"
        )
    c_out = lr_shape[0] // r_total
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise SubpixelError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")
    spec = Spec(n, strides, pads, out_pads, dilations, kernel, groups, order)
    return spec, geoms, batched


def check_input(input: Tensor, n: int, in_channels: int, name: str = "input") -> tuple[Tensor, bool]:
    """Add a batch dim to an unbatched input; check the channel count."""
    if input.dim() == n + 1:
        input, batched = input.unsqueeze(0), False
    elif input.dim() == n + 2:
        batched = True
    else:
        raise SubpixelError(
            f"{name} must have {n + 2} dims (N, C, *spatial) or {n + 1} (C, *spatial) for a {n}-D layer, "
            f"got shape {tuple(input.shape)}"
        )
    if input.shape[1] != in_channels:
        raise SubpixelError(f"{name} must have {in_channels} channels, got shape {tuple(input.shape)}")
    return input, batched
