"""Upscale images and videos with an SR model, in bounded memory (tiled inference).

``subpixel.upscale(image, scale=3)`` is :func:`subpixel.upscaling.api.upscale` (PIL image, numpy array or tensor in,
the same kind out).

* :mod:`subpixel.upscaling.api`: :func:`~subpixel.upscaling.api.upscale`, one call for a picture in memory.
* :mod:`subpixel.upscaling.tiling`: tiled inference equal to the untiled run.
* :mod:`subpixel.upscaling.image`: one image file -> its upscaled file (Y model on Y, chroma and alpha bicubic).
* :mod:`subpixel.upscaling.video`: a video file -> its upscaled file, streamed through PyAV.
* ``subpixel upscale`` is :mod:`subpixel.cli.upscale`.
"""

from subpixel.upscaling.api import upscale
from subpixel.upscaling.tiling import (
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

