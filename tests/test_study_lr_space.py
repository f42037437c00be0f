"""to_lr_space: an upsample-first network equals an LR-space network + one shuffle, exactly (float64).

The reference is always the HR network itself, run by torch's own ops (F.interpolate, conv_transpose2d, conv2d).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import subpixel
from subpixel.study import (
    BicubicUpsample2d,
    count_macs,
    cubic,
    hr_conv_to_lr,
    hr_to_lr_weight_map,
    interpolation_taps,
    to_lr_space,
)

D = torch.float64


def _resampler(kind: str, r: int, c: int) -> nn.Module:
    return {
        "nearest": lambda: nn.Upsample(scale_factor=r),
        "bilinear": lambda: nn.Upsample(scale_factor=r, mode="bilinear"),
        "torch-bicubic": lambda: nn.Upsample(scale_factor=r, mode="bicubic"),
        "bicubic-replicate": lambda: BicubicUpsample2d(r, c, dtype=D),
        "bicubic-zeros": lambda: BicubicUpsample2d(r, c, edge="zeros", dtype=D),
        "bicubic-as-deconv": lambda: BicubicUpsample2d(r, c, edge="zeros", dtype=D).as_conv_transpose(),
        "deconv": lambda: nn.ConvTranspose2d(c, c + 1, 3 * r, stride=r, padding=r),
        "subpixel-deconv": lambda: (
            subpixel.SubPixelConv2d(c, c + 1, 2 * r, stride=r, padding=r // 2)
            if r % 2 == 0
            else subpixel.SubPixelConv2d(c, c + 1, 3 * r, stride=r, padding=r)
        ),
    }[kind]()


def _max_err(hr: nn.Module, lr: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        a, b = hr(x), lr(x)
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize(
    "kind",
    [
        "nearest",
        "bilinear",
        "torch-bicubic",
        "bicubic-replicate",
        "bicubic-zeros",
        "bicubic-as-deconv",
        "deconv",
        "subpixel-deconv",
    ],
)
def test_srcnn_like_networks_are_lr_networks(kind: str, scale: int) -> None:
    up = _resampler(kind, scale, 2)
    c = getattr(up, "out_channels", 2)
    hr = nn.Sequential(
        up,
        nn.Conv2d(c, 6, 9, padding=4),
        nn.PReLU(6),
        nn.Conv2d(6, 4, 1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding="same", dilation=2, groups=2),
        nn.Tanh(),
        nn.Conv2d(4, 1, 5, padding=2),
    ).to(D)
    lr = to_lr_space(hr, scale, in_channels=2)
    assert isinstance(lr[-1], subpixel.PixelShuffle2d)
    assert sum(isinstance(m, subpixel.PixelShuffle2d) for m in lr) == 1
    x = torch.randn(2, 2, 7, 10, dtype=D)
    assert _max_err(hr, lr, x) <= 1e-10
    # and the LR network runs entirely at LR: every conv output has the input's spatial size
    y = x
    for layer in lr[:-1]:
        y = layer(y)
    assert y.shape[-2:] == x.shape[-2:]


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5, 7, 9, 13])
def test_zero_padding_at_the_border_is_exact(kernel: int, scale: int) -> None:
    """HR zero padding p ↔ LR zero padding ⌈p/r⌉ before, for every 'same' padding (odd and even kernels)."""
    pad_before = (kernel - 1) // 2
    hr = nn.Sequential(
        BicubicUpsample2d(scale, 1, edge="zeros", dtype=D), nn.Conv2d(1, 2, kernel, padding="same", dtype=D)
    )
    lr = to_lr_space(hr, scale)
    conv = next(m for m in reversed(lr) if isinstance(m, nn.Conv2d))
    pads = lr[-3].padding if isinstance(lr[-3], nn.ZeroPad2d) else (conv.padding[1], 0, conv.padding[0], 0)
    assert pads[0] == -(-pad_before // scale)  # left = ⌈p_l / r⌉
    x = torch.randn(1, 1, 5, 6, dtype=D)
    assert _max_err(hr, lr, x) <= 1e-10


@pytest.mark.parametrize(("kernel", "padding"), [(7, 0), (4, (0, 3)), (1, 3), (5, 5), (3, (1, 4))])
def test_other_paddings_that_keep_whole_lr_pixels(kernel: int, padding: int | tuple[int, int]) -> None:
    scale = 3
    hr = nn.Sequential(
        BicubicUpsample2d(scale, 1, dtype=D), nn.Conv2d(1, 3, kernel, padding=padding, dtype=D), nn.Sigmoid()
    )
    lr = to_lr_space(hr, scale)
    x = torch.randn(2, 1, 6, 5, dtype=D)
    assert _max_err(hr, lr, x) <= 1e-10


def test_lr_convs_before_the_resampler_are_kept() -> None:
    """FSRCNN-like: LR convs then a ConvTranspose2d; the LR form ends in an LR conv and a shuffle (ESPCN-like)."""
    hr = nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2), nn.PReLU(8), nn.ConvTranspose2d(8, 1, 9, stride=3, padding=3)
    ).to(D)
    lr = to_lr_space(hr, 3)
    assert [type(m).__name__ for m in lr] == ["Conv2d", "PReLU", "Conv2d", "PixelShuffle2d"]
    assert _max_err(hr, lr, torch.randn(1, 1, 8, 9, dtype=D)) <= 1e-10


def test_single_conv_equals_conv_between_shuffles() -> None:
    conv = nn.Conv2d(3, 5, (3, 5), padding=(1, 2), dtype=D)
    layers = nn.Sequential(*hr_conv_to_lr(conv, 2))
    x_lr = torch.randn(2, 12, 4, 6, dtype=D)
    expected = conv(F.pixel_shuffle(x_lr, 2))
    assert (F.pixel_shuffle(layers(x_lr), 2) - expected).abs().max() <= 1e-12


def test_bicubic_a075_equals_torch_interpolate() -> None:
    """With PyTorch's a = −0.75 and edge replication, BicubicUpsample2d is F.interpolate(mode='bicubic')."""
    x = torch.randn(2, 3, 6, 7, dtype=D)
    for r in (2, 3, 4):
        ours = BicubicUpsample2d(r, 3, a=-0.75, dtype=D)(x)
        ref = F.interpolate(x, scale_factor=r, mode="bicubic", align_corners=False)
        assert (ours - ref).abs().max() <= 1e-12


