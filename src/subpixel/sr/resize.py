"""MATLAB's bicubic ``imresize``, bit for bit, and the protocol's resizing steps (modcrop, LR, bicubic baseline).

Step 1 and 2 of the SR protocol (../shared/GUIDE.md §3): :func:`modcrop` the HR image to multiples of the scale,
then LR = MATLAB ``imresize(HR, 1/r, 'bicubic')`` (:func:`imresize`: Keys' cubic with ``a = -0.5``
(:func:`subpixel.bicubic.cubic`), kernel widened by ``r`` when shrinking, edge pixels repeated, height before
width, and, for 8-bit images, rounding to integers after *each* pass as MATLAB does for ``uint8``);
:func:`make_lr` does both; :func:`bicubic_upscaler` is the baseline every paper reports.

Examples:
    >>> hr = np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    >>> lr = imresize(hr, 1 / 3)                       # uint8 in, uint8 out, rounded after each pass
    >>> lr.shape, lr.dtype
    ((8, 10, 3), dtype('uint8'))
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

from subpixel.bicubic import cubic
from subpixel.errors import SubpixelError
from subpixel.sr._images import _INTEGER_MAX, ImageT, _check_image, _check_scale_int, _to_float01

__all__ = ["bicubic_upscaler", "imresize", "make_lr", "modcrop"]


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
            raise SubpixelError(f"img must be a tensor of shape (*, H, W), got shape {tuple(img.shape)}")
        h, w = img.shape[-2:]
        return img[..., : h - h % r, : w - w % r]
    if not isinstance(img, np.ndarray) or img.ndim < 2:
        raise TypeError(
            f"img must be a numpy array (H, W, *) or a tensor (*, H, W), got {type(img).__name__}"
        )
    h, w = img.shape[:2]
    return img[: h - h % r, : w - w % r]


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
            return scale * cubic(scale * x)
    else:
        width = 4.0
        kernel = cubic
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
        raise SubpixelError("give exactly one of scale and output_shape")
    if output_shape is not None:
        if (
            not isinstance(output_shape, Sequence)
            or len(output_shape) != 2
            or not all(
                isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in output_shape
            )
        ):
            raise SubpixelError(
                f"output_shape must be two positive ints (height, width), got {output_shape!r}"
            )
        out = (int(output_shape[0]), int(output_shape[1]))
        return (out[0] / in_shape[0], out[1] / in_shape[1]), out
    scales = scale if isinstance(scale, Sequence) and not isinstance(scale, str) else (scale, scale)
    if len(scales) != 2 or not all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in scales
    ):
        raise SubpixelError(
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
            raise SubpixelError(
                f"img must be a non-empty tensor of shape (*, H, W), got shape {tuple(img.shape)}"
            )
        in_shape = (int(img.shape[-2]), int(img.shape[-1]))
    elif isinstance(img, np.ndarray):
        if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
            raise SubpixelError(
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
        raise SubpixelError(f"hr of shape {hr.shape} is smaller than one LR pixel at scale {r}")
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
