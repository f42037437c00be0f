"""Converted models under ``torch.compile(fullgraph=True)``, ``torch.export`` and bf16 autocast, against the
original model (torch's own ConvTranspose layers) run the same way."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from subpixel import SubPixelConvNd, convert_model


class Decoder2d(nn.Module):
    """2-D up-convolutions of the common kinds: k4 s2 p1, grouped k3 s2 p1 op1, k = s, k5 s3 p2 without bias."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(8, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
            nn.ReLU(),
            nn.ConvTranspose2d(6, 4, 2, stride=2),
        )
        self.head = nn.ConvTranspose2d(4, 1, 5, stride=3, padding=2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.up(x))


class AudioDecoder(nn.Module):
    """A HiFi-GAN-style 1-D decoder under weight norm."""

    def __init__(self) -> None:
        super().__init__()
        wn = parametrizations.weight_norm
        self.ups = nn.Sequential(
            wn(nn.ConvTranspose1d(16, 8, 16, stride=8, padding=4)),
            nn.LeakyReLU(0.1),
            wn(nn.ConvTranspose1d(8, 4, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.1),
        )
        self.post = wn(nn.Conv1d(4, 1, 7, padding=3))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.post(self.ups(x)))


class UNet3dUp(nn.Module):
    """The 3-D U-Net up-path: k3 s2 p1 op1 and k2 s2."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.ConvTranspose3d(4, 4, 3, stride=2, padding=1, output_padding=1)
        self.b = nn.ConvTranspose3d(4, 2, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.b(torch.relu(self.a(x)))


#: the accelerator too, where there is one (never a test dependency)
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]

MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "decoder2d": (Decoder2d, (2, 8, 5, 6)),
    "audio_weight_norm": (AudioDecoder, (2, 16, 12)),
    "unet3d": (UNet3dUp, (1, 4, 3, 4, 3)),
}


def _pair(name: str, device: str = "cpu") -> tuple[nn.Module, nn.Module, Tensor]:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().to(device)
    converted, _ = convert_model(model)
    assert any(isinstance(m, SubPixelConvNd) for m in converted.modules())
    return model, converted, torch.randn(shape, device=device)


def _grads(model: nn.Module, run: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, list[Tensor]]:
    model.zero_grad(set_to_none=True)
    y = run(x)
    (y * y).sum().backward()
    return y.detach(), [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]


def _close(a: Tensor, b: Tensor, tol: float = 1e-5) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=tol * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize(
    "name",
    [pytest.param("decoder2d", marks=pytest.mark.slow), "audio_weight_norm", "unet3d"],  # decoder2d: ~8 s
)
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_captures_the_converted_model(name: str, device: str) -> None:
    """One graph (no graph break) for forward and backward; the backend that lowers it is Inductor's business
    (tested below, slow), the capture is ours."""
    _check_compiled(name, "aot_eager", device)


def _check_compiled(name: str, backend: str, device: str = "cpu") -> None:
    """Forward equals the original model's; gradients equal the eager converted model's (the LR weights' own
    gradients; the eager layer's are checked against torch's in float64 elsewhere)."""
    model, converted, x = _pair(name, device)
    torch._dynamo.reset()
    compiled = torch.compile(converted, fullgraph=True, backend=backend)
    with torch.no_grad():
        _close(compiled(x), model(x))
    y_ref, g_ref = _grads(converted, converted, x)
    y, g = _grads(converted, compiled, x)
    _close(y, y_ref)
    for a, b in zip(g, g_ref, strict=True):
        _close(a, b)


@pytest.mark.slow  # Inductor compiles C++: ~10-30 s per model on 2 cores
@pytest.mark.parametrize("name", list(MODELS))
def test_compile_fullgraph_with_inductor(name: str) -> None:
    _check_compiled(name, backend="inductor")


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("device", DEVICES)
def test_export(name: str, device: str) -> None:
    model, converted, x = _pair(name, device)
    program = torch.export.export(converted.eval(), (x,))
    with torch.no_grad():
        _close(program.module()(x), model.eval()(x))


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast(name: str, channels_last: bool, device: str) -> None:
    """Under bf16 autocast the converted model computes in bf16 as the original does: same dtype, same values to
    bf16 precision, gradients in the parameters' dtype."""
    model, converted, x = _pair(name, device)
    if channels_last and x.dim() in (4, 5):
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    with torch.autocast(device, dtype=torch.bfloat16):
        with torch.no_grad():
            ref, out = model(x), converted(x)
        assert out.dtype == ref.dtype
        _close(out.float(), ref.float(), tol=3e-2)
        y = converted(x)
    y.float().square().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == p.dtype for p in converted.parameters())
