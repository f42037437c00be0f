"""``subpixel.upscale(image, scale)``: the one-call Python API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import subpixel
from subpixel.cli import main
from subpixel.imageio import load_image
from subpixel.sr.models import ESPCN, save


@pytest.fixture(scope="module")
def tiny() -> ESPCN:
    torch.manual_seed(0)
    return ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval()


def _photo(h: int = 9, w: int = 7, c: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    planes = [0.5 + 0.4 * np.sin(3 * xx + 2 * yy + k) for k in range(c)]
    return np.round(np.stack(planes, -1) * 255).astype(np.uint8)


def test_it_is_the_command_lines_pixels(tmp_path: Path, tiny: ESPCN) -> None:
    weights = save(tiny, tmp_path / "w.safetensors")
    rgb = _photo()
    Image.fromarray(rgb).save(tmp_path / "in.png")
    assert main(["upscale", str(tmp_path / "in.png"), "--weights", str(weights), "--quiet"]) == 0
    from_file = np.asarray(Image.open(tmp_path / "in_x2.png"))
    np.testing.assert_array_equal(subpixel.upscale(rgb, weights=weights), from_file)
    np.testing.assert_array_equal(subpixel.upscale(rgb, model=tiny), from_file)
    np.testing.assert_array_equal(
        np.asarray(subpixel.upscale(Image.open(tmp_path / "in.png"), model=tiny)), from_file
    )


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16", "P"])
def test_pil_images_come_back_as_pil_images(mode: str, tiny: ESPCN) -> None:
    rgba = _photo(c=4)
    if mode == "I;16":
        image = Image.fromarray(rgba[..., 0].astype(np.uint16) * 257)
    else:
        image = Image.fromarray(rgba, "RGBA").convert(mode)
    out = subpixel.upscale(image, model=tiny)
    assert isinstance(out, Image.Image)
    assert out.size == (14, 18)
    assert out.mode == ("RGB" if mode == "P" else mode)


def test_numpy_keeps_layout_and_dtype(tiny: ESPCN) -> None:
    rgb = _photo()
    u8 = subpixel.upscale(rgb, model=tiny)
    assert u8.shape == (18, 14, 3) and u8.dtype == np.uint8
    u16 = subpixel.upscale(rgb.astype(np.uint16) * 257, model=tiny)
    assert u16.dtype == np.uint16 and np.abs(u16.astype(int) // 257 - u8).max() <= 1
    f64 = subpixel.upscale(rgb / 255.0, model=tiny)
    assert f64.dtype == np.float64 and 0 <= f64.min() and f64.max() <= 1
    assert np.abs(np.floor(f64 * 255 + 0.5) - u8).max() <= 1
    gray = subpixel.upscale(rgb[..., 0], model=tiny)
    assert gray.shape == (18, 14) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray, subpixel.upscale(rgb[..., :1], model=tiny)[..., 0])


def test_tensors_keep_layout_dtype_and_batch(tiny: ESPCN) -> None:
    rgb = _photo()
    chw = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    one = subpixel.upscale(chw, model=tiny)
    assert one.shape == (3, 18, 14) and one.dtype == torch.float32
    np.testing.assert_allclose(
        one.permute(1, 2, 0).numpy(), subpixel.upscale(rgb / np.float32(255), model=tiny), atol=0
    )
    batch = torch.stack([chw, chw.flip(-1)])
    out = subpixel.upscale(batch, model=tiny)
    assert out.shape == (2, 3, 18, 14)
    torch.testing.assert_close(out[1], subpixel.upscale(chw.flip(-1), model=tiny), rtol=0, atol=0)
    as_u8 = subpixel.upscale(torch.from_numpy(rgb).permute(2, 0, 1), model=tiny)
    assert as_u8.dtype == torch.uint8
    np.testing.assert_array_equal(as_u8.permute(1, 2, 0).numpy(), subpixel.upscale(rgb, model=tiny))
    assert subpixel.upscale(chw[0], model=tiny).shape == (18, 14)


def test_bad_inputs_are_refused_with_what_was_received(tiny: ESPCN) -> None:
    rgb = _photo()
    with pytest.raises(ValueError, match=r"must be in \[0, 1\].*divide 8-bit values by 255"):
        subpixel.upscale(rgb.astype(np.float32), model=tiny)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        subpixel.upscale(torch.from_numpy(rgb).permute(2, 0, 1).float(), model=tiny)
    with pytest.raises(TypeError, match="got dtype int32"):
        subpixel.upscale(rgb.astype(np.int32), model=tiny)
    with pytest.raises(TypeError, match=r"got builtins\.list"):
        subpixel.upscale(rgb.tolist(), model=tiny)
    with pytest.raises(ValueError, match=r"got \(9, 7, 5\)"):
        subpixel.upscale(np.zeros((9, 7, 5), np.uint8), model=tiny)
    with pytest.raises(ValueError, match=r"×2, but scale=3"):
        subpixel.upscale(rgb, 3, model=tiny)
    with pytest.raises(ValueError, match="not both"):
        subpixel.upscale(rgb, model=tiny, weights="w.safetensors")


def test_scale_comes_from_the_weights_and_is_needed_for_the_bundled(tmp_path: Path, tiny: ESPCN) -> None:
    weights = save(tiny, tmp_path / "w.safetensors")
    assert subpixel.upscale(_photo(), weights=weights).shape == (18, 14, 3)
    assert subpixel.upscale(_photo(), model=tiny).shape == (18, 14, 3)
    assert subpixel.upscale(_photo(), 4).shape == (36, 28, 3)
    # as the command line's --scale: no silent default factor for the bundled weights
    for family in (None, "rep"):
        with pytest.raises(subpixel.SubpixelError, match=r"scale: needed with the bundled weights \(2, 3 or 4\)"):
            subpixel.upscale(_photo(), model=family)


def test_missing_pillow_names_the_install(tmp_path: Path) -> None:
    """With only the core package (no Pillow), the API says which extra to install, as the command line does."""
    code = (
        "import sys, numpy as np\n"
        "sys.modules['PIL'] = None  # as if Pillow were not installed\n"
        "import subpixel\n"
        "try:\n"
        "    subpixel.upscale(np.zeros((4, 4, 3), np.uint8), scale=2)\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(type(exc).__name__, exc.name, '|', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == (
        "ModuleNotFoundError PIL | subpixel.upscale needs pillow, which is not installed: "
        "pip install '.[sr]' in a clone of subpixel (or '.[all]' for everything)"
    ), done.stdout + done.stderr


def test_repeated_calls_reuse_one_prepared_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled network is loaded, copied and prepared once per settings, not at every call."""
    from subpixel.upscaling import api, image

    api._cached_upscaler.cache_clear()
    built: list[object] = []
    real = image.make_runner
    monkeypatch.setattr(image, "make_runner", lambda *a, **k: built.append(k) or real(*a, **k))
    photo = _photo()
    first = subpixel.upscale(photo, 2, device="cpu")
    for _ in range(3):
        np.testing.assert_array_equal(subpixel.upscale(photo, 2, device="cpu"), first)
    assert len(built) == 1
    subpixel.upscale(photo, 2, device="cpu", precision="fp32")  # other settings: another prepared network
    assert len(built) == 2


