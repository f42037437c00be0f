"""precision="int8": the bundled networks with their 27→27 convolutions in oneDNN int8, against float references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from subpixel import native
from subpixel.cli import main
from subpixel.errors import SubpixelError
from subpixel.imageio import load_image, write_image
from subpixel.sr.models import ESPCN, pretrained, pretrained_scales
from subpixel.upscaling import int8
from subpixel.upscaling.image import make_runner, resolve_precision

pytestmark = pytest.mark.skipif(
    not hasattr(torch.ops.onednn, "qconv2d_pointwise"),
    reason="this PyTorch has no quantized oneDNN convolution",
)


def _smooth_y(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A photograph-like luma plane ``(1, 1, h, w)`` in the network's range (edges, gradients, a little noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = (
        0.5 + 0.2 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + 0.15 * (xx + 2 * yy > w) + 0.02 * rng.random((h, w))
    )
    return torch.from_numpy((16 + 219 * np.clip(img, 0, 1)) / 255).float()[None, None]


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.double() - b.double()).pow(2).mean()))


@pytest.mark.usefixtures("copy_kernel")
@pytest.mark.parametrize("pixels", [16 * 5, 16 * 5 + 7, 3])
def test_prelu_quantize_matches_a_float64_reference(pixels: int) -> None:
    gen = torch.Generator().manual_seed(pixels)
    x = (torch.randn(1, 27, 1, pixels, generator=gen) * 2).to(torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    slope = torch.randn(27, generator=gen) * 0.5
    scale, zero = 0.013, 97
    out = int8._PReLUQuantize(slope, scale, zero)(x)
    ref = (F.prelu(x.double(), slope.double()) / scale).round() + zero
    ref = ref.clamp(0, 255)
    assert out.dtype == torch.uint8 and out.is_contiguous(memory_format=torch.channels_last)
    diff = (out.double() - ref).abs()
    assert diff.max() <= 1  # float32 arithmetic may round a tie of the float64 value the other way
    assert (diff == 0).double().mean() > 0.99
    assert (ref == 0).any() and (ref == 255).any()  # both ends clamped, checked


def test_native_and_torch_activation_agree_exactly() -> None:
    if not native.available():
        pytest.skip(f"compiled kernel unavailable: {native.info()['error']}")
    x = (torch.randn(2, 27, 9, 13) * 3).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    act = int8._PReLUQuantize(torch.rand(27) - 0.2, 0.02, 128)
    with_kernel = act(x)
    with native.enabled(False):
        composed = act(x)
    assert torch.equal(with_kernel, composed)


def test_int8_convolution_is_the_float_convolution_of_its_quantized_operands() -> None:
    gen = torch.Generator().manual_seed(1)
    w, b = torch.randn(27, 27, 3, 3, generator=gen) * 0.1, torch.randn(27, generator=gen) * 0.1
    scale, zero = 0.02, 100
    q = torch.randint(0, 256, (1, 27, 11, 14), generator=gen, dtype=torch.uint8)
    q = q.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = int8._Int8Conv(w, b, scale, zero)(q)
    w_scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127  # symmetric per output channel
    w_q = (w / w_scale).round().clamp(-128, 127) * w_scale
    want = F.conv2d((q.double() - zero) * scale, w_q.double(), b.double(), padding=1)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), want, rtol=2**-7, atol=1e-3)


def test_layers_and_equalization_keep_the_network() -> None:
    layers, slopes = int8.network_layers(pretrained(3).eval())
    model = pretrained(3).double().eval()
    x = torch.rand(1, 1, 12, 10, dtype=torch.float64)
    with torch.no_grad():
        want = model(x)
        as_parts = int8._float_network(
            x, [(w.double(), b.double()) for w, b in layers], [s.double() for s in slopes], 3
        )
        equalized = int8._float_network(x, [(w.double(), b.double()) for w, b in int8.equalize(layers)],
                                        [s.double() for s in slopes], 3)  # fmt: skip
    torch.testing.assert_close(as_parts, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(equalized, want, rtol=0, atol=1e-5)
    before = [w.abs().amax(dim=(1, 2, 3)) for w, _ in layers[:-1]]
    after = [w.abs().amax(dim=(1, 2, 3)) for w, _ in int8.equalize(layers)[:-1]]
    spread = [float(v.max() / v.min()) for v in before], [float(v.max() / v.min()) for v in after]
    assert sum(spread[1]) < sum(spread[0])  # the per-channel ranges are closer together


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_int8_runner_is_close_to_fp32(scale: int, single_thread: None) -> None:
    model = pretrained(scale).eval()
    x = _smooth_y(40, 52)
    with torch.no_grad():
        want = model(x)
    got = make_runner(model, precision="int8")(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    # quantization noise far below one 8-bit level (PSNR 48 dB: an RMS error of 1 level)
    assert _psnr(got, want) > 50
    # and tiles agree with the whole: the network is local (same arithmetic per pixel away from the tile's edge)
    part = make_runner(model, precision="int8")(x[..., :20, :])
    torch.testing.assert_close(part[..., : 10 * scale, :], got[..., : 10 * scale, :], rtol=0, atol=0)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_one_pass_tail_equals_the_composed_tail(scale: int) -> None:
    """The last PReLU, convolution, shuffle and skip in one kernel (native.LRConvShuffle) give the composed bf16
    path's output but for that path's rounding of the convolution to bfloat16 (half a bf16 step of the residual)."""
    if not native.available() or not native._state["lr_conv_available"]:
        pytest.skip(f"compiled kernel unavailable: {native.info()['error'] or 'no AVX-512 BF16'}")
    net = int8.int8_network(pretrained(scale))
    x = _smooth_y(30, 41)
    with torch.inference_mode():
        fused = net(x)
        with native.enabled(False):
            composed = net(x)
        residual = composed - torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    step = residual.abs().max().item() * 2.0**-8  # one bf16 step at the largest residual
    assert 0 < (fused - composed).abs().max().item() <= step


def test_every_bundled_scale_has_calibrated_ranges() -> None:
    for scale in pretrained_scales():
        assert int8.unsupported_reason(pretrained(scale)) is None, scale


def test_other_models_are_declined_with_the_reason() -> None:
    tiny = ESPCN(2, widths=(4,), kernel_sizes=(3, 3))
    with pytest.raises(SubpixelError, match=r"precision='int8'.*PReLU"):
        make_runner(tiny, precision="int8")
    changed = pretrained(2)
    with torch.no_grad():
        changed.features[0].bias.add_(1e-3)  # same shape, other weights: the stored ranges do not apply
    with pytest.raises(SubpixelError, match="calibrated activation ranges for the bundled networks only"):
        make_runner(changed, precision="int8")
    with pytest.raises(SubpixelError, match="CPU with the torch backend, got backend='onnxruntime'"):
        make_runner(pretrained(2), precision="int8", backend="onnxruntime")
    with pytest.raises(SubpixelError, match="precision must be 'fp32', 'bf16', 'int8' or 'auto', got 'int4'"):
        resolve_precision("int4")


def test_auto_picks_int8_only_where_it_applies() -> None:
    cpu = torch.device("cpu")
    bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    fallback = "bf16" if bf16 else "fp32"
    bundled = "int8" if bf16 and int8.cpu_supports_int8() else fallback
    assert resolve_precision("auto", "torch", cpu, pretrained(2)) == bundled
    assert resolve_precision("auto", "torch", cpu, ESPCN(2, widths=(4,), kernel_sizes=(3, 3))) == fallback
    assert resolve_precision("auto", "torch", cpu) == fallback
    assert resolve_precision("auto", "onnxruntime", cpu, pretrained(2)) == "fp32"


def test_int8_support_follows_the_cpu_flags() -> None:
    """On Linux the CPU's own flags say whether it has VNNI or AMX: the probe must agree (a probe that names a
    function this torch lacks would always answer no)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo to read the CPU flags from")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    has_op = hasattr(torch.ops.onednn, "qconv2d_pointwise") and hasattr(torch.ops.onednn, "qconv_prepack")
    expected = has_op and ("avx512_vnni" in flags or "amx_tile" in flags)
    assert int8.cpu_supports_int8() == expected


def test_command_line(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb = np.repeat(_smooth_y(24, 30)[0, 0, :, :, None].numpy(), 3, axis=2)
    source = tmp_path / "in.png"
    write_image(source, rgb)
    for precision in ("int8", "fp32"):
        target = tmp_path / f"{precision}.png"
        args = [
            "upscale",
            str(source),
            "-o",
            str(target),
            "--scale",
            "2",
            "--precision",
            precision,
            "--quiet",
        ]
        assert main(args) == 0
    a = load_image(tmp_path / "int8.png").pixels.astype(np.float64)
    b = load_image(tmp_path / "fp32.png").pixels.astype(np.float64)
    assert a.shape == (48, 60, 3) and np.abs(a - b).max() <= 2  # 8-bit levels
    code = main(["upscale", str(source), "-o", str(tmp_path / "t.png"), "--scale", "2", "--weights", str(weights),
                 "--precision", "int8", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert (
        code == 2
        and "precision='int8'" in err
        and "Traceback" not in err
        and len(err.strip().splitlines()) == 1
    )
