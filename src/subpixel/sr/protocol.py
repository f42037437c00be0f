"""The standard super-resolution evaluation protocol, reproducing MATLAB to the last bit.

Published SR numbers (SRCNN, ESPCN, FSRCNN and later papers) are measured this way:

1. crop the HR image to multiples of the scale ``r`` (:func:`modcrop`);
2. LR = MATLAB ``imresize(HR, 1/r, 'bicubic')`` (:func:`imresize`: Keys' cubic with ``a = -0.5``, kernel widened
   by ``r`` when shrinking, edge pixels repeated, height before width, and, for 8-bit images, rounding to
   integers after *each* pass as MATLAB does for ``uint8``);
3. super-resolve, clamp to [0, 1] and round to 8 bits as a saved image is (:func:`quantize_uint8`);
4. take the Y of BT.601 studio-range YCbCr as MATLAB ``rgb2ycbcr`` does (:func:`to_y`, :func:`rgb_to_ycbcr`);
   a grayscale image is its own Y;
5. crop ``r`` pixels from every border and compute :func:`psnr` (float64) and :func:`ssim` (Wang et al. 2004:
   Gaussian window 11, σ = 1.5, K1 = 0.01, K2 = 0.03) per image; report the mean over images.

:func:`score_pair` does steps 3 to 5 for one image, :func:`run_protocol` all five for an upscaler over a folder
(the ``img_NNN_SRF_{r}_HR.png`` / ``_LR.png`` layout of the standard test sets, or a plain folder of HR images),
and :func:`bicubic_upscaler` is the baseline every paper reports.

Conventions:

* Images are numpy arrays of shape ``(H, W)`` or ``(H, W, C)``, C = 1 (grayscale) or 3 (RGB): floating point in
  [0, 1], or ``uint8`` / ``uint16`` integers. :func:`imresize` and :func:`modcrop` also take torch tensors of
  shape ``(*, H, W)`` (channels first, as torch has them).
* YCbCr is on the 8-bit scale: ``Y ∈ [16, 235]`` and ``Cb, Cr ∈ [16, 240]`` for RGB in [0, 1] (MATLAB's
  ``255 * rgb2ycbcr(double(rgb) / 255)``). A Y-channel model sees ``Y / 255``.

Examples:
    >>> hr = np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    >>> lr = imresize(hr, 1 / 3)                       # uint8 in, uint8 out, rounded after each pass
    >>> lr.shape, lr.dtype
    ((8, 10, 3), dtype('uint8'))
    >>> sr = bicubic_upscaler(lr / 255.0, 3)            # float64 in [0, 1]
    >>> score = score_pair(hr, sr, 3)
    >>> 5 < score.psnr < 20 and 0 < score.ssim < 1
    True
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageScore",
    "ProtocolResult",
    "Score",
    "TestImage",
    "Upscaler",
    "bicubic_upscaler",
    "find_test_images",
    "imresize",
    "load_test_image",
    "make_lr",
    "modcrop",
    "psnr",
    "quantize_uint8",
    "read_image_exact",
    "rgb_to_ycbcr",
    "run_protocol",
    "score_pair",
    "ssim",
    "to_y",
    "ycbcr_to_rgb",
]

ImageT = TypeVar("ImageT", np.ndarray, Tensor)

#: An upscaler: ``(lr, scale) -> sr``. ``lr`` is float64 ``(h, w, C)`` in [0, 1] (C = 1 or 3); ``sr`` is the
#: ``(h·r, w·r, C)`` image in [0, 1], or, from a Y-channel model, the ``(h·r, w·r)`` plane ``Y / 255``.
Upscaler = Callable[[np.ndarray, int], np.ndarray]

#: File extensions read as images when a folder is a plain folder of HR images.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")

# BT.601 studio range, RGB in [0, 1] -> YCbCr on the 8-bit scale (MATLAB rgb2ycbcr's matrix and offset).
_YCBCR_MATRIX = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
_INTEGER_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

# SSIM constants of Wang et al. (2004).
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _check_scale_int(scale: Any, name: str = "scale") -> int:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {scale!r}")
    return int(scale)


def _check_image(img: Any, name: str = "img") -> np.ndarray:
    """An (H, W) or (H, W, C) numpy array of floats or uint8/uint16, C in {1, 3}."""
    if isinstance(img, Tensor):
        raise TypeError(f"{name} must be a numpy array of shape (H, W) or (H, W, C), got a torch tensor")
    if not isinstance(img, np.ndarray):
        raise TypeError(
            f"{name} must be a numpy array of shape (H, W) or (H, W, C), got {type(img).__name__}"
        )
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, C) with C = 1 or 3, got {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {img.shape}")
    if not (np.issubdtype(img.dtype, np.floating) or img.dtype in _INTEGER_MAX):
        raise TypeError(f"{name} must be floating point in [0, 1] or uint8/uint16, got dtype {img.dtype}")
    return img


def _to_float01(img: np.ndarray) -> np.ndarray:
    """float64 copy in [0, 1] of a float (as is) or uint8/uint16 (divided by 255/65535) array."""
    if img.dtype in _INTEGER_MAX:
        return img.astype(np.float64) / _INTEGER_MAX[img.dtype]
    return img.astype(np.float64, copy=False)


def modcrop(img: ImageT, scale: int) -> ImageT:
    """Crop height and width down to multiples of ``scale`` (keeping the top-left corner), as MATLAB ``modcrop``.

    Args:
        img: numpy array ``(H, W)`` / ``(H, W, C)``, or a torch tensor ``(*, H, W)``.
        scale: the SR scale factor ``r`` (int ≥ 1).

    Returns:
        A view of ``img``.

    Shape:
        - numpy: ``(H, W, *) -> (H - H mod r, W - W mod r, *)``.
        - torch: ``(*, H, W) -> (*, H - H mod r, W - W mod r)``.

    Examples:
        >>> modcrop(np.zeros((10, 11, 3)), 3).shape
        (9, 9, 3)
        >>> modcrop(torch.zeros(2, 1, 10, 11), 4).shape
        torch.Size([2, 1, 8, 8])
    """
    r = _check_scale_int(scale)
    if isinstance(img, Tensor):
        if img.dim() < 2:
            raise ValueError(f"img must be a tensor of shape (*, H, W), got shape {tuple(img.shape)}")
        h, w = img.shape[-2:]
        return img[..., : h - h % r, : w - w % r]
    if not isinstance(img, np.ndarray) or img.ndim < 2:
        raise TypeError(
            f"img must be a numpy array (H, W, *) or a tensor (*, H, W), got {type(img).__name__}"
        )
    h, w = img.shape[:2]
    return img[: h - h % r, : w - w % r]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=256)
def _resize_taps(
    in_length: int, out_length: int, scale: float, antialias: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and input indices ``(out_length, taps)`` of one 1-D MATLAB bicubic resize (edges repeated).

    Output pixel ``i`` (1-based) sits at input coordinate ``u = i / scale + (1 - 1 / scale) / 2``; it takes the
    ``ceil(width) + 2`` input pixels from ``floor(u - width / 2)``, weighted by the kernel (widened by ``1 / scale``
    when shrinking with antialiasing) and normalised to sum 1; indices outside the image are clamped, and taps
    whose weight is zero for every output pixel are dropped (as MATLAB's ``contributions`` does).
    """
    if scale < 1 and antialias:
        width = 4.0 / scale

        def kernel(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)
    else:
        width = 4.0
        kernel = _cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    indices = left[:, None] + np.arange(math.ceil(width) + 2, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    indices = np.clip(indices[:, keep], 1, in_length).astype(np.int64) - 1
    weights.setflags(write=False)
    indices.setflags(write=False)
    return weights, indices


def _resize_plan(
    in_shape: tuple[int, int], scale: Any, output_shape: Any
) -> tuple[tuple[float, float], tuple[int, int]]:
    """Per-axis scale factors and output sizes, as MATLAB derives one from the other."""
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale and output_shape")
    if output_shape is not None:
        if (
            not isinstance(output_shape, Sequence)
            or len(output_shape) != 2
            or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in output_shape
            )
        ):
            raise ValueError(f"output_shape must be two positive ints (height, width), got {output_shape!r}")
        out = (int(output_shape[0]), int(output_shape[1]))
        return (out[0] / in_shape[0], out[1] / in_shape[1]), out
    scales = scale if isinstance(scale, Sequence) and not isinstance(scale, str) else (scale, scale)
    if len(scales) != 2 or not all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in scales
    ):
        raise ValueError(
            f"scale must be a positive finite number or a (height, width) pair of them, got {scale!r}"
        )
    s = (float(scales[0]), float(scales[1]))
    out = (math.ceil(s[0] * in_shape[0]), math.ceil(s[1] * in_shape[1]))
    return s, out


