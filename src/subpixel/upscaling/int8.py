"""int8 inference of the bundled SR networks on x86 CPUs (oneDNN's VNNI kernels): ``precision="int8"``.

The bundled networks (:func:`subpixel.sr.models.pretrained`: Conv3x3 1→27, PReLU, three Conv3x3 27→27 + PReLU,
a sub-pixel convolution 27→r², a nearest-neighbour skip) spend nine tenths of their multiply-adds in the three
27→27 convolutions. :class:`Int8Network` runs those three in int8 through oneDNN's quantized convolution
(``torch.ops.onednn.qconv2d_pointwise``, the kernel behind PyTorch's x86 int8 path: uint8 activations with one
scale per tensor, int8 weights with one scale per output channel, int32 accumulation, bfloat16 output); before
each of them one pass applies the PReLU and quantizes to uint8 (:func:`subpixel.native.prelu_quantize`). The
first convolution (one input channel) runs in bfloat16 as in the ``"bf16"`` runner; the last PReLU, the
sub-pixel convolution, the shuffle and the skip run as one compiled pass (:class:`subpixel.native.LRConvShuffle`:
bf16 operands, float32 sums, written straight into the HR plane), or as bf16 torch ops without a compiler.

Before quantizing, the channels between two convolutions are equalized (:func:`equalize`): PReLU is positively
homogeneous, so channel ``c`` of one layer's output can be scaled by ``s_c > 0`` and the next layer's input
weights divided by it without changing the function; ``s_c`` makes both weight ranges equal, which evens out the
activation ranges that share one scale. The activation ranges were calibrated on T91 (the 99.999th percentile at
either end, :func:`calibrate`) and are stored per bundled model (``sr/weights/int8_ranges.json``, keyed by a hash
of the weights: :func:`weights_key`); other models are declined (:func:`unsupported_reason`).

Measured (``benchmarks/int8.py``; AMD EPYC with AVX-512 VNNI and BF16, one thread): see ``docs/upscale.md``.

Examples:
    >>> from subpixel.sr.models import ESPCN
    >>> unsupported_reason(ESPCN(2, widths=(4,), kernel_sizes=(3, 3))) is not None
    True
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subpixel import native
from subpixel.errors import SubpixelError
from subpixel.shuffle import pixel_shuffle
from subpixel.upscaling.image import prelu_in_place

__all__ = [
    "RANGES_FILE",
    "Int8Network",
    "calibrate",
    "cpu_supports_int8",
    "equalize",
    "int8_network",
    "network_layers",
    "unsupported_reason",
    "weights_key",
]

#: the calibrated activation ranges of the bundled networks, keyed by :func:`weights_key`
RANGES_FILE = Path(__file__).resolve().parent.parent / "sr" / "weights" / "int8_ranges.json"

Layers = list[tuple[Tensor, Tensor]]


def _has_int8_convolution() -> bool:
    """Whether this PyTorch has oneDNN's quantized convolution (x86 CPU builds)."""
    return hasattr(torch.ops.onednn, "qconv2d_pointwise") and hasattr(torch.ops.onednn, "qconv_prepack")


def cpu_supports_int8() -> bool:
    """Whether this CPU has the int8 dot-product instructions that make oneDNN's int8 convolution fast (AVX-512
    VNNI or AMX), and this PyTorch has the quantized oneDNN convolution."""
    has_op = _has_int8_convolution()
    vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()  # AVX-512 VNNI, as cpuinfo reports it
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return bool(has_op and (vnni or amx))


