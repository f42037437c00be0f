"""The image path of `subpixel upscale`: colour handling against a float64 numpy reference, tiling, files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from subpixel.imageio import ImageReadError, load_image, quantize, write_image
from subpixel.sr.models import ESPCN
from subpixel.sr.protocol import imresize, rgb_to_ycbcr, ycbcr_to_rgb
from subpixel.upscaling.image import (
    Upscaler,
    bicubic_upscale,
    inplace_activations,
    make_runner,
    upscale_file,
    upscale_pixels,
)

RNG = np.random.default_rng(1)


def _tiny(scale: int, channels: str = "y") -> ESPCN:
    torch.manual_seed(scale)
    return ESPCN(scale, channels=channels, widths=(6,), kernel_sizes=(5, 3)).eval()


def _smooth(h: int, w: int, c: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    planes = [0.5 + 0.4 * np.sin(3 * xx + 2 * yy + k) for k in range(c)]
    return np.stack(planes, -1).astype(np.float32)


def _reference(pixels: np.ndarray, model: ESPCN) -> np.ndarray:
    """ESPCN's colour handling in float64 numpy: model on Y/255, bicubic Cb/Cr and alpha, back to RGB."""
    r = model.scale
    net = _copy64(model)
    c = pixels.shape[-1]
    colour = pixels[..., :1].repeat(3, -1) if c in (1, 2) else pixels[..., :3]
    colour = colour.astype(np.float64)
    if model.channels == "y":
        ycbcr = rgb_to_ycbcr(colour)
        with torch.no_grad():
            y = net(torch.from_numpy(ycbcr[..., 0] / 255.0)[None, None])[0, 0].numpy() * 255.0
        chroma = imresize(ycbcr[..., 1:], r)
        out = ycbcr_to_rgb(np.concatenate([y[..., None], chroma], -1))
    else:
        with torch.no_grad():
            out = net(torch.from_numpy(colour).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    if c in (1, 2):
        out = (rgb_to_ycbcr(out)[..., :1] - 16.0) / 219.0
    if c in (2, 4):
        out = np.concatenate([out, imresize(pixels[..., -1:].astype(np.float64), r)], -1)
    return out


def _copy64(model: ESPCN) -> ESPCN:
    net = ESPCN.from_config(model.config, dtype=torch.float64)
    net.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    return net.eval()


@pytest.mark.parametrize("channels_in", [1, 2, 3, 4])
@pytest.mark.parametrize("scale", [2, 3])
def test_y_model_matches_float64_reference(channels_in: int, scale: int) -> None:
    model = _tiny(scale)
    pixels = RNG.random((11, 9, channels_in), dtype=np.float32)
    out = upscale_pixels(pixels, model, tile=4)
    assert out.shape == (11 * scale, 9 * scale, channels_in) and out.dtype == np.float32
    np.testing.assert_allclose(out, _reference(pixels, model), atol=2e-5)


@pytest.mark.parametrize("channels_in", [3, 4])
def test_rgb_model_matches_float64_reference(channels_in: int) -> None:
    model = _tiny(2, "rgb")
    pixels = RNG.random((8, 10, channels_in), dtype=np.float32)
    np.testing.assert_allclose(upscale_pixels(pixels, model, tile=3), _reference(pixels, model), atol=2e-5)


def test_tiled_pipeline_equals_untiled() -> None:
    model = _tiny(3)
    pixels = RNG.random((23, 19, 4), dtype=np.float32)
    whole = upscale_pixels(pixels, model, tile=1000)
    for tile in (4, 9):
        assert np.abs(upscale_pixels(pixels, model, tile=tile) - whole).max() <= 1e-6
    assert np.abs(upscale_pixels(pixels, model, max_memory="600K") - whole).max() <= 1e-6


def test_quantized_output_equals_quantized_float() -> None:
    """8/16-bit output is the float output rounded: exactly with the torch ops (one runner for both, so the same
    float32 sums); with the one-pass colour kernel (YCbCr -> RGB in float64) to one level."""
    from subpixel import native

    model = _tiny(2)
    runner = make_runner(model)
    pixels = _smooth(13, 7, 3)
    with native.enabled(False):  # the torch bicubic here as below (the kernel agrees to float32 rounding)
        float_out = upscale_pixels(pixels, model, runner=runner, tile=5)
    for bits in (8, 16):
        with native.enabled(False):
            composed = upscale_pixels(pixels, model, runner=runner, tile=5, bit_depth=bits)
        np.testing.assert_array_equal(composed, quantize(float_out, bits))
        one_pass = upscale_pixels(pixels, model, runner=runner, tile=5, bit_depth=bits)
        assert np.abs(one_pass.astype(np.int64) - composed.astype(np.int64)).max() <= 1


@pytest.mark.parametrize("channels_in", [3, 4])
@pytest.mark.parametrize("bits", [8, 16])
def test_colour_rounded_in_one_pass_equals_the_composed_path(channels_in: int, bits: int) -> None:
    """8/16-bit colour from a Y model: YCbCr -> RGB and the rounding in one native pass (float64 affine) agree
    with the composed torch path (float32 affine, then quantize) to one level, on all but a few samples at a
    rounding boundary, and with the float64 reference; tiles change at most a level."""
    from subpixel import native

    model = _tiny(3)
    pixels = (RNG.random((29, 31, channels_in)) * 255).astype(np.uint8)
    fused = upscale_pixels(pixels, model, tile=1000, bit_depth=bits)
    with native.enabled(False):
        composed = upscale_pixels(pixels, model, tile=1000, bit_depth=bits)
    if not native.available():
        pytest.skip(f"the compiled kernel is unavailable here: {native.info()['error']}")
    difference = np.abs(fused.astype(np.int64) - composed.astype(np.int64))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01  # alpha: the bicubic kernel vs torch's conv
    reference = quantize(np.clip(_reference(pixels.astype(np.float32) / 255.0, model), 0, 1), bits)
    assert np.abs(fused.astype(np.int64) - reference.astype(np.int64)).max() <= 1
    tiled = upscale_pixels(pixels, model, tile=7, bit_depth=bits)  # float32 sums in other tile shapes
    assert np.abs(tiled.astype(np.int64) - fused.astype(np.int64)).max() <= 1


def test_onnxruntime_and_bf16_runners_agree_with_torch() -> None:
    model = _tiny(2)
    x = torch.rand(1, 1, 12, 17)
    with torch.no_grad():
        ref = model(x)
    assert (make_runner(model, backend="onnxruntime", threads=1)(x) - ref).abs().max().item() < 1e-5
    assert (make_runner(model, channels_last=False)(x) - ref).abs().max().item() < 1e-6
    assert (make_runner(model, precision="bf16")(x) - ref).abs().max().item() < 0.05
    with pytest.raises(ValueError, match="backend must be"):
        make_runner(model, backend="tensorrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fp32 only"):
        make_runner(model, backend="onnxruntime", precision="bf16")


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [(1, 1), (2, 5), (9, 4)])
def test_bicubic_upscale_equals_protocol_imresize(scale: int, size: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    reference = imresize(x.numpy().transpose(2, 3, 0, 1).reshape(*size, 6), scale)  # numpy path, (H, W, C)
    ours = (
        bicubic_upscale(x, scale).numpy().transpose(2, 3, 0, 1).reshape(size[0] * scale, size[1] * scale, 6)
    )
    np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_inplace_activations_only_after_convolutions_in_sequential() -> None:
    class Residual(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = torch.nn.Tanh()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.act(x)  # in place here would be wrong

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(), torch.nn.Tanh(), Residual())
    x = torch.rand(1, 1, 6, 6)
    with torch.no_grad():
        before = net(x)
        assert inplace_activations(net) == 1
        assert torch.equal(net(x), before)
    assert type(net[2]) is torch.nn.Tanh and type(net[3].act) is torch.nn.Tanh


@pytest.mark.slow  # compiling takes ~10 s on 2 cores
def test_compiled_runner_compiles_and_agrees() -> None:
    """The compiled runner must really compile: its silent-ish fallback to eager (a warning) fails the test."""
    model = _tiny(2)
    x = torch.rand(1, 1, 8, 9)
    with torch.no_grad():
        ref = model(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = make_runner(model, compile=True)(x)
    fallbacks = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert not fallbacks, f"compilation fell back to eager: {fallbacks}"
    assert (out - ref).abs().max().item() < 1e-5


def test_integer_samples_are_read_by_dtype_and_float_must_be_in_unit_range() -> None:
    """uint8 from ``np.asarray(Image.open(...))`` came out posterised (55 % of values 255)."""
    from subpixel.sr import pretrained

    model = pretrained(2)
    rgb8 = np.round(_smooth(9, 7, 3) * 255).astype(np.uint8)
    expected = upscale_pixels(rgb8.astype(np.float32) / np.float32(255), model, bit_depth=8)
    got = upscale_pixels(rgb8, model, bit_depth=8)
    np.testing.assert_array_equal(got, expected)
    nearest = rgb8.repeat(2, 0).repeat(2, 1).astype(np.float64)
    assert np.abs(got - nearest).mean() < 10  # the picture, not a posterised one (levels 0 and 255)
    rgb16 = rgb8.astype(np.uint16) * 257
    np.testing.assert_array_equal(upscale_pixels(rgb16, model, bit_depth=8), expected)
    with pytest.raises(
        ValueError, match=r"must be in \[0, 1\], got values from \d+ to 2\d\d; divide 8-bit values by 255"
    ):
        upscale_pixels(rgb8.astype(np.float32), model, bit_depth=8)
    with pytest.raises(ValueError, match="NaN"):
        upscale_pixels(np.full((4, 4, 3), np.nan, np.float32), model)
    with pytest.raises(TypeError, match="got dtype int32"):
        upscale_pixels(rgb8.astype(np.int32), model)


def test_compile_fallback_warns_and_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the test above refuses: a model Inductor cannot compile runs eagerly, with a warning."""

    def broken(*args: object, **kwargs: object) -> object:
        def fail(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    model = _tiny(2)
    x = torch.rand(1, 1, 8, 9)
    with pytest.warns(
        UserWarning, match=r"torch.compile failed \(RuntimeError: no compiler\); running eagerly"
    ):
        out = make_runner(model, compile=True)(x)
    with torch.no_grad():
        assert (out - model(x)).abs().max().item() < 1e-6


def test_errors() -> None:
    model = _tiny(2)
    with pytest.raises(ValueError, match=r"pixels must be a numpy array \(H, W, C\)"):
        upscale_pixels(np.zeros((4, 4, 5), np.float32), model)
    with pytest.raises(ValueError, match="bit_depth must be None, 8 or 16"):
        upscale_pixels(np.zeros((4, 4, 3), np.float32), model, bit_depth=12)
    net = torch.nn.Conv2d(1, 4, 3)
    net.scale = 2  # type: ignore[assignment]
    with pytest.raises(ValueError, match="channels 'y' or 'rgb'"):
        upscale_pixels(np.zeros((4, 4, 3), np.float32), net)


@pytest.mark.parametrize(
    ("mode", "suffix", "out_suffix", "bit_depth", "expected_mode", "expected_bits"),
    [
        ("L", ".png", ".png", 8, "L", 8),
        ("LA", ".png", ".png", 8, "LA", 8),
        ("RGB", ".jpg", ".jpg", 8, "RGB", 8),
        ("RGBA", ".webp", ".webp", 8, "RGBA", 8),
        ("RGB", ".tif", ".tif", 16, "RGB", 16),
        ("L", ".png", ".png", 16, "L", 16),
        ("RGBA", ".png", ".jpg", 8, "RGB", 8),  # alpha dropped for JPEG, with a warning
        ("RGB", ".png", ".bmp", 16, "RGB", 8),  # 16-bit input, 8-bit output format
    ],
)
def test_upscale_file_keeps_layout_and_depth(
    tmp_path: Path,
    mode: str,
    suffix: str,
    out_suffix: str,
    bit_depth: int,
    expected_mode: str,
    expected_bits: int,
) -> None:
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    pixels = _smooth(9, 12, channels)
    source = tmp_path / f"in{suffix}"
    write_image(source, pixels, bit_depth=bit_depth)
    target = tmp_path / f"out{out_suffix}"
    warnings: list[str] = []
    upscaler = Upscaler(_tiny(2), tile=5)
    result = upscale_file(source, target, upscaler, warn=warnings.append)
    image = load_image(target)
    assert (image.width, image.height) == result.size_out == (24, 18)
    assert (image.mode, image.bit_depth) == (expected_mode, expected_bits)
    assert bool(warnings) == (mode == "RGBA" and out_suffix == ".jpg")
    # the file holds the image path's result (through the lossy codecs, approximately)
    loaded = load_image(source).pixels
    lr = loaded[..., [0, 3]] if mode == "LA" else loaded
    expected = upscale_pixels(lr, upscaler.model, tile=5)
    if expected_mode == "LA":
        expected = np.concatenate([expected[..., :1].repeat(3, -1), expected[..., 1:]], -1)
    expected = expected[..., : image.pixels.shape[-1]]
    exact = out_suffix in (".png", ".tif", ".bmp")
    tolerance = (0.5 / (65535 if expected_bits == 16 else 255) + 1e-6) if exact else 6 / 255
    error = np.abs(image.pixels - np.clip(expected, 0, 1))
    assert (error.max() if exact else error.mean()) <= tolerance


def test_upscale_file_honours_exif_orientation(tmp_path: Path) -> None:
    array = quantize(_smooth(6, 10, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show
    source = tmp_path / "rot.png"
    Image.fromarray(array).save(source, exif=exif)
    result = upscale_file(source, tmp_path / "rot_x2.png", Upscaler(_tiny(2)))
    assert result.size_in == (6, 10) and result.size_out == (12, 20)


def test_upscale_file_refuses_overwrite_and_bad_input(tmp_path: Path) -> None:
    source = tmp_path / "a.png"
    write_image(source, _smooth(5, 5, 3))
    target = tmp_path / "b.png"
    target.write_bytes(b"precious")
    upscaler = Upscaler(_tiny(2))
    with pytest.raises(FileExistsError, match="exists; pass force=True"):
        upscale_file(source, target, upscaler)
    assert target.read_bytes() == b"precious"
    upscale_file(source, target, upscaler, force=True)
    assert load_image(target).width == 10
    with pytest.raises(ValueError, match="over its input"):
        upscale_file(source, source, upscaler, force=True)
    broken = tmp_path / "broken.png"
    broken.write_bytes(source.read_bytes()[:60])
    with pytest.raises(ImageReadError, match=r"broken\.png"):
        upscale_file(broken, tmp_path / "c.png", upscaler)
    assert not (tmp_path / "c.png").exists()
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        upscale_file(source, tmp_path / "d.png", Upscaler(_tiny(2), max_pixels=10))
