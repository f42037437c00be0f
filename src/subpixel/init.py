"""ICNR initialisation (Aitken et al., arXiv 1707.02937) for LR-space upsampling layers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from subpixel._validation import ChannelOrder, as_tuple, check_order
from subpixel.errors import SubpixelError
from subpixel.layers import SubPixelConvNd

__all__ = ["icnr_"]


def icnr_(
    target: SubPixelConvNd | Tensor,
    factor: int | Sequence[int] | None = None,
    *,
    order: ChannelOrder | None = None,
    init: Callable[[Tensor], object] = nn.init.kaiming_normal_,
) -> Tensor:
    """Initialise an LR weight so that the layer starts as a convolution followed by nearest-neighbour upsampling.

    One LR sub-kernel per output channel is drawn with ``init`` and copied to all ``R = ∏ r`` phases of that
    channel. In the ``"crd"`` order the ``R`` copies of channel ``c`` are the *consecutive* channels
    ``c·R .. c·R + R − 1`` (``repeat_interleave``); in ``"dcr"`` they are ``c, c + C, ..`` (``repeat``). The common
    ``weight.repeat(r*r, 1, 1, 1)`` is the DCR pattern and is wrong for PyTorch's CRD shuffle when ``C > 1``.

    Args:
        target: a :class:`SubPixelConvNd` (its stride and order are used) or an LR weight tensor.
        factor: the shuffle factor, needed for a tensor.
        order: channel order, needed for a tensor (default ``"crd"``); taken from the module otherwise.
        init: initialiser applied in place to the sub-kernel ``(C, C_in/groups, *K)``.

    Returns:
        The initialised weight (modified in place).

    Shape:
        - weight: ``(C·R, C_in/groups, *K)``.

    Examples:
        >>> from subpixel.layers import SubPixelConv2d
        >>> layer = SubPixelConv2d.from_lr_kernel(4, 3, scale=2)
        >>> w = icnr_(layer)
        >>> bool(torch.equal(w[0], w[3])), bool(torch.equal(w[0], w[4]))
        (True, False)
    """
    if isinstance(target, SubPixelConvNd):
        weight = target.weight
        factors: tuple[int, ...] = target.stride
        if order is not None and check_order(order) != target.order:
            raise SubpixelError(f"order={order!r} differs from the module's order {target.order!r}")
        chosen = target.order
    elif isinstance(target, Tensor):
        weight = target
        if factor is None:
            raise SubpixelError("factor is required when target is a weight tensor")
        if weight.dim() not in (3, 4, 5):
            raise SubpixelError(
                f"weight must have 3 to 5 dims (C·R, C_in/groups, *K), got shape {tuple(weight.shape)}"
            )
        factors = as_tuple(factor, weight.dim() - 2, "factor", minimum=1)
        chosen = check_order(order or "crd")
    else:
        raise TypeError(f"target must be a SubPixelConvNd or a Tensor, got {type(target).__name__}")
    r_total = math.prod(factors)
    if weight.shape[0] % r_total != 0:
        raise SubpixelError(
            f"weight.shape[0] ({weight.shape[0]}) must be divisible by the product of the factors {factors} = {r_total}"
        )
    sub = torch.empty(
        (weight.shape[0] // r_total, *weight.shape[1:]), device=weight.device, dtype=weight.dtype
    )
    init(sub)
    full = (
        sub.repeat_interleave(r_total, dim=0)
        if chosen == "crd"
        else sub.repeat(r_total, *[1] * (sub.dim() - 1))
    )
    with torch.no_grad():
        weight.copy_(full)
    return weight
