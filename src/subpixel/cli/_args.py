"""``argparse`` types shared by the commands: each rejects a bad value with a message naming what it received."""

from __future__ import annotations

import argparse

__all__ = ["non_negative_int", "positive_int"]


def _int(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """``argparse`` type for an integer >= 1.

    Examples:
        >>> positive_int("3")
        3
        >>> positive_int("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: expected an integer >= 1, got 0
    """
    return _int(text, 1)


def non_negative_int(text: str) -> int:
    """``argparse`` type for an integer >= 0.

    Examples:
        >>> non_negative_int("0")
        0
    """
    return _int(text, 0)
