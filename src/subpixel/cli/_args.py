"""``argparse`` types and options shared by the commands: each type rejects a bad value with a message naming what
it received."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_model_arguments", "non_negative_int", "positive_int"]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--weights W`` (a trained model) and ``--model NAME`` (a bundled family), as ``upscale`` and ``demo`` take them."""
    from subpixel.sr.models import DEFAULT_MODEL, FAMILIES

    parser.add_argument(
        "--weights", type=Path, help="a .safetensors file from 'subpixel train' (default: bundled)"
    )
    parser.add_argument(
        "--model",
        choices=sorted(FAMILIES),
        default=DEFAULT_MODEL,
        help="bundled family: 'rep' (default; the re-parameterized LR-space network) or 'espcn' (the paper's)",
    )


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
