"""Upscale images with an SR model: Y model on Y (chroma and alpha bicubic) or RGB model on RGB, tiled.

The colour handling is ESPCN's: a ``"y"`` model sees ``Y / 255`` of BT.601 studio-range YCbCr
(:func:`subpixel.sr.protocol.rgb_to_ycbcr`, applied as one 1×1 convolution read off that function); Cb and Cr
are upscaled with MATLAB's bicubic (:func:`bicubic_upscale`, equal to :func:`subpixel.sr.protocol.imresize` for
integer factors, computed as a sub-pixel convolution) and the result goes back to RGB
(:func:`subpixel.sr.protocol.ycbcr_to_rgb`).
A grayscale image is RGB with equal channels (:func:`subpixel.sr.color.model_y`, the definition that training
and evaluation use too: its Y is ``16 + 219·gray`` on the 8-bit scale and its chroma is constant). An alpha channel is upscaled bicubically. An ``"rgb"`` model sees RGB directly.

The whole per-tile computation (colour conversion, model, bicubic planes) is local, so
:func:`subpixel.upscaling.tiling.tiled_map` runs it in tiles, and the output is quantized tile by tile into the
8- or 16-bit result: a 7680×4320 output never exists in float.

Examples:
    >>> import numpy as np, torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.PixelShuffle(2))
    >>> net.scale, net.channels = 2, "y"
    >>> rgba = np.random.default_rng(0).random((6, 5, 4), dtype=np.float32)
    >>> upscale_pixels(rgba, net).shape
    (12, 10, 4)
    >>> upscale_pixels(rgba[..., :1], net, bit_depth=8).dtype
    dtype('uint8')
"""

from __future__ import annotations

import copy
import functools
import io
import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from subpixel import native
from subpixel._validation import resolve_device
from subpixel.bicubic import interpolation_taps
from subpixel.eager import is_eager_plain
from subpixel.errors import SubpixelError
from subpixel.imageio import DEFAULT_MAX_PIXELS, FORMAT_EXTENSIONS, load_image, write_image
from subpixel.shuffle import pixel_shuffle
from subpixel.sr.color import gray_from_model_y, model_y
from subpixel.upscaling.tiling import receptive_radius, tile_side, tiled_map

__all__ = [
    "BICUBIC_RADIUS",
    "UpscaleResult",
    "Upscaler",
    "bicubic_upscale",
    "inplace_activations",
    "make_runner",
    "model_scale_and_channels",
    "resolve_device",
    "resolve_precision",
    "sr_pipeline",
    "unit_float",
    "upscale_file",
    "upscale_pixels",
]

Backend = Literal["torch", "onnxruntime"]
Precision = Literal["fp32", "bf16", "int8", "auto"]
Runner = Callable[[Tensor], Tensor]

#: LR pixels beyond its own that a bicubic (Keys, 4 taps) upscaled pixel depends on.
BICUBIC_RADIUS = 2
#: float32 HR channels of per-tile buffers in :func:`sr_pipeline` (YCbCr planes, RGB, alpha, the tile copy).
_PIPELINE_HR_CHANNELS = 12


def bicubic_upscale(x: Tensor, scale: int) -> Tensor:
    """MATLAB ``imresize(x, scale, 'bicubic')`` for an integer ``scale``, as two sub-pixel convolutions.

    Upscaling by an integer factor is a stride-1 convolution in LR space with one 5×5 kernel per output phase
    (the outer product of the two 1-D phase kernels) followed by periodic shuffling, the identity this library
    is about; edges are repeated. float32 CPU tensors go through the compiled kernel
    (:func:`subpixel.native.bicubic_upscale_into`: the same weights, applied separably, output written once;
    4× faster for two 1080p chroma planes, ``benchmarks/image_kernels.py``) where it is available; the two agree
    to float32 rounding.
    Equal to :func:`subpixel.sr.protocol.imresize` for floating-point input, and linear in time.

    Args:
        x: float tensor ``(N, C, h, w)``.
        scale: integer factor ``r >= 1``.

    Returns:
        ``(N, C, h·r, w·r)``, same dtype.

    Shape:
        ``(N, C, h, w) -> (N, C, h·r, w·r)``.

    Examples:
        >>> from subpixel.sr.protocol import imresize
        >>> x = torch.rand(1, 2, 5, 7, dtype=torch.float64)
        >>> bool(torch.allclose(bicubic_upscale(x, 3), imresize(x, 3), atol=1e-12))
        True
    """
    if scale == 1:
        return x
    n, c, h, w = x.shape
    taps = interpolation_taps(scale, "bicubic").to(dtype=x.dtype, device=x.device)  # (r, 5)
    if x.dtype == torch.float32:  # the same 5-tap weights applied separably, output written once
        out = x.new_empty((n * c, h * scale, w * scale))
        if native.bicubic_upscale_into(out, x.reshape(n * c, h, w), taps):
            return out.reshape(n, c, h * scale, w * scale)
    # phase (i, j) of the r×r block is output channel i·r + j (CRD order): its 5×5 kernel is the outer product
    kernel = (taps[:, None, :, None] * taps[None, :, None, :]).reshape(scale * scale, 1, 5, 5)
    planes = torch.nn.functional.pad(x.reshape(n * c, 1, h, w), (2, 2, 2, 2), mode="replicate")
    phases = torch.nn.functional.conv2d(planes, kernel)  # (n·c, r², h, w): the LR-space convolution
    return pixel_shuffle(phases, scale).reshape(n, c, h * scale, w * scale)  # the library's shuffle: 4× torch's


