"""The three forms of a transposed convolution agree, in float64, for hundreds of random configurations.

References: torch's own ``conv_transpose{1,2,3}d`` and, independently of torch, a direct scatter loop in numpy.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import subpixel
from subpixel.functional import (
    conv_transpose,
    conv_transpose_weight_to_lr,
    fractionally_strided_conv,
    lr_conv_shuffle,
    lr_weight_to_conv_transpose,
)

TOL = 1e-10
CONFIGS_PER_NDIM = 120  # 360 configurations in all, each checked for output, three gradients and a round trip


@dataclass(frozen=True)
class Config:
    ndim: int
    batch: int
    groups: int
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    size: tuple[int, ...]
    bias: bool


def random_config(seed: int, ndim: int) -> Config:
    rng = random.Random(seed * 7919 + ndim)
    while True:
        groups = rng.choice([1, 1, 2, 3])
        kmax = {1: 9, 2: 6, 3: 4}[ndim]
        kernel = tuple(rng.randint(1, kmax) for _ in range(ndim))
        stride = tuple(rng.randint(1, 4) for _ in range(ndim))
        dilation = tuple(rng.choice([1, 1, 2, 3]) for _ in range(ndim))
        padding = tuple(rng.randint(0, 5) for _ in range(ndim))
        output_padding = tuple(rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation))
        size = tuple(rng.randint(1, {1: 9, 2: 5, 3: 3}[ndim]) for _ in range(ndim))
        out = [
            (n - 1) * s - 2 * p + d * (k - 1) + a + 1
            for n, s, p, d, k, a in zip(size, stride, padding, dilation, kernel, output_padding)
        ]
        if min(out) >= 1:
            return Config(
                ndim,
                rng.randint(1, 2),
                groups,
                groups * rng.randint(1, 3),
                groups * rng.randint(1, 3),
                kernel,
                stride,
                padding,
                output_padding,
                dilation,
                size,
                rng.random() < 0.7,
            )


ALL_CONFIGS = [random_config(seed, ndim) for ndim in (1, 2, 3) for seed in range(CONFIGS_PER_NDIM)]


def make_tensors(cfg: Config, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg.batch, cfg.in_channels, *cfg.size, dtype=torch.float64, generator=g)
    w = torch.randn(
        cfg.in_channels, cfg.out_channels // cfg.groups, *cfg.kernel, dtype=torch.float64, generator=g
    )
    b = torch.randn(cfg.out_channels, dtype=torch.float64, generator=g) if cfg.bias else None
    return x, w, b


def args(cfg: Config):
    return cfg.stride, cfg.padding, cfg.output_padding, cfg.groups, cfg.dilation


@pytest.mark.parametrize("cfg", ALL_CONFIGS, ids=lambda c: f"{c.ndim}d-k{c.kernel}-s{c.stride}-p{c.padding}")
def test_lr_form_output_and_gradients_match_torch(cfg: Config):
    x, w, b = make_tensors(cfg)
    deconv = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[
        cfg.ndim
    ](
        cfg.in_channels,
        cfg.out_channels,
        cfg.kernel,
        stride=cfg.stride,
        padding=cfg.padding,
        output_padding=cfg.output_padding,
        groups=cfg.groups,
        bias=cfg.bias,
        dilation=cfg.dilation,
        dtype=torch.float64,
    )
    with torch.no_grad():
        deconv.weight.copy_(w)
        if b is not None:
            deconv.bias.copy_(b)
    layer = subpixel.from_conv_transpose(deconv, weight_layout="lr")  # the LR weight as the parameter
    held = subpixel.from_conv_transpose(deconv)  # the default: the ConvTranspose weight, mapped to LR form
    x_ref = x.clone().requires_grad_(True)
    x_new = x.clone().requires_grad_(True)
    x_held = x.clone().requires_grad_(True)
    y_ref, y_new, y_held = deconv(x_ref), layer(x_new), held(x_held)
    assert y_new.shape == y_ref.shape == y_held.shape
    assert (y_new - y_ref).abs().max().item() <= TOL
    assert (y_held - y_ref).abs().max().item() <= TOL
    grad_out = torch.randn_like(y_ref)
    y_ref.backward(grad_out)
    y_new.backward(grad_out)
    y_held.backward(grad_out)
    assert (x_new.grad - x_ref.grad).abs().max().item() <= TOL
    assert (x_held.grad - x_ref.grad).abs().max().item() <= TOL
    # weight gradients live in different layouts: map the LR gradient back (the map is linear and exact)
    grad_w = lr_weight_to_conv_transpose(
        layer.weight.grad, cfg.kernel, cfg.stride, cfg.dilation, cfg.groups, check=False
    )
    assert (grad_w - deconv.weight.grad).abs().max().item() <= TOL
    # the held ConvTranspose-layout parameter gets torch's gradient directly
    original = held.parametrizations.weight.original
    assert original.shape == deconv.weight.shape
    assert (original.grad - deconv.weight.grad).abs().max().item() <= TOL
    if cfg.bias:
        assert (layer.bias.grad - deconv.bias.grad).abs().max().item() <= TOL
        assert (held.bias.grad - deconv.bias.grad).abs().max().item() <= TOL
    # round trip ConvTranspose -> SubPixel -> ConvTranspose returns the same layer: weights bit for bit, the bias
    # (or none), and the same forward
    for converted in (layer, held):
        back = subpixel.to_conv_transpose(converted)
        assert type(back) is type(deconv)
        assert type(back.weight) is torch.nn.Parameter and torch.equal(back.weight, deconv.weight)
        assert (back.bias is None) == (deconv.bias is None)
        if deconv.bias is not None:
            assert torch.equal(back.bias, deconv.bias)
        with torch.no_grad():
            assert torch.equal(back(x), deconv(x))


#: the algorithms :mod:`subpixel.dispatch` chooses among, each forced in turn on a quarter of the configurations
#: (the automatic choice above mostly picks torch's own kernel on these small inputs)
FORCED = subpixel.dispatch.ALGORITHMS


def _inputs(cfg: Config, x: torch.Tensor) -> list[torch.Tensor]:
    """The input, and for 2-D / 3-D its channels-last copy (the LR forms then use other weight orders)."""
    if cfg.ndim == 1:
        return [x]
    fmt = torch.channels_last if cfg.ndim == 2 else torch.channels_last_3d
    return [x, x.contiguous(memory_format=fmt)]


@pytest.mark.parametrize("algorithm", FORCED)
@pytest.mark.parametrize(
    "cfg", ALL_CONFIGS[1::4], ids=lambda c: f"{c.ndim}d-k{c.kernel}-s{c.stride}-p{c.padding}"
)
def test_every_forced_algorithm_matches_torch(cfg: Config, algorithm: str):
    """Each algorithm, forced where it is valid, gives torch's output and gradients, for an LR-layout and a
    ConvTranspose-layout weight, contiguous and channels-last inputs, in inference and in training."""
    x, w, b = make_tensors(cfg, seed=2)
    deconv = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[cfg.ndim](
        cfg.in_channels, cfg.out_channels, cfg.kernel, stride=cfg.stride, padding=cfg.padding,
        output_padding=cfg.output_padding, groups=cfg.groups, bias=cfg.bias, dilation=cfg.dilation,
        dtype=torch.float64,
    )  # fmt: skip
    with torch.no_grad():
        deconv.weight.copy_(w)
        if b is not None:
            deconv.bias.copy_(b)
    layers = {
        "lr": subpixel.from_conv_transpose(deconv, weight_layout="lr"),
        "ct": subpixel.from_conv_transpose(deconv),
    }
    with subpixel.dispatch.force_algorithm(algorithm):
        for inp in _inputs(cfg, x):
            with torch.no_grad():
                ref = deconv(inp)
                for layout, layer in layers.items():
                    plan = layer.plan(inp)
                    assert plan.algorithm == (algorithm if algorithm in plan.candidates else "lr_shuffle")
                    if layout == "ct" and algorithm != "phases":  # always valid for a ConvTranspose weight
                        assert plan.algorithm == algorithm
                    assert (layer(inp) - ref).abs().max().item() <= TOL, layout
            x_ref = inp.clone().requires_grad_(True)
            y_ref = deconv(x_ref)
            grad_out = torch.randn_like(y_ref)
            y_ref.backward(grad_out)
            for layout, layer in layers.items():
                layer.zero_grad(set_to_none=True)
                x_new = inp.clone().requires_grad_(True)
                y = layer(x_new)
                assert (y - y_ref).abs().max().item() <= TOL, layout
                y.backward(grad_out)
                assert (x_new.grad - x_ref.grad).abs().max().item() <= TOL, layout
                if layout == "ct":
                    grad_w = layer.parametrizations.weight.original.grad
                else:
                    grad_w = lr_weight_to_conv_transpose(
                        layer.weight.grad, cfg.kernel, cfg.stride, cfg.dilation, cfg.groups, check=False
                    )
                assert (grad_w - deconv.weight.grad).abs().max().item() <= TOL, layout
                if b is not None:
                    assert (layer.bias.grad - deconv.bias.grad).abs().max().item() <= TOL, layout
            deconv.zero_grad(set_to_none=True)


@pytest.mark.parametrize("cfg", ALL_CONFIGS[::4], ids=lambda c: f"{c.ndim}d-k{c.kernel}-s{c.stride}")
def test_fractionally_strided_form_matches_torch(cfg: Config):
    x, w, b = make_tensors(cfg, seed=1)
    ref = conv_transpose(x, w, b, *args(cfg))
    assert (fractionally_strided_conv(x, w, b, *args(cfg)) - ref).abs().max().item() <= TOL
    lr = conv_transpose_weight_to_lr(w, cfg.stride, cfg.dilation, cfg.groups)
    assert (lr_conv_shuffle(x, lr, b, *args(cfg), cfg.kernel) - ref).abs().max().item() <= TOL


def direct_loop_conv_transpose(
    x: np.ndarray, w: np.ndarray, stride, padding, output_padding, dilation
) -> np.ndarray:
    """Scatter every input sample through every tap: y[n·s + t·d − p] += x[n]·W[t] (groups = 1, no bias)."""
    ndim = x.ndim - 2
    size = x.shape[2:]
    kernel = w.shape[2:]
    out_size = [
        (n - 1) * s - 2 * p + d * (k - 1) + a + 1
        for n, s, p, d, k, a in zip(size, stride, padding, dilation, kernel, output_padding)
    ]
    y = np.zeros((x.shape[0], w.shape[1], *out_size))
    for pos in itertools.product(*[range(n) for n in size]):
        for tap in itertools.product(*[range(k) for k in kernel]):
            out = [q * s + t * d - p for q, t, s, d, p in zip(pos, tap, stride, dilation, padding)]
            if all(0 <= o < L for o, L in zip(out, out_size)):
                idx = (slice(None), slice(None), *out)
                y[idx] += x[(slice(None), slice(None), *pos)] @ w[(slice(None), slice(None), *tap)]
    assert ndim in (1, 2, 3)
    return y


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "output_padding", "dilation"),
    [
        ((7,), (5,), (3,), (1,), (2,), (1,)),
        ((6,), (4,), (2,), (3,), (0,), (2,)),
        ((4, 5), (3, 4), (2, 3), (1, 0), (1, 2), (1, 1)),
        ((3, 3), (5, 2), (4, 1), (2, 0), (0, 0), (2, 1)),
        ((2, 3, 2), (3, 2, 3), (2, 2, 3), (1, 0, 2), (1, 0, 2), (1, 2, 1)),
    ],
)
def test_lr_form_matches_direct_loop(size, kernel, stride, padding, output_padding, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *size))
    w = rng.standard_normal((3, 2, *kernel))
    ref = direct_loop_conv_transpose(x, w, stride, padding, output_padding, dilation)
    lr = conv_transpose_weight_to_lr(torch.from_numpy(w), stride, dilation)
    y = lr_conv_shuffle(torch.from_numpy(x), lr, None, stride, padding, output_padding, 1, dilation, kernel)
    assert np.abs(y.numpy() - ref).max() <= TOL


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 7),
    s=st.integers(1, 4),
    p=st.integers(0, 4),
    d=st.integers(1, 3),
    n=st.integers(1, 6),
    data=st.data(),
)
def test_hypothesis_2d_square(k, s, p, d, n, data):
    a = data.draw(st.integers(0, max(s, d) - 1))
    assume((n - 1) * s - 2 * p + d * (k - 1) + a + 1 >= 1)  # a non-empty output
    x = torch.randn(1, 2, n, n + 1, dtype=torch.float64)
    w = torch.randn(2, 3, k, k, dtype=torch.float64)
    ref = conv_transpose(x, w, None, s, p, a, 1, d)
    lr = conv_transpose_weight_to_lr(w, s, d)
    assert (lr_conv_shuffle(x, lr, None, s, p, a, 1, d, k) - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_output_size_argument_matches_torch(ndim):
    cls = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[ndim]
    deconv = cls(4, 2, 3, stride=3, padding=1, dtype=torch.float64)
    layer = subpixel.from_conv_transpose(deconv)
    x = torch.randn(2, 4, *[3] * ndim, dtype=torch.float64)
    for extra in range(3):
        size = [7 + extra] * ndim
        ref = deconv(x, output_size=size)
        assert torch.allclose(layer(x, output_size=size), ref, atol=TOL, rtol=0)
        assert torch.allclose(layer(x, output_size=[2, 2, *size]), ref, atol=TOL, rtol=0)
    with pytest.raises(ValueError, match=r"valid sizes on axis 0 range from 7 to 9"):
        layer(x, output_size=[10] * ndim)


def test_unbatched_non_contiguous_channels_last_and_empty_inputs():
    deconv = torch.nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1, dtype=torch.float64)
    layer = subpixel.from_conv_transpose(deconv)
    x = torch.randn(3, 6, 5, 7, dtype=torch.float64)
    cases = {
        "unbatched": x[0],
        "non-contiguous": x.transpose(2, 3),
        "channels_last": x.to(memory_format=torch.channels_last),
        "empty batch": x[:0],
    }
    for name, inp in cases.items():
        ref = deconv(inp)
        out = layer(inp)
        assert out.shape == ref.shape, name
        if ref.numel():
            assert (out - ref).abs().max().item() <= TOL, name


def test_gradcheck_lr_form():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6 * 4, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: lr_conv_shuffle(x, w, b, 2, 1, 1, 1, 1, 4), (x, w, b))


def test_float32_error_within_torch_own_error():
    """In float32 the LR form is as accurate as torch's ConvTranspose against a float64 reference."""
    x = torch.randn(4, 64, 16, 16, dtype=torch.float64)
    w = torch.randn(64, 32, 4, 4, dtype=torch.float64) / 16
    ref = conv_transpose(x, w, None, 2, 1)
    torch_err = (conv_transpose(x.float(), w.float(), None, 2, 1).double() - ref).abs().max().item()
    lr = conv_transpose_weight_to_lr(w.float(), 2)
    ours_err = (lr_conv_shuffle(x.float(), lr, None, 2, 1, kernel_size=4).double() - ref).abs().max().item()
    assert ours_err <= 2 * torch_err + 1e-6


