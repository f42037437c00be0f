"""The ``"conv_transpose"`` algorithm: torch's transposed convolution with the exactly re-indexed weight.

For non-overlapping kernels (``k == s``) on the CPU this is oneDNN's deconvolution primitive, one GEMM writing the
shuffled output directly (the fused path of earlier versions). Checked in float64 against torch's ``ConvTranspose``
built from the *original* weights (the layer only sees its LR weight, re-indexed) and against the layer's own
conv + shuffle form, with the output's memory format, and that it runs exactly where it is valid.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from subpixel import (
    SubPixelConv2d,
    SubPixelConv3d,
    algorithms,
    convert_channel_order,
    dispatch,
    from_conv_transpose,
)
from subpixel.algorithms import conv_transpose_core
from subpixel.functional import conv_transpose_weight_to_lr

pytestmark = pytest.mark.usefixtures("single_thread")

CL = {2: torch.channels_last, 3: torch.channels_last_3d}
CT = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return conv_transpose_core(*args, **kwargs)

    monkeypatch.setattr(algorithms, "conv_transpose_core", spy)
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
    layer = from_conv_transpose(ref, weight_layout="lr")
    if order == "dcr":
        layer = {2: SubPixelConv2d, 3: SubPixelConv3d}[ndim](4, 6, stride, stride, order="dcr").double()
        with torch.no_grad():
            lr = conv_transpose_weight_to_lr(ref.weight, stride)
            layer.weight.copy_(convert_channel_order(lr, [stride] * ndim, "crd", "dcr", dim=0))
            layer.bias.copy_(ref.bias)
    x = torch.randn(2, 4, *([3, 5, 4][:ndim]), dtype=torch.float64)
    with torch.no_grad():
        with dispatch.force_algorithm("lr_shuffle"):
            y_plain = layer(x)  # conv + shuffle
        assert not calls
        with dispatch.force_algorithm("conv_transpose"):
            y = layer(x.contiguous(memory_format=CL[ndim]))
        assert calls == [1]
        expected = ref(x)
        torch_format = ref(x.contiguous(memory_format=CL[ndim])).is_contiguous(memory_format=CL[ndim])
    assert y.shape == expected.shape
    assert y.is_contiguous(memory_format=CL[ndim]) == torch_format
    assert (y - expected).abs().max().item() <= 1e-10
    assert (y - y_plain).abs().max().item() <= 1e-10


def test_conv_transpose_runs_only_where_valid(monkeypatch) -> None:
    calls = _spy(monkeypatch)
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    with dispatch.force_algorithm("conv_transpose"):
        for kwargs in (dict(kernel_size=2, stride=2), dict(kernel_size=4, stride=2, padding=1)):
            ref = nn.ConvTranspose2d(4, 3, **kwargs).double()
            layer = from_conv_transpose(ref, weight_layout="lr")
            xg = x.detach().clone().requires_grad_(True)
            calls.clear()  # every LR entry is a tap: valid in training too
            gx, gw = torch.autograd.grad(layer(xg).sum(), [xg, layer.weight])
            rx, rw = torch.autograd.grad(ref(xg).sum(), [xg, ref.weight])
            assert calls == [1]
            assert (gx - rx).abs().max().item() <= 1e-10
            assert (gw - conv_transpose_weight_to_lr(rw, layer.stride)).abs().max().item() <= 1e-10
        # kernel 3, stride 2: LR entries no tap reaches; while autograd records the weight they are free
        # parameters with non-zero gradients, so only the LR form is exact
        ref = nn.ConvTranspose2d(4, 3, 3, 2, 1, 1).double()
        layer = from_conv_transpose(ref, weight_layout="lr")
        calls.clear()
        layer(x).sum().backward()
        assert not calls
        with torch.no_grad():  # inference: valid while those entries are zero
            assert (layer(x) - ref(x)).abs().max().item() <= 1e-10
            assert calls == [1]
            layer.weight.add_(1.0)  # as after training as an LR layer: no longer valid
            calls.clear()
            assert layer.plan(x).algorithm == "lr_shuffle"
            layer(x)
            assert not calls
        layer = from_conv_transpose(nn.ConvTranspose2d(4, 3, 2, 2).double(), weight_layout="lr")
        calls.clear()
        with torch.no_grad():
            traced = torch.jit.trace(
                layer, x, check_trace=False
            )  # tracing keeps the exportable conv + shuffle
        assert not calls
        assert (traced(x) - layer(x)).abs().max().item() <= 1e-10


def test_fused_weight_cache_follows_updates() -> None:
    ref = nn.ConvTranspose2d(4, 3, 2, 2).double()
    layer = from_conv_transpose(ref, weight_layout="lr")
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), dispatch.force_algorithm("conv_transpose"):
        assert (layer(x) - ref(x)).abs().max().item() <= 1e-10
        layer.weight.mul_(-2.0)
        ref.weight.mul_(-2.0)
        assert (layer(x) - ref(x)).abs().max().item() <= 1e-10
        layer.weight = nn.Parameter(layer.weight * 3)
        ref.weight.mul_(3.0)
        assert (layer(x) - ref(x)).abs().max().item() <= 1e-10
