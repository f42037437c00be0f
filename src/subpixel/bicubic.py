"""Keys' cubic convolution kernel: the one definition of "bicubic" in the library.

MATLAB's ``imresize(..., 'bicubic')`` (and so the SR evaluation protocol, :mod:`subpixel.sr.resize`), the
bicubic planes of :mod:`subpixel.upscaling` and the study's fixed resamplers (:mod:`subpixel.study.blocks`) all
weigh samples by :func:`cubic`; nothing else in the package defines the kernel. :func:`interpolation_taps` gives
its polyphase filters for integer upscaling (and those of nearest and bilinear).

Examples:
    >>> cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0]))
    array([ 1.    ,  0.5625,  0.    , -0.0625,  0.    ])
    >>> cubic(torch.tensor([0.5, 1.5], dtype=torch.float64), a=-0.75)      # PyTorch's kernel
    tensor([ 0.5938, -0.0938], dtype=torch.float64)
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from subpixel._validation import check_positive_int
from subpixel.errors import SubpixelError

__all__ = ["MATLAB_A", "TORCH_A", "cubic", "interpolation_taps"]

#: The kernel parameter of MATLAB's ``imresize`` bicubic (and of the SR protocol).
MATLAB_A = -0.5
#: The kernel parameter of PyTorch's ``interpolate(mode="bicubic")``.
TORCH_A = -0.75

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def cubic(x: ArrayT, a: float = MATLAB_A) -> ArrayT:
    """Keys' cubic convolution kernel at ``x``; ``a = −0.5`` is MATLAB's bicubic, ``−0.75`` PyTorch's.

    ``(a+2)|x|³ − (a+3)|x|² + 1`` for ``|x| ≤ 1``, ``a|x|³ − 5a|x|² + 8a|x| − 4a`` for ``1 < |x| < 2``, 0 beyond,
    evaluated in this order (``|x|³`` as ``|x|²·|x|``) so that every user gets the same bits.

    Args:
        x: sample positions, a numpy array or a floating-point tensor.
        a: the kernel's free parameter.

    Returns:
        The kernel values, of the type (and, for numpy, float64 or ``x``'s float dtype) of ``x``.

    Shape:
        ``x``: any; output: the same.

    Raises:
        TypeError: ``x`` is neither a numpy array nor a tensor.
    """
    a = float(a)
    if isinstance(x, Tensor):
        t = x.abs()
        where, zeros = torch.where, torch.zeros_like
    elif isinstance(x, np.ndarray):
        t = np.abs(x)
        where, zeros = np.where, np.zeros_like
    else:
        raise TypeError(f"x must be a numpy array or a torch tensor, got {type(x).__name__}")
    t2 = t * t
    t3 = t2 * t
    inner = (a + 2.0) * t3 - (a + 3.0) * t2 + 1.0
    outer = a * t3 - 5.0 * a * t2 + 8.0 * a * t - 4.0 * a
    return where(t <= 1, inner, where(t < 2, outer, zeros(t)))  # type: ignore[operator]


def interpolation_taps(scale: int, mode: str = "bicubic", a: float = MATLAB_A) -> Tensor:
    """The polyphase filters of an interpolator at integer scale ``r`` (half-pixel centres, no antialiasing).

    The one place the phase taps are computed: the upscaler's bicubic planes
    (:func:`subpixel.upscaling.image.bicubic_upscale`) and the study's fixed resamplers use them.

    Output sample ``u·r + φ`` sits at input position ``u + δ_φ`` with ``δ_φ = (φ + ½)/r − ½``, so it is
    ``Σ_j x[u + j]·taps[φ, j + P]`` with ``taps[φ, j + P] = kernel(δ_φ − j)``, ``j ∈ [−P, P]``.

    Args:
        scale: the integer factor ``r ≥ 1``.
        mode: ``"nearest"`` (P = 0), ``"bilinear"`` (triangle kernel, P = 1) or ``"bicubic"`` (:func:`cubic`, P = 2).
        a: the cubic kernel's parameter (bicubic only).

    Returns:
        float64 tensor of shape ``(r, 2P + 1)``.

    Examples:
        >>> interpolation_taps(2, "bilinear")
        tensor([[0.2500, 0.7500, 0.0000],
                [0.0000, 0.7500, 0.2500]], dtype=torch.float64)
    """
    check_positive_int(scale, "scale")
    phase = torch.arange(scale, dtype=torch.float64)
    delta = (phase + 0.5) / scale - 0.5
    if mode == "nearest":
        return torch.ones(scale, 1, dtype=torch.float64)
    if mode == "bilinear":
        half = 1
        dist = delta[:, None] - torch.arange(-half, half + 1, dtype=torch.float64)[None, :]
        return (1 - dist.abs()).clamp(min=0)
    if mode == "bicubic":
        half = 2
        dist = delta[:, None] - torch.arange(-half, half + 1, dtype=torch.float64)[None, :]
        return cubic(dist, a)
    raise SubpixelError(f"mode must be 'nearest', 'bilinear' or 'bicubic', got {mode!r}")