def model_scale_and_channels(model: nn.Module) -> tuple[int, str]:
    """The model's ``scale`` (int) and ``channels`` (``"y"`` or ``"rgb"``), checked.

    Examples:
        >>> net = nn.Conv2d(1, 4, 3)
        >>> net.scale, net.channels = 2, "y"
        >>> model_scale_and_channels(net)
        (2, 'y')
    """
    scale = getattr(model, "scale", None)
    channels = getattr(model, "channels", None)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"model must have an int attribute scale >= 1, got scale={scale!r}")
    if channels not in ("y", "rgb"):
        raise ValueError(f"model must have an attribute channels 'y' or 'rgb', got channels={channels!r}")
    return scale, channels


def resolve_precision(
    precision: str, backend: str = "torch", device: torch.device | None = None, model: nn.Module | None = None
) -> str:
    """``"fp32"``, ``"bf16"`` or ``"int8"``: ``"auto"`` is int8 for a ``model`` that
    :mod:`subpixel.upscaling.int8` runs (the bundled networks) on a CPU with AVX-512-VNNI or AMX and native bf16,
    else bf16 where the hardware computes it natively (a CPU with AVX-512-BF16 or AMX, as oneDNN reports; a CUDA
    GPU with bf16) on the torch backend, else fp32.

    Examples:
        >>> resolve_precision("fp32"), resolve_precision("auto", "onnxruntime")
        ('fp32', 'fp32')
    """
    if precision not in ("fp32", "bf16", "int8", "auto"):
        raise SubpixelError(f"precision must be 'fp32', 'bf16', 'int8' or 'auto', got {precision!r}")
    if precision != "auto":
        return precision
    if backend != "torch":
        return "fp32"
    if device is not None and device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if bf16 and model is not None:
        from subpixel.upscaling import int8

        if int8.cpu_supports_int8() and int8.unsupported_reason(model) is None:
            return "int8"
    return "bf16" if bf16 else "fp32"


def _export_dynamic_onnx(model: nn.Module, in_channels: int) -> bytes:
    """Export ``model`` to ONNX with dynamic batch, height and width (tiles come in many sizes)."""
    example = torch.rand(1, in_channels, 16, 16)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes={"lr": {0: "n", 2: "h", 3: "w"}, "sr": {0: "n", 2: "hr", 3: "wr"}},
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


