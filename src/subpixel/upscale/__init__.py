"""Upscale images and videos with an SR model, in bounded memory (tiled inference).

``subpixel.upscale(image, scale=3)`` is a function call: this package is callable, and calling it calls
:func:`subpixel.upscale.api.upscale` (PIL image, numpy array or tensor in, the same kind out; see that module for
why the package itself is callable rather than shadowed by a function).

* :mod:`subpixel.upscale.api`: :func:`~subpixel.upscale.api.upscale`, one call for a picture in memory.
* :mod:`subpixel.upscale.tiling`: tiled inference equal to the untiled run.
* :mod:`subpixel.upscale.image`: one image file -> its upscaled file (Y model on Y, chroma and alpha bicubic).
* :mod:`subpixel.upscale.video`: a video file -> its upscaled file, streamed through PyAV.
* ``subpixel upscale`` is :mod:`subpixel.cli.upscale`.
"""

import inspect as _inspect
import sys as _sys
import types as _types

from subpixel.upscale.api import upscale
from subpixel.upscale.tiling import (
    DEFAULT_MAX_MEMORY,
    Tile,
    choose_tile_size,
    parse_size,
    plan_tiles,
    receptive_radius,
    tiled_map,
    tiled_upscale,
)

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "Tile",
    "choose_tile_size",
    "parse_size",
    "plan_tiles",
    "receptive_radius",
    "tiled_map",
    "tiled_upscale",
    "upscale",
]


class _CallablePackage(_types.ModuleType):
    """This package's module type: ``subpixel.upscale(...)`` is :func:`subpixel.upscale.api.upscale` ``(...)``."""

    def __call__(self, *args, **kwargs):
        return upscale(*args, **kwargs)


__signature__ = _inspect.signature(upscale)  # what help() and inspect.signature(subpixel.upscale) show
_sys.modules[__name__].__class__ = _CallablePackage
