"""Re-parameterizable blocks and the RepESPCN family: the collapse is exact (float64, borders included)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from subpixel.sr.models import ESPCN, FAMILIES, RepESPCN, load, save
from subpixel.sr.rep_blocks import BRANCHES, EDGE_FILTERS, RepConv2d, compose_1x1_kxk

F64 = torch.float64


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn at a scale where each branch matters (the default init makes some tiny)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)


def _reference_branch_sum(block: RepConv2d, x: torch.Tensor) -> torch.Tensor:
    """A direct loop over output pixels: each branch applied to the zero-padded *input* neighbourhood.

    Independent of both code paths of :class:`RepConv2d`: a two-stage branch maps every input pixel of the
    ``k×k`` window (zero outside the image, so the first stage gives its bias there) and then applies the
    second kernel; the edge branches build their kernel from :data:`EDGE_FILTERS` here.
    """
    n, _, h, w = x.shape
    k, p = block.kernel_size, block.kernel_size // 2
    xp = F.pad(x, (p, p, p, p))
    out = torch.zeros(n, block.out_channels, h, w, dtype=x.dtype)
    for i, j in itertools.product(range(h), range(w)):
        window = xp[:, :, i : i + k, j : j + k]  # (N, C_in, k, k)
        total = torch.zeros(n, block.out_channels, dtype=x.dtype)
        for kind in block.branches:
            if kind == "conv":
                total += torch.einsum("nihw,oihw->no", window, block.conv_weight)
                if block.conv_bias is not None:
                    total += block.conv_bias
            elif kind == "identity":
                total += window[:, :, p, p]
            else:
                w1, b1 = getattr(block, f"{kind}_w1"), getattr(block, f"{kind}_b1")
                mid = torch.einsum("nihw,mi->nmhw", window, w1[:, :, 0, 0])
                if b1 is not None:
                    mid = mid + b1[None, :, None, None]
                if kind == "expand":
                    w2, b2 = block.expand_w2, block.expand_b2
                    total += torch.einsum("nmhw,omhw->no", mid, w2)
                else:
                    filt = torch.tensor(EDGE_FILTERS[kind], dtype=x.dtype)
                    scale = getattr(block, f"{kind}_scale")
                    total += torch.einsum("nohw,hw->no", mid, filt) * scale
                    b2 = getattr(block, f"{kind}_b2")
                if b2 is not None:
                    total += b2
        if block.bias is not None:
            total += block.bias
        out[:, :, i, j] = total
    return out


@pytest.mark.parametrize("kind", BRANCHES)
@pytest.mark.parametrize("bias", [True, False])
def test_each_branch_collapses_exactly_including_borders(kind: str, bias: bool) -> None:
    c_in = c_out = 3
    block = RepConv2d(c_in, c_out, 3, branches=(kind,), bias=bias, dtype=F64)
    _randomize(block, 1)
    x = torch.randn(2, c_in, 5, 7, dtype=F64)  # odd sizes: every pixel is within 2 of a border
    reference = _reference_branch_sum(block, x)
    torch.testing.assert_close(block.forward_branches(x), reference, rtol=0, atol=1e-10)
    torch.testing.assert_close(block.collapse()(x), reference, rtol=0, atol=1e-10)
    torch.testing.assert_close(block(x), reference, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "h", "w"),
    [(1, 6, 3, 1, 1), (4, 4, 3, 2, 7), (5, 3, 5, 6, 4), (2, 7, 1, 3, 3), (3, 3, 3, 5, 6)],
)
def test_all_branches_together_match_the_direct_loop(c_in: int, c_out: int, k: int, h: int, w: int) -> None:
    names = tuple(
        b for b in BRANCHES if not (b == "identity" and c_in != c_out) and not (b in EDGE_FILTERS and k != 3)
    )
    block = RepConv2d(c_in, c_out, k, branches=names, expand=3, dtype=F64)
    _randomize(block, 2)
    x = torch.randn(2, c_in, h, w, dtype=F64)
    reference = _reference_branch_sum(block, x)
    torch.testing.assert_close(block.forward_branches(x), reference, rtol=0, atol=1e-10)
    torch.testing.assert_close(block.collapse()(x), reference, rtol=0, atol=1e-10)


def test_padding_the_middle_map_with_zero_would_differ_at_the_border() -> None:
    """The bias-padding is what makes the border exact: zero-padding the middle map changes border pixels."""
    block = RepConv2d(2, 2, 3, branches=("expand",), dtype=F64)
    _randomize(block, 3)
    x = torch.randn(1, 2, 6, 6, dtype=F64)
    mid = F.conv2d(x, block.expand_w1, block.expand_b1)
    zero_padded = F.conv2d(F.pad(mid, (1, 1, 1, 1)), block.expand_w2, block.expand_b2 + block.bias)
    exact = block.collapse()(x)
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    torch.testing.assert_close(zero_padded[interior], exact[interior], rtol=0, atol=1e-10)
    assert (zero_padded - exact).abs().max() > 1e-3


def test_gradients_of_the_collapsed_forward_equal_the_branch_form() -> None:
    block = RepConv2d(3, 4, 3, dtype=F64)
    _randomize(block, 4)
    x = torch.randn(2, 3, 6, 5, dtype=F64)
    target = torch.randn(2, 4, 6, 5, dtype=F64)
    grads = []
    for forward in (block.forward, block.forward_branches):
        block.zero_grad()
        ((forward(x) - target) ** 2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in block.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-10, atol=1e-10)


def test_compose_1x1_kxk_matches_two_convolutions_in_the_interior() -> None:
    w1, b1 = torch.randn(5, 3, 1, 1, dtype=F64), torch.randn(5, dtype=F64)
    w2, b2 = torch.randn(2, 5, 3, 3, dtype=F64), torch.randn(2, dtype=F64)
    x = torch.randn(1, 3, 8, 8, dtype=F64)
    w, b = compose_1x1_kxk(w1, b1, w2, b2)
    torch.testing.assert_close(F.conv2d(x, w, b), F.conv2d(F.conv2d(x, w1, b1), w2, b2), rtol=0, atol=1e-10)


def test_set_kernel_reproduces_a_convolution_and_stays_trainable() -> None:
    block = RepConv2d(4, 4, 3, branches=BRANCHES, dtype=F64)
    weight, bias = torch.randn(4, 4, 3, 3, dtype=F64), torch.randn(4, dtype=F64)
    block.set_kernel(weight, bias)
    got_w, got_b = block.kernel()
    torch.testing.assert_close(got_w, weight, rtol=0, atol=1e-14)
    torch.testing.assert_close(got_b, bias, rtol=0, atol=1e-14)
    block(torch.randn(1, 4, 5, 5, dtype=F64)).square().sum().backward()
    for name, p in block.named_parameters():
        if name in ("expand_w2", "sobel_x_scale", "conv_weight"):
            assert p.grad is not None and p.grad.abs().max() > 0, name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"branches": ("nope",)}, "branches"),
        ({"branches": ("conv", "conv")}, "branches"),
        ({"branches": ("sobel_x",), "kernel_size": 5}, "kernel_size=3"),
        ({"branches": ("identity",), "out_channels": 3}, "identity"),
        ({"kernel_size": 4}, "odd"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    args = {"in_channels": 2, "out_channels": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        RepConv2d(**args)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", ["y", "rgb"])
def test_rep_espcn_collapses_to_a_plain_espcn(scale: int, channels: str) -> None:
    model = RepESPCN(scale, channels=channels, widths=(6, 6, 5), kernel_sizes=(3, 3, 5, 3), dtype=F64)
    _randomize(model, scale)
    c = 1 if channels == "y" else 3
    x = torch.rand(2, c, 5, 8, dtype=F64)
    deployed = model.collapse()
    assert isinstance(deployed, ESPCN) and deployed.config == model.config
    reference = model.forward_branches(x)
    torch.testing.assert_close(deployed(x), reference, rtol=0, atol=1e-10)
    torch.testing.assert_close(model(x), reference, rtol=0, atol=1e-10)
    # the skip: with every weight zero the network is nearest-neighbour upsampling
    with torch.no_grad():
        for p in deployed.parameters():
            p.zero_()
    torch.testing.assert_close(deployed(x), x.repeat_interleave(scale, 2).repeat_interleave(scale, 3))


def test_rep_espcn_round_trips_through_save_and_load(tmp_path) -> None:
    model = RepESPCN(3, widths=(5, 5), kernel_sizes=(3, 3, 3))
    _randomize(model, 7)
    path = save(model.collapse(), tmp_path / "m.safetensors")
    loaded = load(path)
    assert loaded.config.skip == "nearest" and loaded.config.activation == "prelu"
    x = torch.rand(1, 1, 9, 6)
    torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-5)


def test_warm_start_from_collapsed_weights_of_another_scale() -> None:
    source = RepESPCN(2, widths=(5, 5), kernel_sizes=(3, 3, 3), dtype=F64)
    _randomize(source, 8)
    target = RepESPCN(3, widths=(5, 5), kernel_sizes=(3, 3, 3), dtype=F64)
    tail_before = target.tail.kernel()[0].clone()
    target.load_collapsed(source.collapse())
    x = torch.rand(1, 1, 6, 6, dtype=F64)
    torch.testing.assert_close(target.features(x), source.features(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(target.tail.kernel()[0], tail_before, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_family_costs_at_most_espcn(scale: int) -> None:
    """The default 'rep' architecture's deployed MACs per HR pixel are ≤ the paper's ESPCN's at every scale."""
    from subpixel.study.macs import count_macs

    rep = RepESPCN(scale).collapse()
    paper = ESPCN(scale, **{k: v for k, v in FAMILIES["espcn"].items()})
    shape = (1, 1, 12, 10)
    counted = count_macs(rep, shape).per_output_pixel
    assert counted == pytest.approx(rep.multiply_adds_per_pixel())
    assert counted <= count_macs(paper, shape).per_output_pixel