def test_bicubic_matches_a_direct_loop() -> None:
    """The documented definition, evaluated pixel by pixel with numpy (a = −0.5, edge replication)."""
    r, a = 3, -0.5
    x = np.random.default_rng(0).standard_normal((5, 4))
    h, w = x.shape
    ref = np.zeros((h * r, w * r))

    def k(t: float) -> float:
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    for m in range(h * r):
        for n in range(w * r):
            u, v = (m + 0.5) / r - 0.5, (n + 0.5) / r - 0.5
            for i in range(int(np.floor(u)) - 1, int(np.floor(u)) + 3):
                for j in range(int(np.floor(v)) - 1, int(np.floor(v)) + 3):
                    ref[m, n] += x[min(max(i, 0), h - 1), min(max(j, 0), w - 1)] * k(u - i) * k(v - j)
    ours = BicubicUpsample2d(r, dtype=D)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    assert np.abs(ours - ref).max() <= 1e-12


def test_interpolation_taps_sum_to_one() -> None:
    for mode in ("nearest", "bilinear", "bicubic"):
        for r in (2, 3, 4):
            assert torch.allclose(interpolation_taps(r, mode).sum(1), torch.ones(r, dtype=D))
    assert float(cubic(torch.tensor(0.0, dtype=D))) == 1.0


def test_lr_form_is_a_tied_sparse_lr_network() -> None:
    """Each LR weight is one HR tap or zero; each HR tap appears r² times: rank = number of HR weights."""
    r = 3
    conv = nn.Conv2d(2, 3, 5, padding=2, bias=False)
    a = hr_to_lr_weight_map(conv, r)
    n_hr = conv.weight.numel()
    assert a.shape[1] == n_hr
    assert torch.linalg.matrix_rank(a) == n_hr < a.shape[0]
    assert torch.all(a.sum(0) == r * r)  # tied: every HR tap has r² copies
    assert a.sum(1).max() == 1  # no LR weight mixes two HR taps
    assert (a.sum(1) == 0).sum() > 0  # structural zeros


