r"""HR space is a special case of LR space: :func:`to_lr_space` rewrites an upsample-first network exactly.

Take a network that upsamples its input by an integer factor ``r`` with a fixed linear resampler and then
applies stride-1 convolutions and pointwise nonlinearities at high resolution (HR). Every HR tensor ``y`` of
size ``r·U`` is the periodic shuffle of an LR tensor ``Y`` with ``r²`` times the channels:
``y[c, u·r + φ_h, v·r + φ_w] = Y[c·r² + φ_h·r + φ_w, u, v]`` (CRD order). In those terms, along one axis:

* **A stride-1 HR convolution** (kernel ``k``, dilation ``d``, zero padding ``p_l`` before and ``p_r`` after)
  computes ``z[u r + φ'] = Σ_t y[u r + φ' − p_l + t d]·w[t]``. Writing ``φ' − p_l + t d = j r + φ``
  (``φ ∈ [0, r)``) gives ``z[u r + φ'] = Σ_j Σ_φ Y_φ[u + j]·W[φ', φ, j]`` with
  ``W[φ', φ, j] = w[t]`` for the one tap ``t`` that lands there and ``0`` elsewhere: a stride-1 **LR
  convolution** from ``C_in·r`` to ``C_out·r`` channels (``r²`` in 2-D) whose kernel spans
  ``j ∈ [⌊−p_l/r⌋, ⌊(r − 1 − p_l + d(k − 1))/r⌋]`` and whose LR zero padding is ``⌈p_l/r⌉`` before.
  HR zero padding is reproduced *exactly*: ``y`` is zero outside ``[0, rU)`` if and only if ``Y`` is zero
  outside ``[0, U)``. This needs the HR output length to stay a multiple of ``r``, i.e.
  ``(p_l + p_r − d(k − 1)) mod r = 0`` (always true for 'same' padding); other paddings are refused.
* **A transposed convolution** with stride ``r`` is the same with ``t d = φ + p − j r``
  (the core identity of :mod:`subpixel.functional`, phase-aligned so that nothing is cropped).
* **A fixed interpolator** (nearest, bilinear, bicubic at integer scale) is a depthwise LR convolution with
  its ``r²`` polyphase filters, after replication padding of ``P`` LR pixels when the resampler extends
  the image by repeating its edge (PyTorch's ``nn.Upsample``; :class:`BicubicUpsample2d` with
  ``edge="replicate"``) or with zero padding when it does not (``edge="zeros"``, a plain ``ConvTranspose2d``).
* **Pointwise nonlinearities** commute with the shuffle (a per-channel one, ``nn.PReLU(C)``, repeats its
  parameter ``r²`` times).

So the whole network equals: LR layers, one final :class:`~subpixel.PixelShuffle2d`. Only
``padding_mode="zeros"`` convolutions are handled (reflect/replicate/circular padding at HR is not a
padding of the LR tensor). The LR form is a *constrained* LR network: each LR weight is one HR tap or a
structural zero, every HR tap is repeated ``r`` times per axis, so its ``C_out r²·C_in r²·K²`` entries carry
only ``C_out·C_in·k²`` free numbers (see :func:`hr_to_lr_weight_map`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from subpixel._validation import check_positive_int
from subpixel.convert import to_conv_transpose
from subpixel.errors import SubpixelError
from subpixel.layers import SubPixelConv2d
from subpixel.shuffle import PixelShuffle2d
from subpixel.study.blocks import (
    POINTWISE_ACTIVATIONS,
    BicubicUpsample2d,
    interpolation_taps,
)

__all__ = ["hr_conv_to_lr", "hr_to_lr_weight_map", "to_lr_space"]

_POINTWISE = (*POINTWISE_ACTIVATIONS, nn.Identity)


# --------------------------------------------------------------------------------------------------------------
# polyphase maps
# --------------------------------------------------------------------------------------------------------------


def _conv_selection(r: int, k: int, d: int, pad_before: int) -> tuple[Tensor, int]:
    """S[φ', φ, j − j_min, t] = 1 iff ``φ' − p_l + t d = j r + φ``; returns (S, j_min)."""
    j_min = (-pad_before) // r
    j_max = (r - 1 - pad_before + (k - 1) * d) // r
    s = torch.zeros(r, r, j_max - j_min + 1, k, dtype=torch.float64)
    for phi_out in range(r):
        for t in range(k):
            j, phi = divmod(phi_out - pad_before + t * d, r)
            s[phi_out, phi, j - j_min, t] = 1
    return s, j_min


def _transpose_selection(r: int, k: int, d: int, padding: int) -> tuple[Tensor, int]:
    """T[φ, j − j_min, t] = 1 iff ``t d = φ + p − j r``; returns (T, j_min)."""
    j_min = -((-(padding - (k - 1) * d)) // r)  # ceil
    j_max = (r - 1 + padding) // r
    s = torch.zeros(r, j_max - j_min + 1, k, dtype=torch.float64)
    for phi in range(r):
        for t in range(k):
            j, rem = divmod(phi + padding - t * d, r)
            if rem == 0:
                s[phi, j - j_min, t] = 1
    return s, j_min


def _conv_with_padding(
    in_ch: int, out_ch: int, weight: Tensor, bias: Tensor | None, groups: int, pads: Sequence[int]
) -> list[nn.Module]:
    """An LR ``nn.Conv2d`` with zero padding ``pads = (top, bottom, left, right)`` (negative crops)."""
    top, bottom, left, right = pads
    layers: list[nn.Module] = []
    if top == bottom and left == right and top >= 0 and left >= 0:
        conv_pad: tuple[int, int] = (top, left)
    else:
        layers.append(nn.ZeroPad2d((left, right, top, bottom)))
        conv_pad = (0, 0)
    conv = nn.Conv2d(
        in_ch,
        out_ch,
        tuple(weight.shape[2:]),
        padding=conv_pad,
        groups=groups,
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    layers.append(conv)
    return layers


def _lr_padding(change: int, r: int, j_min: int, taps: int, what: str) -> tuple[int, int]:
    """LR zero padding ``(before, after)`` of a polyphase kernel with ``taps`` taps from ``j_min`` on, for an HR
    layer that changes the size by ``change`` pixels (refused unless a multiple of ``r``: ``what`` says where)."""
    if change % r:
        raise SubpixelError(f"{what}: not a multiple of scale={r}, so its output is not a whole LR tensor")
    return -j_min, change // r + j_min + taps - 1


def _same_padding(k: int, d: int) -> tuple[int, int]:
    total = d * (k - 1)
    return total // 2, total - total // 2


def hr_conv_to_lr(conv: nn.Conv2d, scale: int) -> list[nn.Module]:
    """The LR layers (optional ``ZeroPad2d``, then ``Conv2d``) equal to a stride-1 HR ``conv`` between shuffles.

    ``pixel_shuffle(lr(X), r) == conv(pixel_shuffle(X, r))`` exactly, for every ``X``.

    Args:
        conv: ``nn.Conv2d`` with stride 1 and ``padding_mode="zeros"``; any kernel, dilation, groups, padding
            (ints or ``"same"``/``"valid"``) whose HR output size changes by a multiple of ``scale``.
        scale: the shuffle factor ``r``.

    Returns:
        ``[ZeroPad2d, Conv2d]`` or ``[Conv2d]``; the conv maps ``C_in·r²`` to ``C_out·r²`` channels (CRD order).

    Raises:
        ValueError: stride ≠ 1, another padding mode, or an HR size change that is not a multiple of ``r``.

    Shape:
        - LR input ``(N, C_in·r², U, V)`` -> LR output ``(N, C_out·r², U + Δ_h, V + Δ_w)``, with
          ``Δ = (p_l + p_r − d(k − 1))/r``.

    Examples:
        >>> conv = torch.nn.Conv2d(4, 8, 5, padding=2)
        >>> layers = hr_conv_to_lr(conv, 3)
        >>> layers[-1].weight.shape, layers[-1].padding     # ⌈2/3⌉ = 1 LR pixel of zero padding
        (torch.Size([72, 36, 3, 3]), (1, 1))
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if conv.stride != (1, 1):
        raise SubpixelError(f"only stride-1 HR convolutions have an LR form here, got stride={conv.stride}")
    if conv.padding_mode != "zeros":
        raise SubpixelError(
            f"only padding_mode='zeros' is supported (HR zero padding = LR zero padding), got {conv.padding_mode!r}"
        )
    r = scale
    pads: list[tuple[int, int]] = []
    for axis in range(2):
        k, d = conv.kernel_size[axis], conv.dilation[axis]
        if conv.padding == "same":
            pads.append(_same_padding(k, d))
        elif conv.padding == "valid":
            pads.append((0, 0))
        else:
            p = conv.padding[axis]  # type: ignore[index]
            pads.append((p, p))
    sels, lr_pads = [], []
    for axis in range(2):
        k, d = conv.kernel_size[axis], conv.dilation[axis]
        pl, pr = pads[axis]
        change = pl + pr - d * (k - 1)
        what = f"the HR convolution changes the size by {change} pixels along axis {axis} (kernel {k}, dilation {d}, padding {pl}+{pr})"
        s, j_min = _conv_selection(r, k, d, pl)
        sels.append(s)
        lr_pads.append(_lr_padding(change, r, j_min, s.shape[2], what))
    w = conv.weight
    # W_lr[o, a, b, i, p, q, jh, jw] = Σ_{th, tw} S_h[a, p, jh, th] S_w[b, q, jw, tw] w[o, i, th, tw]
    w_lr = torch.einsum("apjt,bqkv,oitv->oabipqjk", sels[0].to(w), sels[1].to(w), w.detach())
    o, i = w.shape[0], w.shape[1]
    w_lr = w_lr.reshape(o * r * r, i * r * r, *w_lr.shape[-2:])
    bias = None if conv.bias is None else conv.bias.detach().repeat_interleave(r * r)
    return _conv_with_padding(
        conv.in_channels * r * r, o * r * r, w_lr, bias, conv.groups, (*lr_pads[0], *lr_pads[1])
    )


def _conv_transpose_to_lr(layer: nn.ConvTranspose2d, scale: int) -> list[nn.Module]:
    """LR layers equal to ``pixel_unshuffle(layer(x), r)`` for a ConvTranspose2d with stride ``r``."""
    r = scale
    if tuple(layer.stride) != (r, r):
        raise SubpixelError(
            f"the resampling ConvTranspose2d must have stride ({r}, {r}), got {tuple(layer.stride)}"
        )
    if layer.padding_mode != "zeros":
        raise SubpixelError(f"ConvTranspose2d padding_mode must be 'zeros', got {layer.padding_mode!r}")
    sels, lr_pads = [], []
    for axis in range(2):
        k, d, p = layer.kernel_size[axis], layer.dilation[axis], layer.padding[axis]
        a = layer.output_padding[axis]
        change = d * (k - 1) + a + 1 - 2 * p - r  # HR length − r·L
        what = f"the ConvTranspose2d output size is r·L{change:+d} along axis {axis}"
        s, j_min = _transpose_selection(r, k, d, p)
        sels.append(s)
        lr_pads.append(_lr_padding(change, r, j_min, s.shape[1], what))
    g = layer.groups
    w = layer.weight.detach()  # (C_in, C_out/g, kh, kw) -> (C_out, C_in/g, kh, kw)
    c_in, c_out_g = w.shape[0], w.shape[1]
    w = (
        w.reshape(g, c_in // g, c_out_g, *w.shape[2:])
        .transpose(1, 2)
        .reshape(g * c_out_g, c_in // g, *w.shape[2:])
    )
    w_lr = torch.einsum("ajt,bkv,oitv->oabijk", sels[0].to(w), sels[1].to(w), w)
    w_lr = w_lr.reshape(g * c_out_g * r * r, c_in // g, *w_lr.shape[-2:])
    bias = None if layer.bias is None else layer.bias.detach().repeat_interleave(r * r)
    return _conv_with_padding(c_in, g * c_out_g * r * r, w_lr, bias, g, (*lr_pads[0], *lr_pads[1]))


def _interpolator_to_lr(taps: Tensor, channels: int, edge: str, like: Tensor) -> list[nn.Module]:
    """Depthwise LR conv with the ``r²`` polyphase filters ``taps_h ⊗ taps_w``, after replicate/zero padding."""
    r, width = taps.shape
    half = (width - 1) // 2
    k2 = (taps[:, None, :, None] * taps[None, :, None, :]).reshape(r * r, 1, width, width)
    w = k2.repeat(channels, 1, 1, 1).to(like)
    layers: list[nn.Module] = []
    if edge == "replicate" and half > 0:
        layers.append(nn.ReplicationPad2d(half))
        pads = (0, 0, 0, 0)
    else:
        pads = (half,) * 4
    return layers + _conv_with_padding(channels, channels * r * r, w, None, channels, pads)


def _upsample_to_lr(layer: nn.Module, scale: int, channels: int | None, like: Tensor) -> list[nn.Module]:
    if isinstance(layer, BicubicUpsample2d):
        if layer.scale != scale:
            raise SubpixelError(f"BicubicUpsample2d has scale {layer.scale}, expected {scale}")
        # its own (possibly float32-rounded) weights, through the transposed-convolution map
        if layer.edge == "zeros":
            return _conv_transpose_to_lr(layer.as_conv_transpose(), scale)
        deconv = layer.as_conv_transpose(padding=layer.padding[0] + layer.half * scale)
        return [nn.ReplicationPad2d(layer.half), *_conv_transpose_to_lr(deconv, scale)]
    if isinstance(layer, nn.ConvTranspose2d):
        return _conv_transpose_to_lr(layer, scale)
    if isinstance(layer, SubPixelConv2d):
        return _conv_transpose_to_lr(to_conv_transpose(layer), scale)  # type: ignore[arg-type]
    assert isinstance(layer, nn.Upsample)
    sf = layer.scale_factor
    factors = sf if isinstance(sf, tuple) else (sf, sf)
    if layer.size is not None or any(float(f) != scale for f in factors):
        raise SubpixelError(f"nn.Upsample must have scale_factor={scale} (no size), got {layer}")
    if layer.mode not in ("nearest", "bilinear", "bicubic"):
        raise SubpixelError(
            f"nn.Upsample mode must be 'nearest', 'bilinear' or 'bicubic', got {layer.mode!r}"
        )
    if layer.align_corners:
        raise SubpixelError("nn.Upsample with align_corners=True is not a polyphase filter at integer scale")
    if channels is None:
        raise SubpixelError(
            "the number of channels before nn.Upsample is unknown: pass in_channels= or example_input=, or follow "
            "it with a Conv2d"
        )
    # PyTorch: bicubic with a = −0.75; all modes read clamped (edge-replicated) indices.
    return _interpolator_to_lr(interpolation_taps(scale, layer.mode, -0.75), channels, "replicate", like)


def _channels_from_next_conv(layers: Sequence[nn.Module]) -> int | None:
    """The channels entering ``layers``, read from the first layer that fixes them (a ``Conv2d``, a resampling
    ``ConvTranspose2d``/``SubPixelConv2d``, a per-channel ``PReLU``) past pointwise activations; ``None`` if none.
    """
    for layer in layers:
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d | SubPixelConv2d):
            return int(layer.in_channels)
        if isinstance(layer, nn.PReLU) and layer.num_parameters > 1:
            return int(layer.num_parameters)
        if not isinstance(layer, (*_POINTWISE, nn.PReLU)):
            return None
    return None


def to_lr_space(
    hr_network: nn.Sequential,
    scale: int,
    *,
    in_channels: int | None = None,
    example_input: Tensor | None = None,
) -> nn.Sequential:
    """Rewrite an upsample-first network as an exactly equal LR-space network ending in one pixel shuffle.

    Args:
        hr_network: ``nn.Sequential`` of: optional LR layers (``Conv2d``, pointwise activations: kept as they
            are), one resampler by ``scale`` (``nn.Upsample`` nearest/bilinear/bicubic with
            ``align_corners=False``, :class:`BicubicUpsample2d`, ``nn.ConvTranspose2d`` or
            :class:`~subpixel.SubPixelConv2d` with stride ``scale``), then stride-1 ``nn.Conv2d`` with zero padding
            and pointwise activations (``ReLU``, ``PReLU``, ``Tanh``, ...).
        scale: the integer upscaling factor ``r``.
        in_channels: channels of the network input. Needed only when it starts with ``nn.Upsample``, and even then
            only when neither ``example_input`` nor the layer after the upsampling (the first ``Conv2d``, past
            pointwise activations) gives them.
        example_input: an input of the network, ``(N, C, H, W)``, for its channels ``C`` (not run), and for the
            dtype and device of a network without parameters or buffers (float32 otherwise).

    Returns:
        ``nn.Sequential`` of LR layers (``ZeroPad2d``/``ReplicationPad2d``, ``Conv2d``, activations) and a final
        :class:`~subpixel.PixelShuffle2d` ``(scale, order="crd")``, with the dtype and device of the input network;
        its output equals ``hr_network``'s up to floating-point rounding (≤ 1e-10 in float64).

    Raises:
        TypeError: ``hr_network`` is not an ``nn.Sequential`` or contains an unsupported layer.
        ValueError: no resampler, two resamplers, a wrong scale, a layer whose output is not a whole LR tensor, or
            ``in_channels`` / ``example_input`` that disagree with each other or with the network.

    Shape:
        - input: ``(N, C, H, W)``; output: as ``hr_network``'s, ``(N, C_out, r·H + …, r·W + …)``.

    Examples:
        >>> hr = torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(1, 4, 3, padding=1),
        ...                          torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 3, padding=1)).double()
        >>> lr = to_lr_space(hr, 2, in_channels=1)
        >>> x = torch.randn(1, 1, 6, 7, dtype=torch.float64)
        >>> lr(x).shape, bool((lr(x) - hr(x)).abs().max() < 1e-12)
        (torch.Size([1, 1, 12, 14]), True)
        >>> srcnn = torch.nn.Sequential(torch.nn.Upsample(scale_factor=3), torch.nn.Conv2d(1, 8, 9, padding=4),
        ...                             torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 5, padding=2)).double()
        >>> lr = to_lr_space(srcnn, 3)      # the input's channels: those of the Conv2d after the upsampling
        >>> lr[0], bool((lr(x) - srcnn(x)).abs().max() < 1e-12)
        (Conv2d(1, 9, kernel_size=(1, 1), stride=(1, 1), bias=False), True)
    """
    if not isinstance(hr_network, nn.Sequential):
        raise TypeError(f"hr_network must be an nn.Sequential, got {type(hr_network).__name__}")
    check_positive_int(scale, "scale", minimum=2)
    fallback = example_input if example_input is not None else torch.zeros((), dtype=torch.float32)
    like = next((t for t in (*hr_network.parameters(), *hr_network.buffers())), fallback)
    channels = _input_channels(in_channels, example_input)
    out: list[nn.Module] = []
    upsampled = False
    for index, layer in enumerate(hr_network):
        where = f"hr_network[{index}] ({type(layer).__name__})"
        if isinstance(layer, nn.Upsample | BicubicUpsample2d | nn.ConvTranspose2d | SubPixelConv2d):
            if upsampled:
                raise SubpixelError(f"{where}: a second resampler; only one upsampling layer is supported")
            following = _channels_from_next_conv(list(hr_network)[index + 1 :])
            out.extend(_resampler_to_lr(layer, where, scale, channels, following, like))
            upsampled = True
            channels = getattr(layer, "out_channels", None) or getattr(layer, "channels", channels)
        elif isinstance(layer, nn.Conv2d):
            out.extend(_hr_layer(hr_conv_to_lr, layer, where, scale) if upsampled else [_copy(layer)])
            channels = layer.out_channels
        elif isinstance(layer, nn.PReLU):
            out.append(_prelu_to_lr(layer, scale) if upsampled else _copy(layer))
        elif isinstance(layer, _POINTWISE):
            out.append(_copy(layer))
        else:
            raise TypeError(
                f"{where} is not supported: expected a resampler, a stride-1 Conv2d or a pointwise activation"
            )
    if not upsampled:
        raise SubpixelError("hr_network has no resampler (nn.Upsample, BicubicUpsample2d or ConvTranspose2d)")
    out.append(PixelShuffle2d(scale, order="crd"))
    return nn.Sequential(*out)


def _input_channels(in_channels: int | None, example_input: Tensor | None) -> int | None:
    """The network input's channels from ``in_channels`` and ``example_input`` (which must agree), if known."""
    if example_input is None:
        return in_channels
    if not isinstance(example_input, Tensor) or example_input.dim() != 4:
        shape = (
            tuple(example_input.shape) if isinstance(example_input, Tensor) else type(example_input).__name__
        )
        raise SubpixelError(f"example_input must be a tensor of shape (N, C, H, W), got {shape}")
    c = int(example_input.shape[1])
    if in_channels is not None and in_channels != c:
        raise SubpixelError(
            f"in_channels={in_channels} disagrees with example_input of shape {tuple(example_input.shape)}"
        )
    return c


def _resampler_to_lr(
    layer: nn.Module, where: str, scale: int, channels: int | None, following: int | None, like: Tensor
) -> list[nn.Module]:
    """The LR layers of the network's resampler; an ``nn.Upsample`` takes its channels from its neighbours."""
    if isinstance(layer, nn.Upsample):
        if channels is None:
            channels = following
        elif following is not None and following != channels:
            raise SubpixelError(
                f"{where}: {channels} channels reach it (in_channels / example_input / earlier layers), but "
                f"the layer after it takes {following}"
            )
    return _hr_layer(lambda m, r: _upsample_to_lr(m, r, channels, like), layer, where, scale)


def _hr_layer(
    convert: Callable[[Any, int], list[nn.Module]], layer: nn.Module, where: str, scale: int
) -> list[nn.Module]:
    """``convert(layer, scale)``, its errors prefixed with the layer's place in the network."""
    try:
        return convert(layer, scale)
    except ValueError as exc:
        raise SubpixelError(f"{where}: {exc}") from exc


def _prelu_to_lr(layer: nn.PReLU, scale: int) -> nn.PReLU:
    """A PReLU after the upsampling: one parameter per channel becomes one per channel and phase."""
    if layer.num_parameters == 1:
        return _copy(layer)  # type: ignore[return-value]
    r2 = scale * scale
    new = nn.PReLU(layer.num_parameters * r2, device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight.repeat_interleave(r2))
    return new


def _copy(layer: nn.Module) -> nn.Module:
    return copy.deepcopy(layer)


def hr_to_lr_weight_map(conv: nn.Conv2d, scale: int) -> Tensor:
    """The 0/1 matrix ``A`` with ``vec(W_lr) = A · vec(w)`` for :func:`hr_conv_to_lr` (bias excluded).

    Each column (an HR tap) has ``r²`` ones (its copies, one per output phase) and each row at most one: the LR
    weight is tied and partly zero; its rank is the number of HR weights.

    Args:
        conv: the HR ``nn.Conv2d``.
        scale: ``r``.

    Returns:
        float64 tensor of shape ``(numel(W_lr), numel(w))``.

    Examples:
        >>> a = hr_to_lr_weight_map(torch.nn.Conv2d(1, 1, 3, padding=1), 2)
        >>> a.shape, int(a.sum(0).min()), int(a.sum(1).max())
        (torch.Size([144, 9]), 4, 1)
    """
    probe = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=False,
        dtype=torch.float64,
    )
    cols = []
    n = probe.weight.numel()
    for idx in range(n):
        with torch.no_grad():
            probe.weight.zero_()
            probe.weight.view(-1)[idx] = 1
        cols.append(hr_conv_to_lr(probe, scale)[-1].weight.detach().reshape(-1).clone())
    return torch.stack(cols, dim=1)
