"""count_macs against hand-counted layers and torch.utils.flop_counter.FlopCounterMode (flops = 2·MACs)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import subpixel
from subpixel.study import BicubicUpsample2d, count_macs


def _flops(model: nn.Module, shape: tuple[int, ...]) -> int:
    # with autograd recording, as in training: SubPixelConvNd then runs its LR form, which count_macs counts
    # (without autograd it may take the cheaper per-phase-group path)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.randn(shape, requires_grad=True))
    return counter.get_total_flops()


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        # N · C_out · ∏L_out · C_in/g · ∏k
        (nn.Conv2d(3, 8, 3, padding=1), (2, 3, 10, 12), 2 * 8 * 10 * 12 * 3 * 9),
        (nn.Conv2d(8, 16, 3, groups=4), (1, 8, 6, 6), 16 * 4 * 4 * 2 * 9),
        (nn.Conv1d(4, 6, 5, stride=2, padding=2), (3, 4, 20), 3 * 6 * 10 * 4 * 5),
        (nn.Conv3d(2, 4, (1, 3, 3), padding=(0, 1, 1)), (1, 2, 3, 5, 5), 4 * 75 * 2 * 9),
        # N · C_in · ∏L_in · C_out/g · ∏k
        (nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2), (1, 4, 5, 5), 25 * 4 * 3 * 16),
        (nn.ConvTranspose1d(3, 2, 16, stride=8, padding=4), (2, 3, 7), 2 * 7 * 3 * 2 * 16),
        (nn.ConvTranspose3d(2, 2, 2, stride=2), (1, 2, 3, 3, 3), 27 * 2 * 2 * 8),
        # ESPCN layer: LR conv 3×3 to 9 channels on the 10×12 LR grid
        (subpixel.SubPixelConv2d.from_lr_kernel(32, 1, scale=3), (1, 32, 10, 12), 9 * 32 * 9 * 120),
        # DCGAN layer: LR kernel 2, crop 1 -> ⌈(1 + 16)/2⌉ = 9 LR outputs per axis
        (subpixel.SubPixelConv2d(64, 32, 4, stride=2, padding=1), (1, 64, 8, 8), 81 * 128 * 64 * 4),
        (nn.PixelShuffle(2), (1, 8, 4, 4), 0),
        (subpixel.PixelShuffle2d(2), (1, 8, 4, 4), 0),
        (nn.ReLU(), (1, 8, 4, 4), 0),
        (nn.PReLU(8), (1, 8, 4, 4), 0),
        (nn.Upsample(scale_factor=3), (1, 2, 4, 4), 0),
        (nn.Upsample(scale_factor=3, mode="bilinear"), (1, 2, 4, 4), 2 * 144 * 4),
        (nn.Upsample(scale_factor=3, mode="bicubic"), (1, 2, 4, 4), 2 * 144 * 16),
        (nn.Upsample(scale_factor=2, mode="linear"), (1, 2, 5), 2 * 10 * 2),
        # replicate-padded 4×4 LR grid -> 8×8, every sample through the 11×11 kernel
        (BicubicUpsample2d(3), (1, 1, 4, 4), 64 * 121),
        (nn.Linear(10, 4), (3, 10), 3 * 40),
    ],
)
def test_hand_counted(layer: nn.Module, shape: tuple[int, ...], expected: int) -> None:
    report = count_macs(layer, shape)
    assert report.total == expected
    assert report.params == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (nn.Conv2d(3, 8, 3, padding=1), (2, 3, 10, 12)),
        (nn.Conv2d(8, 16, 3, groups=4, dilation=2), (1, 8, 9, 9)),
        (nn.Conv3d(2, 4, 3, padding=1), (1, 2, 4, 5, 5)),
        (nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2), (1, 4, 5, 5)),
        (nn.ConvTranspose1d(3, 2, 16, stride=8, padding=4), (2, 3, 7)),
        (subpixel.SubPixelConv2d(64, 32, 4, stride=2, padding=1), (1, 64, 8, 8)),
        (subpixel.SubPixelConv3d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2), (1, 4, 3, 4, 5)),
        (BicubicUpsample2d(3, 2, edge="zeros"), (1, 2, 6, 7)),
        (nn.Linear(10, 4), (3, 10)),
        (
            nn.Sequential(
                nn.Conv2d(1, 16, 5, padding=2),
                nn.Tanh(),
                nn.Conv2d(16, 8, 3, padding=1),
                nn.Tanh(),
                subpixel.SubPixelConv2d.from_lr_kernel(8, 1, scale=3),
            ),
            (2, 1, 11, 13),
        ),
        (
            nn.Sequential(
                nn.Conv2d(1, 8, 5, padding=2), nn.PReLU(8), nn.ConvTranspose2d(8, 1, 9, stride=3, padding=3)
            ),
            (1, 1, 9, 10),
        ),
        (nn.Sequential(nn.Conv2d(1, 9, 3, padding=1), nn.PixelShuffle(3)), (1, 1, 5, 5)),
    ],
)
def test_matches_flop_counter(model: nn.Module, shape: tuple[int, ...]) -> None:
    assert 2 * count_macs(model, shape).total == _flops(model, shape)


def test_per_output_pixel_and_nonzero() -> None:
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = 1.0  # 6 of 54 weights non-zero
    model = nn.Sequential(conv, nn.PixelShuffle(1))
    report = count_macs(model, (2, 2, 4, 5))
    assert report.total == 2 * 20 * 54
    assert report.nonzero_total == 2 * 20 * 6
    assert report.output_shape == (2, 3, 4, 5)
    assert report.per_output_pixel == 54.0
    assert [layer.kind for layer in report.layers] == ["Conv2d", "PixelShuffle"]
    assert "total" in report.table()


def test_parametrized_layers_count_as_their_plain_selves() -> None:
    """A layer under weight norm / spectral norm (or a converted one, whose LR weight is a parametrization) is one
    layer with the plain layer's count; counting steps no spectral-norm state."""
    from torch.nn.utils import parametrizations

    def build(reparametrize: bool) -> nn.Module:
        torch.manual_seed(0)
        a, b = nn.ConvTranspose1d(16, 8, 16, stride=8, padding=4), nn.ConvTranspose1d(8, 2, 3, stride=2)
        if reparametrize:
            a, b = parametrizations.weight_norm(a), parametrizations.spectral_norm(b)
        return nn.Sequential(a, nn.ReLU(), b)

    shape = (1, 16, 32)
    for converted in (False, True):
        plain, normed = build(False), build(True)
        if converted:
            plain, normed = subpixel.convert_model(plain)[0], subpixel.convert_model(normed)[0]
        u = normed[2].parametrizations.weight[0]._u.clone()
        a, b = count_macs(plain, shape), count_macs(normed, shape)
        assert [(x.name, x.kind, x.macs, x.nonzero_macs) for x in b.layers] == [
            (x.name, x.kind, x.macs, x.nonzero_macs) for x in a.layers
        ]
        assert torch.equal(normed[2].parametrizations.weight[0]._u, u)


def test_large_shape_runs_on_meta() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 64, 5, padding=2), nn.Tanh(), nn.Conv2d(64, 9, 3, padding=1), nn.PixelShuffle(3)
    )
    report = count_macs(model, (1, 1, 360, 640))  # a 1080p output: would take a while on the CPU
    assert report.output_shape == (1, 1, 1080, 1920)
    assert report.total == 360 * 640 * (64 * 25 + 9 * 64 * 9)


def test_errors() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(nn.Conv2d(1, 1, 3), (1, 1, 0, 4))
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(nn.Conv2d(1, 1, 3), "1x1x8x8")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="BatchNorm2d"):
        count_macs(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), (1, 1, 8, 8))
