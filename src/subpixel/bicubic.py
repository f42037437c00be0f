"""Keys' cubic convolution kernel: the one definition of "bicubic" in the library.

MATLAB's ``imresize(..., 'bicubic')`` (and so the SR evaluation protocol, :mod:`subpixel.sr.resize`), the
bicubic planes of :mod:`subpixel.upscaling` and the study's fixed resamplers (:mod:`subpixel.study.blocks`) all
weigh samples by :func:`cubic`; nothing else in the package defines the kernel.

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

__all__ = ["MATLAB_A", "TORCH_A", "cubic"]

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