def imresize(
    img: ImageT,
    scale: float | tuple[float, float] | None = None,
    *,
    output_shape: tuple[int, int] | None = None,
    antialias: bool = True,
) -> ImageT:
    """Resize like MATLAB ``imresize(img, scale, 'bicubic')`` (or ``imresize(img, output_shape, 'bicubic')``).

    Keys' cubic kernel with ``a = -0.5``; when shrinking (scale < 1) with ``antialias`` the kernel is widened by
    ``1 / scale``; pixels outside the image repeat the edge pixel; the axis with the smaller scale is resized
    first (height first when they are equal). The output size is ``ceil(scale · size)``; given ``output_shape``,
    the scale of each axis is ``output / input``.

    The dtype picks the arithmetic, as in MATLAB: floating-point input is resized in float64 (numpy) or in its own
    dtype (torch) without rounding or clamping; ``uint8`` / ``uint16`` input is computed in float64, clamped and
    rounded half up to the same integer type after *each* of the two passes, and returned in that type. The
    ``uint8`` path reproduces the MATLAB-made LR images of Set5 and Set14 bit for bit.

    Args:
        img: numpy array ``(H, W)`` or ``(H, W, C)``, or a torch tensor ``(*, H, W)``.
        scale: one factor for both axes or ``(scale_h, scale_w)``; e.g. ``1 / 3`` to make a ×3 LR image.
        output_shape: ``(height, width)`` of the result, instead of ``scale``.
        antialias: widen the kernel when shrinking (MATLAB's default for bicubic).

    Returns:
        The resized image, of the same type and dtype as ``img`` (float64 for numpy float input).

    Shape:
        - numpy: ``(H, W, *) -> (H', W', *)``; torch: ``(*, H, W) -> (*, H', W')``, with
          ``H' = ceil(scale_h · H)``, ``W' = ceil(scale_w · W)`` or ``(H', W') = output_shape``.

    Raises:
        ValueError: both or neither of ``scale`` and ``output_shape``, a non-positive scale, a bad shape.
        TypeError: an image that is not a numpy array or tensor, or of an unsupported dtype.

    Examples:
        >>> imresize(np.array([[0.0, 1.0]]), (1, 2))    # float: the cubic's overshoot is kept
        array([[-0.0703125,  0.203125 ,  0.796875 ,  1.0703125]])
        >>> imresize(np.array([[0, 255]], dtype=np.uint8), (1, 2))   # uint8: clamped and rounded
        array([[  0,  52, 203, 255]], dtype=uint8)
        >>> imresize(np.full((3, 5, 3), 200, dtype=np.uint8), output_shape=(7, 2)).shape
        (7, 2, 3)
        >>> imresize(torch.rand(2, 3, 10, 12), 1.5).shape
        torch.Size([2, 3, 15, 18])
    """
    if isinstance(img, Tensor):
        if img.dim() < 2 or img.shape[-1] < 1 or img.shape[-2] < 1:
            raise ValueError(
                f"img must be a non-empty tensor of shape (*, H, W), got shape {tuple(img.shape)}"
            )
        in_shape = (int(img.shape[-2]), int(img.shape[-1]))
    elif isinstance(img, np.ndarray):
        if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
            raise ValueError(
                f"img must be a non-empty numpy array of shape (H, W) or (H, W, C), got {img.shape}"
            )
        in_shape = (int(img.shape[0]), int(img.shape[1]))
    else:
        raise TypeError(f"img must be a numpy array or a torch tensor, got {type(img).__name__}")
    scales, out_shape = _resize_plan(in_shape, scale, output_shape)
    taps = [_resize_taps(in_shape[k], out_shape[k], scales[k], bool(antialias)) for k in range(2)]
    order = [int(k) for k in np.argsort(np.array(scales), kind="stable")]
    if isinstance(img, Tensor):
        return _imresize_torch(img, taps, order)
    return _imresize_numpy(img, taps, order)


