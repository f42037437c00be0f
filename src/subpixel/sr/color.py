"""Colour for the SR protocol: MATLAB's BT.601 studio-range ``rgb2ycbcr`` / ``ycbcr2rgb``, Y, 8-bit rounding.

Step 3 and 4 of the protocol (../shared/GUIDE.md §3): the super-resolved image is clamped and rounded to 8 bits
(:func:`quantize_uint8`), then scored on Y of BT.601 YCbCr (:func:`to_y`, :func:`rgb_to_ycbcr`); a grayscale image
is its own Y. YCbCr is on the 8-bit scale: ``Y ∈ [16, 235]`` and ``Cb, Cr ∈ [16, 240]`` for RGB in [0, 1]
(MATLAB's ``255 * rgb2ycbcr(double(rgb) / 255)``). A Y-channel model sees ``Y / 255`` (:func:`model_y`: a
grayscale image as its RGB copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from subpixel.errors import SubpixelError
from subpixel.sr._images import _INTEGER_MAX, ImageT, _to_float01

__all__ = ["gray_from_model_y", "model_y", "quantize_uint8", "rgb_to_ycbcr", "to_y", "ycbcr_to_rgb"]

# BT.601 studio range, RGB in [0, 1] -> YCbCr on the 8-bit scale (MATLAB rgb2ycbcr's matrix and offset).
_YCBCR_MATRIX = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)


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
        raise SubpixelError(
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
        raise SubpixelError(
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
        raise SubpixelError(
            f"img must have 1 (gray) or 3 (RGB) channels on axis {channel_axis}, got {tuple(img.shape)}"
        )
    m = _YCBCR_MATRIX[0]
    return _YCBCR_OFFSET[0] + m[0] * x[..., 0] + m[1] * x[..., 1] + m[2] * x[..., 2]  # rgb_to_ycbcr's Y


def model_y(img: ImageT, *, channel_axis: int = -1) -> ImageT:
    """What a Y-channel model sees: BT.601 Y divided by 255, a grayscale image taken as its RGB copy.

    The one definition used by training, evaluation, the study and upscaling: ``(16 + 65.481·R + 128.553·G +
    24.966·B) / 255`` for RGB in [0, 1], and for a grayscale image ``g`` the same formula with ``R = G = B = g``
    (``(16 + 219·g) / 255``), so a gray picture and its RGB copy give the model the same input. (Scoring is
    another matter: the protocol scores a grayscale image on its own values, :func:`to_y`.)

    Args:
        img: numpy array or tensor with 1 (gray) or 3 (RGB) channels on ``channel_axis``, float in [0, 1] or
            uint8 / uint16.
        channel_axis: the channel axis.

    Returns:
        ``Y / 255`` with the channel axis removed (float64 for numpy, float for tensors).

    Shape:
        ``(..., C, ...) -> (..., ...)``, C = 1 or 3.

    Examples:
        >>> model_y(np.array([[[0.5]]])) == model_y(np.array([[[0.5, 0.5, 0.5]]]))
        array([[ True]])
        >>> gray_from_model_y(model_y(np.array([[[0.0], [1.0]]])))
        array([[0., 1.]])
    """
    x, is_torch = _channels_last(img, channel_axis)
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:-1], 3) if is_torch else np.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
        raise SubpixelError(
            f"img must have 1 (gray) or 3 (RGB) channels on axis {channel_axis}, got {tuple(img.shape)}"
        )
    return to_y(x) / 255.0


def gray_from_model_y(y: ImageT) -> ImageT:
    """The gray value whose :func:`model_y` is ``y``: ``(255·y − 16) / 219`` (a Y model's output for a gray image).

    Shape:
        any; elementwise.
    """
    return (y * 255.0 - 16.0) / 219.0


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
