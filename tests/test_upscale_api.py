"""``subpixel.upscale(image, scale)``: the one-call Python API (issue 13, "what to build")."""

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


def test_scale_comes_from_the_weights_and_defaults_to_three_for_the_bundled(
    tmp_path: Path, tiny: ESPCN
) -> None:
    weights = save(tiny, tmp_path / "w.safetensors")
    assert subpixel.upscale(_photo(), weights=weights).shape == (18, 14, 3)
    assert subpixel.upscale(_photo()).shape == (27, 21, 3)
    assert subpixel.upscale(_photo(), 4).shape == (36, 28, 3)


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

    upscale_file(tmp_path / "g.png", tmp_path / "g2.png", Upscaler(tiny))
    expected = load_image(tmp_path / "g2.png")
    assert expected.bit_depth == 16
    got = subpixel.upscale(gray16, model=tiny)
    np.testing.assert_array_equal(got, np.round(expected.pixels[..., 0] * 65535).astype(np.uint16))