class _TanhInPlace(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh_()


class _PReLUInPlace(nn.Module):
    """``PReLU`` computed in place: by the compiled kernel in one pass (:func:`subpixel.native.prelu_`) where it
    applies, else as ``max(x, 0) + a·min(x, 0)`` (traced, compiled, or without a C compiler). Both equal
    :func:`torch.nn.functional.prelu` in value; in bfloat16 on the CPU the kernel is about 40× faster than
    PyTorch's own PReLU (a scalar pass) and 6× faster than the composition (four passes)."""

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.weight = prelu.weight

    def forward(self, x: Tensor) -> Tensor:
        return prelu_in_place(x, self.weight)


def prelu_in_place(x: Tensor, weight: Tensor) -> Tensor:
    """``x`` overwritten by ``prelu(x, weight)`` and returned: the compiled kernel's one pass
    (:func:`subpixel.native.prelu_`) where it applies, else ``max(x, 0) + a·min(x, 0)`` in place (equal in value).

    Shape:
        - x: ``(N, C, *spatial)``; weight: ``(C,)`` or ``(1,)``.
    """
    if is_eager_plain(x) and native.prelu_(x, weight):
        return x
    slope = weight.view(1, -1, *([1] * (x.dim() - 2))) if weight.numel() > 1 else weight
    negative = x.clamp_max(0).mul_(slope)
    return x.clamp_min_(0).add_(negative)


def inplace_activations(net: nn.Module) -> int:
    """Make activations that directly follow a convolution inside an ``nn.Sequential`` work in place.

    Inside a ``Sequential`` a convolution's output goes only to the next module, so overwriting it is safe (in
    inference); it saves a full-size allocation and a pass over memory per activation. Returns the count changed.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 1), nn.ReLU())
        >>> inplace_activations(net), net[3].inplace
        (2, True)
    """
    changed = 0
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, before), (name, child) in itertools.pairwise(children):
            if not isinstance(before, nn.Conv2d):
                continue
            if type(child) is nn.Tanh:
                setattr(module, name, _TanhInPlace())
                changed += 1
            elif type(child) is nn.ReLU and not child.inplace:
                child.inplace = True
                changed += 1
            elif type(child) is nn.PReLU:
                setattr(module, name, _PReLUInPlace(child))
                changed += 1
    return changed


def make_runner(
    model: nn.Module,
    *,
    backend: Backend = "torch",
    precision: Precision = "fp32",
    channels_last: bool = True,
    compile: bool = False,
    threads: int | None = None,
    device: str | torch.device | None = "cpu",
) -> Runner:
    """A function running ``model`` on ``(N, C, h, w)`` float32 tensors, set up for speed on CPU.

    Args:
        model: the SR network (it is copied, not changed).
        backend: ``"torch"`` (eager PyTorch) or ``"onnxruntime"`` (the model exported to ONNX with dynamic
            height and width, run by ONNX Runtime's CPU provider).
        precision: ``"fp32"``, ``"bf16"`` (torch backend: weights and activations in bfloat16, accumulation
            in float32 by oneDNN; fast on CPUs with AMX/AVX-512-BF16; the output is returned as float32),
            ``"int8"`` (CPU, the bundled networks only: :mod:`subpixel.upscaling.int8`; runs eagerly, ``compile``
            does not apply), or ``"auto"`` (:func:`resolve_precision`).
        channels_last: torch backend: run convolutions in NHWC memory layout (faster with oneDNN).
        compile: torch backend: :func:`torch.compile` with Inductor's freezing (convolutions with their
            activation fused by oneDNN); each new input size compiles once (seconds), so it pays off for videos
            and batches of same-size images. Falls back to eager, with a warning, when compilation fails.
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``).
        device: torch backend: where the network runs (:func:`resolve_device`: ``"auto"``, ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``); inputs and outputs stay on the CPU.

    Returns:
        ``runner(x) -> model(x)``, float32, in inference mode.

    Shape:
        ``(N, C, h, w) -> (N, C, h·r, w·r)``.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.PixelShuffle(2)).eval()
        >>> x = torch.rand(1, 1, 5, 6)
        >>> bool(torch.allclose(make_runner(net)(x), net(x), atol=1e-6))
        True
    """
    if backend not in ("torch", "onnxruntime"):
        raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
    from subpixel.errors import SubpixelError

    where = resolve_device(device)
    precision = resolve_precision(precision, backend, where, model)  # type: ignore[assignment]
    if backend == "onnxruntime" and where.type != "cpu":
        raise SubpixelError(f"device: the onnxruntime backend runs on the CPU only, got {str(where)!r}")
    if precision == "int8":
        return _int8_runner(model, backend, where)
    net = copy.deepcopy(model).eval()
    first = next((p for p in net.parameters()), None)
    in_channels = int(getattr(net, "in_channels", 0) or (1 if getattr(net, "channels", "y") == "y" else 3))
    if backend == "onnxruntime":
        if precision != "fp32":
            raise ValueError("the onnxruntime backend runs fp32 only; use precision='fp32'")
        import onnxruntime as ort

        net = net.float()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.log_severity_level = 3
        session = ort.InferenceSession(
            _export_dynamic_onnx(net, in_channels), options, providers=["CPUExecutionProvider"]
        )

        def run_ort(x: Tensor) -> Tensor:
            array = np.ascontiguousarray(x.detach().to(torch.float32).cpu().numpy())
            return torch.from_numpy(session.run(None, {"lr": array})[0])

        return run_ort
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if first is not None:
        net = net.to(dtype=dtype)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device=where, memory_format=layout)
    inplace_activations(net)
    forward: Callable[[Tensor], Tensor] = net
    if compile:
        import torch._inductor.config as inductor_config

        compiled = torch.compile(net, dynamic=False)
        state = {"ok": True}

        def forward(x: Tensor) -> Tensor:
            if state["ok"]:
                try:
                    # a fresh inference tensor, so that every call presents the same dispatch keys (no
                    # recompilation between callers inside and outside inference mode); a budget of
                    # recompilations for the few tile sizes of each model
                    x = x.clone()
                    with inductor_config.patch(freezing=True), torch._dynamo.config.patch(recompile_limit=64):
                        return compiled(x)
                except Exception as exc:  # no C++ compiler, or Inductor cannot handle the model
                    state["ok"] = False
                    warnings.warn(
                        f"torch.compile failed ({type(exc).__name__}: {exc}); running eagerly", stacklevel=2
                    )
            return net(x)

    def run_torch(x: Tensor) -> Tensor:
        with torch.inference_mode():
            y = forward(x.to(device=where, dtype=dtype).contiguous(memory_format=layout))
            return y.to(device=x.device, dtype=torch.float32).contiguous()

    return run_torch


