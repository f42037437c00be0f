"""The conversion contract as a property: ``to_conv_transpose(from_conv_transpose(m))`` is ``m`` again (type,
hyper-parameters, every tensor bit for bit, bias presence, the same forward), and a layer built in LR form goes to a
ConvTranspose that computes the same thing, over every hyper-parameter (float64)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

import subpixel

TOL = 1e-10
CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
SUBPIXEL = {1: subpixel.SubPixelConv1d, 2: subpixel.SubPixelConv2d, 3: subpixel.SubPixelConv3d}
HYPER = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "output_padding",
    "groups",
    "dilation",
)


@st.composite
def geometries(draw: st.DrawFn) -> dict:
    """A geometry torch accepts (every axis has an output of at least one sample), anisotropic per axis."""
    ndim = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    kernel = tuple(draw(st.integers(1, {1: 7, 2: 5, 3: 3}[ndim])) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    dilation = tuple(draw(st.sampled_from([1, 1, 2, 3])) for _ in range(ndim))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True))
    size = tuple(draw(st.integers(1, {1: 8, 2: 5, 3: 3}[ndim])) for _ in range(ndim))
    # the largest padding that still leaves one output sample, so that every draw is a valid geometry
    padding = tuple(
        draw(st.integers(0, max(0, ((n - 1) * s + d * (k - 1) + a) // 2)))
        for n, s, d, k, a in zip(size, stride, dilation, kernel, output_padding, strict=True)
    )
    return {
        "ndim": ndim,
        "in_channels": groups * draw(st.integers(1, 3)),
        "out_channels": groups * draw(st.integers(1, 3)),
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
        "size": size,
        "bias": draw(st.booleans()),
        "batched": draw(st.booleans()),
    }


def _kwargs(g: dict) -> dict:
    return {k: g[k] for k in (*HYPER, "bias")}


def _input(g: dict, seed: int) -> torch.Tensor:
    shape = (g["in_channels"], *g["size"])
    x = torch.randn(
        (2, *shape) if g["batched"] else shape,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(seed),
    )
    return x


def _assert_same_conv_transpose(back: nn.Module, m: nn.Module) -> None:
    assert parametrize.type_before_parametrizations(back) is parametrize.type_before_parametrizations(m)
    for name in (*HYPER, "padding_mode"):
        assert getattr(back, name) == getattr(m, name), name
    assert (back.bias is None) == (m.bias is None)
    assert parametrize.is_parametrized(back) == parametrize.is_parametrized(m)
    ours, theirs = back.state_dict(), m.state_dict()
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key
    assert [n for n, _ in back.named_parameters()] == [n for n, _ in m.named_parameters()]


@settings(max_examples=120, deadline=None)
@given(g=geometries(), layout=st.sampled_from(["conv_transpose", "lr"]), parametrized=st.booleans())
def test_conv_transpose_round_trip_is_exact(g: dict, layout: str, parametrized: bool) -> None:
    torch.manual_seed(0)
    m = CONV_T[g["ndim"]](**_kwargs(g), dtype=torch.float64)
    if parametrized:
        weight_norm(m)
    layer = subpixel.from_conv_transpose(m, weight_layout=layout)
    assert (layer.bias is None) == (m.bias is None)
    back = subpixel.to_conv_transpose(layer)
    _assert_same_conv_transpose(back, m)
    x = _input(g, 1)
    with torch.no_grad():
        reference = m(x)
        assert torch.equal(back(x), reference)  # the same module on the same tensors
        assert (layer(x) - reference).abs().max().item() <= TOL


@settings(max_examples=80, deadline=None)
@given(g=geometries(), order=st.sampled_from(["crd", "dcr"]))
def test_lr_layer_goes_to_an_equal_conv_transpose(g: dict, order: str) -> None:
    if order == "dcr" and g["groups"] != 1:
        order = "crd"  # DCR needs groups == 1
    torch.manual_seed(0)
    layer = SUBPIXEL[g["ndim"]](**_kwargs(g), dtype=torch.float64, order=order)
    assert (layer.bias is None) == (not g["bias"])
    deconv = subpixel.to_conv_transpose(layer)
    assert type(deconv) is CONV_T[g["ndim"]]
    for name in HYPER:
        assert getattr(deconv, name) == getattr(layer, name), name
    assert (deconv.bias is None) == (layer.bias is None)
    x = _input(g, 2)
    with torch.no_grad():
        assert (deconv(x) - layer(x)).abs().max().item() <= TOL
        if layer.bias is not None:
            assert torch.equal(deconv.bias, layer.bias)
    again = subpixel.from_conv_transpose(deconv, weight_layout="lr")
    if order == "crd":  # the same LR weight, bit for bit
        assert torch.equal(again.weight, layer.weight)
    with torch.no_grad():
        assert (again(x) - layer(x)).abs().max().item() <= TOL


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_layer_without_bias_has_no_bias_parameter(ndim: int) -> None:
    """``bias=False`` is a registered missing parameter, as in torch's layers (``state_dict`` and conversion see
    it)."""
    layer = SUBPIXEL[ndim](4, 4, 3, stride=2, bias=False)
    assert "bias" in layer._parameters and layer.bias is None
    assert "bias" not in layer.state_dict()
    assert subpixel.to_conv_transpose(layer).bias is None
