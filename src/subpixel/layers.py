"""Modules for the upsampling forms: thin wrappers over :mod:`subpixel.functional`.

* :class:`SubPixelConv1d`, :class:`SubPixelConv2d`, :class:`SubPixelConv3d`: drop-in replacements for
  ``nn.ConvTranspose{1,2,3}d`` that hold their weight in LR form and compute a stride-1 convolution in LR space,
  periodic shuffling and a crop.
* :class:`FractionallyStridedConv1d`, :class:`FractionallyStridedConv2d`, :class:`FractionallyStridedConv3d`:
  ``nn.ConvTranspose{1,2,3}d`` with the same parameters, computed as zero-insertion and a stride-1 convolution
  in HR space (the sub-pixel convolution of the paper; slow, for study and checking).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from subpixel import native
from subpixel._validation import ChannelOrder, as_tuple, check_order
from subpixel.functional import (
    AxisGeometry,
    _lr_conv_core,
    _phase_conv_core,
    _phase_plan,
    _phase_weight_valid,
    conv_transpose_weight_to_lr,
    fractionally_strided_conv,
    lr_conv_shuffle,
    lr_geometry,
    lr_kernel_size,
    lr_weight_to_conv_transpose,
    output_padding_for_size,
)
from subpixel.shuffle import _memory_format, _use_plain_path, convert_channel_order

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
    ) -> None:
        super().__init__()
        n = self._ndim
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if in_channels % groups != 0:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by groups ({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode != "zeros":
            raise ValueError(
                f"padding_mode must be 'zeros' (the only mode a transposed convolution supports), got {padding_mode!r}"
            )
        self.order: ChannelOrder = check_order(order)
        if self.order == "dcr" and groups != 1:
            raise ValueError(f"order='dcr' needs groups == 1, got groups={groups}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = as_tuple(kernel_size, n, "kernel_size", minimum=1)
        self.stride = as_tuple(stride, n, "stride", minimum=1)
        self.padding = as_tuple(padding, n, "padding", minimum=0)
        self.output_padding = as_tuple(output_padding, n, "output_padding", minimum=0)
        self.dilation = as_tuple(dilation, n, "dilation", minimum=1)
        for a, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if a >= max(s, d):
                raise ValueError(
                    f"output_padding must be smaller than either stride or dilation on every axis, got "
                    f"output_padding={self.output_padding}, stride={self.stride}, dilation={self.dilation}"
                )
        self.groups = groups
        self.padding_mode = padding_mode
        self.lr_kernel_size = tuple(
            lr_kernel_size(k, s, d)
            for k, s, d in zip(self.kernel_size, self.stride, self.dilation, strict=True)
        )
        factory = {"device": device, "dtype": dtype}
        r_total = math.prod(self.stride)
        self.weight = nn.Parameter(
            torch.empty((out_channels * r_total, in_channels // groups, *self.lr_kernel_size), **factory)
        )
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
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
            raise ValueError(f"lr_kernel_size must be odd for 'same' padding, got {lr_kernel_size!r}")
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
        """Same signature and result as ``nn.ConvTranspose*.forward``.

        Shape:
            - input: ``(N, C_in, *L_in)`` or ``(C_in, *L_in)``.
            - output: ``(N, C_out, *L_out)``, ``L_out = (L_in − 1)·s − 2p + d·(k − 1) + output_padding + 1``.
        """
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = output_padding_for_size(
                input.shape[-self._ndim :],
                output_size,
                self.kernel_size,
                self.stride,
                self.padding,
                self.dilation,
            )
        if parametrize.is_parametrized(self) or "weight" not in self._parameters:
            # a weight (or bias) computed at each access, by torch.nn.utils.parametrize or a weight-norm hook: read it
            # once (a stateful parametrization, spectral norm, steps once per forward as in torch's layer) and cache
            # nothing derived from it (a fresh tensor may reuse a freed one's address and version)
            return lr_conv_shuffle(
                input,
                self.weight,
                self.bias,
                self.stride,
                self.padding,
                output_padding,
                self.groups,
                self.dilation,
                self.kernel_size,
                order=self.order,
            )
        weight, order = self._weight_for(input)
        n = self._ndim
        if input.dim() == n + 2 and input.shape[1] == self.in_channels:
            geoms = self._geometry(tuple(input.shape[2:]), tuple(output_padding))
            r_total = math.prod(self.stride)
            if (
                tuple(weight.shape[2:]) == tuple(g.lr_kernel for g in geoms)
                and weight.shape[0] == self.out_channels * r_total
                and weight.shape[1] * self.groups == self.in_channels
                and (self.bias is None or tuple(self.bias.shape) == (self.out_channels,))
            ):  # the checks of lr_conv_shuffle, geometry cached per input size
                if self._fused_shuffle_ok(input, output_padding):
                    return self._fused_shuffle_forward(input)
                axes = self._phase_axes(input, geoms)
                if axes is not None:
                    return _phase_conv_core(input, self.weight, self.bias, axes, self.groups, self.order)
                return _lr_conv_core(input, weight, self.bias, geoms, self.stride, self.groups, order)
        return lr_conv_shuffle(  # unbatched input, or arguments to report
            input,
            weight,
            self.bias,
            self.stride,
            self.padding,
            output_padding,
            self.groups,
            self.dilation,
            self.kernel_size,
            order=order,
        )

    def _fused_shuffle_ok(self, input: Tensor, output_padding: Sequence[int]) -> bool:
        """Whether to run the layer as one GEMM that writes the shuffled output directly (see
        :meth:`_fused_shuffle_forward`): non-overlapping kernels (``k == s``, no padding, no output padding,
        dilation 1; the LR kernel is one tap, so the LR conv is a plain GEMM), a channels-last input, autograd not
        recording, on the CPU (where it was measured), and not under tracing, scripting, compiling or export (which
        keep the conv + shuffle form)."""
        return (
            self._ndim >= 2
            and input.device.type == "cpu"
            and self.kernel_size == self.stride
            and not any(self.padding)
            and not any(output_padding)
            and all(d == 1 for d in self.dilation)
            and _channels_last(input)
            and not _use_plain_path(input)
            and not self._records_grad(input)
        )

    def _records_grad(self, input: Tensor) -> bool:
        """Whether autograd records this call (then the conv + shuffle form runs: its backward is the fast one)."""
        return torch.is_grad_enabled() and (
            input.requires_grad
            or self.weight.requires_grad
            or (self.bias is not None and self.bias.requires_grad)
        )

    def _fused_shuffle_forward(self, input: Tensor) -> Tensor:
        """The LR GEMM with the shuffle fused into its output writes, by oneDNN's deconvolution primitive.

        With ``k == s`` and no padding, a transposed convolution has no overlapping taps and no zero insertion: it
        *is* the sub-pixel layer, the GEMM ``(N·∏L, C_in) × (C_in, C_out·∏s)`` of the 1-tap LR convolution, and
        oneDNN's primitive writes each product straight to its shuffled position. In channels-last formats that
        saves the LR tensor and one copy of the output (docs/performance.md has the measurements). The weight is
        the exact re-indexing :func:`~subpixel.functional.lr_weight_to_conv_transpose`, cached until it changes.

        Shape:
            - input: ``(N, C_in, *L_in)`` channels-last; output: ``(N, C_out, *(L_in·s))``, channels-last.
        """
        w = self.weight
        key = (*_weight_version(w), self.order)
        cache = self.__dict__.get("_fused_weight_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                weight_ct = lr_weight_to_conv_transpose(
                    w.detach(), self.kernel_size, self.stride, 1, self.groups, order=self.order
                ).contiguous(memory_format=_memory_format(input))
            cache = (key, weight_ct)
            self.__dict__["_fused_weight_cache"] = cache
        conv = (
            torch.nn.functional.conv_transpose2d if self._ndim == 2 else torch.nn.functional.conv_transpose3d
        )
        return conv(input, cache[1], self.bias, self.stride, 0, 0, self.groups, 1)

    # the per-phase form is taken when it needs at most this fraction of the LR form's multiply-adds (measured,
    # 2 threads: 3D U-Net k3 s2 (0.42) gains 1.1-1.5x; DCGAN k4 s2 p1 at 8² (0.79) loses 0.6-0.9x: many small
    # convs cost more than the crop's waste)
    _PHASE_WORK_LIMIT = 0.6

    def _phase_axes(self, input: Tensor, geoms: Sequence[AxisGeometry]) -> list | None:
        """The per-phase plan of :func:`subpixel.functional._phase_conv_core` when that form is taken for
        ``input``, else ``None`` (the LR conv + shuffle form).

        Taken when it saves work (kernel not a multiple of the stride, or LR outputs the crop throws away) and
        the LR weight is zero outside each phase's real taps (always so for weights converted from a
        ConvTranspose or set by ``reset_parameters``; checked, cached until the weight changes); never under
        tracing, scripting, compiling or export, and not when autograd records (forward + backward of the
        per-phase convs measured 1.3-2x slower than the LR form's).
        """
        if _use_plain_path(input) or self.weight.shape[0] != self.out_channels * math.prod(self.stride):
            return None
        if self._records_grad(input):
            return None
        spatial = tuple(input.shape[2:])
        if not all(type(v) is int for v in spatial):
            return None
        key = (spatial, tuple(geoms), self.kernel_size, self.stride, self.dilation)
        cache = self.__dict__.setdefault("_phase_plan_cache", {})
        plan = cache.get(key)
        if plan is None:
            plan = _phase_plan(spatial, self.kernel_size, self.stride, self.dilation, geoms)
            if len(cache) >= 64:
                cache.clear()
            cache[key] = plan
        axes, fraction = plan
        if fraction > self._PHASE_WORK_LIMIT:
            return None
        w = self.weight
        wkey = (*_weight_version(w), self.order, key)
        valid = self.__dict__.get("_phase_valid_cache")
        if valid is None or valid[0] != wkey:
            valid = (wkey, _phase_weight_valid(w, axes, self.order))
            self.__dict__["_phase_valid_cache"] = valid
        return axes if valid[1] else None

    def _geometry(self, spatial: tuple[int, ...], output_padding: tuple[int, ...]) -> list[AxisGeometry]:
        """:func:`lr_geometry` of every axis, cached per input size (a Python-overhead saving for small inputs)."""
        cacheable = all(type(v) is int for v in (*spatial, *output_padding))  # not symbolic (torch.export)
        key = (spatial, output_padding, self.kernel_size, self.stride, self.padding, self.dilation)
        cache = self.__dict__.setdefault("_geometry_cache", {})
        geoms = cache.get(key) if cacheable else None
        if geoms is None:
            geoms = [
                lr_geometry(length, k, s, p, a, d)
                for length, k, s, p, a, d in zip(
                    spatial,
                    self.kernel_size,
                    self.stride,
                    self.padding,
                    output_padding,
                    self.dilation,
                    strict=True,
                )
            ]
            if cacheable:
                if len(cache) >= 64:
                    cache.clear()
                cache[key] = geoms
        return geoms

    def _weight_for(self, input: Tensor) -> tuple[Tensor, ChannelOrder]:
        """The LR weight in the channel order whose shuffle is a block copy for ``input``'s memory format.

        A channels-last LR output holds the channels of a pixel together; in ``"dcr"`` order the channels of one
        HR pixel are then adjacent, and the shuffle copies blocks of ``C_out·r_last`` values. The conversion is
        exact (a permutation); without gradients it is cached until the weight changes. When autograd records and
        the compiled copy kernel (:mod:`subpixel.native`) is built, the weight stays in its own order: the kernel
        shuffles channels-last CRD near bandwidth, which is cheaper than reordering the weight and its gradient on
        every call.
        """
        if self.order == "dcr" or self.groups != 1 or not _channels_last(input) or _use_plain_path(input):
            return self.weight, self.order
        if torch.is_grad_enabled() and self.weight.requires_grad:
            if input.device.type == "cpu" and native.available():
                # the compiled copy kernel shuffles channels-last CRD near bandwidth: no per-call reordering of the
                # weight (and of its gradient) is then worth doing
                return self.weight, self.order
            return convert_channel_order(self.weight, self.stride, "crd", "dcr", dim=0), "dcr"
        w = self.weight
        key = _weight_version(w)
        cache = self.__dict__.get("_dcr_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cache = (
                    key,
                    convert_channel_order(w.detach(), self.stride, "crd", "dcr", dim=0).contiguous(
                        memory_format=_memory_format(input)
                    ),
                )
            self.__dict__["_dcr_cache"] = cache
        return cache[1], "dcr"

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


def _weight_version(w: Tensor) -> tuple:
    """Identifies a weight's storage and contents: caches derived from it are stale when this changes (in-place
    updates bump ``_version``; a new tensor has another ``data_ptr``)."""
    return (w.data_ptr(), w._version, w.dtype, w.device, tuple(w.shape))


def _channels_last(x: Tensor) -> bool:
    """Whether ``x`` is a batched channels-last 2-D or 3-D tensor (and not also plain contiguous)."""
    if x.is_contiguous():
        return False
    if x.dim() == 4:
        return x.is_contiguous(memory_format=torch.channels_last)
    return x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d)


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
