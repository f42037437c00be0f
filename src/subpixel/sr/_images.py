"""Checks and conversions of the SR protocol's image arrays (private to :mod:`subpixel.sr`).

Images are numpy arrays ``(H, W)`` or ``(H, W, C)``, C = 1 or 3: floating point in [0, 1], or ``uint8`` /
``uint16`` integers.
"""

from __future__ import annotations

import numbers
from typing import Any, TypeVar

import numpy as np
from torch import Tensor

from subpixel.errors import SubpixelError

ImageT = TypeVar("ImageT", np.ndarray, Tensor)

_INTEGER_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _check_scale_int(scale: Any, name: str = "scale") -> int:
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or scale < 1:
        raise SubpixelError(f"{name} must be an integer >= 1, got {scale!r}")
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
        raise SubpixelError(f"{name} must have shape (H, W) or (H, W, C) with C = 1 or 3, got {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise SubpixelError(f"{name} must not be empty, got shape {img.shape}")
    if not (np.issubdtype(img.dtype, np.floating) or img.dtype in _INTEGER_MAX):
        raise TypeError(f"{name} must be floating point in [0, 1] or uint8/uint16, got dtype {img.dtype}")
    return img


def _to_float01(img: np.ndarray) -> np.ndarray:
    """float64 copy in [0, 1] of a float (as is) or uint8/uint16 (divided by 255/65535) array."""
    if img.dtype in _INTEGER_MAX:
        return img.astype(np.float64) / _INTEGER_MAX[img.dtype]
    return img.astype(np.float64, copy=False)
