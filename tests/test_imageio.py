"""Tests of subpixel.imageio: formats, bit depths, layouts, orientation, errors, atomic writes.

References are independent decoders/encoders: PIL's own arrays for 8-bit files, pypng and tifffile for
16-bit colour files, and ``PIL.ImageOps.exif_transpose`` for orientation.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import png
import pytest
import tifffile
from PIL import Image, ImageFile, ImageOps

from subpixel.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageReadError,
    apply_orientation,
    format_from_path,
    load_image,
    quantize,
    read_image,
    write_image,
)

RNG = np.random.default_rng(0)
LAYOUTS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _random(h: int, w: int, c: int) -> np.ndarray:
    return RNG.random((h, w, c), dtype=np.float32)


def _expected_pixels(pixels: np.ndarray) -> np.ndarray:
    """What load_image returns for pixels written with C channels (gray + alpha becomes RGBA)."""
    if pixels.shape[-1] == 2:
        return np.concatenate([np.repeat(pixels[..., :1], 3, axis=-1), pixels[..., 1:]], axis=-1)
    return pixels


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_lossless_round_trip_8bit(tmp_path: Path, fmt: str, layout: str) -> None:
    if fmt == "WEBP" and layout in ("L", "LA"):
        pytest.skip("WebP has no grayscale layout")
    if fmt == "BMP" and layout in ("LA", "RGBA"):
        with pytest.raises(ValueError, match="BMP cannot store an alpha channel"):
            write_image(tmp_path / "a.bmp", _random(2, 2, LAYOUTS[layout]))
        return
    pixels = _random(7, 9, LAYOUTS[layout])
    path = tmp_path / f"img.{fmt.lower()}"
    if fmt == "WEBP":
        array = quantize(pixels)
        Image.fromarray(array).save(path, lossless=True, exact=True)  # exact: keep RGB under alpha 0
    else:
        write_image(path, pixels)
    image = load_image(path)
    assert image.format == fmt
    assert image.bit_depth == 8
    assert image.has_alpha == (layout in ("LA", "RGBA"))
    assert image.mode == layout
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape[-1] in (1, 3, 4)
    # every pixel within half a quantization step of what was written
    np.testing.assert_allclose(image.pixels, _expected_pixels(pixels), atol=0.5 / 255 + 1e-6)
    # and exactly what PIL itself decodes (independent reference)
    with Image.open(path) as ref:
        ref_array = np.asarray(ref.convert("RGBA" if image.has_alpha else ("L" if layout == "L" else "RGB")))
    ref_float = ref_array.reshape(image.pixels.shape).astype(np.float32) / 255
    np.testing.assert_array_equal(image.pixels, ref_float)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_round_trip_16bit(tmp_path: Path, fmt: str, layout: str) -> None:
    pixels = _random(5, 6, LAYOUTS[layout])
    path = tmp_path / f"img16.{fmt.lower()}"
    write_image(path, pixels, bit_depth=16)
    image = load_image(path)
    assert (image.format, image.bit_depth, image.mode) == (fmt, 16, layout)
    np.testing.assert_allclose(image.pixels, _expected_pixels(pixels), atol=0.5 / 65535 + 1e-7)
    # 16 bits really kept: an 8-bit file could not be this close
    assert np.abs(image.pixels - _expected_pixels(pixels)).max() < 0.25 / 255


def test_16bit_colour_png_written_by_pypng(tmp_path: Path) -> None:
    array = RNG.integers(0, 65536, size=(4, 5, 3), dtype=np.uint16)
    path = tmp_path / "pypng.png"
    with open(path, "wb") as handle:
        png.from_array(array.reshape(4, 15), "RGB;16").write(handle)
    image = load_image(path)
    assert image.bit_depth == 16
    np.testing.assert_array_equal(image.pixels, array.astype(np.float32) / 65535)


def test_16bit_rgba_tiff_written_by_tifffile(tmp_path: Path) -> None:
    array = RNG.integers(0, 65536, size=(4, 5, 4), dtype=np.uint16)
    path = tmp_path / "tf.tif"
    tifffile.imwrite(path, array, photometric="rgb", extrasamples=["unassalpha"])
    image = load_image(path)
    assert (image.bit_depth, image.mode, image.has_alpha) == (16, "RGBA", True)
    np.testing.assert_array_equal(image.pixels, array.astype(np.float32) / 65535)


def test_16bit_gray_png_is_I16(tmp_path: Path) -> None:
    array = RNG.integers(0, 65536, size=(3, 4), dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(array).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    image = load_image(path)
    assert (image.bit_depth, image.mode, image.pixels.shape) == (16, "L", (3, 4, 1))
    np.testing.assert_array_equal(image.pixels[..., 0], array.astype(np.float32) / 65535)


def test_jpeg_round_trip_is_close(tmp_path: Path) -> None:
    smooth = np.linspace(0, 1, 32, dtype=np.float32)
    pixels = np.stack(np.broadcast_arrays(smooth[None, :], smooth[:, None], 0.5 * np.ones((1, 1))), -1)
    path = tmp_path / "a.JPG"
    write_image(path, pixels.astype(np.float32), quality=95)
    image = load_image(path)
    assert (image.format, image.mode, image.bit_depth) == ("JPEG", "RGB", 8)
    assert np.abs(image.pixels - pixels).mean() < 2 / 255


def test_palette_bilevel_and_cmyk_are_converted(tmp_path: Path) -> None:
    rgb = Image.fromarray(quantize(_random(6, 6, 3)))
    rgb.quantize(8).save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").mode == "RGB"
    pal = rgb.quantize(8)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    assert load_image(tmp_path / "pt.png").has_alpha
    rgb.convert("1").save(tmp_path / "b.png")
    bilevel = load_image(tmp_path / "b.png")
    assert bilevel.mode == "L" and set(np.unique(bilevel.pixels)) <= {0.0, 1.0}
    rgb.convert("CMYK").save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").pixels.shape == (6, 6, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil(tmp_path: Path, orientation: int) -> None:
    array = quantize(_random(4, 7, 3))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    Image.fromarray(array).save(path, exif=exif)
    with Image.open(path) as stored:
        shown = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    image = load_image(path)
    assert image.orientation == orientation
    np.testing.assert_array_equal(image.pixels, shown.astype(np.float32) / 255)
    # apply_orientation alone agrees on a non-square array too
    np.testing.assert_array_equal(apply_orientation(array, orientation), shown)


def test_missing_directory_and_non_image(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found") as info:
        read_image(tmp_path / "nope.png")
    assert isinstance(info.value, ValueError) and info.value.path == tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    with pytest.raises(ImageReadError, match=r"notes\.png: not an image"):
        read_image(text)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg"):
        read_image(empty)


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp", "tif", "bmp"])
@pytest.mark.parametrize("load_truncated", [False, True])
def test_truncated_files_are_refused(tmp_path: Path, fmt: str, load_truncated: bool) -> None:
    path = tmp_path / f"whole.{fmt}"
    write_image(path, _random(64, 64, 3))
    data = path.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 2])
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = load_truncated  # another library may have switched it on globally
    try:
        with pytest.raises(ImageReadError, match=rf"cut\.{fmt}: "):
            read_image(cut)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
    assert ImageFile.LOAD_TRUNCATED_IMAGES == saved


def test_truncated_png_says_truncated(tmp_path: Path) -> None:
    path = tmp_path / "whole.png"
    write_image(path, _random(64, 64, 3))
    data = path.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(cut)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width × height and whose data is a single tiny IDAT (never decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    side = int(np.sqrt(DEFAULT_MAX_PIXELS)) + 10  # just above PIL's limit, below PIL's own 2x error
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageReadError, match=rf"bomb\.png: image of {side}×{side} .* exceeds the limit of"):
        read_image(bomb)
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header_only(100_000, 100_000))  # PIL itself would raise its own error type
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(huge)
    small = tmp_path / "small.png"
    write_image(small, _random(4, 4, 1))
    with pytest.raises(ImageReadError, match="limit of 15 pixels"):
        read_image(small, max_pixels=15)
    assert read_image(small, max_pixels=16).shape == (4, 4, 1)
    assert read_image(small, max_pixels=None).shape == (4, 4, 1)
    assert Image.MAX_IMAGE_PIXELS == DEFAULT_MAX_PIXELS  # PIL's global is restored
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(small, max_pixels=0)


def test_write_is_atomic_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.png"
    write_image(path, np.zeros((2, 2, 3), dtype=np.float32))
    before = path.read_bytes()

    def failing_save(self: Image.Image, fp: object, format: str | None = None, **kw: object) -> None:
        Path(str(fp)).write_bytes(b"half")  # a partial file under the temporary name...
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(path, np.ones((2, 2, 3), dtype=np.float32))
    assert path.read_bytes() == before  # ...never replaces the finished file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # and is removed


def test_write_errors(tmp_path: Path) -> None:
    pixels = np.zeros((2, 2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="cannot tell the image format"):
        write_image(tmp_path / "a.xyz", pixels)
    with pytest.raises(ValueError, match="format must be one of"):
        write_image(tmp_path / "a.png", pixels, format="gif")
    with pytest.raises(ValueError, match="JPEG cannot store 16-bit"):
        write_image(tmp_path / "a.jpg", pixels, bit_depth=16)
    with pytest.raises(ValueError, match="bit_depth must be 8 or 16, got 12"):
        write_image(tmp_path / "a.png", pixels, bit_depth=12)
    with pytest.raises(ValueError, match="JPEG cannot store an alpha"):
        write_image(tmp_path / "a.jpg", np.zeros((2, 2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 5\)"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="floating point"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 3), dtype=np.int32))
    with pytest.raises(TypeError, match="do not match bit_depth=16"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 3), dtype=np.uint8), bit_depth=16)
    samples = np.arange(12, dtype=np.uint16).reshape(2, 2, 3) * 5000
    write_image(tmp_path / "int16.png", samples, bit_depth=16)
    np.testing.assert_array_equal(read_image(tmp_path / "int16.png"), samples / np.float32(65535))
    with pytest.raises(ValueError, match="does not exist"):
        write_image(tmp_path / "no" / "a.png", pixels)
    write_image(tmp_path / "explicit", pixels, format="jpg")
    assert load_image(tmp_path / "explicit").format == "JPEG"
    assert not list(tmp_path.glob(".*"))


def test_quantize_rounds_half_up_and_clamps() -> None:
    assert quantize(np.array([0.5 / 255, 1.5 / 255, np.nan, -1, 7])).tolist() == [1, 2, 0, 0, 255]
    assert quantize(np.array([1.0]), 16).dtype == np.uint16
    assert format_from_path("x.TIFF") == "TIFF"


# --- metadata: ICC profile, DPI and EXIF are kept (the orientation reset), as ImageMagick and FFmpeg keep them ---


def _srgb_profile() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _photo(path: Path, orientation: int = 1, dpi: tuple[int, int] = (72, 96)) -> tuple[bytes, Image.Image]:
    """A small RGB photo with an sRGB profile, a resolution, and EXIF (camera make and orientation)."""
    exif = Image.Exif()
    exif[0x010F] = "Cam"  # Make
    exif[0x0112] = orientation
    picture = Image.fromarray((np.random.default_rng(0).random((6, 8, 3)) * 255).astype(np.uint8))
    profile = _srgb_profile()
    picture.save(path, icc_profile=profile, dpi=dpi, exif=exif.tobytes())
    return profile, picture


@pytest.mark.parametrize(
    ("name", "bit_depth"),
    [("out.png", 8), ("out.jpg", 8), ("out.webp", 8), ("out.tif", 8), ("out.png", 16), ("out.tif", 16)],
)
def test_metadata_is_kept_and_the_dpi_scaled(tmp_path: Path, name: str, bit_depth: int) -> None:
    profile, _ = _photo(tmp_path / "in.jpg")
    image = load_image(tmp_path / "in.jpg")
    write_image(tmp_path / name, image.pixels, bit_depth=bit_depth, metadata=image.metadata.scaled(3))
    with Image.open(tmp_path / name) as written:
        assert written.info.get("icc_profile") == profile
        if not name.endswith(".webp"):  # WebP has no resolution field
            assert written.info["dpi"] == pytest.approx((216, 288), abs=0.05)  # PNG stores dots per metre
        if not name.endswith(".tif"):
            exif = written.getexif()
            assert exif.get(0x010F) == "Cam" and exif.get(0x0112) == 1


def test_exif_orientation_is_reset_and_the_dpi_turned_with_the_picture(tmp_path: Path) -> None:
    _photo(tmp_path / "in.jpg", orientation=6, dpi=(72, 96))  # stored rotated a quarter turn
    image = load_image(tmp_path / "in.jpg")
    assert (image.width, image.height) == (6, 8)
    write_image(tmp_path / "out.png", image.pixels, metadata=image.metadata)
    with Image.open(tmp_path / "out.png") as written:
        assert written.getexif().get(0x0112) == 1 and written.size == (6, 8)
        assert written.info["dpi"] == pytest.approx((96, 72), abs=0.05)
    again = load_image(tmp_path / "out.png")  # shown as it was: not turned a second time
    np.testing.assert_array_equal(again.pixels, np.round(image.pixels * 255) / 255)


def test_a_profile_of_another_colour_space_is_left_out(tmp_path: Path) -> None:
    from subpixel.imageio import ImageMetadata

    gray = np.full((4, 4, 1), 0.5, dtype=np.float32)
    write_image(tmp_path / "g.png", gray, metadata=ImageMetadata(icc_profile=_srgb_profile()))
    with Image.open(tmp_path / "g.png") as written:
        assert "icc_profile" not in written.info  # an RGB profile on gray pixels would mislead a viewer


def test_upscale_keeps_the_metadata(tmp_path: Path) -> None:
    import torch

    from subpixel.cli import main
    from subpixel.sr.models import ESPCN, save

    torch.manual_seed(0)
    save(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)), tmp_path / "w.safetensors")
    profile, _ = _photo(tmp_path / "in.jpg")
    code = main(
        ["upscale", str(tmp_path / "in.jpg"), "--weights", str(tmp_path / "w.safetensors"), "--quiet"]
    )
    assert code == 0
    with Image.open(tmp_path / "in_x2.jpg") as written:
        assert written.size == (16, 12)
        assert written.info.get("icc_profile") == profile
        assert written.info["dpi"] == pytest.approx((144, 192), abs=0.05)
        assert written.getexif().get(0x010F) == "Cam"