@pytest.mark.parametrize("bias", [False, True])
def test_output_beyond_every_input_sample_is_bias_only(bias):
    # found by hypothesis: k=1, s=1, p=1, d=3, output_padding 2 on a 1-sample axis -> the one output sample lies
    # past the only input sample's tap, so no input reaches the output (the LR input slice is empty)
    deconv = torch.nn.ConvTranspose2d(2, 3, 1, stride=1, padding=1, output_padding=2, dilation=3, bias=bias)
    deconv = deconv.double()
    x = torch.randn(1, 2, 1, 2, dtype=torch.float64)
    ref = deconv(x)
    assert ref.shape == (1, 3, 1, 2)
    layer = subpixel.from_conv_transpose(deconv)
    assert (layer(x) - ref).abs().max().item() <= TOL
    lr = conv_transpose_weight_to_lr(deconv.weight, (1, 1), (3, 3))
    y = lr_conv_shuffle(x, lr, deconv.bias, 1, 1, 2, 1, 3, 1)
    assert (y - ref).abs().max().item() <= TOL


def test_conv_transpose_names_a_weight_of_the_wrong_rank() -> None:
    """torch's transposed convolution exists in 1-3 D: a 6-D weight is refused with its name and shape."""
    message = r"weight must have 3, 4 or 5 dims .*got shape \(2, 2, 1, 1, 1, 1\)"
    with pytest.raises(subpixel.SubpixelError, match=message):
        conv_transpose(torch.randn(1, 2, 3, 3, 3, 3), torch.randn(2, 2, 1, 1, 1, 1))
