"""Tiled inference: upscale an image of any size in bounded memory, with the same result as in one piece.

An output pixel of a stack of stride-1 'same' convolutions depends only on the input pixels within the network's
*receptive radius* ``R`` (in LR pixels) of its own position, and, near the image border, on the zero padding that
every layer adds there. So the image is cut into tiles; each tile is run with ``R`` extra LR pixels of real context
on every side that is *inside* the image (a side on the image border gets no extra pixels, so the network pads it
exactly as it pads the whole image), and only the tile's own part of the output is kept. The kept pixels then
equal those of the untiled run (up to float rounding: the convolution may sum in another order for another size).

:func:`tiled_map` does this for any function that is local with radius ``R``; :func:`tiled_upscale` for a model
with a ``scale`` and an ``lr_receptive_radius`` (or a radius estimated from its convolutions); :func:`plan_tiles`
and :func:`choose_tile_size` are the geometry and the memory rule.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 4, 3, padding=1), nn.PixelShuffle(2))
    >>> net.scale = 2
    >>> x = torch.rand(1, 1, 37, 23)
    >>> tiled = tiled_upscale(net, x, tile=8)          # radius 2 estimated from the two 3×3 convolutions
    >>> tiled.shape, bool((tiled - net(x)).abs().max() <= 1e-6)
    (torch.Size([1, 1, 74, 46]), True)
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from subpixel._validation import check_positive_int
from subpixel.errors import SubpixelError

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "Tile",
    "bytes_per_lr_pixel",
    "choose_tile_size",
    "estimate_receptive_radius",
    "format_size",
    "parse_size",
    "plan_tiles",
    "receptive_radius",
    "tile_side",
    "tiled_map",
    "tiled_upscale",
]

#: Default memory budget for one tile's working set (activations and per-tile buffers): 512 MiB.
DEFAULT_MAX_MEMORY: int = 512 * 2**20

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str | int) -> int:
    """Parse a memory size: bytes as an int, or a number with a binary unit (``K``, ``M``, ``G``, ``T``).

    Args:
        text: e.g. ``"512M"``, ``"1.5G"``, ``"800MiB"``, ``"65536"``, or an int.

    Returns:
        The size in bytes.

    Raises:
        ValueError: unparseable or not positive.

    Examples:
        >>> parse_size("512M"), parse_size("1.5GiB"), parse_size(4096)
        (536870912, 1610612736, 4096)
    """
    if isinstance(text, int) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:I?B)?\s*", str(text), flags=re.IGNORECASE)
        if match is None:
            raise SubpixelError(f"memory size must look like 512M, 2G or a number of bytes, got {text!r}")
        value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if value < 1:
        raise SubpixelError(f"memory size must be positive, got {text!r}")
    return int(value)


def format_size(size: float) -> str:
    """Bytes as a short human-readable string.

    Examples:
        >>> format_size(536870912), format_size(1536)
        ('512.0 MiB', '1.5 KiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


@dataclass(frozen=True)
class Tile:
    """One tile: the LR region whose output it produces, and the (larger) LR region it reads.

    Attributes:
        y0, y1, x0, x1: the output region, in LR pixels (half-open: rows ``y0:y1``, columns ``x0:x1``).
        in_y0, in_y1, in_x0, in_x1: the input region: the output region grown by the radius, clipped to the image.
    """

    y0: int
    y1: int
    x0: int
    x1: int
    in_y0: int
    in_y1: int
    in_x0: int
    in_x1: int


def plan_tiles(height: int, width: int, tile: int, radius: int) -> list[Tile]:
    """Cut an LR image into tiles of at most ``tile × tile`` output pixels, each read with ``radius`` of context.

    Tiles are of near-equal size (the image is split evenly rather than leaving a thin last strip).

    Args:
        height, width: LR image size.
        tile: largest side of a tile's output region, in LR pixels.
        radius: context on each inner side, in LR pixels (the model's receptive radius).

    Returns:
        The tiles, row-major; their output regions partition the image.

    Examples:
        >>> [(t.y0, t.y1, t.in_y0, t.in_y1) for t in plan_tiles(10, 4, 5, 2)]
        [(0, 5, 0, 7), (5, 10, 3, 10)]
    """
    check_positive_int(height, "height")
    check_positive_int(width, "width")
    check_positive_int(tile, "tile")
    check_positive_int(radius, "radius", minimum=0)

    def cuts(length: int) -> list[tuple[int, int]]:
        count = math.ceil(length / tile)
        edges = [round(i * length / count) for i in range(count + 1)]
        return list(itertools.pairwise(edges))

    return [
        Tile(
            y0,
            y1,
            x0,
            x1,
            max(0, y0 - radius),
            min(height, y1 + radius),
            max(0, x0 - radius),
            min(width, x1 + radius),
        )
        for y0, y1 in cuts(height)
        for x0, x1 in cuts(width)
    ]


def estimate_receptive_radius(model: nn.Module) -> int:
    """An upper bound of the LR receptive radius of a feed-forward stack of stride-1 convolutions.

    The sum over the ``Conv2d`` layers of ``ceil(dilation·(k − 1) / 2)`` plus, for each sub-pixel layer, the
    farther of its reaches to either side, ``⌊(d·(k − 1) − p) / s⌋`` and ``⌊(s − 1 + p) / s⌋`` LR pixels (its
    padding shifts the reach towards one side): exact for a chain of 'same' convolutions, an over-estimate (still
    safe) for parallel branches and layers after the upsampling.

    Args:
        model: the network.

    Returns:
        The radius in LR pixels.

    Raises:
        ValueError: the model has a layer whose reach this rule cannot bound (a strided or transposed
            convolution that is not a sub-pixel layer, pooling, attention...); pass the radius explicitly.

    Examples:
        >>> estimate_receptive_radius(nn.Sequential(nn.Conv2d(1, 4, 5, padding=2), nn.Conv2d(4, 4, 3, padding=1)))
        3
    """
    from subpixel.layers import SubPixelConvNd

    radius = 0
    for name, module in model.named_modules():
        if isinstance(module, SubPixelConvNd):
            # output sample m = c·s + φ (LR position c) sums inputs n = (m + p − t·d) / s over the taps t < k:
            # from c − ⌊(d(k−1) − p) / s⌋ to c + ⌊(s − 1 + p) / s⌋ (the padding shifts the reach to one side)
            radius += max(
                max(0, (d * (k - 1) - p) // s, (s - 1 + p) // s)
                for k, s, p, d in zip(module.kernel_size, module.stride, module.padding, module.dilation)
            )
        elif isinstance(module, nn.Conv2d):
            if any(s != 1 for s in module.stride):
                raise SubpixelError(
                    f"cannot bound the receptive radius of layer {name!r} (stride {module.stride}); "
                    "pass radius= explicitly or give the model an lr_receptive_radius attribute"
                )
            radius += max(math.ceil(d * (k - 1) / 2) for d, k in zip(module.dilation, module.kernel_size))
        elif isinstance(
            module,
            nn.ConvTranspose2d | nn.MaxPool2d | nn.AvgPool2d | nn.MultiheadAttention | nn.AdaptiveAvgPool2d,
        ):
            raise SubpixelError(
                f"cannot bound the receptive radius of layer {name!r} ({type(module).__name__}); "
                "pass radius= explicitly or give the model an lr_receptive_radius attribute"
            )
    return radius


def receptive_radius(model: nn.Module, radius: int | None = None) -> int:
    """The LR context needed around a tile: ``radius`` if given, else ``model.lr_receptive_radius``, else estimated.

    Args:
        model: the network.
        radius: an explicit radius (wins when given).

    Returns:
        The radius in LR pixels.

    Examples:
        >>> net = nn.Conv2d(1, 1, 7, padding=3)
        >>> receptive_radius(net), receptive_radius(net, 5)
        (3, 5)
    """
    if radius is not None:
        return check_positive_int(radius, "radius", minimum=0)
    declared = getattr(model, "lr_receptive_radius", None)
    if declared is not None:
        return check_positive_int(int(declared), "model.lr_receptive_radius", minimum=0)
    return estimate_receptive_radius(model)


def bytes_per_lr_pixel(model: nn.Module, scale: int, extra_hr_channels: int = 0) -> int:
    """Working memory per LR pixel of a tile: an estimate used to choose the tile size.

    Inference keeps about two activations alive at a time (a layer's input and output); the widest
    consecutive pair of convolution widths bounds that. ``extra_hr_channels`` float32 channels at HR resolution
    are added for the caller's own per-tile buffers (colour conversion, bicubic planes, the output tile). A factor
    of 2 covers library workspaces and layout copies.

    Args:
        model: the network (its ``Conv2d`` and sub-pixel layers are inspected).
        scale: upscaling factor ``r``.
        extra_hr_channels: float32 HR channels of per-tile buffers outside the model.

    Returns:
        Bytes per LR pixel.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(1, 64, 5, padding=2), nn.Conv2d(64, 9, 3, padding=1), nn.PixelShuffle(3))
        >>> bytes_per_lr_pixel(net, 3)  # 2 · 4 B · (64 + 9): the widest layer's input plus output
        584
    """
    from subpixel.layers import SubPixelConvNd

    widest = 1
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            widest = max(widest, module.in_channels + module.out_channels)
        elif isinstance(module, SubPixelConvNd):  # LR conv output, then its shuffled copy
            out_lr = int(module.weight.shape[0])
            widest = max(widest, int(module.weight.shape[1]) * module.groups + 2 * out_lr)
    return 2 * 4 * (widest + extra_hr_channels * scale * scale)


def choose_tile_size(max_memory: int, per_lr_pixel: int, radius: int, *, minimum: int = 16) -> int:
    """The largest square tile (output side, LR pixels) whose input fits ``max_memory``.

    Args:
        max_memory: bytes allowed for one tile's working set.
        per_lr_pixel: bytes per LR input pixel (:func:`bytes_per_lr_pixel`).
        radius: context on each side.
        minimum: smallest useful tile side.

    Returns:
        ``side`` such that ``(side + 2·radius)² · per_lr_pixel <= max_memory``.

    Raises:
        ValueError: even a ``minimum``-sized tile does not fit.

    Examples:
        >>> choose_tile_size(512 * 2**20, 584, 4)  # isqrt(2**29 // 584) - 2·4
        950
    """
    side = math.isqrt(max(0, max_memory // max(1, per_lr_pixel))) - 2 * radius
    if side < minimum:
        need = (minimum + 2 * radius) ** 2 * per_lr_pixel
        raise SubpixelError(
            f"max_memory={format_size(max_memory)} is too small for a {minimum}×{minimum} tile with "
            f"{radius} pixels of context; allow at least {format_size(need)}"
        )
    return side


def tile_side(
    model: nn.Module,
    scale: int,
    radius: int,
    *,
    tile: int | None = None,
    max_memory: int | str | None = None,
    extra_hr_channels: int = 0,
    batch: int = 1,
) -> int:
    """The tile side to run ``model`` with: ``tile`` when given, else the largest that fits ``max_memory``.

    The one tile-size rule of :func:`tiled_upscale` and :func:`subpixel.upscaling.image.upscale_pixels`:
    :func:`choose_tile_size` of the budget (``max_memory`` parsed by :func:`parse_size`, default
    :data:`DEFAULT_MAX_MEMORY`) and :func:`bytes_per_lr_pixel` times ``batch``.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
        >>> tile_side(net, 2, 1, tile=64)
        64
        >>> tile_side(net, 2, 1, max_memory="1M") == choose_tile_size(2**20, bytes_per_lr_pixel(net, 2), 1)
        True
    """
    if tile is not None:
        return check_positive_int(tile, "tile")
    budget = DEFAULT_MAX_MEMORY if max_memory is None else parse_size(max_memory)
    return choose_tile_size(budget, bytes_per_lr_pixel(model, scale, extra_hr_channels) * batch, radius)


def tiled_map(
    fn: Callable[[Tensor], Tensor],
    lr: Tensor,
    scale: int,
    *,
    radius: int,
    tile: int,
    sink: Callable[[Tensor, tuple[int, int, int, int]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Tensor | None:
    """Apply ``fn`` (local with LR radius ``radius``, upscaling by ``scale``) tile by tile.

    Args:
        fn: maps ``(N, C, h, w)`` to ``(N, C', h·r, w·r)``; it must be translation-equivariant with reach
            ``radius`` LR pixels, treating the borders of its input as the image borders (e.g. zero 'same'
            padding, or edge replication).
        lr: ``(N, C, H, W)`` input.
        scale: the factor ``r``.
        radius: LR context read on each inner side of a tile.
        tile: largest output side of a tile, in LR pixels.
        sink: receives each output tile and its HR region ``(Y0, Y1, X0, X1)``; when given, nothing is
            accumulated and ``None`` is returned (the caller writes the tiles where it wants, e.g. quantized into
            an 8-bit array).
        progress: called with the number of LR pixels done after each tile.

    Returns:
        ``(N, C', H·r, W·r)`` output (``fn``'s dtype), or ``None`` with a ``sink``.

    Shape:
        ``(N, C, H, W) -> (N, C', H·r, W·r)``.

    Examples:
        >>> up = lambda x: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        >>> x = torch.rand(1, 3, 9, 7)
        >>> bool(torch.equal(tiled_map(up, x, 2, radius=0, tile=4), up(x)))
        True
    """
    if not isinstance(lr, Tensor) or lr.dim() != 4:
        raise SubpixelError(f"lr must be a tensor of shape (N, C, H, W), got {getattr(lr, 'shape', type(lr))}")
    r = check_positive_int(scale, "scale")
    _, _, height, width = lr.shape
    out: Tensor | None = None
    for t in plan_tiles(int(height), int(width), tile, radius):
        piece = fn(lr[:, :, t.in_y0 : t.in_y1, t.in_x0 : t.in_x1])
        expected = ((t.in_y1 - t.in_y0) * r, (t.in_x1 - t.in_x0) * r)
        if piece.dim() != 4 or tuple(piece.shape[-2:]) != expected:
            raise SubpixelError(
                f"fn must upscale a tile of {t.in_y1 - t.in_y0}×{t.in_x1 - t.in_x0} by scale={r} to {expected}, "
                f"got shape {tuple(piece.shape)}"
            )
        oy, ox = (t.y0 - t.in_y0) * r, (t.x0 - t.in_x0) * r
        kept = piece[:, :, oy : oy + (t.y1 - t.y0) * r, ox : ox + (t.x1 - t.x0) * r]
        region = (t.y0 * r, t.y1 * r, t.x0 * r, t.x1 * r)
        if sink is not None:
            sink(kept, region)
        else:
            if out is None:
                out = kept.new_empty((kept.shape[0], kept.shape[1], height * r, width * r))
            out[:, :, region[0] : region[1], region[2] : region[3]] = kept
        if progress is not None:
            progress((t.y1 - t.y0) * (t.x1 - t.x0))
    return out


def tiled_upscale(
    model: nn.Module,
    lr: Tensor,
    *,
    tile: int | None = None,
    max_memory: int | str | None = None,
    radius: int | None = None,
) -> Tensor:
    """Run an upscaling model over an LR image in tiles; the result equals ``model(lr)``.

    Args:
        model: maps ``(N, C, h, w)`` to ``(N, C', h·r, w·r)`` with ``r = model.scale``; stride-1 'same'
            convolutions in LR space then a shuffle (e.g. ESPCN).
        lr: ``(N, C, H, W)`` input.
        tile: output side of a tile in LR pixels; default: chosen from ``max_memory``.
        max_memory: memory budget for one tile (bytes or a size such as ``"256M"``); default
            :data:`DEFAULT_MAX_MEMORY`. Ignored when ``tile`` is given.
        radius: LR context per side; default :func:`receptive_radius` of the model.

    Returns:
        ``(N, C', H·r, W·r)``.

    Raises:
        ValueError: the model has no integer ``scale``, or the budget is too small.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
        >>> net.scale = 2
        >>> tiled_upscale(net, torch.rand(1, 3, 20, 30), max_memory="1M").shape
        torch.Size([1, 3, 40, 60])
    """
    scale = getattr(model, "scale", None)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise SubpixelError(f"model must have an int attribute scale >= 1, got scale={scale!r}")
    reach = receptive_radius(model, radius)
    side = tile_side(model, scale, reach, tile=tile, max_memory=max_memory, batch=max(1, lr.shape[0]))
    with torch.inference_mode():
        result = tiled_map(model, lr, scale, radius=reach, tile=side)
    assert result is not None
    return result
