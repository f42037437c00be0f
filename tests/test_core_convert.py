"""Module conversion, whole-model conversion, ICNR, and the errors bad arguments get."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import subpixel
from subpixel import SubPixelConv1d, SubPixelConv2d, SubPixelConv3d, convert_model, icnr_
from subpixel.functional import conv_transpose_weight_to_lr, lr_weight_to_conv_transpose


class Decoder(nn.Module):
    """A nested model: ConvTranspose layers inside Sequentials and as direct children."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Sequential(nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1, groups=2)),
        )
        self.head = nn.ConvTranspose2d(8, 1, 5, stride=3, padding=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.up(self.stem(x)))


def test_convert_model_replaces_nested_layers_and_reports():
    model = Decoder().double().eval()
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    converted, report = convert_model(model, example_input=x)
    names = [r.name for r in report.replacements]
    assert names == ["up.0", "up.2.0", "head"]
    assert isinstance(converted.up[0], SubPixelConv2d)
    assert isinstance(converted.up[2][0], SubPixelConv2d)
    assert isinstance(converted.head, SubPixelConv2d)
    assert isinstance(model.head, nn.ConvTranspose2d), "the original is untouched without inplace"
    assert all(r.max_abs_error is not None and r.max_abs_error < 1e-10 for r in report.replacements)
    assert report.model_max_abs_error is not None and report.model_max_abs_error < 1e-10
    assert "replaced 3 ConvTranspose layer(s)" in str(report)
    with torch.no_grad():
        assert (converted(x) - model(x)).abs().max().item() < 1e-10


def test_convert_model_inplace_and_root_module():
    model = Decoder()
    same, _ = convert_model(model, inplace=True, verify=False)
    assert same is model and isinstance(model.head, SubPixelConv2d)
    root, report = convert_model(nn.ConvTranspose1d(2, 2, 4, 2))
    assert isinstance(root, SubPixelConv1d) and report.replacements[0].name == ""


def test_conversion_keeps_dtype_mode_and_requires_grad():
    deconv = nn.ConvTranspose3d(2, 3, 2, stride=2, dtype=torch.float64).eval()
    deconv.weight.requires_grad_(False)
    layer = subpixel.from_conv_transpose(deconv)
    assert isinstance(layer, SubPixelConv3d)
    assert layer.weight.dtype == torch.float64 and not layer.training and not layer.weight.requires_grad


def test_state_dict_round_trip_through_conv_transpose():
    layer = SubPixelConv2d(4, 2, kernel_size=4, stride=2, padding=1)
    deconv = subpixel.to_conv_transpose(layer)
    fresh = SubPixelConv2d(4, 2, kernel_size=4, stride=2, padding=1)
    fresh.load_state_dict(subpixel.from_conv_transpose(deconv, weight_layout="lr").state_dict())
    assert torch.equal(fresh.weight, layer.weight) and torch.equal(fresh.bias, layer.bias)


def test_the_default_layout_holds_the_conv_transpose_parameters():
    """``from_conv_transpose`` keeps the original's parameters (ConvTranspose layout, same order), maps them to the
    LR weight exactly, and ``remove_parametrizations`` folds them into a plain LR layer."""
    deconv = nn.ConvTranspose2d(4, 2, kernel_size=3, stride=2, padding=1, dtype=torch.float64)
    layer = subpixel.from_conv_transpose(deconv)
    # the same tensors (the weight is listed after the bias, as under torch's own parametrizations)
    assert sorted(tuple(p.shape) for p in layer.parameters()) == sorted(
        tuple(p.shape) for p in deconv.parameters()
    )
    assert torch.equal(layer.state_dict()["parametrizations.weight.original"], deconv.weight)
    assert torch.equal(layer.weight, conv_transpose_weight_to_lr(deconv.weight, 2))
    lr = subpixel.from_conv_transpose(deconv, weight_layout="lr")
    torch.nn.utils.parametrize.remove_parametrizations(layer, "weight")
    assert type(layer.weight) is nn.Parameter and torch.equal(layer.weight, lr.weight)
    with pytest.raises(ValueError, match="weight_layout"):
        subpixel.from_conv_transpose(deconv, weight_layout="LR")


