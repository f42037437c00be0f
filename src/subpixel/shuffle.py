"""Periodic shuffling (pixel shuffle) and its inverse, in 1, 2 and 3 spatial dimensions.

Periodic shuffling moves ``R = r_1·…·r_n`` channels of a low-resolution (LR) tensor into an ``r_1 × … × r_n``
block of pixels of a high-resolution (HR) tensor. Two channel orders are in use, and both are named here:

* ``"crd"`` (column-row-depth; PyTorch ``pixel_shuffle``, ONNX ``DepthToSpace(mode="CRD")``): LR channel
  ``c·R + φ`` goes to HR channel ``c`` at phase ``φ``;
* ``"dcr"`` (depth-column-row; TensorFlow ``depth_to_space``, ONNX's default ``DCR``): LR channel ``φ·C + c``.

The phase index ``φ`` is row-major over the axes: in 2-D, ``φ = i·r_w + j`` for the pixel at offset ``(i, j)``
inside its block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from subpixel._validation import ChannelOrder, as_factor, check_ndim, check_order

__all__ = [
    "PixelShuffle1d",
    "PixelShuffle2d",
    "PixelShuffle3d",
    "PixelUnshuffle1d",
    "PixelUnshuffle2d",
    "PixelUnshuffle3d",
    "convert_channel_order",
    "pixel_shuffle",
    "pixel_unshuffle",
]


def _interleave(n_lead: int, ndim: int) -> list[int]:
    """Permutation from ``(*lead, C, r_1..r_n, D_1..D_n)`` to ``(*lead, C, D_1, r_1, .., D_n, r_n)``."""
    c = n_lead
    perm = [*list(range(n_lead)), c]
    for i in range(ndim):
        perm += [c + 1 + ndim + i, c + 1 + i]
    return perm


def pixel_shuffle(
    input: Tensor, factor: int | Sequence[int], *, order: ChannelOrder = "crd", ndim: int | None = None
) -> Tensor:
    """Periodic shuffling: rearrange channels into blocks of pixels (depth-to-space).

    Args:
        input: the LR tensor.
        factor: upscaling factor ``r``, one int for every axis or one per axis ``(r_1, .., r_n)``.
        order: channel order of ``input``: ``"crd"`` (PyTorch, ONNX CRD) or ``"dcr"`` (TensorFlow, ONNX DCR).
        ndim: number of spatial axes ``n``; by default ``len(factor)`` or ``input.dim() - 2``.

    Returns:
        The HR tensor.

    Shape:
        - input: ``(*, C·R, D_1, .., D_n)`` with ``R = r_1·…·r_n`` and any number of leading dims ``*``.
        - output: ``(*, C, D_1·r_1, .., D_n·r_n)``.

    Raises:
        ValueError: if the channels are not divisible by ``R``, a factor is below 1, or the dims do not fit.

    Examples:
        >>> x = torch.arange(8.0).reshape(1, 8, 1, 1)
        >>> pixel_shuffle(x, 2).shape
        torch.Size([1, 2, 2, 2])
        >>> bool(torch.equal(pixel_shuffle(x, 2), torch.nn.functional.pixel_shuffle(x, 2)))
        True
        >>> pixel_shuffle(torch.zeros(5, 6, 10), 3).shape          # 1-D: (N, C·r, L) -> (N, C, L·r)
        torch.Size([5, 2, 30])
        >>> pixel_shuffle(torch.zeros(2, 12, 4, 5, 6), (1, 2, 3)).shape   # 3-D, a factor per axis
        torch.Size([2, 2, 4, 10, 18])
        >>> pixel_shuffle(torch.arange(4.0).reshape(4, 1), 2, order="dcr", ndim=1)   # (C·r, L), no batch
        tensor([[0., 2.],
                [1., 3.]])
    """
    order = check_order(order)
    factors = as_factor(factor, ndim, input.dim())
    n = len(factors)
    r_total = math.prod(factors)
    channels = input.shape[-n - 1]
    if channels % r_total != 0:
        raise ValueError(
            f"input channels must be divisible by the product of the factors {factors} = {r_total}, "
            f"got {channels} channels (input shape {tuple(input.shape)})"
        )
    lead = tuple(input.shape[: -n - 1])
    spatial = tuple(input.shape[-n:])
    c_out = channels // r_total
    if order == "crd":
        x = input.reshape(*lead, c_out, *factors, *spatial)
        perm = _interleave(len(lead), n)
    else:
        x = input.reshape(*lead, *factors, c_out, *spatial)
        # (*lead, r_1..r_n, C, D_1..D_n) -> (*lead, C, D_1, r_1, .., D_n, r_n)
        k = len(lead)
        perm = [*range(k), k + n]
        for i in range(n):
            perm += [k + n + 1 + i, k + i]
    out_spatial = [d * f for d, f in zip(spatial, factors, strict=True)]
    return x.permute(perm).reshape(*lead, c_out, *out_spatial)


def pixel_unshuffle(
    input: Tensor, factor: int | Sequence[int], *, order: ChannelOrder = "crd", ndim: int | None = None
) -> Tensor:
    """Inverse periodic shuffling: fold blocks of pixels into channels (space-to-depth).

    Args:
        input: the HR tensor.
        factor: downscaling factor ``r``, one int for every axis or one per axis.
        order: channel order of the output: ``"crd"`` or ``"dcr"`` (see the module docstring).
        ndim: number of spatial axes ``n``; by default ``len(factor)`` or ``input.dim() - 2``.

    Returns:
        The LR tensor; ``pixel_shuffle(pixel_unshuffle(x, r), r)`` equals ``x``.

    Shape:
        - input: ``(*, C, D_1·r_1, .., D_n·r_n)``.
        - output: ``(*, C·R, D_1, .., D_n)`` with ``R = r_1·…·r_n``.

    Raises:
        ValueError: if a spatial size is not divisible by its factor, or the dims do not fit.

    Examples:
        >>> x = torch.randn(3, 2, 8, 6)
        >>> pixel_unshuffle(x, 2).shape
        torch.Size([3, 8, 4, 3])
        >>> bool(torch.equal(pixel_unshuffle(x, 2), torch.nn.functional.pixel_unshuffle(x, 2)))
        True
        >>> bool(torch.equal(pixel_shuffle(pixel_unshuffle(x, 2, order="dcr"), 2, order="dcr"), x))
        True
    """
    order = check_order(order)
    factors = as_factor(factor, ndim, input.dim())
    n = len(factors)
    lead = tuple(input.shape[: -n - 1])
    channels = input.shape[-n - 1]
    spatial = tuple(input.shape[-n:])
    for axis, (size, f) in enumerate(zip(spatial, factors, strict=True)):
        if size % f != 0:
            raise ValueError(
                f"spatial size {size} of axis {axis} must be divisible by its factor {f} "
                f"(input shape {tuple(input.shape)}, factor {factor!r})"
            )
    lr_spatial = [d // f for d, f in zip(spatial, factors, strict=True)]
    split: list[int] = []
    for d, f in zip(lr_spatial, factors, strict=True):
        split += [d, f]
    x = input.reshape(*lead, channels, *split)
    k = len(lead)
    phases = [k + 2 + 2 * i for i in range(n)]
    positions = [k + 1 + 2 * i for i in range(n)]
    if order == "crd":
        perm = [*range(k), k, *phases, *positions]
    else:
        perm = [*range(k), *phases, k, *positions]
    return x.permute(perm).reshape(*lead, channels * math.prod(factors), *lr_spatial)


def convert_channel_order(
    input: Tensor,
    factor: int | Sequence[int],
    src: ChannelOrder,
    dst: ChannelOrder,
    *,
    dim: int = 1,
    ndim: int | None = None,
) -> Tensor:
    """Reorder the channels of an LR tensor or an LR weight between the ``"crd"`` and ``"dcr"`` orders.

    ``pixel_shuffle(x, r, order="crd")`` equals
    ``pixel_shuffle(convert_channel_order(x, r, "crd", "dcr"), r, order="dcr")``.

    Args:
        input: a tensor with ``C·R`` channels along ``dim``: activations ``(N, C·R, *spatial)`` with ``dim=1``,
            or the weight of an LR convolution ``(C·R, C_in/groups, *k)`` with ``dim=0``.
        factor: the shuffle factor, an int or one per axis.
        src: the order ``input`` is in.
        dst: the order wanted.
        dim: the channel dimension.
        ndim: number of spatial axes; by default ``len(factor)`` or ``input.dim() - 2``.

    Returns:
        A tensor of the same shape with its channels permuted (``input`` itself when ``src == dst``).

    Shape:
        - input: ``(.., C·R, ..)`` with the ``C·R`` axis at ``dim``.
        - output: same as input.

    Examples:
        >>> x = torch.randn(2, 12, 5, 5)
        >>> y = convert_channel_order(x, 2, "crd", "dcr")
        >>> bool(torch.equal(pixel_shuffle(y, 2, order="dcr"), pixel_shuffle(x, 2)))
        True
        >>> bool(torch.equal(convert_channel_order(y, 2, "dcr", "crd"), x))
        True
    """
    src = check_order(src, "src")
    dst = check_order(dst, "dst")
    factors = as_factor(factor, ndim, input.dim())
    r_total = math.prod(factors)
    dim = dim % input.dim()
    size = input.shape[dim]
    if size % r_total != 0:
        raise ValueError(
            f"dimension {dim} of input must be divisible by the product of the factors {factors} = {r_total}, "
            f"got {size} (input shape {tuple(input.shape)})"
        )
    if src == dst:
        return input
    c = size // r_total
    split = (c, r_total) if src == "crd" else (r_total, c)
    shape = list(input.shape)
    x = input.reshape(*shape[:dim], *split, *shape[dim + 1 :])
    return x.transpose(dim, dim + 1).reshape(shape)


class _PixelShuffleNd(nn.Module):
    _ndim: int = 0
    _unshuffle: bool = False

    def __init__(self, factor: int | Sequence[int], order: ChannelOrder = "crd") -> None:
        super().__init__()
        check_ndim(self._ndim)
        self.order: ChannelOrder = check_order(order)
        self.factor = as_factor(factor, self._ndim, self._ndim + 2)

    def forward(self, input: Tensor) -> Tensor:
        fn = pixel_unshuffle if self._unshuffle else pixel_shuffle
        return fn(input, self.factor, order=self.order, ndim=self._ndim)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, order={self.order!r}"


class PixelShuffle1d(_PixelShuffleNd):
    """Periodic shuffling along one axis: ``(*, C·r, L) -> (*, C, L·r)``. See :func:`pixel_shuffle`.

    Examples:
        >>> PixelShuffle1d(4)(torch.zeros(2, 8, 16)).shape
        torch.Size([2, 2, 64])
    """

    _ndim = 1


class PixelShuffle2d(_PixelShuffleNd):
    """Periodic shuffling on two axes: ``(*, C·r_h·r_w, H, W) -> (*, C, H·r_h, W·r_w)``. See :func:`pixel_shuffle`.

    Examples:
        >>> PixelShuffle2d((2, 3), order="dcr")(torch.zeros(1, 12, 4, 4)).shape
        torch.Size([1, 2, 8, 12])
    """

    _ndim = 2


class PixelShuffle3d(_PixelShuffleNd):
    """Periodic shuffling on three axes: ``(*, C·R, D, H, W) -> (*, C, D·r_d, H·r_h, W·r_w)``.

    Examples:
        >>> PixelShuffle3d(2)(torch.zeros(1, 16, 3, 4, 5)).shape
        torch.Size([1, 2, 6, 8, 10])
    """

    _ndim = 3


class PixelUnshuffle1d(_PixelShuffleNd):
    """Inverse periodic shuffling along one axis: ``(*, C, L·r) -> (*, C·r, L)``. See :func:`pixel_unshuffle`.

    Examples:
        >>> PixelUnshuffle1d(4)(torch.zeros(2, 2, 64)).shape
        torch.Size([2, 8, 16])
    """

    _ndim = 1
    _unshuffle = True


class PixelUnshuffle2d(_PixelShuffleNd):
    """Inverse periodic shuffling on two axes: ``(*, C, H·r_h, W·r_w) -> (*, C·R, H, W)``.

    Examples:
        >>> PixelUnshuffle2d(2)(torch.zeros(1, 3, 8, 8)).shape
        torch.Size([1, 12, 4, 4])
    """

    _ndim = 2
    _unshuffle = True


class PixelUnshuffle3d(_PixelShuffleNd):
    """Inverse periodic shuffling on three axes: ``(*, C, D·r_d, H·r_h, W·r_w) -> (*, C·R, D, H, W)``.

    Examples:
        >>> PixelUnshuffle3d((1, 2, 2))(torch.zeros(1, 1, 3, 4, 4)).shape
        torch.Size([1, 4, 3, 2, 2])
    """

    _ndim = 3
    _unshuffle = True