def _imresize_numpy(
    img: np.ndarray, taps: list[tuple[np.ndarray, np.ndarray]], order: list[int]
) -> np.ndarray:
    integer_max = _INTEGER_MAX.get(img.dtype)
    if integer_max is None and not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"img must be floating point or uint8/uint16, got dtype {img.dtype}")
    out = img.astype(np.float64)
    for axis in order:
        weights, indices = taps[axis]
        src = np.moveaxis(out, axis, 0)
        shape = (-1,) + (1,) * (src.ndim - 1)
        acc = src[indices[:, 0]] * weights[:, 0].reshape(shape)
        for j in range(1, weights.shape[1]):  # tap by tap, in order, as MATLAB sums
            acc += src[indices[:, j]] * weights[:, j].reshape(shape)
        out = np.moveaxis(acc, 0, axis)
        if integer_max is not None:
            out = np.clip(np.floor(out + 0.5), 0.0, integer_max)
    return out.astype(img.dtype) if integer_max is not None else out


def _imresize_torch(img: Tensor, taps: list[tuple[np.ndarray, np.ndarray]], order: list[int]) -> Tensor:
    if img.dtype == torch.uint8:
        integer_max: float | None = 255.0
        work_dtype = torch.float64
    elif img.dtype.is_floating_point:
        integer_max = None
        work_dtype = img.dtype
    else:
        raise TypeError(f"img must be a floating-point or uint8 tensor, got dtype {img.dtype}")
    out = img.to(work_dtype)
    for axis in order:
        dim = out.dim() - 2 + axis
        weights = torch.tensor(taps[axis][0], dtype=work_dtype, device=img.device)
        indices = torch.tensor(taps[axis][1], device=img.device)
        shape = (-1, 1) if axis == 0 else (-1,)
        acc = out.index_select(dim, indices[:, 0]) * weights[:, 0].reshape(shape)
        for j in range(1, weights.shape[1]):
            acc += out.index_select(dim, indices[:, j]) * weights[:, j].reshape(shape)
        out = acc
        if integer_max is not None:
            out = torch.floor(out + 0.5).clamp_(0.0, integer_max)
    return out.to(torch.uint8) if integer_max is not None else out


