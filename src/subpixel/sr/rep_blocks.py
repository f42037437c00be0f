"""Re-parameterizable convolutions: train a block of parallel *linear* branches, deploy one plain convolution.

A :class:`RepConv2d` holds the parameters of several linear branches that all map ``(N, C_in, H, W)`` to
``(N, C_out, H, W)`` (after ECBSR, Zhang et al. 2021, and SESR, Bhardwaj et al. 2022):

* ``"conv"``: a ``k×k`` convolution;
* ``"expand"``: a ``1×1`` convolution to ``expand·C_out`` channels, then a ``k×k`` convolution back to ``C_out``;
* ``"sobel_x"``, ``"sobel_y"``, ``"laplacian"``: a ``1×1`` convolution, then a fixed 3×3 edge filter per
  channel with a learned per-channel scale and bias (``k = 3`` only);
* ``"identity"``: the input itself (``C_in == C_out``).

The block's output is the sum of the branches. Every branch is linear, so the sum is **one** ``k×k``
convolution: kernels compose by contraction over the middle channels and add, and a bias inside a branch
passes through the second convolution as the constant ``Σ W₂·b₁``. That holds at the image border too, provided
the intermediate map of a two-stage branch is padded with its bias value rather than zero: the collapsed
convolution sees zero-padded *input*, and a ``1×1`` convolution maps a zero input pixel to its bias.
:meth:`RepConv2d.forward_branches` computes the branches that way, one by one — the definition —, and
:func:`collapse_branches` gives the single kernel and bias; they agree to rounding (tested to 1e-10 in
float64, borders included).

Training uses the collapsed form too (:meth:`RepConv2d.forward`: the kernel is recomputed from the branch
parameters on every call, differentiably, as SESR does), so a training step costs the plain network's
convolution plus a few tiny weight-only products, while the gradients are those of the branch parameters.

Examples:
    >>> block = RepConv2d(4, 6, 3)
    >>> x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    >>> block = block.double()
    >>> conv = block.collapse()
    >>> conv.weight.shape
    torch.Size([6, 4, 3, 3])
    >>> bool((conv(x) - block.forward_branches(x)).abs().max() < 1e-12)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subpixel._validation import check_positive_int
from subpixel.errors import SubpixelError

__all__ = [
    "BRANCHES",
    "EDGE_FILTERS",
    "RepConv2d",
    "applicable_branches",
    "collapse_branches",
    "compose_1x1_kxk",
]

#: every branch kind :class:`RepConv2d` knows
BRANCHES = ("conv", "expand", "sobel_x", "sobel_y", "laplacian", "identity")

#: the fixed 3×3 filters of the edge branches (ECBSR's)
EDGE_FILTERS: dict[str, tuple[tuple[float, ...], ...]] = {
    "sobel_x": ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0)),
    "sobel_y": ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0)),
    "laplacian": ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)),
}


def applicable_branches(
    names: Sequence[str], in_channels: int, out_channels: int, kernel_size: int
) -> tuple[str, ...]:
    """The branches of ``names`` that a block of this shape can have (``("conv",)`` when none can).

    ``"identity"`` needs ``in_channels == out_channels``; the edge branches need ``kernel_size == 3``.

    Examples:
        >>> applicable_branches(("conv", "sobel_x", "identity"), 1, 8, 3)
        ('conv', 'sobel_x')
        >>> applicable_branches(("identity",), 1, 8, 5)
        ('conv',)
    """
    kept = tuple(
        b
        for b in names
        if not (b == "identity" and in_channels != out_channels)
        and not (b in EDGE_FILTERS and kernel_size != 3)
    )
    return kept or ("conv",)


def compose_1x1_kxk(
    w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """The one convolution equal to a ``1×1`` convolution followed by a ``k×k`` one.

    Exact at the border when the intermediate map is padded with ``b1`` (see the module docstring).

    Args:
        w1: ``(M, C_in, 1, 1)`` first kernel; b1: ``(M,)`` or ``None``.
        w2: ``(C_out, M, k, k)`` second kernel; b2: ``(C_out,)`` or ``None``.

    Returns:
        ``(weight, bias)``: ``(C_out, C_in, k, k)`` and ``(C_out,)`` (``None`` when both biases are ``None``).

    Examples:
        >>> w, b = compose_1x1_kxk(torch.ones(2, 3, 1, 1), torch.ones(2), torch.ones(4, 2, 3, 3), None)
        >>> w.shape, b.shape, float(b[0])  # 9 taps × 2 channels × bias 1
        (torch.Size([4, 3, 3, 3]), torch.Size([4]), 18.0)
    """
    weight = torch.einsum("omhw,mi->oihw", w2, w1[:, :, 0, 0])
    bias = None
    if b1 is not None:
        bias = torch.einsum("omhw,m->o", w2, b1)
    if b2 is not None:
        bias = b2 if bias is None else bias + b2
    return weight, bias


def collapse_branches(block: RepConv2d) -> tuple[Tensor, Tensor | None]:
    """The kernel and bias of the single convolution equal to ``block`` (differentiable).

    Shape:
        - returns ``(C_out, C_in, k, k)`` and ``(C_out,)`` (or ``None`` for a block without bias).
    """
    k = block.kernel_size
    weight = block.anchor.new_zeros(block.out_channels, block.in_channels, k, k)
    bias = block.anchor.new_zeros(block.out_channels) if block.bias is not None else None
    for kind in block.branches:
        w, b = _branch_kernel(block, kind)
        weight = weight + w
        if bias is not None and b is not None:
            bias = bias + b
    if block.bias is not None:
        bias = bias + block.bias  # type: ignore[operator]
    return weight, bias


def _edge_kernel(block: RepConv2d, kind: str) -> Tensor:
    """``(C_out, C_out, 3, 3)``: the fixed filter ``kind`` times the learned scale, on the diagonal."""
    filt = torch.tensor(EDGE_FILTERS[kind], dtype=block.anchor.dtype, device=block.anchor.device)
    scale = getattr(block, f"{kind}_scale")
    eye = torch.eye(block.out_channels, dtype=filt.dtype, device=filt.device)
    return eye[:, :, None, None] * (scale[:, None, None, None] * filt)


def _branch_kernel(block: RepConv2d, kind: str) -> tuple[Tensor, Tensor | None]:
    k = block.kernel_size
    if kind == "conv":
        return block.conv_weight, block.conv_bias
    if kind == "expand":
        return compose_1x1_kxk(block.expand_w1, block.expand_b1, block.expand_w2, block.expand_b2)
    if kind == "identity":
        w = block.anchor.new_zeros(block.out_channels, block.in_channels, k, k)
        idx = torch.arange(block.out_channels, device=w.device)
        w[idx, idx, k // 2, k // 2] = 1.0
        return w, None
    w1, b1 = getattr(block, f"{kind}_w1"), getattr(block, f"{kind}_b1")
    return compose_1x1_kxk(w1, b1, _edge_kernel(block, kind), getattr(block, f"{kind}_b2"))


def _pad_with(x: Tensor, value: Tensor | None, pad: int) -> Tensor:
    """Pad the last two axes by ``pad`` with a per-channel constant ``value`` (``(C,)``; ``None`` = 0)."""
    if value is None:
        return F.pad(x, (pad,) * 4)
    v = value[None, :, None, None]
    return F.pad(x - v, (pad,) * 4) + v


class RepConv2d(nn.Module):
    """A ``k×k`` 'same' convolution trained as a sum of linear branches; :meth:`collapse` gives the plain one.

    Args:
        in_channels, out_channels: channels.
        kernel_size: odd ``k``.
        branches: branch kinds from :data:`BRANCHES` (edge branches need ``k = 3``; ``"identity"`` needs
            ``in_channels == out_channels``).
        expand: channel multiplier of the ``"expand"`` branch's middle layer.
        bias: a learned output bias. Without it the branches carry no bias either, so the collapsed
            convolution has none (used before a shuffle whose bias is shared by the phases).
        device, dtype: factory arguments.

    Shape:
        - input: ``(N, C_in, H, W)``; output: ``(N, C_out, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        branches: Sequence[str] = ("conv", "expand", "sobel_x", "sobel_y", "laplacian"),
        expand: int = 2,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("expand", expand)):
            check_positive_int(value, name)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise SubpixelError(f"kernel_size must be an odd positive int, got {kernel_size!r}")
        branches = tuple(branches)
        unknown = [b for b in branches if b not in BRANCHES]
        if unknown or not branches or len(set(branches)) != len(branches):
            raise SubpixelError(f"branches must be distinct names from {BRANCHES}, got {branches!r}")
        if kernel_size != 3 and any(b in EDGE_FILTERS for b in branches):
            raise SubpixelError(f"edge branches {tuple(EDGE_FILTERS)} need kernel_size=3, got {kernel_size}")
        if "identity" in branches and in_channels != out_channels:
            raise SubpixelError(
                f"the 'identity' branch needs in_channels == out_channels, got {in_channels} and {out_channels}"
            )
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.branches = branches
        self.expand = expand
        f = {"device": device, "dtype": dtype}
        k, ci, co = kernel_size, in_channels, out_channels

        def param(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(*shape, **f))

        def maybe(*shape: int) -> nn.Parameter | None:
            return param(*shape) if bias else None

        if "conv" in branches:
            self.conv_weight = param(co, ci, k, k)
            self.conv_bias = maybe(co)
        if "expand" in branches:
            mid = expand * co
            self.expand_w1, self.expand_b1 = param(mid, ci, 1, 1), maybe(mid)
            self.expand_w2, self.expand_b2 = param(co, mid, k, k), maybe(co)
        for kind in EDGE_FILTERS:
            if kind in branches:
                setattr(self, f"{kind}_w1", param(co, ci, 1, 1))
                setattr(self, f"{kind}_b1", maybe(co))
                setattr(self, f"{kind}_scale", param(co))
                setattr(self, f"{kind}_b2", maybe(co))
        self.bias = maybe(co)
        #: an empty tensor that carries the block's dtype and device (an identity block has no parameter)
        self.register_buffer("anchor", torch.empty(0, **f), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's conv init for the kernels; edge scales and inner biases small (ECBSR's ±1e-3 normal)."""
        k = self.kernel_size
        for name, p in self.named_parameters():
            if p.dim() == 4:
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            elif name.endswith("_scale"):
                nn.init.normal_(p, std=1e-3)
            elif name == "bias":
                nn.init.zeros_(p)
            else:
                fan_in = self.in_channels * k * k
                nn.init.uniform_(p, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def kernel(self) -> tuple[Tensor, Tensor | None]:
        """The collapsed ``(C_out, C_in, k, k)`` kernel and ``(C_out,)`` bias (see :func:`collapse_branches`)."""
        return collapse_branches(self)

    def forward(self, input: Tensor) -> Tensor:
        """The block as one convolution with the collapsed kernel (same function as :meth:`forward_branches`).

        Shape:
            - input: ``(N, C_in, H, W)``; output: ``(N, C_out, H, W)``.
        """
        weight, bias = self.kernel()
        return F.conv2d(input, weight, bias, padding=self.kernel_size // 2)

    def forward_branches(self, input: Tensor) -> Tensor:
        """The definition: every branch computed on its own (intermediate maps padded with their bias), summed.

        Shape:
            - input: ``(N, C_in, H, W)``; output: ``(N, C_out, H, W)``.
        """
        p = self.kernel_size // 2
        out = torch.zeros_like(input[:, :1]).expand(-1, self.out_channels, -1, -1)
        for kind in self.branches:
            if kind == "conv":
                y = F.conv2d(input, self.conv_weight, self.conv_bias, padding=p)
            elif kind == "identity":
                y = input
            else:
                w1, b1 = getattr(self, f"{kind}_w1"), getattr(self, f"{kind}_b1")
                if kind == "expand":
                    w2, b2 = self.expand_w2, self.expand_b2
                    mid = F.conv2d(input, w1, b1)
                    y = F.conv2d(_pad_with(mid, b1, p), w2, b2)
                else:
                    filt = torch.tensor(EDGE_FILTERS[kind], dtype=input.dtype, device=input.device)
                    mid = F.conv2d(input, w1, b1)
                    scale = getattr(self, f"{kind}_scale")
                    depthwise = scale[:, None, None, None] * filt  # (C, 1, 3, 3)
                    y = F.conv2d(
                        _pad_with(mid, b1, p),
                        depthwise,
                        getattr(self, f"{kind}_b2"),
                        groups=self.out_channels,
                    )
            out = out + y
        if self.bias is not None:
            out = out + self.bias[None, :, None, None]
        return out

    @torch.no_grad()
    def set_kernel(self, weight: Tensor, bias: Tensor | None) -> None:
        """Set the branches so that the block equals the convolution ``(weight, bias)``, staying trainable.

        The ``"conv"`` branch takes the kernel (minus the identity, if any); the second factor of every
        two-stage branch is zeroed (its first factor stays, so gradients still reach both), and so are the
        branch biases. Used to warm-start from collapsed weights.

        Shape:
            - weight: ``(C_out, C_in, k, k)``; bias: ``(C_out,)`` or ``None`` (for a block without bias).
        """
        if "conv" not in self.branches:
            raise SubpixelError(f"set_kernel needs a 'conv' branch, the block has {self.branches}")
        expected = (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        if tuple(weight.shape) != expected:
            raise SubpixelError(f"weight must have shape {expected}, got {tuple(weight.shape)}")
        if (bias is None) != (self.bias is None):
            raise SubpixelError(f"bias must be {'given' if self.bias is not None else 'None'} for this block")
        kernel = weight.clone()
        if "identity" in self.branches:
            kernel = kernel - _branch_kernel(self, "identity")[0]
        self.conv_weight.copy_(kernel)
        for name, p in self.named_parameters():
            if name.endswith(("_b1", "_b2", "_bias")) or name == "bias":
                p.zero_()
            if name == "expand_w2" or name.endswith("_scale"):
                p.zero_()
        if bias is not None:
            self.bias.copy_(bias)  # type: ignore[union-attr]

    @torch.no_grad()
    def collapse(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` (padding ``k // 2``) computing the same function."""
        weight, bias = self.kernel()
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            padding=self.kernel_size // 2,
            bias=bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)  # type: ignore[union-attr]
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"branches={self.branches}, bias={self.bias is not None}"
        )