def test_device_is_checked() -> None:
    with pytest.raises(subpixel.SubpixelError, match="device: expected auto, cpu, cuda or cuda:N, got 'gpu'"):
        subpixel.upscale(_photo(), 2, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(subpixel.SubpixelError, match="no CUDA GPU is available"):
            subpixel.upscale(_photo(), 2, device="cuda:1")
    assert subpixel.upscale(torch.rand(1, 6, 5), 2, device="cpu").shape == (1, 12, 10)


def test_a_changed_model_is_seen(tiny: ESPCN) -> None:
    net = ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval()
    before = subpixel.upscale(_photo(), model=net)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5)
    assert not np.array_equal(subpixel.upscale(_photo(), model=net), before)


def test_import_stays_light_and_upscale_is_a_plain_function(tmp_path: Path) -> None:
    code = (
        "import sys, types, subpixel\n"
        "assert 'PIL' not in sys.modules and 'subpixel.upscaling' not in sys.modules\n"
        "import subpixel.upscaling.image, subpixel.upscaling.tiling\n"
        "from subpixel.upscaling import tiled_upscale\n"
        "assert isinstance(subpixel.upscale, types.FunctionType), type(subpixel.upscale)\n"
        "import numpy as np\n"
        "print(subpixel.upscale(np.zeros((4, 5), np.uint8), 2).shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(8, 10)"


def test_file_and_api_agree_for_sixteen_bit_gray(tmp_path: Path, tiny: ESPCN) -> None:
    gray16 = _photo()[..., 0].astype(np.uint16) * 257
    Image.fromarray(gray16).save(tmp_path / "g.png")
    from subpixel.upscaling.image import Upscaler, upscale_file

    upscale_file(tmp_path / "g.png", tmp_path / "g2.png", Upscaler(tiny, precision="auto"))  # the API default
    expected = load_image(tmp_path / "g2.png")
    assert expected.bit_depth == 16
    got = subpixel.upscale(gray16, model=tiny)
    np.testing.assert_array_equal(got, np.round(expected.pixels[..., 0] * 65535).astype(np.uint16))


@pytest.mark.parametrize("kernel", [True, False], ids=["compiled-kernel", "torch-ops"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_runners_prelu_is_torchs_bit_for_bit(dtype: torch.dtype, kernel: bool) -> None:
    """The in-place PReLU of the runner (fast in bf16) equals torch's own PReLU, also for -0, NaN and one slope,
    with the compiled kernel and with the torch ops that replace it without a compiler."""
    from subpixel import native
    from subpixel.upscaling.image import inplace_activations

    torch.manual_seed(0)
    for slopes in (27, 1):
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 27, 3), torch.nn.PReLU(slopes)).to(dtype).eval()
        torch.nn.init.uniform_(net[1].weight, -0.7, 0.9)
        x = torch.randn(2, 3, 9, 11, dtype=dtype).contiguous(memory_format=torch.channels_last)
        x[0, 0, :2, :2] = torch.tensor([[0.0, -0.0], [float("nan"), -1e30]], dtype=dtype)
        with torch.inference_mode():
            want = net(x)
            assert inplace_activations(net) == 1 and type(net[1]) is not torch.nn.PReLU
            with native.enabled(kernel):
                got = net(x)
        assert torch.equal(got.isnan(), want.isnan())
        assert torch.equal(got.nan_to_num(0.5), want.nan_to_num(0.5))