def _channels_last(img: Any, channel_axis: int) -> tuple[Any, bool]:
    if isinstance(img, Tensor):
        if not img.dtype.is_floating_point:
            img = img.double() / (255.0 if img.dtype == torch.uint8 else 65535.0)
        return torch.movedim(img, channel_axis, -1), True
    if not isinstance(img, np.ndarray):
        raise TypeError(f"img must be a numpy array or a torch tensor, got {type(img).__name__}")
    if not (np.issubdtype(img.dtype, np.floating) or img.dtype in _INTEGER_MAX):
        raise TypeError(f"img must be floating point in [0, 1] or uint8/uint16, got dtype {img.dtype}")
    return np.moveaxis(_to_float01(img), channel_axis, -1), False


def rgb_to_ycbcr(img: ImageT, *, channel_axis: int = -1) -> ImageT:
    """BT.601 studio-range YCbCr on the 8-bit scale, as MATLAB ``rgb2ycbcr``.

    ``Y = 16 + 65.481·R + 128.553·G + 24.966·B``, ``Cb = 128 − 37.797·R − 74.203·G + 112·B``,
    ``Cr = 128 + 112·R − 93.786·G − 18.214·B`` with R, G, B in [0, 1]; uint8 / uint16 input is divided by
    255 / 65535 first. (MATLAB returns these divided by 255 for double input, and rounded for uint8 input.)

    Args:
        img: RGB numpy array or tensor, channels on ``channel_axis``.
        channel_axis: the axis holding R, G, B (size 3).

    Returns:
        Y, Cb, Cr on the same axis: float64 for numpy and integer tensors, the input's dtype for float tensors.

    Shape:
        ``(..., 3, ...) -> (..., 3, ...)``.

    Examples:
        >>> rgb_to_ycbcr(np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]]))
        array([[[ 16., 128., 128.],
                [235., 128., 128.]]])
        >>> rgb_to_ycbcr(torch.ones(1, 3, 2, 2, dtype=torch.float64), channel_axis=1)[0, :, 0, 0]
        tensor([235., 128., 128.], dtype=torch.float64)
    """
    x, is_torch = _channels_last(img, channel_axis)
    if x.shape[-1] != 3:
        raise ValueError(
            f"img must have 3 channels (R, G, B) on axis {channel_axis}, got shape {tuple(img.shape)}"
        )
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    m, o = _YCBCR_MATRIX, _YCBCR_OFFSET
    planes = [o[k] + m[k, 0] * r + m[k, 1] * g + m[k, 2] * b for k in range(3)]
    if is_torch:
        return torch.movedim(torch.stack(planes, dim=-1), -1, channel_axis)
    return np.moveaxis(np.stack(planes, axis=-1), -1, channel_axis)


def ycbcr_to_rgb(img: ImageT, *, channel_axis: int = -1) -> ImageT:
    """The inverse of :func:`rgb_to_ycbcr` (MATLAB ``ycbcr2rgb``): 8-bit-scale YCbCr to RGB in [0, 1] (unclamped).

    Args:
        img: YCbCr (float, on the 8-bit scale) numpy array or tensor, channels on ``channel_axis``.
        channel_axis: the axis holding Y, Cb, Cr (size 3).

    Returns:
        RGB on the same axis, float64 for numpy, the input's dtype for float tensors.

    Shape:
        ``(..., 3, ...) -> (..., 3, ...)``.

    Examples:
        >>> ycbcr_to_rgb(np.array([235.0, 128.0, 128.0]))
        array([1., 1., 1.])
        >>> rgb = np.random.default_rng(0).random((4, 5, 3))
        >>> bool(np.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12))
        True
    """
    if isinstance(img, Tensor):
        if not img.dtype.is_floating_point:
            raise TypeError(f"img must be a floating-point YCbCr tensor, got dtype {img.dtype}")
        x = torch.movedim(img, channel_axis, -1)
    elif isinstance(img, np.ndarray):
        if not np.issubdtype(img.dtype, np.floating):
            raise TypeError(
                f"img must be a floating-point YCbCr array on the 8-bit scale, got dtype {img.dtype}"
            )
        x = np.moveaxis(img.astype(np.float64, copy=False), channel_axis, -1)
    else:
        raise TypeError(f"img must be a numpy array or a torch tensor, got {type(img).__name__}")
    if x.shape[-1] != 3:
        raise ValueError(
            f"img must have 3 channels (Y, Cb, Cr) on axis {channel_axis}, got shape {tuple(img.shape)}"
        )
    inverse = np.linalg.inv(_YCBCR_MATRIX)
    y, cb, cr = (x[..., k] - _YCBCR_OFFSET[k] for k in range(3))
    planes = [inverse[k, 0] * y + inverse[k, 1] * cb + inverse[k, 2] * cr for k in range(3)]
    if isinstance(img, Tensor):
        return torch.movedim(torch.stack(planes, dim=-1), -1, channel_axis)
    return np.moveaxis(np.stack(planes, axis=-1), -1, channel_axis)