def test_a_converted_model_loads_the_original_checkpoint():
    """The original model's ``state_dict`` (plain ConvTranspose weights under ``weight``) loads into the converted
    model, which then computes what the original with those weights computes."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(4, 3, 3, 2, 1, 1), nn.ReLU())
    converted, _ = convert_model(model, verify=False)
    trained = nn.Sequential(nn.ConvTranspose2d(4, 3, 3, 2, 1, 1), nn.ReLU()).double()
    converted.load_state_dict(trained.state_dict())  # strict: every key maps
    converted.double()
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        assert (converted(x) - trained(x)).abs().max().item() <= 1e-10
    converted.load_state_dict(converted.state_dict())  # and its own keys still load


def test_default_init_has_torch_conv_transpose_statistics():
    torch.manual_seed(0)
    ours = SubPixelConv2d(64, 64, 4, stride=2, padding=1)
    back = subpixel.to_conv_transpose(ours)
    ref = nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1)
    bound = ref.weight.abs().max().item()
    assert back.weight.abs().max().item() <= bound * 1.01
    assert abs(back.weight.std().item() - ref.weight.std().item()) < 0.05 * ref.weight.std().item()


def test_to_conv_transpose_refuses_lr_weights_no_tap_reaches():
    layer = SubPixelConv1d(2, 2, kernel_size=3, stride=2)  # K = 2: 4 LR positions per phase pair, 3 taps
    with torch.no_grad():
        layer.weight.fill_(1.0)  # as after free training: the unreachable position is non-zero
    with pytest.raises(ValueError, match=r"non-zero entries .* no ConvTranspose tap of kernel_size=\(3,\)"):
        subpixel.to_conv_transpose(layer)
    deconv = subpixel.to_conv_transpose(layer, check=False)
    assert deconv.weight.shape == (2, 2, 3)


def test_dcr_order_layer_equals_crd_layer():
    deconv = nn.ConvTranspose2d(3, 4, 6, stride=3, padding=2, dtype=torch.float64)
    crd = subpixel.from_conv_transpose(deconv)
    dcr = SubPixelConv2d(3, 4, 6, stride=3, padding=2, dtype=torch.float64, order="dcr")
    with torch.no_grad():
        dcr.weight.copy_(conv_transpose_weight_to_lr(deconv.weight, 3, order="dcr"))
        dcr.bias.copy_(deconv.bias)
    x = torch.randn(1, 3, 5, 4, dtype=torch.float64)
    assert (dcr(x) - crd(x)).abs().max().item() < 1e-12
    assert torch.equal(subpixel.to_conv_transpose(dcr).weight, deconv.weight)


@pytest.mark.parametrize("order", ["crd", "dcr"])
@pytest.mark.parametrize(
    ("cls", "ndim", "scale"), [(SubPixelConv1d, 1, 4), (SubPixelConv2d, 2, 3), (SubPixelConv3d, 3, 2)]
)
def test_icnr_starts_as_conv_then_nearest_upsampling(cls, ndim, scale, order):
    layer = cls.from_lr_kernel(3, 2, scale=scale, lr_kernel_size=3, dtype=torch.float64, order=order)
    icnr_(layer)
    x = torch.randn(2, 3, *[5] * ndim, dtype=torch.float64)
    r_total = scale**ndim
    sub = layer.weight[::r_total] if order == "crd" else layer.weight[:2]
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[ndim]
    expected = F.interpolate(conv(x, sub, layer.bias, padding=1), scale_factor=scale, mode="nearest")
    assert (layer(x) - expected).abs().max().item() < 1e-12


def test_icnr_repeat_pitfall_is_not_nearest_upsampling_in_crd():
    """``weight.repeat(r*r, ...)`` (the common recipe) lays the copies out in DCR order: wrong for CRD when C > 1."""
    layer = SubPixelConv2d.from_lr_kernel(3, 2, scale=2, dtype=torch.float64)
    sub = torch.randn(2, 3, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(sub.repeat(4, 1, 1, 1))
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    nearest = F.interpolate(F.conv2d(x, sub, layer.bias, padding=1), scale_factor=2, mode="nearest")
    assert (layer(x) - nearest).abs().max().item() > 1e-3


def test_icnr_on_a_tensor():
    w = torch.empty(12, 5, 3, 3)
    icnr_(w, 2)
    assert all(torch.equal(w[4 * c], w[4 * c + p]) for c in range(3) for p in range(4))
    with pytest.raises(ValueError, match=r"factor is required"):
        icnr_(w)
    with pytest.raises(ValueError, match=r"weight.shape\[0\] \(12\) must be divisible .* = 9"):
        icnr_(w, 3)


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"padding_mode": "reflect"}, ValueError, r"padding_mode must be 'zeros'.*got 'reflect'"),
        (
            {"output_padding": 2, "stride": 2},
            ValueError,
            r"output_padding must be smaller than either stride or dilation",
        ),
        ({"groups": 3}, ValueError, r"in_channels \(4\) must be divisible by groups \(3\)"),
        ({"stride": 0}, ValueError, r"stride must be >= 1 on every axis, got 0"),
        (
            {"stride": (2, 2, 2)},
            ValueError,
            r"stride must be an int or a sequence of 2 ints, got \(2, 2, 2\)",
        ),
        ({"kernel_size": 2.5}, TypeError, r"kernel_size must be an int or a sequence of 2 ints, got 2.5"),
        ({"order": "nhwc"}, ValueError, r"order must be 'crd'.*got 'nhwc'"),
    ],
)
def test_constructor_errors(kwargs, exc, pattern):
    base = {"in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2}
    base.update(kwargs)
    with pytest.raises(exc, match=pattern):
        SubPixelConv2d(**base)


def test_conversion_errors():
    with pytest.raises(TypeError, match=r"module must be an nn.ConvTranspose1d.*got Conv2d"):
        subpixel.from_conv_transpose(nn.Conv2d(2, 2, 3))
    with pytest.raises(TypeError, match=r"uninitialised \(lazy\)"):
        subpixel.from_conv_transpose(nn.LazyConvTranspose2d(2, 3))
    with pytest.raises(TypeError, match=r"module must be a SubPixelConv1d/2d/3d, got ConvTranspose2d"):
        subpixel.to_conv_transpose(nn.ConvTranspose2d(2, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"weight_lr must have LR kernel size \(2, 2\)"):
        lr_weight_to_conv_transpose(torch.zeros(8, 2, 3, 3), kernel_size=4, stride=2)
    with pytest.raises(ValueError, match=r"weight must have 3, 4 or 5 dims"):
        conv_transpose_weight_to_lr(torch.zeros(2, 2), stride=2)


def test_forward_errors():
    layer = SubPixelConv2d(4, 2, 4, stride=2, padding=1)
    with pytest.raises(ValueError, match=r"input must have 4 channels, got shape \(1, 3, 5, 5\)"):
        layer(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"input must have 4 dims .* or 3 .* got shape \(5, 5\)"):
        layer(torch.randn(5, 5))
    tiny = SubPixelConv1d(1, 1, 1, stride=1, padding=3)
    with pytest.raises(ValueError, match=r"output would have size -4"):
        tiny(torch.randn(1, 1, 2))