def test_free_lr_network_is_not_representable_weights() -> None:
    """A random LR weight of the same shape lies far from the subspace of LR forms; an LR form lies in it."""
    r = 3
    conv = nn.Conv2d(2, 3, 5, padding=2, bias=False, dtype=D)
    a = hr_to_lr_weight_map(conv, r)
    lr_form = hr_conv_to_lr(conv, r)[-1].weight.detach().reshape(-1, 1)
    free = torch.randn_like(lr_form)

    def relative_residual(w: torch.Tensor) -> float:
        theta = torch.linalg.lstsq(a, w).solution
        return float((a @ theta - w).norm() / w.norm())

    assert relative_residual(lr_form) < 1e-12
    assert relative_residual(free) > 0.9  # almost all of a free weight is outside the tied subspace


def test_free_lr_network_is_not_representable_function() -> None:
    """No HR network of that shape computes what a free LR network of the same shape computes.

    The HR network (fixed bicubic up-sampler, one 5×5 conv) is linear in its weights θ, so the best θ for a target
    is a linear least-squares fit over many inputs. Control: a target made by another HR network is fitted
    exactly; a free LR network (same layers, same MACs, weights drawn freely) is not.
    """
    r = 3
    up = BicubicUpsample2d(r, 1, edge="zeros", dtype=D)
    x = torch.randn(8, 1, 6, 6, dtype=D)
    up_x = up(x)
    # design matrix: output as a function of each HR weight (bias included)
    basis = []
    for idx in range(26):
        theta = torch.zeros(26, dtype=D)
        theta[idx] = 1
        basis.append(F.conv2d(up_x, theta[:25].reshape(1, 1, 5, 5), theta[25:], padding=2).reshape(-1))
    design = torch.stack(basis, 1)

    def relative_residual(target: torch.Tensor) -> float:
        t = target.reshape(-1, 1)
        theta = torch.linalg.lstsq(design, t).solution
        return float((design @ theta - t).norm() / t.norm())

    hr = nn.Sequential(up, nn.Conv2d(1, 1, 5, padding=2, dtype=D))
    lr_form = to_lr_space(hr, r)
    free = to_lr_space(hr, r)
    with torch.no_grad():
        free[-2].weight.copy_(torch.randn_like(free[-2].weight))  # the last LR conv, drawn freely
        free[-2].bias.copy_(torch.randn_like(free[-2].bias))
    assert count_macs(free, (1, 1, 6, 6)).total == count_macs(lr_form, (1, 1, 6, 6)).total
    assert relative_residual(lr_form(x).detach()) < 1e-10
    assert relative_residual(free(x).detach()) > 0.3


def test_mac_counts_of_both_forms() -> None:
    """The LR form does more dense MACs (its kernels are mostly zeros) but exactly the same non-zero MACs."""
    hr = nn.Sequential(
        BicubicUpsample2d(3, 1, edge="zeros"),
        nn.Conv2d(1, 8, 9, padding=4),
        nn.ReLU(),
        nn.Conv2d(8, 1, 5, padding=2),
    )
    lr = to_lr_space(hr, 3)
    shape = (1, 1, 12, 10)
    hr_count, lr_count = count_macs(hr, shape), count_macs(lr, shape)
    assert hr_count.output_shape == lr_count.output_shape
    assert lr_count.total > hr_count.total
    assert lr_count.nonzero_total == hr_count.nonzero_total