def to_y(img: ImageT, *, channel_axis: int = -1) -> ImageT:
    """The luma Y on the 8-bit scale: BT.601 ``rgb2ycbcr`` for RGB, ``255 · gray`` for a grayscale image.

    Args:
        img: numpy array ``(H, W)`` (grayscale) or with 1 (grayscale) or 3 (RGB) channels on ``channel_axis``;
            float in [0, 1] or uint8 / uint16; or a tensor with the channels on ``channel_axis``.
        channel_axis: the channel axis (ignored for a 2-D numpy array).

    Returns:
        Y with the channel axis removed: float64 for numpy, float for tensors.

    Shape:
        ``(H, W, C) -> (H, W)`` (numpy, C = 1 or 3); ``(H, W) -> (H, W)``.

    Examples:
        >>> to_y(np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8))
        array([[235.,  16.]])
        >>> to_y(np.array([[0.0, 1.0]]))          # grayscale is its own Y
        array([[  0., 255.]])
    """
    if isinstance(img, np.ndarray) and img.ndim == 2:
        img = img[..., None]
        channel_axis = -1
    x, _ = _channels_last(img, channel_axis)
    if x.shape[-1] == 1:
        return x[..., 0] * 255.0
    if x.shape[-1] != 3:
        raise ValueError(
            f"img must have 1 (gray) or 3 (RGB) channels on axis {channel_axis}, got {tuple(img.shape)}"
        )
    m = _YCBCR_MATRIX[0]
    return _YCBCR_OFFSET[0] + m[0] * x[..., 0] + m[1] * x[..., 1] + m[2] * x[..., 2]  # rgb_to_ycbcr's Y


def quantize_uint8(img: ImageT) -> ImageT:
    """Clamp to [0, 1] and round half up to 8 bits, as saving the image to an 8-bit file does.

    (MATLAB ``im2uint8``; the same rounding as :func:`subpixel.imageio.quantize`.)

    Args:
        img: float numpy array or tensor, values nominally in [0, 1] (NaN becomes 0 for numpy).

    Returns:
        uint8 array or tensor of the same shape.

    Examples:
        >>> quantize_uint8(np.array([-0.2, 0.5, 1.7]))
        array([  0, 128, 255], dtype=uint8)
        >>> quantize_uint8(torch.tensor([0.0, 0.5 / 255, 1.0]))
        tensor([  0,   1, 255], dtype=torch.uint8)
    """
    if isinstance(img, Tensor):
        if not img.dtype.is_floating_point:
            raise TypeError(f"img must be a floating-point tensor in [0, 1], got dtype {img.dtype}")
        return torch.floor(img.double().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
    if not isinstance(img, np.ndarray) or not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"img must be a floating-point numpy array or tensor in [0, 1], got {_describe(img)}")
    from subpixel.imageio import quantize

    return quantize(img, 8)


