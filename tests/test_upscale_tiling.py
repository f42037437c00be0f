"""Tiled inference equals the untiled run (random conv nets with zero 'same' padding), and its geometry."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from subpixel import SubPixelConv2d
from subpixel.upscaling.tiling import (
    DEFAULT_MAX_MEMORY,
    bytes_per_lr_pixel,
    choose_tile_size,
    estimate_receptive_radius,
    parse_size,
    plan_tiles,
    receptive_radius,
    tiled_map,
    tiled_upscale,
)


class RandomSR(nn.Module):
    """A random LR-space net: 'same' zero-padded convs (mixed kernels, a dilation) then conv + pixel shuffle."""

    def __init__(
        self, scale: int, channels: int = 1, dtype: torch.dtype = torch.float32, *, large_init: bool = True
    ) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(
            nn.Conv2d(channels, 8, 5, padding=2, dtype=dtype),
            nn.Tanh(),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, dtype=dtype),
            nn.ReLU(),
            nn.Conv2d(8, channels * scale * scale, 3, padding=1, dtype=dtype),
            nn.PixelShuffle(scale),
        )
        if large_init:  # biases too, so zero padding differs visibly from the image's content
            for p in self.parameters():
                nn.init.uniform_(p, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("tile", [3, 8])
def test_tiled_equals_untiled_float64(scale: int, tile: int) -> None:
    model = RandomSR(scale, channels=2, dtype=torch.float64).eval()
    x = torch.rand(2, 2, 13, 17, dtype=torch.float64)
    assert estimate_receptive_radius(model) == 2 + 2 + 1
    with torch.no_grad():
        ref = model(x)
        out = tiled_upscale(model, x, tile=tile)
    assert out.shape == ref.shape == (2, 2, 13 * scale, 17 * scale)
    assert (out - ref).abs().max().item() <= 1e-12


@pytest.mark.parametrize("tile", [5, 11, 40])
def test_tiled_equals_untiled_float32(tile: int) -> None:
    """float32, with PyTorch's default init (outputs of order 1, like an SR model's): within 1e-6."""
    model = RandomSR(3, large_init=False).eval()
    x = torch.rand(1, 1, 33, 47)
    with torch.no_grad():
        ref = model(x)
    out = tiled_upscale(model, x, tile=tile)
    assert (out - ref).abs().max().item() <= 1e-6


def test_too_little_overlap_is_visibly_wrong() -> None:
    """The test above can fail: with radius 1 instead of 5 the tile seams differ from the untiled output."""
    model = RandomSR(2, dtype=torch.float64).eval()
    x = torch.rand(1, 1, 20, 20, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
    out = tiled_upscale(model, x, tile=6, radius=1)
    assert (out - ref).abs().max().item() > 1e-3


def test_espcn_like_model_with_subpixel_layer() -> None:
    class Net(nn.Module):
        scale = 3
        lr_receptive_radius = 3

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 5, padding=2, dtype=torch.float64)
            self.up = SubPixelConv2d.from_lr_kernel(6, 1, 3, 3, dtype=torch.float64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.up(torch.tanh(self.conv(x)))

    model = Net().eval()
    x = torch.rand(1, 1, 17, 13, dtype=torch.float64)
    assert receptive_radius(model) == 3  # the declared attribute wins
    assert estimate_receptive_radius(model) >= 3  # the estimate is an upper bound
    with torch.no_grad():
        ref = model(x)
    for tile in (2, 5, 9):
        assert (tiled_upscale(model, x, tile=tile) - ref).abs().max().item() <= 1e-12


def test_max_memory_chooses_smaller_tiles_and_stays_exact() -> None:
    model = RandomSR(2, dtype=torch.float64).eval()
    per_pixel = bytes_per_lr_pixel(model, 2)
    small = choose_tile_size(200_000, per_pixel, 5)
    large = choose_tile_size(DEFAULT_MAX_MEMORY, per_pixel, 5)
    assert 16 <= small < large
    assert (small + 10) ** 2 * per_pixel <= 200_000 < (small + 11) ** 2 * per_pixel
    x = torch.rand(1, 1, 70, 50, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
    assert (tiled_upscale(model, x, max_memory=200_000) - ref).abs().max().item() <= 1e-12
    with pytest.raises(ValueError, match=r"max_memory=.* is too small"):
        tiled_upscale(model, x, max_memory="10K")


@pytest.mark.parametrize(
    ("height", "width", "tile", "radius"), [(1, 1, 1, 0), (10, 7, 3, 2), (31, 64, 16, 4)]
)
def test_plan_tiles_partitions_the_image(height: int, width: int, tile: int, radius: int) -> None:
    covered = torch.zeros(height, width, dtype=torch.int64)
    for t in plan_tiles(height, width, tile, radius):
        assert 0 < t.y1 - t.y0 <= tile and 0 < t.x1 - t.x0 <= tile
        assert t.in_y0 == max(0, t.y0 - radius) and t.in_y1 == min(height, t.y1 + radius)
        assert t.in_x0 == max(0, t.x0 - radius) and t.in_x1 == min(width, t.x1 + radius)
        covered[t.y0 : t.y1, t.x0 : t.x1] += 1
    assert bool((covered == 1).all())


def test_tiled_map_with_sink_and_progress() -> None:
    up = nn.Upsample(scale_factor=2, mode="nearest")
    x = torch.rand(1, 3, 9, 10)
    pieces: list[tuple[int, int, int, int]] = []
    done: list[int] = []
    canvas = torch.zeros(1, 3, 18, 20)

    def sink(piece: torch.Tensor, region: tuple[int, int, int, int]) -> None:
        pieces.append(region)
        canvas[:, :, region[0] : region[1], region[2] : region[3]] = piece

    assert tiled_map(up, x, 2, radius=0, tile=4, sink=sink, progress=done.append) is None
    assert torch.equal(canvas, up(x))
    assert sum(done) == 90 and len(pieces) == 9
    with pytest.raises(ValueError, match="fn must upscale a tile"):
        tiled_map(up, x, 3, radius=0, tile=4)


def test_errors() -> None:
    conv = nn.Conv2d(1, 4, 3, padding=1)
    with pytest.raises(ValueError, match="model must have an int attribute scale"):
        tiled_upscale(conv, torch.rand(1, 1, 4, 4), tile=2)
    strided = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2))
    with pytest.raises(ValueError, match="cannot bound the receptive radius"):
        estimate_receptive_radius(strided)
    with pytest.raises(ValueError, match="cannot bound the receptive radius"):
        estimate_receptive_radius(nn.Sequential(nn.MaxPool2d(2)))
    with pytest.raises(ValueError, match="radius must be an int >= 0, got -1"):
        receptive_radius(conv, -1)
    with pytest.raises(ValueError, match="lr must be a tensor of shape"):
        tiled_map(conv, torch.rand(4, 4), 1, radius=1, tile=2)
    for bad in ("", "12Q", "-3M", "0"):
        with pytest.raises(ValueError, match="memory size"):
            parse_size(bad)
    assert [parse_size(s) for s in ("1k", "2 MiB", "0.5G")] == [1024, 2 * 2**20, 2**29]


def test_every_tile_size_exact_exhaustive_small() -> None:
    model = RandomSR(2, dtype=torch.float64).eval()
    x = torch.rand(1, 1, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
    for tile, radius in itertools.product(range(1, 10, 2), (5, 8)):
        assert (tiled_upscale(model, x, tile=tile, radius=radius) - ref).abs().max().item() <= 1e-12


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "output_padding"),
    [
        (3, 3, 1, 2),  # the output phase reaches one LR pixel right of its own (LR kernel 1)
        (5, 3, 2, 2),
        (4, 2, 1, 0),  # DCGAN
        (2, 2, 0, 0),
        (6, 2, 2, 0),  # ESPCN, LR kernel 3
        (7, 4, 3, 3),
    ],
)
def test_tiled_equals_untiled_with_the_estimated_radius_of_a_converted_layer(
    kernel: int, stride: int, padding: int, output_padding: int
) -> None:
    """A converted ConvTranspose (padding not centred on its LR kernel) after a conv: the *estimated* radius is
    enough for the tiles to add up to the untiled output."""
    import subpixel

    deconv = nn.ConvTranspose2d(
        4, 2, kernel, stride=stride, padding=padding, output_padding=output_padding, dtype=torch.float64
    )
    nn.init.uniform_(deconv.weight, -0.5, 0.5)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, dtype=torch.float64), nn.Tanh(), deconv)
    model.scale = stride
    converted, _ = subpixel.convert_model(model)
    converted.scale = stride
    x = torch.rand(1, 1, 14, 11, dtype=torch.float64)
    with torch.no_grad():
        ref = converted(x)
    assert ref.shape[-2:] == (14 * stride, 11 * stride)
    radius = estimate_receptive_radius(converted)
    for tile in (2, 3, 5):
        out = tiled_upscale(converted, x, tile=tile)
        assert (out - ref).abs().max().item() <= 1e-12, (tile, radius)