def test_refusals() -> None:
    up = BicubicUpsample2d(3, 1)
    with pytest.raises(ValueError, match="not a multiple of scale=3"):
        to_lr_space(nn.Sequential(up, nn.Conv2d(1, 1, 3)), 3)
    with pytest.raises(ValueError, match="padding_mode"):
        to_lr_space(nn.Sequential(up, nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")), 3)
    with pytest.raises(ValueError, match="stride-1"):
        to_lr_space(nn.Sequential(up, nn.Conv2d(1, 1, 3, padding=1, stride=2)), 3)
    with pytest.raises(ValueError, match="no resampler"):
        to_lr_space(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)), 3)
    with pytest.raises(ValueError, match="second resampler"):
        to_lr_space(nn.Sequential(up, BicubicUpsample2d(3, 1)), 3)
    with pytest.raises(ValueError, match="scale 3, expected 2"):
        to_lr_space(nn.Sequential(up), 2)
    with pytest.raises(ValueError, match="align_corners"):
        to_lr_space(
            nn.Sequential(nn.Upsample(scale_factor=3, mode="bilinear", align_corners=True)), 3, in_channels=1
        )
    with pytest.raises(TypeError, match="BatchNorm2d"):
        to_lr_space(nn.Sequential(up, nn.BatchNorm2d(1)), 3)
    with pytest.raises(TypeError, match=r"nn\.Sequential"):
        to_lr_space(up, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        to_lr_space(nn.Sequential(up), 1)
    with pytest.raises(ValueError, match="edge"):
        BicubicUpsample2d(3, edge="mirror")
    with pytest.raises(ValueError, match=r"shape \(N, 1, H, W\)"):
        up(torch.zeros(1, 2, 4, 4))


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
def test_upsample_first_network_takes_its_channels_from_the_next_conv(mode: str) -> None:
    """The classic SRCNN arrangement, nn.Upsample first, with no in_channels."""
    hr = nn.Sequential(
        nn.Upsample(scale_factor=3, mode=mode),
        nn.Conv2d(1, 64, 9, padding=4),
        nn.ReLU(),
        nn.Conv2d(64, 32, 1),
        nn.ReLU(),
        nn.Conv2d(32, 1, 5, padding=2),
    ).to(D)
    lr = to_lr_space(hr, 3)
    x = torch.randn(2, 1, 6, 5, dtype=D)
    assert _max_err(hr, lr, x) <= 1e-10
    # past pointwise activations, and from a per-channel PReLU
    hr3 = nn.Sequential(
        nn.Upsample(scale_factor=2), nn.ReLU(), nn.PReLU(3), nn.Conv2d(3, 1, 3, padding=1)
    ).to(D)
    x3 = torch.randn(1, 3, 4, 4, dtype=D)
    assert _max_err(hr3, to_lr_space(hr3, 2), x3) <= 1e-10


def test_upsample_first_network_takes_its_channels_from_an_example_input() -> None:
    hr = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear"), nn.Tanh()).to(D)
    x = torch.randn(1, 3, 4, 5, dtype=D)
    with pytest.raises(ValueError, match=r"pass in_channels= or example_input="):
        to_lr_space(hr, 2)
    assert _max_err(hr, to_lr_space(hr, 2, example_input=x), x) <= 1e-12
    with pytest.raises(
        ValueError, match=r"in_channels=2 disagrees with example_input of shape \(1, 3, 4, 5\)"
    ):
        to_lr_space(hr, 2, in_channels=2, example_input=x)
    with pytest.raises(
        ValueError, match=r"example_input must be a tensor of shape \(N, C, H, W\), got \(3, 4\)"
    ):
        to_lr_space(hr, 2, example_input=torch.zeros(3, 4))
    srcnn = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(1, 4, 3, padding=1))
    with pytest.raises(ValueError, match=r"hr_network\[0\] \(Upsample\): 2 channels reach it .* takes 1"):
        to_lr_space(srcnn, 2, in_channels=2)


def test_study_modules_import_without_a_cycle() -> None:
    """lr_space and macs share their building blocks through study.blocks; neither imports the other."""
    import ast
    import inspect

    from subpixel import bicubic
    from subpixel.study import blocks, lr_space, macs

    def imported(module: object) -> set[str]:
        tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "subpixel.study.macs" not in imported(lr_space)
    assert "subpixel.study.lr_space" not in imported(macs)
    # blocks reaches the package only for the one Keys kernel and its taps, which need only the argument checks
    leaves = {"subpixel.bicubic", "subpixel._validation", "subpixel.errors"}
    assert {m for m in imported(blocks) if m.startswith("subpixel")} <= leaves
    assert {m for m in imported(bicubic) if m.startswith("subpixel")} <= {
        "subpixel._validation",
        "subpixel.errors",
    }
