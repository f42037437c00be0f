"""``subpixel.upscale(image, scale)``: one call from a picture in memory to the upscaled picture, same kind.

The counterpart of OpenCV's ``DnnSuperResImpl.upsample(img)``, with the options of ``subpixel upscale``: the model
(bundled weights, a ``.safetensors`` file, or any SR module), the backend, the precision, ``torch.compile`` and
the tiling memory budget. The pixels go through exactly the path of the command line
(:class:`subpixel.upscaling.image.Upscaler`: the model on Y, bicubic chroma and alpha, tiles equal to the untiled
result), so a file upscaled by the command and the same picture upscaled here agree bit for bit.

Accepted images, and what comes back (always the same kind, layout and dtype):

==========================  =====================================================================================
input                       notes
==========================  =====================================================================================
``PIL.Image.Image``         modes ``L``, ``LA``, ``RGB``, ``RGBA``, ``I;16`` kept; palette, bilevel and CMYK
                            images come back as ``RGB``/``RGBA``/``L`` (as :mod:`subpixel.imageio` reads them)
``numpy.ndarray``           ``(H, W)`` or ``(H, W, C)``, C in 1..4 (gray, gray + alpha, RGB, RGBA); ``uint8``,
                            ``uint16``, or floating point with values in [0, 1] (the result is clamped to [0, 1])
``torch.Tensor``            ``(H, W)``, ``(C, H, W)`` or ``(N, C, H, W)``, C in 1..4; ``uint8`` or floating point
                            in [0, 1]; computed on the CPU, returned on the input's device
==========================  =====================================================================================

Anything else is refused with a message naming what was received: a float array outside [0, 1] (8-bit values
stored as floats, say) is an error, not a guess.

``subpixel.upscale`` is this function, a plain function: the package that holds it is :mod:`subpixel.upscaling`
(images, videos, tiling), and :mod:`subpixel` imports it only on first access, so ``import subpixel`` stays light.

Examples:
    >>> import numpy as np, subpixel
    >>> photo = (np.random.default_rng(0).random((16, 20, 3)) * 255).astype(np.uint8)
    >>> big = subpixel.upscale(photo, scale=3)
    >>> big.shape, big.dtype
    ((48, 60, 3), dtype('uint8'))
    >>> subpixel.upscale(photo / 255.0, scale=2).dtype      # float in [0, 1] -> float
    dtype('float64')
    >>> subpixel.upscale(photo.astype(float), scale=2)     # 0..255 as floats: refused, not posterised
    Traceback (most recent call last):
    ...
    ValueError: image: floating-point values must be in [0, 1], got values from ... to ...; divide 8-bit values by 255 (or pass a uint8 array)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from subpixel._extras import hint_missing
from subpixel.errors import SubpixelError

if TYPE_CHECKING:
    from subpixel.upscaling.image import Backend, Precision, Upscaler

__all__ = ["upscale"]

_KINDS = (
    "a PIL image, a numpy array (H, W) or (H, W, C) of uint8, uint16 or float in [0, 1], "
    "or a torch tensor (H, W), (C, H, W) or (N, C, H, W)"
)


@functools.lru_cache(maxsize=4)
def _bundled(scale: int, family: str) -> nn.Module:
    from subpixel.sr import pretrained

    return pretrained(scale, model=family)


@functools.lru_cache(maxsize=4)
def _weights_file(path: str, mtime_ns: int, size: int) -> nn.Module:
    from subpixel.sr import load

    return load(path)


@functools.lru_cache(maxsize=4)
def _cached_upscaler(
    model: nn.Module,
    backend: str,
    precision: str,
    compile: bool,
    tile: int | None,
    max_memory: int | str | None,
    device: str,
) -> Upscaler:
    """One :class:`Upscaler` per model and settings: built (copied, cast, laid out) once, called many times."""
    from subpixel.upscaling.image import Upscaler

    return Upscaler(
        model,
        backend=backend,  # type: ignore[arg-type]
        precision=precision,  # type: ignore[arg-type]
        compile=compile,
        tile=tile,
        max_memory=max_memory,
        device=device,
    )


def _resolve_model(
    scale: int | None, model: nn.Module | str | None, weights: str | os.PathLike[str] | None
) -> tuple[nn.Module, bool]:
    """The model to run and whether it may be cached (bundled weights or an unchanged weights file)."""
    from subpixel.sr.models import DEFAULT_MODEL

    if model is not None and weights is not None:
        raise SubpixelError("give model= or weights=, not both")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
        raise SubpixelError(f"scale must be an int >= 1, got {scale!r}")
    if scale is None and (model is None or isinstance(model, str)) and weights is None:
        raise SubpixelError(
            "scale: needed with the bundled weights (2, 3 or 4), got none; a model or a weights file "
            "knows its own scale"
        )
    if isinstance(model, str):
        chosen, cacheable = _bundled(scale, model), True  # type: ignore[arg-type]
    elif model is not None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module with scale and channels, got {type(model).__name__}"
            )
        chosen, cacheable = model, False  # its weights may change between calls: never reuse a copy
    elif weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise SubpixelError(f"weights {str(path)!r}: file not found")
        stat = path.stat()
        chosen, cacheable = _weights_file(str(path.resolve()), stat.st_mtime_ns, stat.st_size), True
    else:
        chosen, cacheable = _bundled(scale, DEFAULT_MODEL), True  # type: ignore[arg-type]
    declared = getattr(chosen, "scale", None)
    if scale is not None and declared != scale:
        source = "model" if model is not None else f"weights {weights}" if weights is not None else "bundled"
        raise SubpixelError(f"the {source} upscale ×{declared}, but scale={scale}")
    return chosen, cacheable


def _from_pil(image: Any) -> tuple[np.ndarray, str]:
    from subpixel.imageio import _to_standard

    array, _, mode = _to_standard(image)
    if mode == "L" and array.dtype == np.uint16:
        mode = "I;16"
    return array, mode


def _to_pil(array: np.ndarray, mode: str) -> Any:
    from PIL import Image

    if mode == "I;16":
        return Image.fromarray(array[..., 0].astype("<u2"))
    return Image.fromarray(np.ascontiguousarray(array[..., 0] if mode == "L" else array))  # L, LA, RGB, RGBA


def _run(upscaler: Upscaler, pixels: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` uint8 / uint16 / float in [0, 1] -> the upscaled array of the same dtype."""
    from subpixel.upscaling.image import unit_float

    if pixels.dtype in (np.uint8, np.uint16):
        return upscaler(pixels, bit_depth=8 if pixels.dtype == np.uint8 else 16)
    unit_float(pixels, "image")  # the range check, with the argument's name
    out = upscaler(pixels)
    return np.clip(out, 0.0, 1.0, out=out).astype(pixels.dtype, copy=False)


