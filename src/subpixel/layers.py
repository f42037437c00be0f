"""Modules for the upsampling forms: thin wrappers over :mod:`subpixel.functional`.

* :class:`SubPixelConv1d`, :class:`SubPixelConv2d`, :class:`SubPixelConv3d`: drop-in replacements for
  ``nn.ConvTranspose{1,2,3}d`` that hold their weight in LR form; ``forward`` is
  :func:`~subpixel.functional.lr_conv_shuffle` with the layer's arguments and its kept plan, which runs the LR
  convolution + periodic shuffling + crop or an exactly equivalent algorithm where it is valid and faster.
* :class:`FractionallyStridedConv1d`, :class:`FractionallyStridedConv2d`, :class:`FractionallyStridedConv3d`:
  ``nn.ConvTranspose{1,2,3}d`` with the same parameters, computed as zero-insertion and a stride-1 convolution
  in HR space (the sub-pixel convolution of the paper; slow, for study and checking).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from subpixel import dispatch
from subpixel._validation import ChannelOrder, as_tuple, check_order
from subpixel.config import check_algorithm
from subpixel.errors import SubpixelError
from subpixel.functional import (
    conv_transpose_weight_to_lr,
    fractionally_strided_conv,
    lr_conv_shuffle,
    lr_kernel_size,
    output_padding_for_size,
)
from subpixel.reparametrize import ConvTransposeToLR

__all__ = [
    "FractionallyStridedConv1d",
    "FractionallyStridedConv2d",
    "FractionallyStridedConv3d",
    "SubPixelConv1d",
    "SubPixelConv2d",
    "SubPixelConv3d",
    "SubPixelConvNd",
]

IntOrTuple = int | Sequence[int]


class SubPixelConvNd(nn.Module):
    """Base class of :class:`SubPixelConv1d`, :class:`SubPixelConv2d` and :class:`SubPixelConv3d`."""

    _ndim: int = 0
    algorithm: str | None = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        order: ChannelOrder = "crd",
        algorithm: str | None = None,
    ) -> None:
        super().__init__()
        n = self._ndim
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SubpixelError(f"{name} must be a positive int, got {value!r}")
        if in_channels % groups != 0:
            raise SubpixelError(f"in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups != 0:
            raise SubpixelError(f"out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise SubpixelError(
                f"padding_mode must be 'zeros' (the only mode a transposed convolution supports), got {padding_mode!r}"
            )
        self.order: ChannelOrder = check_order(order)
        #: force an algorithm for this layer where valid (see :mod:`subpixel.dispatch`); ``None``: automatic
        self.algorithm = check_algorithm(algorithm, "algorithm")
        if self.order == "dcr" and groups != 1:
            raise SubpixelError(f"order='dcr' needs groups == 1, got groups={groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = as_tuple(kernel_size, n, "kernel_size", minimum=1)
        self.stride = as_tuple(stride, n, "stride", minimum=1)
        self.padding = as_tuple(padding, n, "padding", minimum=0)
        self.output_padding = as_tuple(output_padding, n, "output_padding", minimum=0)
        self.dilation = as_tuple(dilation, n, "dilation", minimum=1)
        for a, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if a >= max(s, d):
                raise SubpixelError(
                    f"output_padding must be smaller than either stride or dilation on every axis, got "
                    f"output_padding={self.output_padding}, stride={self.stride}, dilation={self.dilation}"
                )
        self.groups = groups
        self.padding_mode = padding_mode
        self.lr_kernel_size = tuple(
            lr_kernel_size(k, s, d)
            for k, s, d in zip(self.kernel_size, self.stride, self.dilation, strict=True)
        )
        self._site = dispatch.CallSite()  # the last plan, for the steady state of forward
        factory = {"device": device, "dtype": dtype}
        r_total = math.prod(self.stride)
        self.weight = nn.Parameter(
            torch.empty((out_channels * r_total, in_channels // groups, *self.lr_kernel_size), **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:  # registered as a missing parameter, as torch's layers do (a plain ``None`` attribute is not)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as ``nn.ConvTranspose`` does (same distribution of every tap), then convert to LR form.

        Positions of the LR kernel that no ConvTranspose tap reaches are zero. Use :func:`subpixel.icnr_` for
        the checkerboard-free initialisation instead.
        """
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        w = torch.empty(shape, device=self.weight.device, dtype=self.weight.dtype)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        with torch.no_grad():
            self.weight.copy_(
                conv_transpose_weight_to_lr(w, self.stride, self.dilation, self.groups, order=self.order)
            )
            if self.bias is not None:
                fan_in = shape[1] * math.prod(self.kernel_size)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_lr_kernel(
        cls,
        in_channels: int,
        out_channels: int,
        scale: IntOrTuple,
        lr_kernel_size: IntOrTuple = 3,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        order: ChannelOrder = "crd",
    ) -> SubPixelConvNd:
        """The ESPCN layer: a stride-1 LR convolution with an odd kernel and 'same' zero padding, then the shuffle.

        As a transposed convolution it has kernel ``K·r``, stride ``r`` and padding ``r·(K − 1)/2``, so the output
        is exactly ``r`` times the input on every axis and nothing is cropped.

        Args:
            in_channels: input channels.
            out_channels: output channels (the LR convolution has ``out_channels·∏r``).
            scale: upscaling factor ``r``, an int or one per axis.
            lr_kernel_size: odd size ``K`` of the LR kernel.

        Examples:
            >>> layer = SubPixelConv2d.from_lr_kernel(32, 1, scale=3)
            >>> layer.weight.shape, layer(torch.randn(1, 32, 10, 12)).shape
            (torch.Size([9, 32, 3, 3]), torch.Size([1, 1, 30, 36]))
        """
        n = cls._ndim
        scales = as_tuple(scale, n, "scale", minimum=1)
        k_lr = as_tuple(lr_kernel_size, n, "lr_kernel_size", minimum=1)
        if any(k % 2 == 0 for k in k_lr):
            raise SubpixelError(f"lr_kernel_size must be odd for 'same' padding, got {lr_kernel_size!r}")
        return cls(
            in_channels,
            out_channels,
            kernel_size=tuple(k * r for k, r in zip(k_lr, scales, strict=True)),
            stride=scales,
            padding=tuple(r * (k - 1) // 2 for k, r in zip(k_lr, scales, strict=True)),
            bias=bias,
            device=device,
            dtype=dtype,
            order=order,
        )

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        """Same signature and result as ``nn.ConvTranspose*.forward``: :func:`~subpixel.functional.lr_conv_shuffle`
        with the layer's arguments and its kept plan.

        Shape:
            - input: ``(N, C_in, *L_in)`` or ``(C_in, *L_in)``.
            - output: ``(N, C_out, *L_out)``, ``L_out = (L_in − 1)·s − 2p + d·(k − 1) + output_padding + 1``.
        """
        output_padding = (
            self.output_padding if output_size is None else self._output_padding(input, output_size)
        )
        weight_lr, weight_ct, fixed_taps, fresh = self._weights()
        return lr_conv_shuffle(
            input,
            weight_lr,
            self.bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
            self.kernel_size,
            order=self.order,
            algorithm=self.algorithm,
            fixed_taps=fixed_taps,
            weight_ct=weight_ct,
            fresh_weight=fresh,
            site=getattr(self, "_site", None),
        )

    def plan(self, input: Tensor, output_size: Sequence[int] | None = None) -> dispatch.Plan | None:
        """The :class:`~subpixel.dispatch.Plan` (algorithm and why) that ``forward(input, output_size)`` follows in
        the current grad mode; ``None`` under tracing, compiling or export (the LR form runs).

        Like ``forward``, it evaluates the weight's parametrizations (a spectral norm's power iteration steps in
        training mode): call it under ``torch.no_grad()`` in eval mode to leave their state alone."""
        args = self._arguments(input, output_size)
        weight_lr, weight_ct, fixed_taps, fresh = self._weights()
        return dispatch.plan(
            input,
            weight_lr,
            self.bias,
            *args,
            order=self.order,
            algorithm=self.algorithm,
            fixed_taps=fixed_taps,
            weight_ct=weight_ct,
            fresh_weight=fresh,
        )

    def _weights(self) -> tuple[Tensor | None, Tensor | None, bool, bool]:
        """``(weight_lr, weight_ct, fixed_taps, fresh_weight)`` for :func:`~subpixel.functional.lr_conv_shuffle`.

        A weight held in ConvTranspose layout (a parametrization chain ending in
        :class:`~subpixel.reparametrize.ConvTransposeToLR` of this layer's geometry, as :func:`subpixel.convert_model`
        makes) is given as ``weight_ct``: the chain is evaluated without its last step, so torch's own transposed
        convolution can run on it as it is. Otherwise the LR weight ``self.weight``, and ``fixed_taps`` when a
        parametrization marked ``subpixel_fixed_taps = True`` computes it (the LR entries no tap reaches are zero by
        construction and their gradients go nowhere; see :func:`~subpixel.functional.lr_conv_shuffle`). ``fresh_weight``: the
        weight given is computed on this call (weight norm, spectral norm, ...), a new tensor every time.
        """
        # read through nn.Module's registries: the public route (parametrize.is_parametrized, the
        # ``parametrizations`` attribute, ``chain.original``) goes through Module.__getattr__ three times, 2-4 µs
        # per forward measured, about the whole per-call budget of a small layer
        plain = self._parameters.get("weight")
        if plain is not None:
            return plain, None, False, False
        plists = self._modules.get("parametrizations")
        chain = None if plists is None else plists._modules.get("weight")
        if chain is None:  # a hook-style reparametrization: the LR weight is computed before every forward
            return self.weight, None, False, True
        steps = list(chain._modules.values())
        last = steps[-1]
        if type(last) is ConvTransposeToLR and last.matches(self):
            if len(steps) == 1 and chain.is_tensor:
                held = chain._parameters.get("original")
                return None, chain.original if held is None else held, True, False
            if chain.is_tensor:
                value = steps[0](chain.original)
            else:
                value = steps[0](*(getattr(chain, f"original{i}") for i in range(chain.ntensors)))
            for step in steps[1:-1]:
                value = step(value)
            return None, value, True, True
        fixed = any(getattr(p, "subpixel_fixed_taps", False) for p in steps)
        return self.weight, None, fixed, True

    def _output_padding(self, input: Tensor, output_size: Sequence[int]) -> tuple[int, ...]:
        """The output padding that gives ``output_size`` (as ``nn.ConvTranspose*d`` computes it)."""
        return output_padding_for_size(
            input.shape[-self._ndim :],
            output_size,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
        )

    def _arguments(self, input: Tensor, output_size: Sequence[int] | None) -> tuple:
        """stride, padding, output padding (from ``output_size`` if given), groups, dilation, kernel size."""
        output_padding = (
            self.output_padding if output_size is None else self._output_padding(input, output_size)
        )
        return (self.stride, self.padding, output_padding, self.groups, self.dilation, self.kernel_size)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if any(self.padding):
            s += f", padding={self.padding}"
        if any(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s + f", lr_kernel_size={self.lr_kernel_size}, order={self.order!r}"


class SubPixelConv1d(SubPixelConvNd):
    """Drop-in replacement for ``nn.ConvTranspose1d`` computed in LR space: conv, periodic shuffle, crop.

    Same arguments (plus ``order``, the internal channel order of the LR weight) and the same output.

    Shape:
        - input: ``(N, C_in, L_in)``; weight: ``(C_out·s, C_in/groups, K)`` with ``K = ⌊d (k−1)/s⌋ + 1``.
        - output: ``(N, C_out, L_out)``, ``L_out = (L_in − 1)·s − 2p + d·(k − 1) + output_padding + 1``.

    Examples:
        >>> layer = SubPixelConv1d(512, 256, kernel_size=16, stride=8, padding=4)   # HiFi-GAN up-sampler
        >>> layer.weight.shape, layer(torch.randn(1, 512, 32)).shape
        (torch.Size([2048, 512, 2]), torch.Size([1, 256, 256]))
    """

    _ndim = 1


class SubPixelConv2d(SubPixelConvNd):
    """Drop-in replacement for ``nn.ConvTranspose2d`` computed in LR space: conv, periodic shuffle, crop.

    Shape:
        - input: ``(N, C_in, H, W)``; weight: ``(C_out·s_h·s_w, C_in/groups, K_h, K_w)``.
        - output: ``(N, C_out, H_out, W_out)`` with the ConvTranspose2d output size.

    Examples:
        >>> layer = SubPixelConv2d(64, 32, kernel_size=4, stride=2, padding=1)
        >>> layer.weight.shape, layer(torch.randn(2, 64, 8, 8)).shape
        (torch.Size([128, 64, 2, 2]), torch.Size([2, 32, 16, 16]))
    """

    _ndim = 2


class SubPixelConv3d(SubPixelConvNd):
    """Drop-in replacement for ``nn.ConvTranspose3d`` computed in LR space: conv, periodic shuffle, crop.

    Shape:
        - input: ``(N, C_in, D, H, W)``; weight: ``(C_out·s_d·s_h·s_w, C_in/groups, K_d, K_h, K_w)``.
        - output: ``(N, C_out, D_out, H_out, W_out)`` with the ConvTranspose3d output size.

    Examples:
        >>> layer = SubPixelConv3d(8, 4, kernel_size=3, stride=2, padding=1, output_padding=1)
        >>> layer.weight.shape, layer(torch.randn(1, 8, 4, 4, 4)).shape
        (torch.Size([32, 8, 2, 2, 2]), torch.Size([1, 4, 8, 8, 8]))
    """

    _ndim = 3


def _fractional_forward(
    self: nn.modules.conv._ConvTransposeNd, input: Tensor, output_size: Sequence[int] | None = None
) -> Tensor:
    n = len(self.kernel_size)
    output_padding = self.output_padding
    if output_size is not None:
        output_padding = output_padding_for_size(
            input.shape[-n:], output_size, self.kernel_size, self.stride, self.padding, self.dilation
        )
    return fractionally_strided_conv(
        input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
    )


class FractionallyStridedConv1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` computed as zero-insertion + stride-1 convolution with the flipped kernel.

    Same parameters and ``state_dict`` as ``nn.ConvTranspose1d``; see :func:`subpixel.functional.fractionally_strided_conv`.

    Examples:
        >>> FractionallyStridedConv1d(4, 2, 4, stride=2, padding=1)(torch.randn(1, 4, 8)).shape
        torch.Size([1, 2, 16])
    """

    forward = _fractional_forward  # type: ignore[assignment]


class FractionallyStridedConv2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` computed as zero-insertion + stride-1 convolution with the flipped kernel.

    Examples:
        >>> FractionallyStridedConv2d(4, 2, 3, stride=2)(torch.randn(1, 4, 5, 5)).shape
        torch.Size([1, 2, 11, 11])
    """

    forward = _fractional_forward  # type: ignore[assignment]


class FractionallyStridedConv3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` computed as zero-insertion + stride-1 convolution with the flipped kernel.

    Examples:
        >>> FractionallyStridedConv3d(2, 2, 2, stride=2)(torch.randn(1, 2, 3, 3, 3)).shape
        torch.Size([1, 2, 6, 6, 6])
    """

    forward = _fractional_forward  # type: ignore[assignment]