def _describe(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    return f"{type(value).__name__} of dtype {dtype}" if dtype is not None else type(value).__name__


def _crop_pair(a: Any, b: Any, border: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must have shape (H, W) or (H, W, C), got {a.shape}")
    if isinstance(border, bool) or not isinstance(border, numbers.Integral) or border < 0:
        raise ValueError(f"border must be an integer >= 0, got {border!r}")
    h, w = a.shape[:2]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"border={border} crops away all of an image of {h}×{w} pixels")
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    return a, b


def psnr(a: np.ndarray, b: np.ndarray, *, border: int, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio ``10·log10(data_range² / MSE)`` in float64, after cropping ``border`` pixels.

    Args:
        a, b: arrays of the same shape ``(H, W)`` or ``(H, W, C)`` (the protocol uses Y on the 8-bit scale).
        border: pixels cropped from each of the four sides (the protocol: the scale).
        data_range: the peak value (255 for 8-bit-scale Y).

    Returns:
        PSNR in dB; ``inf`` for identical images.

    Examples:
        >>> a = np.zeros((8, 8)); b = a.copy(); b[4, 4] = 255.0 * 0.1
        >>> round(psnr(a, b, border=0), 4)                   # MSE = 0.01 · 255² / 64
        38.0618
        >>> psnr(a, b, border=3) == psnr(a[3:-3, 3:-3], b[3:-3, 3:-3], border=0)
        True
    """
    a, b = _crop_pair(a, b, border)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(float(data_range) ** 2 / mse)


@lru_cache(maxsize=1)
def _gaussian_taps() -> np.ndarray:
    radius = _SSIM_WINDOW // 2
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x * x) / (2.0 * _SSIM_SIGMA**2))
    g /= g.sum()
    g.setflags(write=False)
    return g


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with ``outer(taps, taps)``."""
    n = len(taps)
    h, w = x.shape
    rows = taps[0] * x[: h - n + 1]
    for k in range(1, n):
        rows += taps[k] * x[k : h - n + 1 + k]
    out = taps[0] * rows[:, : w - n + 1]
    for k in range(1, n):
        out += taps[k] * rows[:, k : w - n + 1 + k]
    return out


def ssim(a: np.ndarray, b: np.ndarray, *, border: int, data_range: float = 255.0) -> float:
    """Structural similarity (Wang et al. 2004) of one channel, after cropping ``border`` pixels.

    The reference implementation's settings: an 11×11 Gaussian window with σ = 1.5 (normalised), K1 = 0.01,
    K2 = 0.03, statistics with the population (biased) variance, the SSIM map over the positions where the window
    fits inside the (cropped) image, and its mean.

    Args:
        a, b: arrays of the same shape ``(H, W)`` (or ``(H, W, 1)``); the protocol uses Y on the 8-bit scale.
        border: pixels cropped from each side before filtering (the protocol: the scale).
        data_range: the dynamic range ``L`` of the values (255).

    Returns:
        The mean SSIM, at most 1.

    Raises:
        ValueError: different shapes, more than one channel, or a cropped image smaller than the 11×11 window.

    Examples:
        >>> x = np.random.default_rng(0).random((32, 32)) * 255
        >>> ssim(x, x, border=4)
        1.0
        >>> 0 < ssim(x, x + 20.0, border=4) < 1
        True
    """
    a, b = _crop_pair(a, b, border)
    if a.ndim == 3:
        if a.shape[2] != 1:
            raise ValueError(f"ssim takes one channel (the protocol scores Y), got shape {a.shape}")
        a, b = a[..., 0], b[..., 0]
    if min(a.shape) < _SSIM_WINDOW:
        raise ValueError(
            f"ssim needs at least {_SSIM_WINDOW}×{_SSIM_WINDOW} pixels after cropping border={border}, "
            f"got {a.shape[0]}×{a.shape[1]}"
        )
    g = _gaussian_taps()
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a * mu_a
    var_b = _filter_valid(b * b, g) - mu_b * mu_b
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    num = (2.0 * mu_a * mu_b + c1) * (2.0 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


@dataclass(frozen=True)
class Score:
    """Y-PSNR (dB) and SSIM of one image."""

    psnr: float
    ssim: float


def score_pair(hr: np.ndarray, sr: np.ndarray, scale: int) -> Score:
    """Score one super-resolved image by steps 3 to 5 of the protocol.

    ``sr`` is clamped to [0, 1] and rounded to 8 bits (unless it is uint8 already); both images are reduced to
    Y on the 8-bit scale (:func:`to_y`); ``scale`` pixels are cropped from every border; PSNR and SSIM are
    computed in float64 with ``data_range = 255``.

    Args:
        hr: the ground truth, ``(H, W)`` or ``(H, W, C)`` (C = 1 or 3), float in [0, 1] or uint8 / uint16.
        sr: the super-resolved image of the same shape; or, for an RGB ``hr``, the ``(H, W)`` / ``(H, W, 1)``
            output of a Y-channel model, holding ``Y / 255`` (for a grayscale ``hr`` the two readings agree); or,
            for a grayscale ``hr``, an RGB image (an RGB model's output), scored by its mean over the channels.
        scale: the SR scale factor, which is also the border cropped.

    Returns:
        The :class:`Score`.

    Raises:
        ValueError, TypeError: shapes that do not match, images too small, a bad scale or dtype.

    Examples:
        >>> hr = np.random.default_rng(1).random((30, 30, 3))
        >>> score_pair(hr, hr, 2).ssim > 0.9999           # only the 8-bit rounding of sr differs
        True
        >>> y = to_y(hr) / 255.0                          # a Y model's output
        >>> score_pair(hr, y, 2).psnr > 50
        True
    """
    r = _check_scale_int(scale)
    hr = _check_image(hr, "hr")
    sr = _check_image(sr, "sr")
    hr_channels = 1 if hr.ndim == 2 else hr.shape[2]
    sr_channels = 1 if sr.ndim == 2 else sr.shape[2]
    if sr.shape[:2] != hr.shape[:2] or sr_channels not in (1, 3):
        raise ValueError(
            f"sr must have the shape of hr {hr.shape} (or be its Y plane of shape {hr.shape[:2]}), got {sr.shape}"
        )
    if hr_channels == 1 and sr_channels == 3:  # an RGB model's output for a grayscale image: its channel mean
        sr = _to_float01(sr).mean(axis=2)
        sr_channels = 1
    sr8 = sr if sr.dtype == np.uint8 else quantize_uint8(_to_float01(sr))
    y_hr = to_y(hr)
    y_sr = sr8.reshape(sr8.shape[:2]).astype(np.float64) if sr_channels == 1 else to_y(sr8)
    return Score(psnr=psnr(y_hr, y_sr, border=r), ssim=ssim(y_hr, y_sr, border=r))


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Steps 1 and 2: modcrop, then MATLAB ``imresize(hr, 1/scale, 'bicubic')``.

    uint8 / uint16 input takes MATLAB's integer path (rounded after each pass; bit-exact to MATLAB for 8-bit
    images); float input is resized in float64 without rounding.

    Args:
        hr: ``(H, W)`` or ``(H, W, C)`` image, float in [0, 1] or uint8 / uint16.
        scale: the SR scale factor ``r``.

    Returns:
        The LR image as float64 in [0, 1].

    Shape:
        ``(H, W, *) -> (H // r, W // r, *)``.

    Examples:
        >>> make_lr(np.full((10, 13, 3), 255, dtype=np.uint8), 3).shape
        (3, 4, 3)
    """
    r = _check_scale_int(scale)
    hr = _check_image(hr, "hr")
    hr = modcrop(hr, r)
    if hr.shape[0] < r or hr.shape[1] < r:
        raise ValueError(f"hr of shape {hr.shape} is smaller than one LR pixel at scale {r}")
    return _to_float01(imresize(hr, 1.0 / r))


def bicubic_upscaler(lr: np.ndarray, scale: int) -> np.ndarray:
    """The baseline: :func:`imresize` by ``scale`` (MATLAB bicubic, float64, unclamped).

    Args:
        lr: ``(h, w)`` or ``(h, w, C)`` float image in [0, 1] (or uint8 / uint16).
        scale: the SR scale factor ``r``.

    Returns:
        float64 image ``(h·r, w·r, *)``.

    Examples:
        >>> bicubic_upscaler(np.full((4, 5, 3), 0.5), 3).shape
        (12, 15, 3)
    """
    r = _check_scale_int(scale)
    lr = _check_image(lr, "lr")
    return imresize(_to_float01(lr), output_shape=(lr.shape[0] * r, lr.shape[1] * r))


def read_image_exact(path: str | Path) -> np.ndarray:
    """Read an image file as its integer samples: ``uint8`` or ``uint16`` of shape ``(H, W, C)``, C = 1 or 3.

    Decoding goes through :func:`subpixel.imageio.load_image` (formats, 16-bit, EXIF orientation, clear errors);
    an alpha channel is dropped.

    Args:
        path: the image file.

    Returns:
        The samples, exactly as stored.

    Shape:
        ``(H, W, C)``, C = 1 (grayscale) or 3 (RGB).

    Raises:
        subpixel.imageio.ImageReadError: (a ``ValueError``) the file is missing, not an image, truncated...
    """
    from subpixel.imageio import load_image

    image = load_image(path)
    top = 65535.0 if image.bit_depth == 16 else 255.0
    dtype = np.uint16 if image.bit_depth == 16 else np.uint8
    pixels = image.pixels
    if image.has_alpha:
        pixels = pixels[..., :-1]
    # gray + alpha comes back from load_image as RGBA with equal R, G, B
    if pixels.shape[-1] == 3 and image.mode in ("L", "LA"):
        pixels = pixels[..., :1]
    return np.rint(pixels.astype(np.float64) * top).astype(dtype)


@dataclass(frozen=True)
class TestImage:
    """One image of a test set: where its HR (and, if given, LR) file lies.

    Attributes:
        name: a short name (from ``NAMES.txt`` beside the files when there is one, else the file stem).
        hr_path: the HR file.
        lr_path: the LR file (the standard sets' MATLAB-made ``_LR.png``), or ``None``: the LR is made by
            :func:`make_lr`.
    """

    __test__ = False  # not a pytest test class

    name: str
    hr_path: Path
    lr_path: Path | None = None


_SRF_PATTERN = re.compile(r"^(?P<stem>.+)_SRF_(?P<scale>\d+)_HR$", re.IGNORECASE)


def _read_names(folder: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    file = folder / "NAMES.txt"
    if file.is_file():
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2:
                names[parts[0]] = parts[1].strip()
    return names


def find_test_images(data_dir: str | Path, scale: int) -> list[TestImage]:
    """List the test images of a folder for ``scale``.

    A folder in the standard layout (``img_NNN_SRF_{r}_HR.png`` beside ``img_NNN_SRF_{r}_LR.png``) gives its
    ``r = scale`` pairs; any other folder gives every image file in it (sorted by name), whose LR is made by
    :func:`make_lr`.

    Args:
        data_dir: the folder.
        scale: the SR scale factor ``r``.

    Returns:
        The images, sorted by file name.

    Raises:
        ValueError: the folder does not exist, holds no image, or holds the standard layout for other scales only.
    """
    r = _check_scale_int(scale)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"data folder {str(folder)!r} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    layout = {p: _SRF_PATTERN.match(p.stem) for p in files}
    if any(m is not None for m in layout.values()):
        names = _read_names(folder)
        found: list[TestImage] = []
        scales: set[int] = set()
        for path, match in layout.items():
            if match is None:
                continue
            scales.add(int(match["scale"]))
            if int(match["scale"]) != r:
                continue
            lr = path.with_name(path.name[: match.end("scale")] + "_LR" + path.suffix)
            stem = match["stem"]
            found.append(TestImage(names.get(stem, stem), path, lr if lr.is_file() else None))
        if not found:
            raise ValueError(
                f"data folder {str(folder)!r} holds *_SRF_r_HR files for scales {sorted(scales)}, not for scale {r}"
            )
        return found
    if not files:
        raise ValueError(
            f"data folder {str(folder)!r} holds no image files (expected {', '.join(IMAGE_EXTENSIONS)})"
        )
    return [TestImage(p.stem, p, None) for p in files]


def load_test_image(image: TestImage, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one test image's HR (modcropped) and LR as float64 in [0, 1].

    Args:
        image: from :func:`find_test_images`.
        scale: the SR scale factor ``r``.

    Returns:
        ``(hr, lr)`` as float64 arrays.

    Shape:
        ``hr``: ``(H, W, C)`` with H, W multiples of ``r`` and C = 1 or 3; ``lr``: ``(H / r, W / r, C)``.

    Raises:
        ValueError: an unreadable file, an LR file of the wrong size or colour layout, an image too small.
    """
    r = _check_scale_int(scale)
    raw = modcrop(read_image_exact(image.hr_path), r)
    if raw.shape[0] < r or raw.shape[1] < r:
        raise ValueError(
            f"{image.hr_path}: image of {raw.shape[1]}×{raw.shape[0]} pixels is smaller than scale {r}"
        )
    hr = _to_float01(raw)
    if image.lr_path is None:
        return hr, make_lr(raw, r)
    lr = _to_float01(read_image_exact(image.lr_path))
    expected = (hr.shape[0] // r, hr.shape[1] // r, hr.shape[2])
    if lr.shape != expected:
        raise ValueError(
            f"{image.lr_path}: LR image has shape {lr.shape}, expected {expected} for HR {image.hr_path.name} "
            f"of shape {hr.shape} at scale {r}"
        )
    return hr, lr


def _upscale_checked(upscaler: Upscaler, lr: np.ndarray, hr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """Run ``upscaler`` and check that it returned ``hr``'s shape or its Y plane."""
    sr = np.asarray(upscaler(lr, scale))
    ok = sr.shape[:2] == hr.shape[:2] and (sr.ndim == 2 or (sr.ndim == 3 and sr.shape[2] in (1, 3)))
    if not ok:
        raise ValueError(
            f"upscaler returned shape {sr.shape} for image {name!r}; expected {hr.shape} (or the Y plane "
            f"{hr.shape[:2]}) from an LR image of shape {lr.shape} at scale {scale}"
        )
    return sr


@dataclass(frozen=True)
class ImageScore:
    """The score of one image of a test set."""

    name: str
    psnr: float
    ssim: float
    path: str = ""


@dataclass(frozen=True)
class ProtocolResult:
    """Per-image and mean scores of one upscaler on one test set.

    Attributes:
        dataset: the folder's name (e.g. ``"Set5"``).
        scale: the SR scale factor.
        images: one :class:`ImageScore` per image.
    """

    dataset: str
    scale: int
    images: tuple[ImageScore, ...] = field(default_factory=tuple)

    @property
    def mean_psnr(self) -> float:
        """Mean Y-PSNR over the images (dB)."""
        return float(np.mean([s.psnr for s in self.images]))

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM over the images."""
        return float(np.mean([s.ssim for s in self.images]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "dataset": self.dataset,
            "scale": self.scale,
            "mean_psnr": self.mean_psnr,
            "mean_ssim": self.mean_ssim,
            "images": [s.__dict__ for s in self.images],
        }


def run_protocol(
    upscaler: Upscaler, data_dir: str | Path, scale: int, *, progress: bool = False
) -> ProtocolResult:
    """Score an upscaler on a test-set folder by the whole protocol (steps 1 to 5).

    Args:
        upscaler: ``(lr, scale) -> sr`` (see :data:`Upscaler`), e.g. :func:`bicubic_upscaler`.
        data_dir: a standard test set (``img_NNN_SRF_{r}_HR.png`` + ``_LR.png``) or a plain folder of HR images.
        scale: the SR scale factor ``r``.
        progress: show a progress bar.

    Returns:
        A :class:`ProtocolResult` with per-image and mean Y-PSNR / SSIM.

    Examples:
        >>> import tempfile, pathlib
        >>> from subpixel.imageio import write_image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = write_image(folder / "ramp.png", np.tile(np.linspace(0, 1, 40), (36, 1)))
        >>> result = run_protocol(bicubic_upscaler, folder, 2)
        >>> [s.name for s in result.images], result.mean_psnr > 40
        (['ramp'], True)
    """
    r = _check_scale_int(scale)
    images = find_test_images(data_dir, r)
    scores = []
    iterator: Any = images
    if progress:
        from tqdm import tqdm

        iterator = tqdm(images, desc=f"{Path(data_dir).name} ×{r}", unit="image")
    for image in iterator:
        hr, lr = load_test_image(image, r)
        sr = _upscale_checked(upscaler, lr, hr, r, image.name)
        s = score_pair(hr, sr, r)
        scores.append(ImageScore(image.name, s.psnr, s.ssim, str(image.hr_path)))
    return ProtocolResult(Path(data_dir).name, r, tuple(scores))
