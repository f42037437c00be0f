"""Periodic shuffling: against an index-formula loop reference, torch's 2-D op, and its inverse."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import subpixel
from subpixel import convert_channel_order, pixel_shuffle, pixel_unshuffle

# every test runs with the compiled copy kernel and with its copy_ fallback (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("copy_kernel")


def loop_pixel_shuffle(x: torch.Tensor, factors: tuple[int, ...], order: str) -> torch.Tensor:
    """Slow reference straight from the index formulas: out[c, D_i·r_i + φ_i] = in[channel(c, φ), D]."""
    n = len(factors)
    lead, channels, spatial = x.shape[: -n - 1], x.shape[-n - 1], x.shape[-n:]
    r_total = math.prod(factors)
    c_out = channels // r_total
    out = x.new_empty((*lead, c_out, *[d * f for d, f in zip(spatial, factors)]))
    for c in range(c_out):
        for phase in itertools.product(*[range(f) for f in factors]):
            flat = 0
            for p, f in zip(phase, factors):
                flat = flat * f + p
            src = c * r_total + flat if order == "crd" else flat * c_out + c
            for pos in itertools.product(*[range(d) for d in spatial]):
                hr = tuple(q * f + p for q, f, p in zip(pos, factors, phase))
                out[(..., c, *hr)] = x[(..., src, *pos)]
    return out


CASES = [
    ((2, 6, 5), (3,)),
    ((1, 8, 3, 4), (2, 2)),
    ((2, 12, 2, 3), (2, 3)),
    ((1, 24, 2, 2, 3), (2, 3, 2)),
    ((3, 2, 4, 3, 2), (1, 2, 1)),
    ((4, 2, 3), (2,)),  # ndim from the factor's length: (N, C·r, L) = (4, 2, 3)
]


@pytest.mark.parametrize("order", ["crd", "dcr"])
@pytest.mark.parametrize(("shape", "factors"), CASES)
def test_shuffle_matches_loop_reference_and_inverts(shape, factors, order):
    x = torch.randn(shape, dtype=torch.float64)
    y = pixel_shuffle(x, factors, order=order)
    assert torch.equal(y, loop_pixel_shuffle(x, factors, order))
    assert torch.equal(pixel_unshuffle(y, factors, order=order), x)


@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_2d_crd_equals_torch_bit_for_bit(r):
    x = torch.randn(3, 5 * r * r, 7, 6)
    assert torch.equal(pixel_shuffle(x, r), F.pixel_shuffle(x, r))
    hr = torch.randn(3, 5, 7 * r, 6 * r)
    assert torch.equal(pixel_unshuffle(hr, r), F.pixel_unshuffle(hr, r))


def test_many_leading_dims_with_stated_ndim():
    x = torch.randn(2, 3, 4, 8, 5)  # (*, C·r, L) with three leading dims, C·r = 8
    y = pixel_shuffle(x, 4, ndim=1)
    assert y.shape == (2, 3, 4, 2, 20)
    assert torch.equal(y, loop_pixel_shuffle(x, (4,), "crd"))


def test_empty_batch_non_contiguous_and_channels_last():
    empty = torch.randn(0, 8, 3, 3)
    assert pixel_shuffle(empty, 2).shape == (0, 2, 6, 6)
    assert pixel_unshuffle(torch.randn(0, 2, 6, 6), 2).shape == (0, 8, 3, 3)
    x = torch.randn(2, 3, 5, 16).transpose(1, 3)  # (2, 16, 5, 3), non-contiguous
    assert not x.is_contiguous()
    assert torch.equal(pixel_shuffle(x, 2), F.pixel_shuffle(x.contiguous(), 2))
    cl = torch.randn(2, 16, 5, 3).to(memory_format=torch.channels_last)
    assert torch.equal(pixel_shuffle(cl, 2), F.pixel_shuffle(cl.contiguous(), 2))
    assert torch.equal(pixel_unshuffle(pixel_shuffle(cl, 2), 2), cl)


@pytest.mark.parametrize("order", ["crd", "dcr"])
def test_gradcheck(order):
    x = torch.randn(1, 8, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pixel_shuffle(t, 2, order=order), (x,))
    h = torch.randn(1, 2, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pixel_unshuffle(t, (2, 1, 2), order=order), (h,))


def test_dcr_matches_tensorflow_depth_to_space_formula():
    # TF depth_to_space (NHWC): out[b, h·r + i, w·r + j, c] = in[b, h, w, (i·r + j)·C + c]
    r, c_out = 2, 3
    x = torch.randn(1, r * r * c_out, 2, 3)
    y = pixel_shuffle(x, r, order="dcr")
    for i, j, c in itertools.product(range(r), range(r), range(c_out)):
        assert torch.equal(y[0, c, i::r, j::r], x[0, (i * r + j) * c_out + c])


@pytest.mark.parametrize("factors", [(2,), (2, 3), (2, 1, 3)])
def test_convert_channel_order_moves_between_orders(factors):
    n = len(factors)
    x = torch.randn(2, 4 * math.prod(factors), *[3] * n)
    dcr = convert_channel_order(x, factors, "crd", "dcr")
    assert torch.equal(pixel_shuffle(dcr, factors, order="dcr"), pixel_shuffle(x, factors, order="crd"))
    assert torch.equal(convert_channel_order(dcr, factors, "dcr", "crd"), x)
    w = torch.randn(4 * math.prod(factors), 5, *[3] * n)
    w_dcr = convert_channel_order(w, factors, "crd", "dcr", dim=0)
    assert torch.equal(w_dcr, convert_channel_order(w.transpose(0, 1), factors, "crd", "dcr").transpose(0, 1))


@pytest.mark.parametrize(
    ("module", "shape", "expected"),
    [
        (subpixel.PixelShuffle1d(3), (2, 6, 4), (2, 2, 12)),
        (subpixel.PixelShuffle2d((1, 2)), (1, 4, 3, 3), (1, 2, 3, 6)),
        (subpixel.PixelShuffle3d(2, order="dcr"), (1, 8, 1, 2, 3), (1, 1, 2, 4, 6)),
        (subpixel.PixelUnshuffle1d(2), (2, 2, 8), (2, 4, 4)),
        (subpixel.PixelUnshuffle2d(2), (1, 1, 4, 4), (1, 4, 2, 2)),
        (subpixel.PixelUnshuffle3d((2, 1, 1)), (1, 1, 4, 3, 3), (1, 2, 2, 3, 3)),
    ],
)
def test_modules_equal_functions(module, shape, expected):
    x = torch.randn(shape)
    y = module(x)
    assert y.shape == expected
    fn = pixel_unshuffle if "Unshuffle" in type(module).__name__ else pixel_shuffle
    assert torch.equal(y, fn(x, module.factor, order=module.order))


def test_errors_name_the_argument_and_value():
    with pytest.raises(ValueError, match=r"channels must be divisible.*= 4, got 6 channels"):
        pixel_shuffle(torch.randn(1, 6, 2, 2), 2)
    with pytest.raises(ValueError, match=r"factor must be an integer >= 1.*got 0"):
        pixel_shuffle(torch.randn(1, 4, 2, 2), 0)
    with pytest.raises(TypeError, match=r"factor must be an int or a sequence of ints, got 1.5"):
        pixel_shuffle(torch.randn(1, 4, 2, 2), 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"factor must contain only ints"):
        pixel_shuffle(torch.randn(1, 4, 2, 2), (2, 2.0))  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"cannot infer the number of spatial dimensions from an input with 6 dims"
    ):
        pixel_shuffle(torch.randn(1, 4, 2, 2, 2, 2), 2)
    with pytest.raises(ValueError, match=r"ndim must be 1, 2 or 3 spatial dimensions, got 4"):
        pixel_shuffle(torch.randn(1, 4, 2, 2), 2, ndim=4)
    with pytest.raises(ValueError, match=r"order must be 'crd'.*got 'nchw'"):
        pixel_shuffle(torch.randn(1, 4, 2, 2), 2, order="nchw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"spatial size 5 of axis 1 must be divisible by its factor 2"):
        pixel_unshuffle(torch.randn(1, 1, 4, 5), 2)
    with pytest.raises(ValueError, match=r"factor must be an int or a sequence of 2 ints, got \(2, 2, 2\)"):
        pixel_shuffle(torch.randn(1, 8, 2, 2), (2, 2, 2), ndim=2)
