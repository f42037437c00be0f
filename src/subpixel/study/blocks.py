"""The layers the study's tools share: pointwise activations and fixed resamplers.

:mod:`subpixel.study.lr_space` rewrites networks made of them and :mod:`subpixel.study.macs` counts their cost;
both import them from here (neither imports the other).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subpixel._validation import check_positive_int
from subpixel.bicubic import cubic, interpolation_taps  # the one Keys kernel and its taps, re-exported
from subpixel.errors import SubpixelError

__all__ = ["POINTWISE_ACTIVATIONS", "BicubicUpsample2d", "cubic", "interpolation_taps"]

#: Pointwise activations without parameters (they commute with periodic shuffling).
POINTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Softplus,
)


def _taps_to_conv_transpose(taps: Tensor) -> tuple[Tensor, int]:
    """1-D polyphase taps ``(r, 2P+1)`` -> (ConvTranspose kernel ``h`` with zero ends trimmed, its padding)."""
    r, width = taps.shape
    half = (width - 1) // 2
    # ConvTranspose: y[m] = Σ_n x[n] h[m + p − n r]; with m = u r + φ, n = u + j: h[φ + p − j r] = taps[φ, j]
    h = taps.new_zeros(width * r)
    for phi in range(r):
        for j in range(-half, half + 1):
            h[phi + half * r - j * r] = taps[phi, j + half]
    nz = torch.nonzero(h).flatten()
    lo, hi = int(nz.min()), int(nz.max())
    if lo + hi + 1 != width * r:  # the trimmed kernel must stay centred for an output of exactly r·L
        lo, hi = 0, width * r - 1
    return h[lo : hi + 1].clone(), half * r - lo


class BicubicUpsample2d(nn.Module):
    """Bicubic upsampling by an integer factor, written as a fixed depthwise transposed convolution.

    The resampler, precisely: output pixel ``(u·r + φ_h, v·r + φ_w)`` sits at input position
    ``(u + δ_h, v + δ_w)``, ``δ = (φ + ½)/r − ½`` (pixel centres aligned, as MATLAB's ``imresize`` and
    ``align_corners=False``), and is ``Σ x[u + i, v + j]·c(δ_h − i)·c(δ_w − j)`` with Keys' kernel
    :func:`cubic` (``a = −0.5``: MATLAB's bicubic). Samples outside the image are the nearest edge sample
    (``edge="replicate"``) or zero (``edge="zeros"``). Computation: replication padding of 2 LR pixels (for
    ``"replicate"``), then ``conv_transpose2d`` with stride ``r`` and the separable kernel ``h ⊗ h``,
    ``h[q] = c((q − p − (r − 1)/2)/r)``, whose zero end taps are trimmed (``4r − 1`` taps for odd ``r``,
    ``4r`` for even ``r``). With ``edge="zeros"`` it *is* an ``nn.ConvTranspose2d`` (see :meth:`as_conv_transpose`).

    Args:
        scale: integer factor ``r``.
        channels: number of channels (each resampled on its own).
        a: cubic kernel parameter (−0.5 MATLAB, −0.75 PyTorch).
        edge: ``"replicate"`` or ``"zeros"``.

    Shape:
        - input: ``(N, C, H, W)``; output: ``(N, C, r·H, r·W)``.

    Examples:
        >>> up = BicubicUpsample2d(3)
        >>> up.weight.shape, up(torch.ones(1, 1, 4, 5)).shape
        (torch.Size([1, 1, 11, 11]), torch.Size([1, 1, 12, 15]))
        >>> bool(torch.allclose(up(torch.ones(1, 1, 4, 5)), torch.ones(1, 1, 12, 15)))   # constants stay
        True
    """

    def __init__(
        self,
        scale: int,
        channels: int = 1,
        *,
        a: float = -0.5,
        edge: str = "replicate",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(scale, "scale")
        check_positive_int(channels, "channels")
        if edge not in ("replicate", "zeros"):
            raise SubpixelError(f"edge must be 'replicate' or 'zeros', got {edge!r}")
        self.scale, self.channels, self.a, self.edge = scale, channels, a, edge
        taps = interpolation_taps(scale, "bicubic", a)
        h, pad = _taps_to_conv_transpose(taps)
        self.half = (taps.shape[1] - 1) // 2
        self.kernel_size = (h.numel(), h.numel())
        self.stride = (scale, scale)
        self.padding = (pad, pad)
        w = (h[:, None] * h[None, :]).expand(channels, 1, -1, -1).contiguous()
        self.register_buffer("weight", w.to(device=device, dtype=dtype or torch.get_default_dtype()))

    def forward(self, input: Tensor) -> Tensor:
        """Upsample ``input`` of shape ``(N, C, H, W)`` to ``(N, C, r·H, r·W)``."""
        if input.dim() != 4 or input.shape[1] != self.channels:
            raise SubpixelError(f"input must have shape (N, {self.channels}, H, W), got {tuple(input.shape)}")
        pad = self.padding[0]
        if self.edge == "replicate":
            input = F.pad(input, (self.half,) * 4, mode="replicate")
            pad += self.half * self.scale
        return F.conv_transpose2d(input, self.weight, None, self.scale, pad, groups=self.channels)

    def as_conv_transpose(self, padding: int | None = None) -> nn.ConvTranspose2d:
        """The ``nn.ConvTranspose2d`` with this resampler's kernel and stride, weights frozen.

        With the default ``padding`` it equals this module when ``edge="zeros"``. With ``edge="replicate"`` this
        module is ``ReplicationPad2d(2)`` followed by ``as_conv_transpose(padding=self.padding[0] + 2·r)``.
        """
        w = self.weight
        pad = self.padding[0] if padding is None else padding
        layer = nn.ConvTranspose2d(
            self.channels,
            self.channels,
            self.kernel_size,
            self.scale,
            pad,
            groups=self.channels,
            bias=False,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(w)
        layer.weight.requires_grad_(False)
        return layer

    def extra_repr(self) -> str:
        return f"scale={self.scale}, channels={self.channels}, a={self.a}, edge={self.edge!r}"