def _int8_runner(model: nn.Module, backend: str, where: torch.device) -> Runner:
    """:func:`make_runner` for ``precision="int8"`` (:mod:`subpixel.upscaling.int8`)."""
    from subpixel.upscaling.int8 import int8_network

    if backend != "torch" or where.type != "cpu":
        raise SubpixelError(
            f"precision='int8' runs on the CPU with the torch backend, got backend={backend!r}, device={str(where)!r}"
        )
    net = int8_network(model)

    def run_int8(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return net(x.to(torch.float32))

    return run_int8


@functools.lru_cache(maxsize=2)
def _colour_affine(direction: str) -> tuple[np.ndarray, np.ndarray]:
    """``(M, b)`` with ``convert(v) = M @ v + b`` for the protocol's ``rgb_to_ycbcr`` / ``ycbcr_to_rgb``.

    Read off the protocol's own functions (one definition of the colour space), then applied to whole tiles
    as a single 1×1 convolution.
    """
    from subpixel.sr.protocol import rgb_to_ycbcr, ycbcr_to_rgb

    convert = rgb_to_ycbcr if direction == "to_ycbcr" else ycbcr_to_rgb
    offset = np.asarray(convert(np.zeros((1, 3))), dtype=np.float64)[0]
    columns = np.asarray(convert(np.eye(3)), dtype=np.float64) - offset
    return columns.T.copy(), offset


def _convert_colour(x: Tensor, direction: str) -> Tensor:
    """Apply :func:`_colour_affine` to ``(N, 3, h, w)``."""
    matrix, offset = _colour_affine(direction)
    m = torch.as_tensor(matrix, dtype=x.dtype, device=x.device)
    b = torch.as_tensor(offset, dtype=x.dtype, device=x.device)[:, None]
    n, _, h, w = x.shape
    flat = x.reshape(n, 3, h * w)
    out = torch.empty((n, 3, h * w), dtype=x.dtype, device=x.device)
    for i in range(n):  # one pass each: (3×3) @ (3, h·w) + b, written in place (no stacking copy)
        torch.addmm(b, m, flat[i], out=out[i])
    return out.reshape(n, 3, h, w)


def sr_pipeline(runner: Runner, channels: str, scale: int, *, ycbcr: bool = False) -> Callable[[Tensor], Tensor]:
    """The per-tile computation: LR image tensor -> upscaled image tensor, by the model and bicubic.

    Args:
        runner: the model, as from :func:`make_runner` (``(N, C, h, w) -> (N, C, h·r, w·r)``).
        channels: the model's input, ``"y"`` (one plane, ``Y / 255``) or ``"rgb"``.
        scale: the factor ``r``.
        ycbcr: for a ``"y"`` model and colour tiles, return the upscaled YCbCr planes (studio range on the 0–255
            scale, as :func:`subpixel.sr.protocol.ycbcr_to_rgb` takes them) instead of RGB, so that the caller
            converts and rounds them in one pass (:func:`subpixel.native.colour_quantize_into`).

    Returns:
        ``fn(x)`` with ``x`` of shape ``(N, C, h, w)``, C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA), values
        in [0, 1]; the result ``(N, C, h·r, w·r)`` is float32 and not clamped.

    Shape:
        ``(N, C, h, w) -> (N, C, h·r, w·r)``.

    Examples:
        >>> bicubic_y = lambda y: __import__("subpixel.sr.protocol").sr.protocol.imresize(y, 2)
        >>> fn = sr_pipeline(bicubic_y, "y", 2)
        >>> gray = torch.full((1, 1, 4, 4), 0.25)
        >>> bool(torch.allclose(fn(gray), torch.full((1, 1, 8, 8), 0.25), atol=1e-5))
        True
    """

    def bicubic(planes: Tensor) -> Tensor:
        return bicubic_upscale(planes, scale)

    def fn(x: Tensor) -> Tensor:
        c = x.shape[1]
        if c not in (1, 2, 3, 4):
            raise ValueError(f"image tiles must have 1 to 4 channels (gray, gray+alpha, RGB, RGBA), got {c}")
        gray = c in (1, 2)
        colour = x[:, : 1 if gray else 3].to(torch.float32)
        if channels == "y":
            y_sr = runner(model_y(colour, channel_axis=1)[:, None])  # the one definition of a Y model's input
            if gray:  # back to one plane: the gray whose Y this is
                out = gray_from_model_y(y_sr)
            else:
                chroma = bicubic(_convert_colour(colour, "to_ycbcr")[:, 1:])
                out = torch.cat([y_sr * 255.0, chroma.to(y_sr.dtype)], dim=1)
                out = out if ycbcr else _convert_colour(out, "to_rgb")
        else:
            out = runner(colour.expand(-1, 3, -1, -1) if gray else colour)
            if gray:
                out = gray_from_model_y(model_y(out, channel_axis=1))[:, None]
        out = out.to(torch.float32)
        if c in (2, 4):
            out = torch.cat([out, bicubic(x[:, c - 1 :].to(torch.float32))], dim=1)
        return out

    return fn


def unit_float(pixels: np.ndarray, name: str = "pixels") -> np.ndarray:
    """Image samples as float32 in [0, 1]: uint8 divided by 255, uint16 by 65535, floats checked.

    Args:
        pixels: an image array of any shape: uint8, uint16, or floating point with values in [0, 1].
        name: the argument's name, for error messages.

    Returns:
        A float32 array of the same shape (``pixels`` itself when it already is float32).

    Raises:
        ValueError: floating-point values outside [0, 1] (or NaN): 8-bit values stored as floats would
            otherwise come out as a posterised picture.
        TypeError: any other dtype.

    Examples:
        >>> unit_float(np.array([0, 51, 255], dtype=np.uint8))
        array([0. , 0.2, 1. ], dtype=float32)
        >>> unit_float(np.array([0.0, 128.0]))
        Traceback (most recent call last):
        ...
        ValueError: pixels: floating-point values must be in [0, 1], got values from 0 to 128; divide 8-bit values by 255 (or pass a uint8 array)
    """
    if pixels.dtype in (np.uint8, np.uint16):  # the same arithmetic as subpixel.imageio.load_image
        return pixels.astype(np.float32) / np.float32(255.0 if pixels.dtype == np.uint8 else 65535.0)
    if not np.issubdtype(pixels.dtype, np.floating):
        raise TypeError(f"{name} must be uint8, uint16 or floating point in [0, 1], got dtype {pixels.dtype}")
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if not (low >= 0.0 and high <= 1.0):
        hint = (
            "divide 8-bit values by 255 (or pass a uint8 array)"
            if high <= 255
            else "divide 16-bit values by 65535 (or pass a uint16 array)"
        )
        if np.isnan(low) or np.isnan(high):
            hint = "it contains NaN"
        raise ValueError(
            f"{name}: floating-point values must be in [0, 1], got values from {low:g} to {high:g}; {hint}"
        )
    return pixels.astype(np.float32, copy=False)


def upscale_pixels(
    pixels: np.ndarray,
    model: nn.Module,
    *,
    runner: Runner | None = None,
    tile: int | None = None,
    max_memory: int | str | None = None,
    bit_depth: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Upscale an image array by ``model.scale`` in tiles.

    Args:
        pixels: array (H, W, C), C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA): uint8 (0..255), uint16
            (0..65535) or floating point in [0, 1] (a float array outside [0, 1], e.g. 8-bit values as floats,
            is refused rather than guessed).
        model: an SR network with ``scale``, ``channels`` (``"y"``/``"rgb"``) and ideally ``lr_receptive_radius``.
        runner: how to run it (default: :func:`make_runner` ``(model)``).
        tile: tile side in LR pixels (default: from ``max_memory``).
        max_memory: memory budget of one tile (bytes or e.g. ``"512M"``; default
            :data:`~subpixel.upscaling.tiling.DEFAULT_MAX_MEMORY`).
        bit_depth: ``None`` for a float32 result (not clamped); 8 or 16 for uint8/uint16, clamped and rounded
            half up tile by tile (the full-size float image never exists).
        progress: called with the number of LR pixels done after each tile.

    Returns:
        (H·r, W·r, C) array.

    Shape:
        ``(H, W, C) -> (H·r, W·r, C)``.
    """
    scale, channels = model_scale_and_channels(model)
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(
            f"pixels must be a numpy array (H, W, C) with C in 1..4, got {getattr(pixels, 'shape', type(pixels))}"
        )
    pixels = unit_float(pixels)
    if bit_depth not in (None, 8, 16):
        raise ValueError(f"bit_depth must be None, 8 or 16, got {bit_depth!r}")
    height, width, c = pixels.shape
    radius = max(receptive_radius(model), BICUBIC_RADIUS)
    tile = tile_side(
        model, scale, radius, tile=tile, max_memory=max_memory, extra_hr_channels=_PIPELINE_HR_CHANNELS
    )
    # 8/16-bit colour from a Y model: YCbCr -> RGB and the rounding in one pass, where the kernel is available
    fused = bit_depth is not None and channels == "y" and c in (3, 4) and native.available()
    fn = sr_pipeline(runner or make_runner(model), channels, scale, ycbcr=fused)
    to_rgb = _colour_affine("to_rgb")
    lr = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).unsqueeze(0)
    if bit_depth is None:
        out = np.empty((height * scale, width * scale, c), dtype=np.float32)
    else:
        out = np.empty((height * scale, width * scale, c), dtype=np.uint8 if bit_depth == 8 else np.uint16)
    top = 255.0 if bit_depth == 8 else 65535.0

    def sink(piece: Tensor, region: tuple[int, int, int, int]) -> None:
        values = piece[0]  # (C, h, w) float32
        target = out[region[0] : region[1], region[2] : region[3]]
        if fused:  # YCbCr planes (+ alpha): the colour goes to RGB as it is rounded
            rgb = torch.from_numpy(target[..., :3]).permute(2, 0, 1)
            if not native.colour_quantize_into(rgb, values[:3], *to_rgb):
                values = torch.cat([_convert_colour(values[None, :3], "to_rgb")[0], values[3:]])
            elif c == 3:
                return
            else:
                values, target = values[3:], target[..., 3:]
        if bit_depth is not None and native.quantize_into(torch.from_numpy(target).permute(2, 0, 1), values):
            return
        if (
            bit_depth is not None
        ):  # as imageio.quantize: NaN -> 0, clamp, round half up (in float64), then ints
            values = torch.nan_to_num(values, nan=0.0).clamp_(0.0, 1.0).double()
            values = values.mul_(top).add_(0.5).floor_().to(torch.uint8 if bit_depth == 8 else torch.int32)
        target[...] = values.permute(1, 2, 0).numpy()

    with torch.inference_mode():
        tiled_map(fn, lr, scale, radius=radius, tile=tile, sink=sink, progress=progress)
    return out


@dataclass(frozen=True)
class UpscaleResult:
    """What :func:`upscale_file` wrote.

    Attributes:
        source, target: input and output files.
        size_in, size_out: (width, height) before and after.
        format: the output's format; bit_depth: its bits per sample.
    """

    source: Path
    target: Path
    size_in: tuple[int, int]
    size_out: tuple[int, int]
    format: str
    bit_depth: int


@dataclass
class Upscaler:
    """A model with its run settings, built once (the network copied, cast and laid out for speed) and called
    for many images: the counterpart of OpenCV's ``DnnSuperResImpl``.

    Args:
        model: the SR network (``scale``, ``channels``, ``lr_receptive_radius``).
        backend, precision, compile, device: see :func:`make_runner`; ``precision="auto"`` and
            ``device="auto"`` are resolved here (:func:`resolve_precision`, :func:`resolve_device`), so the
            attributes name what runs.
        tile, max_memory: see :func:`upscale_pixels`.
        max_pixels: refuse inputs with more pixels (decompression-bomb guard, see
            :func:`subpixel.imageio.load_image`).

    Examples:
        >>> from subpixel.sr.models import ESPCN
        >>> up = Upscaler(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)), device="cpu")
        >>> up(np.zeros((4, 6, 3), np.uint8), bit_depth=8).shape, up.device
        ((8, 12, 3), device(type='cpu'))
    """

    model: nn.Module
    backend: Backend = "torch"
    precision: Precision = "fp32"
    compile: bool = False
    tile: int | None = None
    max_memory: int | str | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    device: str | torch.device | None = "auto"

    def __post_init__(self) -> None:
        self.scale, self.channels = model_scale_and_channels(self.model)
        automatic = self.device is None or (isinstance(self.device, str) and self.device.lower() == "auto")
        self.device = resolve_device("cpu" if self.backend != "torch" and automatic else self.device)
        self.precision = resolve_precision(  # type: ignore[assignment]
            self.precision, self.backend, self.device, self.model
        )
        self.runner = make_runner(
            self.model,
            backend=self.backend,
            precision=self.precision,
            compile=self.compile,
            device=self.device,
        )

    def __call__(
        self,
        pixels: np.ndarray,
        *,
        bit_depth: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """:func:`upscale_pixels` with these settings."""
        return upscale_pixels(
            pixels,
            self.model,
            runner=self.runner,
            tile=self.tile,
            max_memory=self.max_memory,
            bit_depth=bit_depth,
            progress=progress,
        )


def output_format(source: Path, target: Path, format: str | None) -> str:
    """The format to write: ``format`` if given, else the target's extension, else the source's format."""
    if format is not None:
        from subpixel.imageio import _normalize_format

        return _normalize_format(format)
    suffix = target.suffix.lower()
    for name, suffixes in FORMAT_EXTENSIONS.items():
        if suffix in suffixes:
            return name
    raise SubpixelError(
        f"cannot tell the output format of {str(target)!r}; give it an image extension or --format"
    )


def upscale_file(
    source: str | Path,
    target: str | Path,
    upscaler: Upscaler,
    *,
    format: str | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> UpscaleResult:
    """Read ``source``, upscale it, write ``target`` atomically.

    Grayscale stays grayscale, alpha stays alpha (dropped with a warning for JPEG and BMP), 16-bit stays 16-bit
    where the output format can store it (PNG, TIFF).

    Args:
        source: the input image.
        target: the output file (its folder must exist).
        upscaler: model and settings.
        format: output format (default: from ``target``'s extension).
        force: replace an existing ``target``.
        progress: per-tile progress callback (LR pixels done).
        warn: receives warnings (default: :func:`warnings.warn`).

    Returns:
        An :class:`UpscaleResult`.

    Raises:
        subpixel.imageio.ImageReadError: unreadable input.
        FileExistsError: ``target`` exists and ``force`` is false.
        ValueError: bad output format.
    """
    source, target = Path(source), Path(target)
    fmt = output_format(source, target, format)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass force=True to replace it")
    if target.resolve() == source.resolve():
        raise SubpixelError(f"refusing to write the output over its input {source}")
    image = load_image(source, max_pixels=upscaler.max_pixels)
    pixels = image.pixels
    if image.mode == "LA":
        pixels = pixels[..., [0, 3]]
    has_alpha = image.has_alpha
    if has_alpha and fmt in ("JPEG", "BMP"):
        (warn or warnings.warn)(f"{source}: {fmt} cannot store the alpha channel; it is dropped")
        pixels = pixels[..., :-1]
        has_alpha = False
    bit_depth = 16 if image.bit_depth == 16 and fmt in ("PNG", "TIFF") else 8
    out = upscaler(pixels, bit_depth=bit_depth, progress=progress)
    kept = image.metadata.scaled(out.shape[1] / image.width)  # ICC profile, EXIF, DPI × the factor
    write_image(target, out, bit_depth=bit_depth, format=fmt, metadata=kept)
    return UpscaleResult(
        source=source,
        target=target,
        size_in=(image.width, image.height),
        size_out=(out.shape[1], out.shape[0]),
        format=fmt,
        bit_depth=bit_depth,
    )
