"""Scores of the SR protocol: PSNR and SSIM on the border-cropped Y, and :func:`score_pair` (steps 3 to 5).

PSNR = ``10·log10(255² / MSE)`` in float64; SSIM as Wang et al. 2004 (Gaussian window 11, σ = 1.5, K1 = 0.01,
K2 = 0.03); both after cropping ``r`` pixels from every border (../shared/GUIDE.md §3).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from subpixel.errors import SubpixelError
from subpixel.sr._images import _check_image, _check_scale_int, _to_float01
from subpixel.sr.color import quantize_uint8, to_y

__all__ = ["Score", "psnr", "score_pair", "ssim"]

# SSIM constants of Wang et al. (2004).
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _crop_pair(a: Any, b: Any, border: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise SubpixelError(f"the two images must have the same shape, got {a.shape} and {b.shape}")
    if a.ndim not in (2, 3):
        raise SubpixelError(f"images must have shape (H, W) or (H, W, C), got {a.shape}")
    if isinstance(border, bool) or not isinstance(border, numbers.Integral) or border < 0:
        raise SubpixelError(f"border must be an integer >= 0, got {border!r}")
    h, w = a.shape[:2]
    if h <= 2 * border or w <= 2 * border:
        raise SubpixelError(f"border={border} crops away all of an image of {h}×{w} pixels")
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
            raise SubpixelError(f"ssim takes one channel (the protocol scores Y), got shape {a.shape}")
        a, b = a[..., 0], b[..., 0]
    if min(a.shape) < _SSIM_WINDOW:
        raise SubpixelError(
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
        raise SubpixelError(
            f"sr must have the shape of hr {hr.shape} (or be its Y plane of shape {hr.shape[:2]}), got {sr.shape}"
        )
    if hr_channels == 1 and sr_channels == 3:  # an RGB model's output for a grayscale image: its channel mean
        sr = _to_float01(sr).mean(axis=2)
        sr_channels = 1
    sr8 = sr if sr.dtype == np.uint8 else quantize_uint8(_to_float01(sr))
    y_hr = to_y(hr)
    y_sr = sr8.reshape(sr8.shape[:2]).astype(np.float64) if sr_channels == 1 else to_y(sr8)
    return Score(psnr=psnr(y_hr, y_sr, border=r), ssim=ssim(y_hr, y_sr, border=r))
