"""The SR evaluation protocol: MATLAB imresize, BT.601 Y, PSNR/SSIM, and the published bicubic figures.

Independent references: the MATLAB-made ``*_LR.png`` files of Set5/Set14, a slow direct-loop float64 imresize
written here, ``skimage.metrics.structural_similarity`` and ``skimage.color.rgb2ycbcr``, and the bicubic figures
published in the SR literature.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.color import rgb2ycbcr, ycbcr2rgb
from skimage.metrics import structural_similarity

from subpixel.imageio import write_image
from subpixel.sr.protocol import (
    bicubic_upscaler,
    find_test_images,
    imresize,
    load_test_image,
    make_lr,
    modcrop,
    psnr,
    quantize_uint8,
    read_image_exact,
    rgb_to_ycbcr,
    run_protocol,
    score_images,
    score_pair,
    ssim,
    to_y,
    ycbcr_to_rgb,
)

SCALES = (2, 3, 4)

# Y-PSNR (dB) of bicubic upscaling, ../shared/GUIDE.md §3 (the SRCNN / FSRCNN papers' tables).
GUIDE_BICUBIC_PSNR = {
    ("Set5", 2): 33.66,
    ("Set5", 3): 30.39,
    ("Set5", 4): 28.42,
    ("Set14", 2): 30.24,
    ("Set14", 3): 27.55,
    ("Set14", 4): 26.00,
}
# SSIM of bicubic upscaling as published in Kim et al., "Accurate Image Super-Resolution Using Very Deep
# Convolutional Networks" (VDSR, CVPR 2016), Table 2, and repeated by later papers.
PUBLISHED_BICUBIC_SSIM = {
    ("Set5", 2): 0.9299,
    ("Set5", 3): 0.8682,
    ("Set5", 4): 0.8104,
    ("Set14", 2): 0.8688,
    ("Set14", 3): 0.7742,
    ("Set14", 4): 0.7027,
}


# --------------------------------------------------------------------------------------------------------------
# A slow, direct float64 reference of MATLAB's bicubic imresize, one output pixel at a time.


def _keys_cubic(x: float) -> float:
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _resize_line_loop(line: list[float], out_len: int, scale: float, antialias: bool) -> list[float]:
    """Resample one line: output pixel centre ``i + 0.5`` maps to input ``(i + 0.5) / scale``; pixel j sits at
    ``j + 0.5``; the kernel is stretched by ``1 / scale`` when shrinking; outside pixels repeat the edge."""
    n = len(line)
    stretch = 1.0 / scale if (scale < 1 and antialias) else 1.0
    out = []
    for i in range(out_len):
        centre = (i + 0.5) / scale - 0.5  # 0-based input coordinate
        lo, hi = math.floor(centre - 2 * stretch) - 1, math.ceil(centre + 2 * stretch) + 1
        total = weight_sum = 0.0
        for j in range(lo, hi + 1):
            w = _keys_cubic((centre - j) / stretch) / stretch
            total += w * line[min(max(j, 0), n - 1)]
            weight_sum += w
        out.append(total / weight_sum)
    return out


def _imresize_loop(
    img: np.ndarray,
    out_shape: tuple[int, int],
    scales: tuple[float, float],
    antialias: bool = True,
    integer: bool = False,
) -> np.ndarray:
    """2-D (per channel) resize; the axis with the smaller scale first; optional MATLAB uint8 rounding."""
    a = img.astype(np.float64)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[..., None]
    order = [0, 1] if scales[0] <= scales[1] else [1, 0]
    for axis in order:
        moved = np.moveaxis(a, axis, 0)
        res = np.empty((out_shape[axis], *moved.shape[1:]))
        for k in range(moved.shape[1]):
            for c in range(moved.shape[2]):
                res[:, k, c] = _resize_line_loop(
                    list(moved[:, k, c]), out_shape[axis], scales[axis], antialias
                )
        a = np.moveaxis(res, 0, axis)
        if integer:
            a = np.clip(np.floor(a + 0.5), 0, 255)
    return a[..., 0] if squeeze else a


# --------------------------------------------------------------------------------------------------------------
# imresize against the MATLAB-made LR files


@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_imresize_reproduces_matlab_lr_files(shared_sr_data: Path, name: str) -> None:
    lines = []
    for r in SCALES:
        exact = rounded_float = clamped_float = 0
        total_float = count = 0.0
        for image in find_test_images(shared_sr_data / name, r):
            assert image.lr_path is not None
            hr = read_image_exact(image.hr_path)
            lr = read_image_exact(image.lr_path).astype(np.int64)
            assert hr.dtype == np.uint8 and hr.shape[0] % r == 0 and hr.shape[1] % r == 0
            # MATLAB's uint8 path: rounded after each pass.
            ours = imresize(hr, 1 / r)
            assert ours.dtype == np.uint8 and ours.shape == lr.shape
            exact = max(exact, int(np.abs(ours.astype(np.int64) - lr).max()))
            # float64 path, rounded once at the end (no clamp between the passes).
            diff = np.abs(quantize_uint8(imresize(hr / 255.0, 1 / r)).astype(np.int64) - lr)
            rounded_float = max(rounded_float, int(diff.max()))
            total_float += float(diff.sum())
            count += diff.size
            # float64 path with the clamp to [0, 1] that uint8 storage imposes between the passes.
            h, w = hr.shape[:2]
            first = np.clip(imresize(hr / 255.0, output_shape=(h // r, w)), 0.0, 1.0)  # height pass only
            second = imresize(first, output_shape=(h // r, w // r))
            clamped_float = max(
                clamped_float, int(np.abs(quantize_uint8(second).astype(np.int64) - lr).max())
            )
        lines.append(
            f"{name} x{r}: uint8 path max {exact}; float64 path max {rounded_float} mean {total_float / count:.4f}; "
            f"float64 with clamp between passes max {clamped_float} (8-bit levels)"
        )
        assert exact == 0, lines[-1]
        assert clamped_float <= 1, lines[-1]
        assert total_float / count < 0.2, lines[-1]
    print("\n" + "\n".join(lines))


# --------------------------------------------------------------------------------------------------------------
# The bicubic baseline reproduces the published figures


@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_bicubic_baseline_reproduces_published_figures(shared_sr_data: Path, name: str) -> None:
    lines = []
    for r in SCALES:
        result = run_protocol(bicubic_upscaler, shared_sr_data / name, r)
        assert len(result.images) == {"Set5": 5, "Set14": 14}[name]
        lines.append(
            f"{name} x{r}: bicubic {result.mean_psnr:.4f} dB / SSIM {result.mean_ssim:.4f} "
            f"(published {GUIDE_BICUBIC_PSNR[name, r]:.2f} / {PUBLISHED_BICUBIC_SSIM[name, r]:.4f})"
        )
        assert abs(result.mean_psnr - GUIDE_BICUBIC_PSNR[name, r]) <= 0.02, lines[-1]  # measured: <= 0.019
        assert abs(result.mean_ssim - PUBLISHED_BICUBIC_SSIM[name, r]) <= 0.002, lines[-1]
    print("\n" + "\n".join(lines))


def test_standard_layout_names_and_grayscale(shared_sr_data: Path) -> None:
    images = find_test_images(shared_sr_data / "Set5", 3)
    assert [i.name for i in images] == ["baby", "bird", "butterfly", "head", "woman"]
    bridge = next(i for i in find_test_images(shared_sr_data / "Set14", 2) if i.name == "bridge")
    hr, lr = load_test_image(bridge, 2)
    assert hr.shape[2] == 1 and lr.shape == (hr.shape[0] // 2, hr.shape[1] // 2, 1)
    # the LR files and LR made from the HR files agree bit for bit, so both routes score alike
    assert np.array_equal(make_lr(read_image_exact(bridge.hr_path), 2), lr)


# --------------------------------------------------------------------------------------------------------------
# imresize against the direct-loop reference


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((13, 17, 3), {"scale": 0.37}),
        ((13, 17), {"scale": 1.7}),
        ((9, 11, 1), {"scale": 2.5}),
        ((12, 10, 3), {"scale": (0.6, 1.3)}),
        ((12, 10, 3), {"scale": (1.3, 0.6)}),
        ((15, 16), {"output_shape": (7, 23)}),
        ((15, 16, 3), {"output_shape": (4, 5)}),
        ((10, 14), {"scale": 0.45, "antialias": False}),
        ((1, 7), {"scale": 3}),
        ((5, 1, 3), {"output_shape": (2, 4)}),
        ((24, 18), {"scale": 1 / 3}),
    ],
)
def test_imresize_matches_direct_loop(shape: tuple[int, ...], kwargs: dict) -> None:
    rng = np.random.default_rng(hash(shape) % 2**32)
    img = rng.random(shape)
    ours = imresize(img, **kwargs)
    if "output_shape" in kwargs:
        out_shape = kwargs["output_shape"]
        scales = (out_shape[0] / shape[0], out_shape[1] / shape[1])
    else:
        s = kwargs["scale"]
        scales = s if isinstance(s, tuple) else (s, s)
        out_shape = (math.ceil(scales[0] * shape[0]), math.ceil(scales[1] * shape[1]))
    ref = _imresize_loop(img, out_shape, scales, kwargs.get("antialias", True))
    assert ours.dtype == np.float64 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [(0.5, 0.5), (0.4, 1.6), (1.6, 0.4)])
def test_imresize_uint8_rounds_after_each_pass_in_matlab_order(scale: tuple[float, float]) -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (14, 15, 3), dtype=np.uint8)
    img[4:8, 4:8] = 255  # hard edges: the cubic overshoots, so the clamp between passes matters
    img[4:8, 8:12] = 0
    ours = imresize(img, scale)
    out_shape = (math.ceil(scale[0] * 14), math.ceil(scale[1] * 15))
    ref = _imresize_loop(img, out_shape, scale, integer=True)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref.astype(np.uint8))


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    sh=st.floats(0.15, 3.5),
    sw=st.floats(0.15, 3.5),
    antialias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_imresize_matches_direct_loop_on_random_cases(
    h: int, w: int, sh: float, sw: float, antialias: bool, seed: int
) -> None:
    img = np.random.default_rng(seed).random((h, w))
    ours = imresize(img, (sh, sw), antialias=antialias)
    out_shape = (math.ceil(sh * h), math.ceil(sw * w))
    ref = _imresize_loop(img, out_shape, (sh, sw), antialias)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-11)


def test_imresize_torch_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    img = rng.random((11, 13, 3))
    ref = imresize(img, 0.6)
    chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    out = imresize(chw[None], 0.6)  # (N, C, H, W), float64
    assert out.shape == (1, 3, 7, 8) and out.dtype == torch.float64
    np.testing.assert_allclose(out[0].numpy().transpose(1, 2, 0), ref, rtol=0, atol=1e-12)
    out32 = imresize(chw.float(), output_shape=(20, 5))
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(
        out32.numpy().transpose(1, 2, 0), imresize(img, output_shape=(20, 5)), atol=1e-5
    )
    u8 = rng.integers(0, 256, (9, 10), dtype=np.uint8)
    np.testing.assert_array_equal(imresize(torch.from_numpy(u8), 1 / 3).numpy(), imresize(u8, 1 / 3))


def test_imresize_properties() -> None:
    flat = np.full((10, 12, 3), 0.3)
    np.testing.assert_allclose(imresize(flat, 0.3), 0.3, atol=1e-14)  # weights sum to 1
    np.testing.assert_array_equal(imresize(flat, 1), flat)  # scale 1 is the identity
    u16 = np.full((6, 6), 40000, dtype=np.uint16)
    assert imresize(u16, 0.5).dtype == np.uint16 and int(imresize(u16, 0.5)[0, 0]) == 40000


# --------------------------------------------------------------------------------------------------------------
# Colour, metrics, quantisation


def test_rgb_to_ycbcr_matches_formula_and_skimage() -> None:
    rng = np.random.default_rng(5)
    rgb = rng.random((7, 9, 3))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    formula = np.stack(
        [
            16 + 65.481 * r + 128.553 * g + 24.966 * b,
            128 - 37.797 * r - 74.203 * g + 112.0 * b,
            128 + 112.0 * r - 93.786 * g - 18.214 * b,
        ],
        axis=-1,
    )
    ours = rgb_to_ycbcr(rgb)
    np.testing.assert_allclose(ours, formula, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours, rgb2ycbcr(rgb), rtol=0, atol=1e-10)
    np.testing.assert_allclose(ycbcr_to_rgb(ours), rgb, atol=1e-12)
    np.testing.assert_allclose(ycbcr_to_rgb(ours), ycbcr2rgb(ours), atol=1e-10)
    u8 = (rgb * 255).round().astype(np.uint8)
    np.testing.assert_allclose(rgb_to_ycbcr(u8), rgb_to_ycbcr(u8 / 255.0), atol=1e-12)
    chw = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    np.testing.assert_allclose(rgb_to_ycbcr(chw, channel_axis=0).numpy().transpose(1, 2, 0), ours, atol=1e-12)
    np.testing.assert_allclose(to_y(rgb), formula[..., 0], atol=1e-12)
    np.testing.assert_allclose(to_y(rgb[..., :1]), rgb[..., 0] * 255, atol=1e-12)  # grayscale: its own Y
    np.testing.assert_allclose(to_y(rgb[..., 0]), rgb[..., 0] * 255, atol=1e-12)


@pytest.mark.parametrize("border", [0, 3])
def test_ssim_matches_skimage(border: int) -> None:
    rng = np.random.default_rng(6)
    yy, xx = np.mgrid[0:48, 0:40]
    a = 128 + 80 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 10, (48, 40))
    b = a + rng.normal(0, 15, a.shape)
    crop = (slice(border, 48 - border), slice(border, 40 - border))
    ref = structural_similarity(
        a[crop], b[crop], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(a, b, border=border) == pytest.approx(ref, abs=1e-10)
    assert ssim(a, a, border=border) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_skimage_on_a_real_image(shared_sr_data: Path) -> None:
    image = find_test_images(shared_sr_data / "Set5", 4)[0]
    hr, lr = load_test_image(image, 4)
    y_hr, y_sr = to_y(hr), to_y(quantize_uint8(bicubic_upscaler(lr, 4)))
    ref = structural_similarity(
        y_hr[4:-4, 4:-4],
        y_sr[4:-4, 4:-4],
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert ssim(y_hr, y_sr, border=4) == pytest.approx(ref, abs=1e-10)


def test_psnr_definition() -> None:
    rng = np.random.default_rng(7)
    a = rng.random((20, 22)) * 255
    b = a + rng.normal(0, 3, a.shape)
    mse = np.mean((a[2:-2, 2:-2] - b[2:-2, 2:-2]) ** 2)
    assert psnr(a, b, border=2) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-12)
    assert psnr(a / 255, b / 255, border=2, data_range=1.0) == pytest.approx(psnr(a, b, border=2), abs=1e-9)
    assert psnr(a, a, border=0) == math.inf


def test_quantize_uint8_rounds_half_up_and_clamps() -> None:
    x = np.array([-1.0, 0.0, 0.5 / 255, 1.5 / 255, 0.49 / 255, 254.5 / 255, 1.0, 3.0])
    np.testing.assert_array_equal(quantize_uint8(x), [0, 0, 1, 2, 0, 255, 255, 255])
    np.testing.assert_array_equal(quantize_uint8(torch.from_numpy(x)).numpy(), quantize_uint8(x))


def test_score_pair_steps() -> None:
    rng = np.random.default_rng(8)
    hr = rng.integers(0, 256, (30, 33, 3), dtype=np.uint8)
    sr = np.clip(hr / 255.0 + rng.normal(0, 0.02, hr.shape), -0.1, 1.1)
    s = score_pair(hr, sr, 3)
    sr8 = np.clip(np.floor(np.clip(sr, 0, 1) * 255 + 0.5), 0, 255) / 255
    y_hr = 16 + (65.481 * hr[..., 0] + 128.553 * hr[..., 1] + 24.966 * hr[..., 2]) / 255
    y_sr = 16 + 65.481 * sr8[..., 0] + 128.553 * sr8[..., 1] + 24.966 * sr8[..., 2]
    mse = np.mean((y_hr[3:-3, 3:-3] - y_sr[3:-3, 3:-3]) ** 2)
    assert s.psnr == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-10)
    assert s.ssim == pytest.approx(ssim(y_hr, y_sr, border=3), abs=1e-12)
    # a Y model's output: the plane Y / 255, rounded to 8 bits on the Y scale
    y_plane = y_sr / 255.0
    mse_y = np.mean((y_hr[3:-3, 3:-3] - np.floor(y_sr[3:-3, 3:-3] + 0.5)) ** 2)
    assert score_pair(hr, y_plane, 3).psnr == pytest.approx(10 * np.log10(255**2 / mse_y), abs=1e-10)
    assert score_pair(hr, y_plane[..., None], 3) == score_pair(hr, y_plane, 3)
    # an RGB output for a grayscale image is scored by its channel mean
    gray = hr[..., :1]
    assert score_pair(gray, sr, 3) == score_pair(gray, sr.mean(axis=2, keepdims=True), 3)


def test_run_protocol_on_a_plain_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:50, 0:47]
    smooth = 0.5 + 0.4 * np.sin(xx / 6.0)[..., None] * np.cos(yy / 9.0)[..., None] * [1.0, 0.8, 0.6]
    write_image(tmp_path / "b_color.png", smooth)
    write_image(tmp_path / "a_gray16.png", smooth[..., :1] + rng.normal(0, 0.01, (50, 47, 1)), bit_depth=16)
    (tmp_path / "notes.txt").write_text("not an image")
    result = run_protocol(bicubic_upscaler, tmp_path, 3)
    assert [s.name for s in result.images] == ["a_gray16", "b_color"]
    hr = modcrop(read_image_exact(tmp_path / "b_color.png"), 3)
    expected = score_pair(hr, bicubic_upscaler(make_lr(hr, 3), 3), 3)
    assert result.images[1].psnr == expected.psnr and result.images[1].ssim == expected.ssim
    assert result.mean_psnr == pytest.approx((result.images[0].psnr + result.images[1].psnr) / 2)
    gray = read_image_exact(tmp_path / "a_gray16.png")
    assert gray.dtype == np.uint16 and gray.shape == (50, 47, 1)


# --------------------------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_errors(tmp_path: Path) -> None:
    img = np.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="exactly one of scale and output_shape"):
        imresize(img)
    with pytest.raises(ValueError, match="exactly one of scale and output_shape"):
        imresize(img, 2, output_shape=(3, 3))
    for bad in (0, -1.0, float("nan"), (1.0, 2.0, 3.0), "2"):
        with pytest.raises(ValueError, match="scale must be a positive finite number"):
            imresize(img, bad)
    with pytest.raises(ValueError, match="output_shape must be two positive ints"):
        imresize(img, output_shape=(0, 3))
    with pytest.raises(ValueError, match=r"shape \(H, W\) or \(H, W, C\)"):
        imresize(np.zeros((2, 3, 4, 5)), 2)
    with pytest.raises(TypeError, match="int32"):
        imresize(np.zeros((4, 4), dtype=np.int32), 2)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        imresize([[0.0, 1.0]], 2)
    with pytest.raises(ValueError, match="same shape"):
        psnr(np.zeros((8, 8)), np.zeros((8, 9)), border=0)
    with pytest.raises(ValueError, match="border=4 crops away all"):
        psnr(np.zeros((8, 8)), np.zeros((8, 8)), border=4)
    with pytest.raises(ValueError, match="border must be an integer >= 0"):
        psnr(np.zeros((8, 8)), np.zeros((8, 8)), border=-1)
    with pytest.raises(ValueError, match="at least 11×11"):
        ssim(np.zeros((14, 30)), np.zeros((14, 30)), border=2)
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_ycbcr(np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="scale must be an integer >= 1"):
        modcrop(img, 0)
    with pytest.raises(ValueError, match="sr must have the shape of hr"):
        score_pair(np.zeros((30, 30, 3)), np.zeros((30, 29, 3)), 2)
    with pytest.raises(ValueError, match="does not exist"):
        find_test_images(tmp_path / "missing", 2)
    with pytest.raises(ValueError, match="holds no image files"):
        find_test_images(tmp_path, 2)
    write_image(tmp_path / "img_001_SRF_2_HR.png", np.zeros((30, 30, 3)))
    with pytest.raises(ValueError, match=r"scales \[2\], not for scale 3"):
        find_test_images(tmp_path, 3)
    broken = tmp_path / "img_002_SRF_2_HR.png"
    data = (tmp_path / "img_001_SRF_2_HR.png").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"img_002_SRF_2_HR\.png"):
        run_protocol(bicubic_upscaler, tmp_path, 2)
    broken.unlink()
    write_image(tmp_path / "img_001_SRF_2_LR.png", np.zeros((5, 4, 3)))
    with pytest.raises(ValueError, match=r"LR image has shape \(5, 4, 3\), expected \(15, 15, 3\)"):
        run_protocol(bicubic_upscaler, tmp_path, 2)
    (tmp_path / "img_001_SRF_2_LR.png").unlink()
    with pytest.raises(ValueError, match="upscaler returned shape"):
        run_protocol(lambda lr, r: lr, tmp_path, 2)


def test_one_keys_kernel_in_the_package() -> None:
    """subpixel.bicubic.cubic is the only definition of Keys' kernel (and interpolation_taps of its phase taps);
    resizing, upscaling and the study use them."""
    import re

    import subpixel
    import subpixel.bicubic
    import subpixel.sr.resize
    import subpixel.study.blocks
    import subpixel.upscaling.image

    assert subpixel.study.blocks.cubic is subpixel.bicubic.cubic
    assert subpixel.sr.resize.cubic is subpixel.bicubic.cubic
    # the upscaler's bicubic planes and the study's resamplers share one function for the phase taps too
    assert subpixel.upscaling.image.interpolation_taps is subpixel.bicubic.interpolation_taps
    assert subpixel.study.blocks.interpolation_taps is subpixel.bicubic.interpolation_taps
    root = Path(subpixel.__file__).parent
    # a definition of the kernel, or Keys' coefficients written out
    kernel = re.compile(r"def _?(keys_)?cubic\(|2\.5 \* \w+2|\(a \+ 3\)")
    defining = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py") if kernel.search(p.read_text("utf-8"))
    )
    assert defining == ["bicubic.py"]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_border_crop_is_exactly_the_scale(scale: int) -> None:
    """The protocol scores the pixels at distance >= r from the border and none closer: an error on the ring at
    distance r - 1 is invisible, the same error on the ring at distance r gives the hand-computed PSNR."""
    rng = np.random.default_rng(scale)
    h, w = 10 * scale, 11 * scale
    hr8 = rng.integers(0, 201, (h, w, 3)).astype(np.float64)  # room for +8 levels without clipping
    lr = np.zeros((h // scale, w // scale, 3))

    def ring(d: int) -> np.ndarray:
        mask = np.zeros((h, w), dtype=bool)
        mask[d, d : w - d] = mask[h - 1 - d, d : w - d] = True
        mask[d : h - d, d] = mask[d : h - d, w - 1 - d] = True
        return mask

    def score_with_error_on(d: int) -> float:
        sr = hr8.copy()
        sr[ring(d)] += 8.0
        scored = list(score_images(lambda _lr, _r: sr / 255.0, [(hr8 / 255.0, lr)], scale))
        return scored[0].score.psnr

    assert score_with_error_on(scale - 1) == math.inf
    inner_h, inner_w = h - 2 * scale, w - 2 * scale
    ring_pixels = 2 * inner_h + 2 * inner_w - 4
    mse = ring_pixels * (219.0 * 8 / 255) ** 2 / (inner_h * inner_w)  # Y = 16 + (65.481 + 128.553 + 24.966)·v
    assert score_with_error_on(scale) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-9)