def _check_array(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise SubpixelError(
            f"image: a numpy array must have shape (H, W) or (H, W, C) with C in 1..4, got {tuple(array.shape)}"
        )
    if not (array.dtype in (np.uint8, np.uint16) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(
            f"image: a numpy array must be uint8, uint16 or float in [0, 1], got dtype {array.dtype}"
        )
    return array


def upscale(
    image: Any,
    scale: int | None = None,
    *,
    model: nn.Module | str | None = None,
    weights: str | os.PathLike[str] | None = None,
    backend: Backend = "torch",
    precision: Precision = "auto",
    compile: bool = False,
    tile: int | None = None,
    max_memory: int | str | None = None,
    device: str | torch.device = "auto",
) -> Any:
    """Upscale a picture in memory and return the same kind of picture (see the module docstring).

    Args:
        image: a ``PIL.Image.Image``, a numpy array ``(H, W)``/``(H, W, C)`` (uint8, uint16, or float in
            [0, 1]) or a torch tensor ``(H, W)``/``(C, H, W)``/``(N, C, H, W)`` (uint8, or float in [0, 1]).
        scale: the factor: needed for the bundled weights (2, 3 or 4); a ``model`` or ``weights`` knows its own
            (given together with them, it must match theirs).
        model: the name of a bundled family (``"rep"``, the default, or ``"espcn"``, the paper's), or an SR
            network with ``scale`` and ``channels`` (``"y"``/``"rgb"``) attributes, e.g.
            :func:`subpixel.sr.pretrained` ``(4)`` or your own :class:`subpixel.sr.ESPCN` (copied at every call,
            so later changes to its weights are seen; for many calls with ``compile=True`` build a
            :class:`subpixel.upscaling.image.Upscaler` once).
        weights: a ``.safetensors`` file from ``subpixel train`` (its ``.json`` beside it).
        backend: ``"torch"`` or ``"onnxruntime"``.
        precision: ``"auto"`` (as the command line: int8 for the bundled networks on CPUs with AVX-512-VNNI and
            bf16, else bf16 where the CPU or GPU computes it natively), ``"fp32"``, ``"bf16"`` or ``"int8"``
            (torch backend).
        compile: ``torch.compile`` the network (torch backend; pays off over many same-size pictures).
        tile: tile side in LR pixels (default: from ``max_memory``).
        max_memory: memory budget of one tile, bytes or e.g. ``"512M"`` (default 512 MiB).
        device: ``"auto"`` (a CUDA GPU when there is one, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
            (torch backend); pictures come back on their own device either way.

    The network is prepared once per model and settings and kept (bundled weights, a weights file until it
    changes): repeated calls pay only for the pixels. A ``model`` module is copied at every call.

    The command's ``--threads`` has no counterpart here: the thread count is process-wide, set it with
    :func:`torch.set_num_threads`. ``--max-pixels`` guards file decoding and does not apply to pictures in memory.

    Returns:
        The upscaled picture: same type, layout, dtype (and device for tensors), height and width times
        ``scale``. Integer results are rounded half up; float results are clamped to [0, 1].

    Raises:
        TypeError: an unsupported kind of image or dtype.
        subpixel.SubpixelError: a bad shape, float values outside [0, 1], no scale for the bundled weights, a
            scale that does not match the model, a device that is not there.
        ModuleNotFoundError: a missing optional dependency; the message names the ``pip install`` that adds it.

    Shape:
        ``(H, W, C) -> (H·r, W·r, C)``; ``(N, C, H, W) -> (N, C, H·r, W·r)``.
    """
    with hint_missing("subpixel.upscale"):
        chosen, cacheable = _resolve_model(scale, model, weights)
        key = str(device)
        if cacheable:
            upscaler = _cached_upscaler(chosen, backend, precision, bool(compile), tile, max_memory, key)
        else:
            upscaler = _cached_upscaler.__wrapped__(
                chosen, backend, precision, bool(compile), tile, max_memory, key
            )
        return _dispatch(upscaler, image)


def _dispatch(upscaler: Upscaler, image: Any) -> Any:
    """Run ``upscaler`` on any accepted kind of image and return the same kind."""
    if type(image).__module__.startswith("PIL.") and hasattr(image, "mode") and hasattr(image, "size"):
        array, mode = _from_pil(image)
        return _to_pil(_run(upscaler, array), mode)
    if isinstance(image, np.ndarray):
        hw = image.ndim == 2
        out = _run(upscaler, _check_array(image))
        return out[..., 0] if hw else out
    if isinstance(image, torch.Tensor):
        return _upscale_tensor(upscaler, image)
    raise TypeError(f"image must be {_KINDS}; got {type(image).__module__}.{type(image).__qualname__}")


def _upscale_tensor(upscaler: Upscaler, image: torch.Tensor) -> torch.Tensor:
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise TypeError(f"image: a tensor must be uint8 or floating point in [0, 1], got dtype {image.dtype}")
    ndim = image.ndim
    if ndim not in (2, 3, 4) or (ndim > 2 and image.shape[-3] not in (1, 2, 3, 4)):
        raise SubpixelError(
            f"image: a tensor must have shape (H, W), (C, H, W) or (N, C, H, W) with C in 1..4, "
            f"got {tuple(image.shape)}"
        )
    batch = image.reshape(1, 1, *image.shape) if ndim == 2 else image.unsqueeze(0) if ndim == 3 else image
    host = batch.detach().to("cpu")
    if host.dtype in (torch.float16, torch.bfloat16):
        host = host.float()
    outs = [_run(upscaler, host[i].permute(1, 2, 0).numpy()) for i in range(host.shape[0])]
    out = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).to(device=image.device, dtype=image.dtype)
    out = out.contiguous()
    return out[0, 0] if ndim == 2 else out[0] if ndim == 3 else out
