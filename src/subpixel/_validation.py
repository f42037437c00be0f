"""Argument checks shared by the core modules.

Every check raises :class:`~subpixel.errors.SubpixelError` (a ``ValueError``) or ``TypeError`` with a message that names the argument, the value it got
and what was expected.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal

import torch

from subpixel.errors import SubpixelError

ChannelOrder = Literal["crd", "dcr"]
CHANNEL_ORDERS: tuple[str, ...] = ("crd", "dcr")


def check_order(order: str, name: str = "order") -> ChannelOrder:
    """Return ``order`` lower-cased if it is ``"crd"`` or ``"dcr"``; raise ``ValueError`` otherwise."""
    if not isinstance(order, str) or order.lower() not in CHANNEL_ORDERS:
        raise SubpixelError(
            f"{name} must be 'crd' (PyTorch, ONNX CRD) or 'dcr' (TensorFlow, ONNX DCR), got {order!r}"
        )
    return order.lower()  # type: ignore[return-value]


def is_int(value: object) -> bool:
    """An ``int`` (any integral number) that is not a ``bool``."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_tuple(
    value: int | Sequence[int], ndim: int, name: str, *, minimum: int | None = None
) -> tuple[int, ...]:
    """Expand an int or a length-``ndim`` sequence of ints into a tuple of ``ndim`` ints.

    Args:
        value: an int (used for every axis) or one int per axis.
        ndim: number of spatial axes.
        name: the argument's name, for error messages.
        minimum: smallest allowed value of each entry, if any.

    Examples:
        >>> as_tuple(2, 3, "stride")
        (2, 2, 2)
        >>> as_tuple((1, 2), 2, "stride", minimum=1)
        (1, 2)
    """
    if is_int(value):
        values: tuple[int, ...] = (int(value),) * ndim  # type: ignore[arg-type]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != ndim:
            raise SubpixelError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}")
        if not all(is_int(v) for v in value):
            raise TypeError(f"{name} must contain only ints, got {value!r}")
        values = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be an int or a sequence of {ndim} ints, got {value!r}")
    if minimum is not None and any(v < minimum for v in values):
        raise SubpixelError(f"{name} must be >= {minimum} on every axis, got {value!r}")
    return values


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``; raise :class:`~subpixel.errors.SubpixelError`.

    The one check behind every "must be a positive int" (``minimum=0``: a non-negative int).

    Examples:
        >>> check_positive_int(3, "scale", minimum=2)
        3
        >>> check_positive_int(True, "steps")
        Traceback (most recent call last):
        ...
        subpixel.errors.SubpixelError: steps must be an int >= 1, got True
    """
    if not is_int(value) or value < minimum:  # type: ignore[operator]
        raise SubpixelError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)  # type: ignore[arg-type]


def resolve_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """The torch device for ``"auto"`` (CUDA when there is one, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Raises:
        subpixel.SubpixelError: not a device name, or a CUDA device that is not present (the message says
            which devices are).

    Examples:
        >>> resolve_device("cpu"), resolve_device(None).type in ("cpu", "cuda")
        (device(type='cpu'), True)
        >>> resolve_device("gpu")
        Traceback (most recent call last):
        ...
        subpixel.errors.SubpixelError: device: expected auto, cpu, cuda or cuda:N, got 'gpu'
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda"):
        raise SubpixelError(f"{name}: expected auto, cpu, cuda or cuda:N, got {device!r}")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SubpixelError(
                f"{name}: {str(device)!r} asked for, but no CUDA GPU is available to this PyTorch "
                f"({torch.__version__}); use cpu or auto"
            )
        if chosen.index is not None and chosen.index >= count:
            raise SubpixelError(
                f"{name}: {str(device)!r} asked for, but there are {count} CUDA GPU(s): cuda:0..cuda:{count - 1}"
            )
    return chosen
