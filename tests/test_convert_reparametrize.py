"""Reparametrized weights (weight norm, spectral norm, any ``parametrize`` module, the old hook-style norms) survive
conversion: same values, same gradients with respect to the original tensors (float64, against torch's own
layers), same state_dict keys, and removing the reparametrization folds the LR weight."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations, parametrize

import subpixel
from subpixel import SubPixelConvNd, convert_model
from subpixel.functional import conv_transpose_weight_to_lr
from subpixel.reparametrize import ConvTransposeToLR

F64 = torch.float64
#: the accelerator too, where there is one (never a test dependency)
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


class Scale(nn.Module):
    """A custom parametrization with a ``right_inverse``: ``W = 2·X``."""

    def forward(self, x: Tensor) -> Tensor:
        return 2 * x

    def right_inverse(self, w: Tensor) -> Tensor:
        return w / 2


class LowRankPlus(nn.Module):
    """A custom parametrization of two tensors: ``W = A + B²`` (``right_inverse`` returns both)."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b * b

    def right_inverse(self, w: Tensor) -> tuple[Tensor, Tensor]:
        return w.clone(), torch.full_like(w, 0.5)


def _old_weight_norm(m: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.nn.utils.weight_norm(m)


REPARAMETRIZE: dict[str, Callable[[nn.Module], nn.Module]] = {
    "weight_norm": lambda m: parametrizations.weight_norm(m),
    "spectral_norm": lambda m: parametrizations.spectral_norm(m),
    "custom": lambda m: parametrize.register_parametrization(m, "weight", Scale()),
    "custom_two_tensors": lambda m: parametrize.register_parametrization(m, "weight", LowRankPlus()),
    "stacked": lambda m: parametrize.register_parametrization(
        parametrizations.weight_norm(m), "weight", Scale()
    ),
    "bias_too": lambda m: parametrize.register_parametrization(
        parametrizations.weight_norm(m), "bias", Scale()
    ),
    "old_weight_norm": _old_weight_norm,
    "old_spectral_norm": lambda m: torch.nn.utils.spectral_norm(m),
}

LAYERS: dict[str, Callable[[], nn.Module]] = {
    "1d_k7_s3_p2": lambda: nn.ConvTranspose1d(4, 6, 7, stride=3, padding=2, dtype=F64),
    "2d_k3_s2_groups_dil": lambda: nn.ConvTranspose2d(
        4, 6, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=2, dtype=F64
    ),
    "3d_k3_s2_p1_op1": lambda: nn.ConvTranspose3d(3, 2, 3, stride=2, padding=1, output_padding=1, dtype=F64),
}

INPUT_SIZE = {1: (9,), 2: (5, 4), 3: (3, 4, 3)}


def _input(layer: nn.Module) -> Tensor:
    n = len(layer.kernel_size)  # type: ignore[arg-type]
    return torch.randn(2, layer.in_channels, *INPUT_SIZE[n], dtype=F64)  # type: ignore[arg-type]


def _step(model: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Output and gradients of ``sum(y²)`` with respect to every parameter, by name."""
    model.zero_grad(set_to_none=True)
    y = model(x)
    (y * y).sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_training(a: nn.Module, b: nn.Module, x: Tensor, steps: int = 3) -> None:
    """Same outputs and same gradients (float64) for ``steps`` forward/backward passes (spectral norm's power
    iteration advances once per pass in both)."""
    for _ in range(steps):
        ya, ga = _step(a, x)
        yb, gb = _step(b, x)
        torch.testing.assert_close(yb, ya, rtol=1e-12, atol=1e-12)
        assert list(gb) == list(ga), "same parameter names, same order"
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], rtol=1e-11, atol=1e-11, msg=name)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layer_name", list(LAYERS))
@pytest.mark.parametrize("kind", list(REPARAMETRIZE))
def test_conversion_keeps_values_gradients_and_names(kind: str, layer_name: str, device: str) -> None:
    deconv = REPARAMETRIZE[kind](LAYERS[layer_name]().to(device))
    layer = subpixel.from_conv_transpose(deconv)
    assert isinstance(layer, SubPixelConvNd)
    assert list(layer.state_dict()) == list(deconv.state_dict())
    _assert_same_training(deconv, layer, _input(deconv).to(device))


@pytest.mark.parametrize("kind", list(REPARAMETRIZE))
def test_the_layer_weight_is_the_lr_weight_and_removal_folds_it(kind: str) -> None:
    deconv = REPARAMETRIZE[kind](LAYERS["2d_k3_s2_groups_dil"]()).eval()  # eval: no power-iteration step
    x = _input(deconv)
    with torch.no_grad():
        deconv(x)  # the hook-style norms compute their weight attribute at the first forward
    layer = subpixel.from_conv_transpose(deconv)
    expected = conv_transpose_weight_to_lr(
        deconv.weight.detach(), deconv.stride, deconv.dilation, deconv.groups
    )
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=0, atol=0)
    if kind.startswith("old_"):
        remove = (
            torch.nn.utils.remove_weight_norm
            if kind == "old_weight_norm"
            else torch.nn.utils.remove_spectral_norm
        )
        remove(layer)
    else:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    assert isinstance(layer.weight, nn.Parameter) and "weight" in layer._parameters
    torch.testing.assert_close(layer.weight.detach(), expected, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), deconv(x), rtol=1e-12, atol=1e-12)


def test_conversion_neither_modifies_nor_evaluates_the_source() -> None:
    deconv = parametrizations.spectral_norm(
        LAYERS["1d_k7_s3_p2"]()
    )  # training mode: evaluating it would step u
    u = deconv.parametrizations.weight[0]._u.clone()
    g = parametrizations.weight_norm(LAYERS["1d_k7_s3_p2"]())
    layer = subpixel.from_conv_transpose(deconv)
    layer_g = subpixel.from_conv_transpose(g)
    assert torch.equal(deconv.parametrizations.weight[0]._u, u)
    assert torch.equal(layer.parametrizations.weight[0]._u, u)
    assert layer.parametrizations.weight.original is not deconv.parametrizations.weight.original
    with torch.no_grad():
        layer_g.parametrizations.weight.original0.mul_(2)
    assert not torch.equal(layer_g.parametrizations.weight.original0, g.parametrizations.weight.original0)


def test_requires_grad_and_training_mode_are_kept() -> None:
    deconv = parametrizations.weight_norm(LAYERS["1d_k7_s3_p2"]()).eval()
    deconv.parametrizations.weight.original0.requires_grad_(False)
    layer = subpixel.from_conv_transpose(deconv)
    assert not layer.training and not layer.parametrizations.weight[0].training
    assert not layer.parametrizations.weight.original0.requires_grad
    assert layer.parametrizations.weight.original1.requires_grad


class Decoder(nn.Module):
    """A nested audio-style decoder: ConvTranspose1d layers under weight norm, in Sequentials and direct."""

    def __init__(self) -> None:
        super().__init__()
        wn = parametrizations.weight_norm
        self.pre = wn(nn.Conv1d(8, 8, 7, padding=3, dtype=F64))
        self.ups = nn.ModuleList(
            [
                nn.Sequential(
                    nn.LeakyReLU(0.1), wn(nn.ConvTranspose1d(8, 4, 16, stride=8, padding=4, dtype=F64))
                ),
                nn.Sequential(
                    nn.LeakyReLU(0.1), wn(nn.ConvTranspose1d(4, 2, 4, stride=2, padding=1, dtype=F64))
                ),
            ]
        )
        self.post = parametrizations.spectral_norm(
            nn.ConvTranspose1d(2, 1, 3, stride=1, padding=1, dtype=F64)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre(x)
        for up in self.ups:
            x = up(x)
        return torch.tanh(self.post(x))


def test_nested_model_trains_identically_with_its_optimizer_state() -> None:
    model = Decoder()
    converted, report = convert_model(model)
    assert [r.name for r in report.replacements] == ["ups.0.1", "ups.1.1", "post"]
    assert list(converted.state_dict()) == list(model.state_dict())
    assert [n for n, _ in converted.named_parameters()] == [n for n, _ in model.named_parameters()]
    x = torch.randn(2, 8, 5, dtype=F64)
    _assert_same_training(model, converted, x, steps=1)
    opt_a = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt_b = torch.optim.Adam(converted.parameters(), lr=1e-2)
    opt_b.load_state_dict(opt_a.state_dict())  # optimizer state maps by parameter order
    for _ in range(3):
        for m, opt in ((model, opt_a), (converted, opt_b)):
            opt.zero_grad()
            (m(x) ** 2).mean().backward()
            opt.step()
    for (name, a), b in zip(model.state_dict().items(), converted.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12, msg=name)
    fresh, _ = convert_model(Decoder(), verify=False)
    fresh.load_state_dict(model.state_dict())  # checkpoints of the original load into the converted model


def test_report_measures_the_norm_in_float64() -> None:
    """The deviation is measured with the norm evaluated in float64 on both sides (it was 9e-8 when the converted
    layer held the norm's float32 result)."""
    model = nn.Sequential(parametrizations.weight_norm(nn.ConvTranspose1d(16, 8, 16, stride=8, padding=4)))
    _, report = convert_model(model)
    assert report.replacements[0].max_abs_error is not None and report.replacements[0].max_abs_error < 1e-13
    assert "[weight: _WeightNorm] -> SubPixelConv1d(" in str(report)
    assert "[weight: _WeightNorm -> ConvTransposeToLR]" in str(report)


def test_old_hook_style_weight_norm_model_converts_after_a_forward() -> None:
    """``copy.deepcopy`` refuses a hook-style weight-norm module after a forward (its computed weight is not a
    graph leaf); ``convert_model`` copies it anyway."""
    model = nn.Sequential(_old_weight_norm(nn.ConvTranspose1d(4, 2, 4, stride=2, padding=1, dtype=F64)))
    x = torch.randn(1, 4, 6, dtype=F64)
    model(x).sum().backward()
    converted, report = convert_model(model, example_input=x)
    assert report.model_max_abs_error is not None and report.model_max_abs_error < 1e-12
    _assert_same_training(model, converted, x)


@pytest.mark.parametrize("kind", ["stacked", "weight_norm", "custom"])
@pytest.mark.parametrize("layer_name", list(LAYERS))
def test_assigning_an_lr_weight_goes_through_every_right_inverse(kind: str, layer_name: str) -> None:
    """``layer.weight = w_lr`` maps ``w_lr`` back through every ``right_inverse`` (ConvTransposeToLR's included,
    with the layer's groups and dilation): the layer then holds ``w_lr`` and computes the ConvTranspose of its
    ConvTranspose form."""
    deconv = REPARAMETRIZE[kind](LAYERS[layer_name]())
    layer = subpixel.from_conv_transpose(deconv)
    w_ct = torch.randn_like(deconv.weight)
    target = conv_transpose_weight_to_lr(w_ct, deconv.stride, deconv.dilation, deconv.groups)
    layer.weight = target
    torch.testing.assert_close(layer.weight.detach(), target, rtol=1e-12, atol=1e-12)
    x = _input(deconv)
    reference = nn.functional.__dict__[f"conv_transpose{len(deconv.kernel_size)}d"](
        x,
        w_ct,
        deconv.bias,
        deconv.stride,
        deconv.padding,
        deconv.output_padding,
        deconv.groups,
        deconv.dilation,
    )
    with torch.no_grad():
        torch.testing.assert_close(layer(x), reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("algorithm", subpixel.dispatch.ALGORITHMS)
@pytest.mark.parametrize("layer_name", list(LAYERS))
@pytest.mark.parametrize("kind", ["weight_norm", "spectral_norm", "custom_two_tensors", "old_weight_norm"])
def test_every_forced_algorithm_trains_as_the_original(kind: str, layer_name: str, algorithm: str) -> None:
    """The same values and gradients with each algorithm forced (where valid), contiguous and channels-last."""
    deconv = REPARAMETRIZE[kind](LAYERS[layer_name]())
    layer = subpixel.from_conv_transpose(deconv)
    x = _input(deconv)
    inputs = [x]
    if x.dim() == 4:
        inputs.append(x.contiguous(memory_format=torch.channels_last))
    elif x.dim() == 5:
        inputs.append(x.contiguous(memory_format=torch.channels_last_3d))
    with subpixel.dispatch.force_algorithm(algorithm):
        for inp in inputs:
            deconv.eval(), layer.eval()  # no power-iteration step: both keep their state
            with torch.no_grad():
                plan = layer.plan(inp)
                assert plan.algorithm == algorithm or algorithm not in plan.candidates
                torch.testing.assert_close(layer(inp), deconv(inp), rtol=1e-12, atol=1e-12)
            deconv.train(), layer.train()
            _assert_same_training(deconv, layer, inp, steps=2)


def test_round_trip_to_conv_transpose_keeps_the_reparametrization() -> None:
    for kind in REPARAMETRIZE:
        deconv = REPARAMETRIZE[kind](LAYERS["2d_k3_s2_groups_dil"]())
        back = subpixel.to_conv_transpose(subpixel.from_conv_transpose(deconv))
        assert isinstance(back, nn.ConvTranspose2d)
        assert parametrize.type_before_parametrizations(back) is nn.ConvTranspose2d
        assert list(back.state_dict()) == list(deconv.state_dict()), kind
        _assert_same_training(deconv, back, _input(deconv), steps=2)


def test_to_conv_transpose_refuses_a_parametrization_of_the_lr_weight() -> None:
    layer = parametrizations.weight_norm(subpixel.SubPixelConv1d(2, 2, 4, stride=2))
    with pytest.raises(ValueError, match=r"parametrizations \['_WeightNorm'\] of the LR weight"):
        subpixel.to_conv_transpose(layer)


def test_fresh_weight_on_the_inference_paths() -> None:
    """A parametrized weight is recomputed at every access; the layer must not serve a cached derived weight (the
    channels-last, no-grad paths cache re-indexed weights) after the original tensors change in place."""
    deconv = parametrizations.weight_norm(nn.ConvTranspose2d(8, 4, 2, stride=2, dtype=F64)).eval()
    layer = subpixel.from_conv_transpose(deconv)
    x = torch.randn(2, 8, 6, 6, dtype=F64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for scale in (1.0, 2.0, 0.5):
            for m in (deconv, layer):
                m.parametrizations.weight.original0.mul_(scale)
            torch.testing.assert_close(layer(x), deconv(x), rtol=1e-12, atol=1e-12)


def test_other_hooks_are_named_in_a_warning() -> None:
    deconv = nn.ConvTranspose1d(2, 2, 4, stride=2)
    deconv.register_forward_hook(lambda *args: None)
    with pytest.warns(UserWarning, match=r"1 forward hooks not carried"):
        subpixel.from_conv_transpose(deconv)


def test_conv_transpose_to_lr_is_the_weight_map() -> None:
    step = ConvTransposeToLR(kernel_size=(3, 3), stride=(2, 2), dilation=(2, 2), groups=2)
    w = torch.randn(4, 3, 3, 3, dtype=F64)
    assert torch.equal(step(w), conv_transpose_weight_to_lr(w, 2, 2, 2))
    assert torch.equal(step.right_inverse(step(w)), w)


def test_example_input_comparison_changes_neither_model() -> None:
    """In training mode a forward steps spectral norm's vectors and batch-norm statistics; the report's run
    happens on copies of the buffers, so both models keep the state they had (and stay in step)."""
    model = nn.Sequential(
        parametrizations.spectral_norm(nn.ConvTranspose1d(4, 3, 4, stride=2, dtype=F64)),
        nn.BatchNorm1d(3, dtype=F64),
        torch.nn.utils.spectral_norm(nn.ConvTranspose1d(3, 2, 3, stride=1, dtype=F64)),
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    converted, report = convert_model(model, example_input=torch.randn(3, 4, 5, dtype=F64))
    assert report.model_max_abs_error is not None and report.model_max_abs_error < 1e-12
    for state in (model.state_dict(), converted.state_dict()):
        assert list(state) == list(before)
        for key, value in state.items():
            assert torch.equal(value, before[key]), key
