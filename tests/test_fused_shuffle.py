"""SubPixelConvNd's fused path: non-overlapping kernels (k == s) in channels-last, inference.

The path runs the 1-tap LR GEMM through oneDNN's deconvolution primitive, which writes the shuffled output
directly. Checked in float64 against torch's ``ConvTranspose`` built from the *original* weights (the layer only
sees its LR weight, re-indexed) and against the layer's own conv + shuffle form (contiguous input), and that it
is taken exactly where it applies.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import subpixel.layers
from subpixel import SubPixelConv2d, SubPixelConv3d, convert_channel_order, from_conv_transpose
from subpixel.functional import conv_transpose_weight_to_lr

pytestmark = pytest.mark.usefixtures("single_thread")

CL = {2: torch.channels_last, 3: torch.channels_last_3d}
CT = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = subpixel.layers.SubPixelConvNd._fused_shuffle_forward

    def spy(self, x):  # type: ignore[no-untyped-def]
        calls.append(1)
        return original(self, x)

    monkeypatch.setattr(subpixel.layers.SubPixelConvNd, "_fused_shuffle_forward", spy)
    return calls


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize(
    ("stride", "groups", "bias", "order"),
    [(2, 1, True, "crd"), (3, 2, False, "crd"), (2, 1, True, "dcr"), ((1, 2, 3), 1, True, "crd")],
)
def test_fused_path_equals_conv_transpose(monkeypatch, ndim, stride, groups, bias, order) -> None:
    if isinstance(stride, tuple):
        stride = stride[-ndim:]
    calls = _spy(monkeypatch)
    torch.manual_seed(0)
    ref = CT[ndim](4, 6, stride, stride, groups=groups, bias=bias).double()
    layer = from_conv_transpose(ref)
    if order == "dcr":
        layer = {2: SubPixelConv2d, 3: SubPixelConv3d}[ndim](4, 6, stride, stride, order="dcr").double()
        with torch.no_grad():
            lr = conv_transpose_weight_to_lr(ref.weight, stride)
            layer.weight.copy_(convert_channel_order(lr, [stride] * ndim, "crd", "dcr", dim=0))
            layer.bias.copy_(ref.bias)
    x = torch.randn(2, 4, *([3, 5, 4][:ndim]), dtype=torch.float64)
    with torch.no_grad():
        y_plain = layer(x)  # contiguous input: conv + shuffle
        assert not calls
        y = layer(x.contiguous(memory_format=CL[ndim]))
        assert calls == [1]
        expected = ref(x)
        torch_format = ref(x.contiguous(memory_format=CL[ndim])).is_contiguous(memory_format=CL[ndim])
    assert y.shape == expected.shape
    assert y.is_contiguous(memory_format=CL[ndim]) == torch_format
    assert (y - expected).abs().max().item() <= 1e-10
    assert (y - y_plain).abs().max().item() <= 1e-10


def test_fused_path_is_taken_only_where_it_applies(monkeypatch) -> None:
    calls = _spy(monkeypatch)
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    cases = {
        "k == s": (dict(kernel_size=2, stride=2), True),
        "k != s": (dict(kernel_size=4, stride=2, padding=1), False),
        "padding": (dict(kernel_size=2, stride=2, padding=1), False),
        "output_padding": (dict(kernel_size=2, stride=2, output_padding=1, dilation=2), False),
    }
    for name, (kwargs, expect) in cases.items():
        calls.clear()
        ref = nn.ConvTranspose2d(4, 3, **kwargs).double()
        layer = from_conv_transpose(ref)
        with torch.no_grad():
            assert (layer(x) - ref(x)).abs().max().item() <= 1e-10, name
        assert bool(calls) == expect, name
    ref = nn.ConvTranspose2d(4, 3, 2, 2).double()
    layer = from_conv_transpose(ref)
    calls.clear()
    layer(x.contiguous())  # contiguous: conv + shuffle
    assert not calls
    xg = x.detach().clone().requires_grad_(True)
    y = layer(xg)  # autograd records: conv + shuffle (its backward is the measured faster one)
    assert not calls
    gx = torch.autograd.grad(y.sum(), [xg])[0]
    rx = torch.autograd.grad(ref(xg).sum(), [xg])[0]
    assert (gx - rx).abs().max().item() <= 1e-10
    with torch.no_grad():
        traced = torch.jit.trace(
            layer, x, check_trace=False
        )  # tracing keeps the exportable conv + shuffle form
    assert not calls
    assert (traced(x) - ref(x)).abs().max().item() <= 1e-10
    with torch.no_grad():
        layer(x, output_size=[12, 12])
    assert calls == [1]
    calls.clear()
    with torch.no_grad():  # output_size asking for output padding: not fused
        ref2 = nn.ConvTranspose2d(4, 3, 2, 2, dilation=2).double()
        layer2 = from_conv_transpose(ref2)
        assert (layer2(x, output_size=[14, 14]) - ref2(x, output_size=[14, 14])).abs().max().item() <= 1e-10
    assert not calls


def test_fused_weight_cache_follows_updates() -> None:
    ref = nn.ConvTranspose2d(4, 3, 2, 2).double()
    layer = from_conv_transpose(ref)
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert (layer(x) - ref(x)).abs().max().item() <= 1e-10
        layer.weight.mul_(-2.0)
        ref.weight.mul_(-2.0)
        assert (layer(x) - ref(x)).abs().max().item() <= 1e-10
        layer.weight = nn.Parameter(layer.weight * 3)
        ref.weight.mul_(3.0)
        assert (layer(x) - ref(x)).abs().max().item() <= 1e-10


def test_espcn_style_layer_is_not_fused(monkeypatch) -> None:
    calls = _spy(monkeypatch)
    layer = SubPixelConv2d.from_lr_kernel(8, 1, 3, lr_kernel_size=3)
    with torch.no_grad():
        layer(torch.randn(1, 8, 5, 5).contiguous(memory_format=torch.channels_last))
    assert not calls