def weights_key(model: nn.Module) -> str:
    """SHA-256 of the model's parameters (names, shapes and float32 values, in ``state_dict`` order)."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        v = value.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(v.shape)};".encode())
        digest.update(v.numpy().tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _stored_ranges() -> dict[str, dict]:
    try:
        return json.loads(RANGES_FILE.read_text())["models"]
    except (OSError, ValueError, KeyError):
        return {}


def network_layers(model: nn.Module) -> tuple[Layers, list[Tensor]]:
    """The five convolutions of a bundled-shape network as float32 ``(weight, bias)`` pairs in LR space (the
    sub-pixel layer's LR convolution, bias repeated per phase), and the four PReLU slopes.

    Shape:
        weights ``(27, 1, 3, 3)``, three ``(27, 27, 3, 3)``, ``(r², 27, 3, 3)``; slopes ``(27,)``.

    Raises:
        SubpixelError: the model does not have that shape (:func:`unsupported_reason` says why).
    """
    reason = _shape_reason(model)
    if reason is not None:
        raise SubpixelError(f"precision='int8': {reason}")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]  # type: ignore[union-attr]
    prelus = [m for m in model.features if isinstance(m, nn.PReLU)]  # type: ignore[union-attr]
    up = model.upsample  # type: ignore[union-attr]
    r = int(model.scale)  # type: ignore[arg-type]
    layers = [(c.weight.detach().float().clone(), c.bias.detach().float().clone()) for c in convs]
    layers.append((up.weight.detach().float().clone(), up.bias.detach().float().repeat_interleave(r * r)))
    return layers, [p.weight.detach().float().clone() for p in prelus]


def _shape_reason(model: nn.Module) -> str | None:
    """Why ``model`` is not the bundled networks' shape, or ``None``."""
    from subpixel.layers import SubPixelConv2d

    features = getattr(model, "features", None)
    up = getattr(model, "upsample", None)
    config = getattr(model, "config", None)
    if not isinstance(features, nn.Sequential) or not isinstance(up, SubPixelConv2d) or config is None:
        return "runs the bundled ESPCN-family networks only (features + sub-pixel layer)"
    kinds = [type(m) for m in features]
    if kinds != [nn.Conv2d, nn.PReLU] * 4 or getattr(config, "channels", None) != "y":
        return "needs four 3x3 convolutions each followed by PReLU, on Y (the bundled 'rep' networks)"
    r = getattr(model, "scale", None)
    for conv in features[::2]:
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
            return "needs 3x3 convolutions with padding 1"
        if conv.bias is None or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            return "needs plain 3x3 convolutions with a bias"
    if (
        "weight" not in up._parameters
        or up.bias is None
        or up.order != "crd"
        or tuple(up.weight.shape[2:]) != (3, 3)
        or up.weight.shape[0] != r * r
        or up.stride != (r, r)
        or up.padding != (r, r)
        or up.groups != 1
        or tuple(up.output_padding) != (0, 0)
        or getattr(config, "skip", None) != "nearest"
    ):
        return "needs the bundled sub-pixel layer (3x3 LR kernel, CRD order) and the nearest-neighbour skip"
    return None


def unsupported_reason(model: nn.Module) -> str | None:
    """Why ``precision="int8"`` cannot run ``model``, or ``None`` when it can (a bundled network whose
    activation ranges are calibrated)."""
    reason = _shape_reason(model)
    if reason is not None:
        return reason
    if weights_key(model) not in _stored_ranges():
        return (
            "has calibrated activation ranges for the bundled networks only (these weights are not one of them); "
            "use precision 'bf16' or 'fp32'"
        )
    return None


def equalize(layers: Layers) -> Layers:
    """Cross-layer equalization: output channel ``c`` of convolution ``i`` times ``s_c``, input channel ``c`` of
    convolution ``i + 1`` divided by it, ``s_c = sqrt(range_in(i+1, c) / range_out(i, c))`` (maximum absolute
    weights), so that both ranges become ``sqrt(range_out · range_in)``. The network's function is unchanged
    (PReLU with a positive factor commutes: ``prelu(s·x) = s·prelu(x)``).

    Shape:
        as :func:`network_layers`.
    """
    out = [(w.clone(), b.clone()) for w, b in layers]
    for i in range(len(out) - 1):
        (w, b), (w_next, b_next) = out[i], out[i + 1]
        range_out = w.abs().amax(dim=(1, 2, 3)).clamp_min(1e-12)
        range_in = w_next.abs().amax(dim=(0, 2, 3)).clamp_min(1e-12)
        s = torch.sqrt(range_in / range_out)
        out[i] = (w * s[:, None, None, None], b * s)
        out[i + 1] = (w_next / s[None, :, None, None], b_next)
    return out


def _float_network(
    x: Tensor, layers: Layers, slopes: Sequence[Tensor], scale: int, taps: list | None = None
) -> Tensor:
    """The network in float from its parts (``taps`` receives each PReLU output).

    Shape:
        ``(N, 1, h, w) -> (N, 1, h·r, w·r)``.
    """
    a = x
    for (w, b), slope in zip(layers[:-1], slopes, strict=True):
        a = F.prelu(F.conv2d(a, w, b, padding=1), slope)
        if taps is not None:
            taps.append(a)
    w, b = layers[-1]
    return F.pixel_shuffle(F.conv2d(a, w, b, padding=1), scale) + F.interpolate(
        x, scale_factor=scale, mode="nearest"
    )


def calibrate(
    model: nn.Module, images: Iterable[Tensor], percentile: float = 99.999
) -> list[tuple[float, float]]:
    """The ranges ``(low, high)`` of the first three PReLU outputs of the equalized network on ``images``: that
    percentile of the values at each end (100: min and max), widened to include 0.

    Args:
        model: a bundled-shape network.
        images: LR inputs ``(1, 1, h, w)``, ``Y / 255`` (as the network sees them).
        percentile: in (50, 100].

    Returns:
        Three ``(low, high)`` pairs.
    """
    if not 50 < percentile <= 100:
        raise SubpixelError(f"percentile must be in (50, 100], got {percentile!r}")
    layers, slopes = network_layers(model)
    layers = equalize(layers)
    taps: list[list[Tensor]] = [[], [], []]
    with torch.no_grad():
        for x in images:
            got: list[Tensor] = []
            _float_network(x.float(), layers, slopes, int(model.scale), got)  # type: ignore[arg-type]
            for i in range(3):
                taps[i].append(got[i].flatten())
    if not taps[0]:
        raise SubpixelError("calibrate: no images")
    generator = torch.Generator().manual_seed(0)
    ranges = []
    for parts in taps:
        values = torch.cat(parts)
        if percentile >= 100:
            low, high = values.min().item(), values.max().item()
        else:  # a random sample of 4M values: torch.quantile's limit is 16M
            sample = values[torch.randperm(values.numel(), generator=generator)[:4_000_000]]
            low, high = torch.quantile(
                sample, torch.tensor([1 - percentile / 100, percentile / 100])
            ).tolist()
        ranges.append((min(low, 0.0), max(high, 1e-6)))
    return ranges


def _affine(low: float, high: float) -> tuple[float, int]:
    """uint8 ``(scale, zero_point)`` covering ``[low, high]`` (``low <= 0 < high``)."""
    scale = (high - low) / 255.0
    return scale, min(255, max(0, round(-low / scale)))


class _Int8Conv(nn.Module):
    """3x3, padding 1 convolution through oneDNN int8: uint8 ``(N, C, h, w)`` channels-last input (``x_scale``,
    ``x_zero``) -> bfloat16 ``(N, C_out, h, w)``; weights int8 symmetric per output channel."""

    def __init__(self, weight: Tensor, bias: Tensor, x_scale: float, x_zero: int) -> None:
        super().__init__()
        w_scale = (weight.abs().amax(dim=(1, 2, 3)) / 127.0).clamp_min(1e-12).float()
        q = torch.round(weight / w_scale[:, None, None, None]).clamp(-128, 127).to(torch.int8)
        self.w_scale, self.w_zero = w_scale, torch.zeros(weight.shape[0], dtype=torch.int64)
        self.packed = torch.ops.onednn.qconv_prepack(q, w_scale, x_scale, x_zero, [1, 1], [1, 1], [1, 1], 1)
        self.bias, self.x_scale, self.x_zero = bias.float().contiguous(), float(x_scale), int(x_zero)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.onednn.qconv2d_pointwise(
            x, self.x_scale, self.x_zero, self.packed, self.w_scale, self.w_zero, self.bias,
            [1, 1], [1, 1], [1, 1], 1, 1.0, 0, torch.bfloat16, "none", [], "",
        )  # fmt: skip


class _PReLUQuantize(nn.Module):
    """PReLU of a channels-last bfloat16 tensor, quantized to uint8 (``scale``, ``zero``): one pass with the
    compiled kernel, else torch ops (same values)."""

    def __init__(self, slope: Tensor, scale: float, zero: int) -> None:
        super().__init__()
        self.slope, self.scale, self.zero = slope.float().contiguous(), float(scale), int(zero)

    def forward(self, x: Tensor) -> Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        out = torch.empty_like(x, dtype=torch.uint8, memory_format=torch.channels_last)
        if native.prelu_quantize(x, out, self.slope, self.scale, self.zero):
            return out
        # the kernel's float32 arithmetic: v · (slope / scale) below 0, v · (1 / scale) above, + zero, rounded
        inv = 1.0 / self.scale
        v = x.float()
        factor = torch.where(
            v < 0, (self.slope * inv).view(1, -1, 1, 1), torch.tensor(inv, dtype=torch.float32)
        )
        return out.copy_(v.mul_(factor).add_(self.zero).round_().clamp_(0, 255))


class Int8Network(nn.Module):
    """A bundled-shape network with its three 27→27 convolutions in int8 (module docs).

    Args:
        model: the network (:func:`network_layers`); copied, not changed.
        ranges: the three ``(low, high)`` activation ranges of the equalized network (:func:`calibrate`).

    Shape:
        ``(N, 1, h, w)`` float32 -> ``(N, 1, h·r, w·r)`` float32.
    """

    def __init__(self, model: nn.Module, ranges: Sequence[Sequence[float]]) -> None:
        super().__init__()
        if len(ranges) != 3:
            raise SubpixelError(f"ranges: expected three (low, high) pairs, got {len(ranges)}")
        layers, slopes = network_layers(model)
        layers = equalize(layers)
        self.scale, self.channels = int(model.scale), "y"  # type: ignore[arg-type]
        cl = torch.channels_last
        self.first = nn.Conv2d(1, layers[0][0].shape[0], 3, padding=1)
        self.last = nn.Conv2d(layers[4][0].shape[1], layers[4][0].shape[0], 3, padding=1)
        with torch.no_grad():
            for conv, (w, b) in ((self.first, layers[0]), (self.last, layers[4])):
                conv.weight.copy_(w)
                conv.bias.copy_(b)
        self.first.to(torch.bfloat16, memory_format=cl).requires_grad_(False)
        self.last.to(torch.bfloat16, memory_format=cl).requires_grad_(False)
        steps: list[nn.Module] = []
        for i in range(3):
            scale, zero = _affine(*ranges[i])
            steps += [_PReLUQuantize(slopes[i], scale, zero), _Int8Conv(*layers[i + 1], scale, zero)]
        self.middle = nn.Sequential(*steps)
        self.last_slope = slopes[3].to(torch.bfloat16)
        self.tail = native.LRConvShuffle(*layers[4], slopes[3], self.scale)  # PReLU, last conv, shuffle, skip

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise SubpixelError(f"input must have shape (N, 1, h, w), got {tuple(x.shape)}")
        x = x.float().contiguous(memory_format=torch.channels_last)
        features = self.middle(self.first(x.to(torch.bfloat16)))
        y = self.tail(features, x)
        if y is not None:
            return y
        a = prelu_in_place(features, self.last_slope)
        y = pixel_shuffle(self.last(a).float(), self.scale)
        return y.add_(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


def int8_network(model: nn.Module) -> Int8Network:
    """:class:`Int8Network` of a bundled network with its stored ranges.

    Raises:
        SubpixelError: the model cannot run in int8 (:func:`unsupported_reason`), or PyTorch lacks the quantized
            oneDNN convolution.
    """
    if not _has_int8_convolution():
        raise SubpixelError(
            "precision='int8' needs PyTorch's quantized oneDNN convolution (an x86 CPU build)"
        )
    reason = unsupported_reason(model)
    if reason is not None:
        raise SubpixelError(f"precision='int8' {reason}")
    ranges = _stored_ranges()[weights_key(model)]["ranges"]
    return Int8Network(model, ranges).eval()
