"""The fast code paths of the shuffles and of SubPixelConvNd, checked for exactness.

Every fast path (one ``copy_`` into a preallocated output, factor-2 pairs written as complex numbers, the fused
shuffle + crop, the DCR weight used for channels-last inputs, torch's own kernel for channels-last CRD) and
every fallback (plain reshape-permute under tracing/export, shuffle-then-crop when an output size is not a
multiple of the factor, dtypes without a complex type) is compared with an independent reference: torch's
``ConvTranspose`` / ``F.pixel_shuffle`` or a slow per-phase loop, in float64 and bit for bit where no arithmetic
happens.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import subpixel.eager as eager_mod
import subpixel.shuffle as shuffle_mod
from subpixel import derived, from_conv_transpose
from subpixel.functional import conv_transpose_weight_to_lr, lr_weight_to_conv_transpose
from subpixel.shuffle import pixel_shuffle, pixel_unshuffle, shuffle_crop

# every test runs with the compiled copy kernel and with its copy_ fallback, on one thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("copy_kernel", "single_thread")

FORMATS = {1: [None], 2: [None, torch.channels_last], 3: [None, torch.channels_last_3d]}


def loop_shuffle(z: torch.Tensor, r: int, order: str) -> torch.Tensor:
    """Reference periodic shuffling by one slice assignment per (channel, phase)."""
    n = z.dim() - 2
    big_r = r**n
    c = z.shape[1] // big_r
    y = torch.zeros(z.shape[0], c, *[d * r for d in z.shape[2:]], dtype=z.dtype)
    for phase in itertools.product(range(r), repeat=n):
        p = 0
        for a in phase:
            p = p * r + a
        index = tuple(slice(a, None, r) for a in phase)
        for ch in range(c):
            src = ch * big_r + p if order == "crd" else p * c + ch
            y[(slice(None), ch, *index)] = z[:, src]
    return y


def fmt(x: torch.Tensor, memory_format: torch.memory_format | None) -> torch.Tensor:
    return x if memory_format is None else x.contiguous(memory_format=memory_format)


CROP_CASES = [  # (ndim, factor, crop, lr sizes)
    (1, 2, 0, (7,)),
    (1, 2, 1, (7,)),
    (1, 8, 4, (5,)),
    (2, 2, 0, (4, 5)),
    (2, 2, 1, (4, 5)),
    (2, 3, 1, (4, 3)),
    (2, 3, 2, (3, 4)),
    (3, 2, 1, (3, 2, 4)),
    (3, 2, 0, (2, 3, 3)),
]


@pytest.mark.parametrize(("ndim", "r", "crop", "sizes"), CROP_CASES)
@pytest.mark.parametrize("order", ["crd", "dcr"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int32])
def test_shuffle_crop_equals_loop_reference(ndim, r, crop, sizes, order, dtype):
    for memory_format in FORMATS[ndim]:
        z = fmt((torch.randn(2, 3 * r**ndim, *sizes) * 100).to(dtype), memory_format)
        out = tuple((d - 1) * r for d in sizes)  # multiples of r: the fused path
        y = shuffle_crop(z, (r,) * ndim, order, (crop,) * ndim, out)
        ref = loop_shuffle(z, r, order)[(slice(None), slice(None), *(slice(crop, crop + o) for o in out))]
        assert torch.equal(y, ref)
        if memory_format is not None:
            assert y.is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize(("ndim", "r", "crop", "sizes"), CROP_CASES)
def test_shuffle_crop_fallback_odd_sizes(ndim, r, crop, sizes):
    """Output sizes that are not multiples of the factor take the shuffle-then-crop fallback."""
    z = torch.randn(2, 2 * r**ndim, *sizes, dtype=torch.float64)
    out = tuple((d - 1) * r - 1 for d in sizes)
    y = shuffle_crop(z, (r,) * ndim, "crd", (crop,) * ndim, out)
    ref = loop_shuffle(z, r, "crd")[(slice(None), slice(None), *(slice(crop, crop + o) for o in out))]
    assert torch.equal(y, ref)


@pytest.mark.parametrize(("ndim", "r", "crop", "sizes"), CROP_CASES)
@pytest.mark.parametrize("order", ["crd", "dcr"])
def test_shuffle_crop_gradients(ndim, r, crop, sizes, order):
    for memory_format in FORMATS[ndim]:
        z = fmt(torch.randn(1, 2 * r**ndim, *sizes, dtype=torch.float64), memory_format).requires_grad_(True)
        out = tuple((d - 1) * r for d in sizes)

        def f(t: torch.Tensor, out: tuple[int, ...] = out) -> torch.Tensor:
            return shuffle_crop(t, (r,) * ndim, order, (crop,) * ndim, out)

        assert torch.autograd.gradcheck(f, (z,))
        if memory_format is None:
            assert torch.autograd.gradgradcheck(f, (z,))
        # the gradient is the adjoint: unshuffle of the zero-padded output gradient (reference: torch's op)
        g = torch.randn(f(z).shape, dtype=torch.float64)
        (gz,) = torch.autograd.grad(f(z), z, g)
        full = torch.zeros(1, 2, *[d * r for d in sizes], dtype=torch.float64)
        full[(slice(None), slice(None), *(slice(crop, crop + o) for o in out))] = g
        loop = loop_shuffle(torch.eye(z[0].numel(), dtype=torch.float64).reshape(-1, *z.shape[1:]), r, order)
        expected = (loop.reshape(loop.shape[0], -1) @ full.reshape(-1)).reshape(z.shape)
        assert torch.equal(gz, expected)


@pytest.mark.parametrize("r", [1, 2, 3, 4])
@pytest.mark.parametrize("memory_format", [None, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.uint8])
def test_pixel_shuffle_2d_equals_torch(r, memory_format, dtype):
    z = fmt((torch.randn(2, 3 * r * r, 5, 6) * 50).to(dtype), memory_format)
    y = pixel_shuffle(z, r)
    assert torch.equal(y, F.pixel_shuffle(z, r))
    assert y.is_contiguous(memory_format=memory_format or torch.contiguous_format)
    x = fmt((torch.randn(2, 3, 5 * r, 6 * r) * 50).to(dtype), memory_format)
    u = pixel_unshuffle(x, r)
    assert torch.equal(u, F.pixel_unshuffle(x, r))
    assert u.is_contiguous(memory_format=memory_format or torch.contiguous_format)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("factor", [2, 3, (1, 2, 3)])
@pytest.mark.parametrize("order", ["crd", "dcr"])
def test_fast_equals_plain_path(monkeypatch, ndim, factor, order):
    """The fast shuffles equal the plain reshape-permute formulation (itself checked by the core tests)."""
    factors = factor[-ndim:] if isinstance(factor, tuple) else (factor,) * ndim
    for memory_format in FORMATS[ndim]:
        lr = fmt(torch.randn(2, 2 * math.prod(factors), *range(3, 3 + ndim)), memory_format)
        hr = fmt(
            torch.randn(2, 2, *[f * s for f, s in zip(factors, range(3, 3 + ndim), strict=True)]),
            memory_format,
        )
        fast = pixel_shuffle(lr, factors, order=order), pixel_unshuffle(hr, factors, order=order)
        with monkeypatch.context() as m:
            m.setattr(shuffle_mod, "is_eager_plain", lambda *tensors: False)
            plain = pixel_shuffle(lr, factors, order=order), pixel_unshuffle(hr, factors, order=order)
        assert torch.equal(fast[0], plain[0])
        assert torch.equal(fast[1], plain[1])


def test_leading_dims_and_unbatched():
    z = torch.randn(2, 3, 8, 4, 5)
    assert torch.equal(pixel_shuffle(z, 2, ndim=2), F.pixel_shuffle(z, 2))
    assert torch.equal(pixel_unshuffle(F.pixel_shuffle(z, 2), 2, ndim=2), z)
    assert torch.equal(pixel_shuffle(z[0, 0], 2, ndim=2), F.pixel_shuffle(z[0, 0], 2))
    t = z.transpose(-1, -2)  # a non-contiguous input
    assert torch.equal(pixel_shuffle(t, 2, ndim=2), F.pixel_shuffle(t.contiguous(), 2))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_plain_path_under_tracing_and_export(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("fast path taken")

    monkeypatch.setattr(shuffle_mod, "_shuffle_copy", boom)
    monkeypatch.setattr(shuffle_mod, "_unshuffle_copy", boom)
    layer = from_conv_transpose(nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), weight_layout="lr")
    x = torch.randn(1, 4, 5, 5)
    traced = torch.jit.trace(layer, x, check_trace=False)
    with pytest.raises(AssertionError, match="fast path"):
        layer(x)
    monkeypatch.undo()
    assert torch.allclose(traced(x), layer(x), atol=1e-6)
    seen = []
    # ONNX export, as the shuffle sees it (it reads torch's export flags directly, not through the public function)
    monkeypatch.setattr(eager_mod, "_in_onnx_export", lambda: True)
    monkeypatch.setattr(shuffle_mod, "_shuffle_copy", lambda *a: seen.append(1))
    assert not eager_mod.is_eager_plain(x)
    assert pixel_shuffle(torch.randn(1, 4, 2, 2), 2).shape == (1, 1, 4, 4)
    assert not seen


@pytest.mark.parametrize("layout", ["lr", "conv_transpose"])
def test_torch_func_transforms_take_the_plain_path(layout: str) -> None:
    """Under ``torch.func.vmap`` / ``grad`` the tensors have no storage of their own: the layer runs its plain
    formulation (no preallocated output, no copy kernel, no plan) and gives the per-sample results."""
    deconv = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1, dtype=torch.float64)
    layer = from_conv_transpose(deconv, weight_layout=layout)
    x = torch.randn(5, 2, 4, 6, 7, dtype=torch.float64)
    with torch.no_grad():
        batched = torch.func.vmap(layer)(x)
        looped = torch.stack([deconv(xi) for xi in x])
    assert (batched - looped).abs().max().item() <= 1e-12
    g = torch.func.grad(lambda xi: layer(xi).square().sum())(x[0])
    xr = x[0].clone().requires_grad_(True)
    deconv(xr).square().sum().backward()
    assert (g - xr.grad).abs().max().item() <= 1e-10
    assert not eager_mod.is_eager_plain(torch.zeros(1, device="meta"))


LAYERS = [  # (ndim, in, out, kernel, stride, padding, output_padding, input size)
    (1, 6, 4, 16, 8, 4, 0, (5,)),
    (1, 6, 4, 4, 2, 1, 0, (9,)),
    (2, 6, 4, 4, 2, 1, 0, (5, 6)),
    (2, 6, 4, 2, 2, 0, 0, (5, 6)),
    (2, 5, 1, 9, 3, 4, 2, (6, 7)),
    (2, 3, 3, 64, 32, 16, 0, (2, 3)),
    (2, 4, 3, 3, 2, 1, 0, (5, 6)),  # odd output: the fallback
    (3, 4, 3, 2, 2, 0, 0, (3, 4, 2)),
    (3, 4, 3, 3, 2, 1, 1, (3, 4, 2)),
]


@pytest.mark.parametrize(("ndim", "cin", "cout", "k", "s", "p", "op", "size"), LAYERS)
def test_layer_fast_paths_equal_conv_transpose(ndim, cin, cout, k, s, p, op, size):
    conv_t = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[ndim]
    torch.manual_seed(0)
    ref = conv_t(cin, cout, k, s, p, op).double()
    layer = from_conv_transpose(ref, weight_layout="lr")
    for memory_format in FORMATS[ndim]:
        x = fmt(torch.randn(2, cin, *size, dtype=torch.float64), memory_format)
        with torch.no_grad():
            y, expected = layer(x), ref(x)
        assert (y - expected).abs().max() <= 1e-10
        for mf in (torch.contiguous_format, torch.channels_last, torch.channels_last_3d):  # torch's format
            if y.dim() == 4 or mf != torch.channels_last:
                if y.dim() == 5 or mf != torch.channels_last_3d:
                    assert y.is_contiguous(memory_format=mf) == expected.is_contiguous(memory_format=mf)
        # training: gradients of the input, the LR weight and the bias
        xg = x.detach().clone().requires_grad_(True)
        xr = x.detach().clone().requires_grad_(True)
        g = fmt(torch.randn(expected.shape, dtype=torch.float64), memory_format)
        gx, gw, gb = torch.autograd.grad(layer(xg), [xg, layer.weight, layer.bias], g)
        rx, rw, rb = torch.autograd.grad(ref(xr), [xr, ref.weight, ref.bias], g)
        assert (gx - rx).abs().max() <= 1e-10
        # LR positions no tap reaches have gradients too (an LR layer may learn them): compare the taps
        assert (lr_weight_to_conv_transpose(gw, k, s, check=False) - rw).abs().max() <= 1e-10
        assert (gb - rb).abs().max() <= 1e-10


def test_channels_last_weight_cache_follows_updates():
    ref = nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1).double()
    layer = from_conv_transpose(ref, weight_layout="lr")
    x = torch.randn(1, 6, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert (layer(x) - ref(x)).abs().max() <= 1e-10
        ref.weight.mul_(-2.0)
        layer.weight.mul_(-2.0)  # in place: the cached DCR weight must be rebuilt
        assert (layer(x) - ref(x)).abs().max() <= 1e-10
        layer.weight = nn.Parameter(conv_transpose_weight_to_lr(ref.weight * 3, 2))
        ref.weight.mul_(3.0)
        assert (layer(x) - ref(x)).abs().max() <= 1e-10


@pytest.mark.parametrize(("ndim", "cin", "cout", "k", "s", "p", "op", "size"), LAYERS)
def test_float32_within_torch_error(ndim, cin, cout, k, s, p, op, size):
    """In float32 the layer is about as close to a float64 reference as torch's own ConvTranspose is.

    The shuffle and crop are exact; the LR convolution sums the same products in oneDNN's order, which in
    channels-last differs from the transposed convolution's (measured up to 3x torch's error on 360 taps).
    """
    conv_t = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[ndim]
    torch.manual_seed(1)
    ref = conv_t(cin * 8, cout, k, s, p, op)
    layer = from_conv_transpose(ref, weight_layout="lr")
    ref64 = conv_t(cin * 8, cout, k, s, p, op).double()
    ref64.load_state_dict(ref.state_dict())
    err_torch, err_sub = [], []
    for memory_format in FORMATS[ndim]:
        x = fmt(torch.randn(2, cin * 8, *size), memory_format)
        with torch.no_grad():
            exact = ref64(x.double())
            err_torch.append((ref(x).double() - exact).abs().max().item())
            err_sub.append((layer(x).double() - exact).abs().max().item())
    assert max(err_sub) <= 4 * max(err_torch)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize(("k", "s", "p"), [(4, 2, 1), (2, 2, 0), (3, 2, 1)])
def test_channels_last_model_equals_conv_transpose(ndim, k, s, p):
    # a model converted with .to(memory_format=...): channels-last parameters, and cached weights to match
    cls = {2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[ndim]
    fmt = {2: torch.channels_last, 3: torch.channels_last_3d}[ndim]
    deconv = cls(6, 4, k, s, p, dtype=torch.float64)
    layer = from_conv_transpose(deconv, weight_layout="lr").to(memory_format=fmt)
    assert layer.weight.is_contiguous(memory_format=fmt)
    x = torch.randn(2, 6, *[5] * ndim, dtype=torch.float64).contiguous(memory_format=fmt)
    with torch.no_grad():
        assert (layer(x) - deconv(x)).abs().max().item() <= 1e-10
        plan = layer.plan(x)
        if (
            plan.algorithm != "phases"
        ):  # the derived weight (DCR order, or re-indexed for conv_transpose) is cached
            cached = [w for w in derived.held(layer.weight) if isinstance(w, torch.Tensor)]
            assert cached and all(w.is_contiguous(memory_format=fmt) for w in cached)
    xg = x.clone().requires_grad_(True)
    grad = torch.randn_like(deconv(x))
    ours = torch.autograd.grad(layer(xg), [xg, layer.bias], grad)
    ref = torch.autograd.grad(deconv(xg), [xg, deconv.bias], grad)
    for a, b in zip(ours, ref):
        assert (a - b).abs().max().item() <= 1e-10
