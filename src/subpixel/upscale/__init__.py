"""Upscale images and videos with an SR model, in bounded memory (tiled inference).

* :mod:`subpixel.upscale.tiling`: tiled inference equal to the untiled run.
* :mod:`subpixel.upscale.image`: one image file -> its upscaled file (Y model on Y, chroma and alpha bicubic).
* :mod:`subpixel.upscale.video`: a video file -> its upscaled file, streamed through PyAV.
* ``subpixel upscale`` is :mod:`subpixel.cli.upscale`.
"""

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
]
