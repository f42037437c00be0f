"""Read and write images as float32 arrays in [0, 1], safely.

One place for image files in ``subpixel``: every command that reads or writes a picture goes through
:func:`load_image` / :func:`read_image` and :func:`write_image`.

* Formats: PNG, JPEG, BMP, TIFF and WebP; 8- and 16-bit samples; grayscale (``L``, ``I;16``), grayscale with
  alpha (``LA``), ``RGB`` and ``RGBA`` (palette, bilevel and CMYK images are converted to RGB/RGBA/L).
  PIL decodes 16-bit colour PNGs and TIFFs to 8 bits; those go through ``pypng`` / ``tifffile`` instead so
  that no bit is lost.
* The EXIF orientation tag is applied, so ``pixels`` is the picture as a viewer shows it.
* Metadata is kept (:class:`ImageMetadata`, as ImageMagick and FFmpeg keep it): the ICC colour profile (a
  wide-gamut photo would otherwise shift colour), the resolution in DPI and the EXIF block, its orientation tag
  reset to 1 since the pixels are already turned. :func:`write_image` writes what it is given where the format
  can hold it (profile: PNG, JPEG, TIFF, WebP; EXIF: PNG, JPEG, WebP; DPI: every format but WebP), and leaves
  out a profile of another colour space than the pixels (a CMYK file read as RGB).
* Reading refuses, with :class:`ImageReadError` (a :class:`~subpixel.errors.SubpixelError`, so a ``ValueError``) naming the file and the problem: a missing
  file, a file that is not an image, a truncated or corrupt one (PIL's ``LOAD_TRUNCATED_IMAGES`` is forced off
  while reading), and a "decompression bomb" larger than ``max_pixels`` (PIL's limit by default).
* Writing is atomic (:func:`subpixel._atomic.atomic_output`, re-exported here): the file is written under a
  temporary name in the destination folder and renamed (:func:`os.replace`) once complete, so a killed run never
  leaves a half-written file under the final name; it gets the permissions the umask gives new files.

Examples:
    >>> import tempfile, pathlib, numpy as np
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rgb = np.linspace(0, 1, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    >>> _ = write_image(folder / "ramp.png", rgb, bit_depth=16)
    >>> image = load_image(folder / "ramp.png")
    >>> image.pixels.shape, image.pixels.dtype, image.bit_depth, image.format, image.has_alpha
    ((4, 6, 3), dtype('float32'), 16, 'PNG', False)
    >>> float(np.abs(image.pixels - rgb).max()) <= 0.5 / 65535
    True
    >>> read_image(folder / "missing.png")
    Traceback (most recent call last):
    ...
    subpixel.imageio.ImageReadError: .../missing.png: file not found
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from subpixel._atomic import atomic_output
from subpixel.errors import SubpixelError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "FORMAT_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "ImageMetadata",
    "ImageReadError",
    "LoadedImage",
    "apply_orientation",
    "atomic_output",
    "format_from_path",
    "load_image",
    "quantize",
    "read_image",
    "write_image",
]

#: Largest image (width × height) read without ``max_pixels`` saying otherwise: PIL's own limit.
DEFAULT_MAX_PIXELS: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)

#: Supported formats (PIL's names) and their file extensions, the first one being the default.
FORMAT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "PNG": (".png",),
    "JPEG": (".jpg", ".jpeg", ".jpe"),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
    "WEBP": (".webp",),
}
#: Every file extension read as an image, lower case: the one list used wherever a folder's images are listed
#: (training data, test sets, ``subpixel upscale`` on a folder).
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(s for group in FORMAT_EXTENSIONS.values() for s in group)
_FORMATS_16BIT = ("PNG", "TIFF")
_FORMATS_NO_ALPHA = ("JPEG", "BMP")  # PIL reads 32-bit BMP back without its alpha

# PIL's decompression-bomb limit and truncated-image switch are process-wide; take them under a lock.
_PIL_LOCK = threading.Lock()


class ImageReadError(SubpixelError):
    """An image file could not be read; the message names the file and the problem.

    Attributes:
        path: the file.
        reason: the problem, without the file name.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class ImageMetadata:
    """What an image file says about its picture besides the pixels, kept when it is upscaled.

    Attributes:
        icc_profile: the embedded ICC colour profile, or ``None``.
        dpi: horizontal and vertical resolution in dots per inch of the picture as shown (after the EXIF
            orientation), or ``None``.
        exif: the EXIF block (as PIL writes it), its orientation tag set to 1; ``None`` when the file has none.

    Examples:
        >>> ImageMetadata(dpi=(72.0, 96.0)).scaled(3).dpi
        (216.0, 288.0)
    """

    icc_profile: bytes | None = None
    dpi: tuple[float, float] | None = None
    exif: bytes | None = None

    def scaled(self, factor: float) -> ImageMetadata:
        """The metadata of the picture upscaled ``factor`` times: the DPI scaled too (same printed size)."""
        if self.dpi is None:
            return self
        return dataclasses.replace(self, dpi=(self.dpi[0] * factor, self.dpi[1] * factor))


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and what is known about its file.

    Attributes:
        pixels: float32 array of shape (H, W, C) with values in [0, 1]; C is 1 (grayscale), 3 (RGB) or 4 (RGBA;
            a grayscale-with-alpha file becomes RGBA with equal R, G and B, see ``mode``). EXIF orientation is
            already applied.
        bit_depth: bits per sample in the file, 8 or 16.
        has_alpha: whether the file has an alpha channel (then it is ``pixels[..., 3]``).
        format: PIL's name of the file format: ``"PNG"``, ``"JPEG"``, ``"BMP"``, ``"TIFF"`` or ``"WEBP"``.
        mode: the colour layout of the file: ``"L"``, ``"LA"``, ``"RGB"`` or ``"RGBA"``.
        path: the file it was read from.
        orientation: the EXIF orientation tag that was applied (1 = none).
        metadata: the ICC profile, DPI and EXIF of the file (:class:`ImageMetadata`).
    """

    pixels: np.ndarray
    bit_depth: int
    has_alpha: bool
    format: str
    mode: str
    path: Path
    orientation: int = 1
    metadata: ImageMetadata = ImageMetadata()

    @property
    def is_grayscale(self) -> bool:
        """Whether the file is grayscale (``L`` or ``LA``)."""
        return self.mode in ("L", "LA")

    @property
    def height(self) -> int:
        """Height in pixels (after orientation)."""
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        """Width in pixels (after orientation)."""
        return int(self.pixels.shape[1])


def format_from_path(path: str | os.PathLike[str]) -> str:
    """PIL's format name for a file name's extension (case-insensitive).

    Args:
        path: a file name such as ``photo.JPG``.

    Returns:
        One of the keys of :data:`FORMAT_EXTENSIONS`.

    Raises:
        ValueError: the extension is not one of a supported format.

    Examples:
        >>> format_from_path("holiday/photo.JPG"), format_from_path("scan.tiff")
        ('JPEG', 'TIFF')
    """
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMAT_EXTENSIONS.items():
        if suffix in suffixes:
            return name
    known = ", ".join(s for group in FORMAT_EXTENSIONS.values() for s in group)
    raise SubpixelError(
        f"cannot tell the image format of {str(path)!r} from its extension; expected one of {known}"
    )


def _normalize_format(format: str) -> str:
    name = format.upper().lstrip(".")
    aliases = {"JPG": "JPEG", "JPE": "JPEG", "TIF": "TIFF"}
    name = aliases.get(name, name)
    if name not in FORMAT_EXTENSIONS:
        raise SubpixelError(f"format must be one of {', '.join(FORMAT_EXTENSIONS)}, got {format!r}")
    return name


@contextlib.contextmanager
def _pil_guard() -> Iterator[None]:
    """Disable PIL's global bomb limit (we check ``max_pixels`` ourselves) and truncated-image loading."""
    with _PIL_LOCK:
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                # a damaged EXIF block of a TIFF: the pixels decide whether the file is readable
                warnings.filterwarnings("ignore", message="Corrupt EXIF data", category=UserWarning)
                yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image as stored into the image as shown, per its EXIF orientation tag.

    Args:
        pixels: array of shape (H, W, ...).
        orientation: the EXIF tag 0x0112, 1 to 8 (other values are treated as 1).

    Returns:
        A view of ``pixels``: shape (H, W, ...) for tags 1 to 4, (W, H, ...) for tags 5 to 8.

    Examples:
        >>> a = np.arange(6).reshape(2, 3)
        >>> apply_orientation(a, 6)  # stored rotated: the camera was turned 90° clockwise
        array([[3, 0],
               [4, 1],
               [5, 2]])
    """
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return np.swapaxes(pixels, 0, 1)
    if orientation == 6:
        return np.rot90(pixels, k=-1)
    if orientation == 7:
        return np.swapaxes(pixels, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(pixels, k=1)
    return pixels


def _rawmode(image: Image.Image) -> str:
    tile = getattr(image, "tile", None) or []
    if not tile:
        return ""
    args = tile[0].args if hasattr(tile[0], "args") else tile[0][3]
    if isinstance(args, tuple):
        args = args[0] if args else ""
    return args if isinstance(args, str) else ""


def _read_16bit_color(path: Path, fmt: str) -> np.ndarray:
    """Decode a 16-bit colour PNG (pypng) or TIFF (tifffile) to a uint16 (H, W, C) array."""
    if fmt == "PNG":
        import png

        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        planes = int(info["planes"])
        array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
        return array.reshape(height, width, planes)
    import tifffile

    array = np.asarray(tifffile.imread(str(path), key=0))
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar configuration
    return array.astype(np.uint16, copy=False)


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def _check_size(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            path,
            f"image of {width}×{height} = {width * height} pixels exceeds the limit of {max_pixels} "
            "pixels (a possible decompression bomb); raise the limit (max_pixels, or --max-pixels on "
            "the command line) if the file is trusted",
        )


def _finish(
    path: Path,
    array: np.ndarray,
    bit_depth: int,
    mode: str,
    fmt: str,
    orientation: int,
    metadata: ImageMetadata | None = None,
) -> LoadedImage:
    """Scale integer samples to float32 [0, 1], make C in {1, 3, 4}, apply the orientation."""
    scale = 65535.0 if bit_depth == 16 else 255.0
    pixels = array.astype(np.float32) / np.float32(scale)
    if mode == "LA":  # C in {1, 3, 4}: gray + alpha becomes RGBA with equal colour channels
        pixels = np.concatenate([np.repeat(pixels[..., :1], 3, axis=-1), pixels[..., 1:2]], axis=-1)
    pixels = np.ascontiguousarray(apply_orientation(pixels, orientation))
    return LoadedImage(
        pixels=pixels,
        bit_depth=bit_depth,
        has_alpha=mode in ("LA", "RGBA"),
        format=fmt,
        mode=mode,
        path=path,
        orientation=orientation,
        metadata=metadata or ImageMetadata(),
    )


def _load_tiff(path: Path, max_pixels: int | None) -> LoadedImage:
    """Read a TIFF that PIL cannot identify with tifffile (8- or 16-bit, 1 to 4 samples per pixel)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            _check_size(path, int(page.imagewidth), int(page.imagelength), max_pixels)
            tag = page.tags.get(274)  # Orientation
            orientation = int(tag.value) if tag is not None else 1
            array = np.asarray(page.asarray())
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(path, f"corrupt or unsupported TIFF ({type(exc).__name__}: {exc})") from exc
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            path, f"unsupported TIFF sample type {array.dtype} (expected 8- or 16-bit unsigned)"
        )
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ImageReadError(path, f"unsupported TIFF layout of shape {array.shape}")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
    return _finish(path, array, 16 if array.dtype == np.uint16 else 8, mode, "TIFF", orientation)


def _to_standard(image: Image.Image) -> tuple[np.ndarray, int, str]:
    """Convert a loaded PIL image to (uint8/uint16 array (H, W, C), bit depth, mode L/LA/RGB/RGBA)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(image).astype(np.uint16)[..., None], 16, "L"
    if mode == "I":
        array = np.asarray(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise SubpixelError(
                f"32-bit integer samples outside 0..65535 (range {array.min()}..{array.max()})"
            )
        return array.astype(np.uint16)[..., None], 16, "L"
    if mode == "F":
        raise SubpixelError("32-bit floating-point images are not supported")
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"))[..., None], 8, "L"
    if mode in ("LA", "La", "PA") or (mode == "P" and "transparency" in image.info):
        target = "LA" if mode in ("LA", "La") else "RGBA"
        array = np.asarray(image.convert(target))
        return (array, 8, target) if target == "RGBA" else (array, 8, "LA")
    if mode in ("RGBA", "RGBa"):
        return np.asarray(image.convert("RGBA")), 8, "RGBA"
    return np.asarray(image.convert("RGB")), 8, "RGB"


def _read_metadata(image: Image.Image, orientation: int) -> ImageMetadata:
    """The ICC profile, DPI (turned with the picture) and EXIF (orientation reset) of an open PIL image."""
    profile = image.info.get("icc_profile") or None
    dpi = image.info.get("dpi")
    try:
        dpi = (float(dpi[0]), float(dpi[1])) if dpi is not None else None
    except (TypeError, ValueError, IndexError):
        dpi = None
    if dpi is not None and not (dpi[0] > 0 and dpi[1] > 0):
        dpi = None
    if dpi is not None and orientation in (5, 6, 7, 8):  # the picture is turned a quarter: so are its axes
        dpi = (dpi[1], dpi[0])
    exif: bytes | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tags = image.getexif()
            if len(tags) or tags.get_ifd(0x8769):
                if 0x0112 in tags:
                    tags[0x0112] = 1
                exif = tags.tobytes()
    except Exception:  # a damaged EXIF block is left out, not fatal
        exif = None
    return ImageMetadata(icc_profile=bytes(profile) if profile else None, dpi=dpi, exif=exif)


def _icc_fits(profile: bytes, channels: int) -> bool:
    """Whether an ICC profile's colour space (header bytes 16–19) is the one of pixels with ``channels``."""
    space = profile[16:20]
    return (space == b"RGB " and channels >= 3) or (space == b"GRAY" and channels <= 2)


def _exif_for(exif: bytes, width: int, height: int) -> bytes:
    """The EXIF block with orientation 1 and, where it records them, the pixel dimensions of the new picture."""
    tags = Image.Exif()
    tags.load(exif)
    if 0x0112 in tags:
        tags[0x0112] = 1
    sub = tags.get_ifd(0x8769)  # Exif IFD: PixelXDimension, PixelYDimension
    if 0xA002 in sub:
        sub[0xA002] = width
    if 0xA003 in sub:
        sub[0xA003] = height
    return tags.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _add_png_metadata(
    path: Path, profile: bytes | None, dpi: tuple[float, float] | None, exif: bytes | None
) -> None:
    """Insert iCCP, pHYs and eXIf chunks after a PNG's header chunk (for files written by pypng)."""
    chunks = b""
    if profile:
        chunks += _png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(profile))
    if dpi:
        per_metre = [round(d / 0.0254) for d in dpi]
        chunks += _png_chunk(
            b"pHYs", per_metre[0].to_bytes(4, "big") + per_metre[1].to_bytes(4, "big") + b"\1"
        )
    if exif:
        chunks += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    if not chunks:
        return
    data = path.read_bytes()
    end_of_header = 8 + 8 + int.from_bytes(data[8:12], "big") + 4  # signature, IHDR
    path.write_bytes(data[:end_of_header] + chunks + data[end_of_header:])


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file into a float32 array in [0, 1], with its bit depth, format and layout.

    Args:
        path: the file (PNG, JPEG, BMP, TIFF or WebP; the format is recognised from the content).
        max_pixels: refuse images with more than this many pixels (width × height) before decoding them, a
            guard against decompression bombs; ``None`` for no limit. Default: PIL's limit,
            :data:`DEFAULT_MAX_PIXELS`.

    Returns:
        A :class:`LoadedImage`; its ``pixels`` have shape (H, W, C), C in {1, 3, 4}, EXIF orientation applied.

    Raises:
        ImageReadError: the file is missing, not an image, of an unsupported format or layout, truncated,
            corrupt, or larger than ``max_pixels``.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "gray.png"
        >>> _ = write_image(path, np.full((3, 5, 1), 0.5, dtype=np.float32))
        >>> image = load_image(path)
        >>> image.pixels.shape, image.mode, image.bit_depth, round(float(image.pixels[0, 0, 0]) * 255)
        ((3, 5, 1), 'L', 8, 128)
        >>> load_image(path, max_pixels=10)
        Traceback (most recent call last):
        ...
        subpixel.imageio.ImageReadError: .../gray.png: image of 5×3 = 15 pixels exceeds the limit of 10 pixels ...
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "not a file")
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
        raise SubpixelError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    with _pil_guard():
        try:
            image = Image.open(path)
        except UnidentifiedImageError:
            if _is_tiff(path):  # layouts PIL does not know (16-bit gray + alpha, ...) go to tifffile
                return _load_tiff(path, max_pixels)
            raise ImageReadError(path, "not an image PIL can identify (or its header is damaged)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(path, f"cannot open the image ({exc})") from exc
        with image:
            fmt = image.format or "?"
            if fmt == "MPO":  # multi-picture JPEG from cameras: the first picture is the JPEG
                fmt = "JPEG"
            if fmt not in FORMAT_EXTENSIONS:
                raise ImageReadError(
                    path, f"unsupported format {fmt} (supported: {', '.join(FORMAT_EXTENSIONS)})"
                )
            _check_size(path, *image.size, max_pixels)
            rawmode = _rawmode(image)  # before getexif(), which may decode the image and clear the tiles
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "Corrupt EXIF data": the pixels decide below
                    orientation = int(image.getexif().get(0x0112, 1) or 1)
            except Exception:  # a damaged EXIF block should not make the pixels unreadable
                orientation = 1
            metadata = _read_metadata(image, orientation)
            try:
                if fmt in _FORMATS_16BIT and ";16" in rawmode and image.mode in ("RGB", "RGBA", "LA"):
                    array, bit_depth = _read_16bit_color(path, fmt), 16
                    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[-1]]
                else:
                    image.load()
                    array, bit_depth, mode = _to_standard(image)
            except ImageReadError:
                raise
            except (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, MemoryError) as exc:
                reason = str(exc) or type(exc).__name__
                if "truncat" in reason.lower() or isinstance(exc, EOFError):
                    raise ImageReadError(path, f"truncated image file ({reason})") from exc
                raise ImageReadError(path, f"corrupt or unsupported image data ({reason})") from exc
            except Exception as exc:  # decoders of other libraries raise their own types
                raise ImageReadError(path, f"corrupt image data ({type(exc).__name__}: {exc})") from exc
    return _finish(path, array, bit_depth, mode, fmt, orientation, metadata)


def read_image(path: str | os.PathLike[str], *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as a float32 array in [0, 1].

    Args:
        path: the file (PNG, JPEG, BMP, TIFF or WebP).
        max_pixels: see :func:`load_image`.

    Returns:
        Array of shape (H, W, C), C in {1, 3, 4} (grayscale, RGB, RGBA), EXIF orientation applied.

    Raises:
        ImageReadError: see :func:`load_image`.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "white.bmp"
        >>> _ = write_image(path, np.ones((2, 3, 3), dtype=np.float32))
        >>> read_image(path).shape
        (2, 3, 3)
    """
    return load_image(path, max_pixels=max_pixels).pixels


def quantize(pixels: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Clamp to [0, 1] and round half up to integers of ``bit_depth`` bits, as a saved image is.

    Args:
        pixels: float array of any shape, values nominally in [0, 1]; NaN becomes 0.
        bit_depth: 8 (uint8, 0..255) or 16 (uint16, 0..65535).

    Returns:
        uint8 or uint16 array of the same shape.

    Examples:
        >>> quantize(np.array([-0.1, 0.5, 0.502, 2.0]))
        array([  0, 128, 128, 255], dtype=uint8)
    """
    if bit_depth not in (8, 16):
        raise SubpixelError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    top = 255.0 if bit_depth == 8 else 65535.0
    values = np.nan_to_num(np.asarray(pixels, dtype=np.float64), nan=0.0)
    values = np.floor(np.clip(values, 0.0, 1.0) * top + 0.5)
    return values.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _check_pixels(pixels: Any) -> np.ndarray:
    if hasattr(pixels, "detach"):  # a torch tensor
        pixels = pixels.detach().cpu().numpy()
    if not isinstance(pixels, np.ndarray):
        raise TypeError(
            f"pixels must be a numpy array of shape (H, W) or (H, W, C), got {type(pixels).__name__}"
        )
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4) or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise SubpixelError(
            f"pixels must have shape (H, W) or (H, W, C) with C in 1 (gray), 2 (gray+alpha), 3 (RGB), "
            f"4 (RGBA), got shape {tuple(pixels.shape)}"
        )
    if not (np.issubdtype(pixels.dtype, np.floating) or pixels.dtype in (np.uint8, np.uint16)):
        raise TypeError(
            f"pixels must be floating point with values in [0, 1] (or uint8 / uint16 samples), got dtype {pixels.dtype}"
        )
    return pixels


def write_image(
    path: str | os.PathLike[str],
    pixels: np.ndarray,
    *,
    bit_depth: int = 8,
    format: str | None = None,
    quality: int = 95,
    metadata: ImageMetadata | None = None,
) -> Path:
    """Write a float image in [0, 1] atomically (temporary name in the same folder, then rename).

    Float values are clamped to [0, 1] and rounded half up (:func:`quantize`).

    Args:
        path: the output file; its folder must exist. An existing file is replaced.
        pixels: float array (H, W) or (H, W, C), C = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA); or integer
            samples already quantized: uint8 for ``bit_depth=8``, uint16 for 16 (written as they are).
        bit_depth: 8, or 16 for PNG and TIFF.
        format: ``"PNG"``, ``"JPEG"``, ``"BMP"``, ``"TIFF"`` or ``"WEBP"`` (case-insensitive); ``None`` takes it
            from ``path``'s extension.
        quality: JPEG/WebP quality, 1 to 100 (JPEG is written without chroma subsampling).
        metadata: ICC profile, DPI and EXIF to write where the format holds them (module docstring); the EXIF's
            orientation is written as 1 and its pixel dimensions as the written ones.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        SubpixelError: unknown format, a bit depth the format cannot store, alpha for JPEG, a bad shape.
        TypeError: ``pixels`` is neither floating point nor integers matching ``bit_depth``.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.jpg"
        >>> _ = write_image(path, np.zeros((2, 2, 4), dtype=np.float32))
        Traceback (most recent call last):
        ...
        subpixel.errors.SubpixelError: JPEG cannot store an alpha channel (pixels have 4 channels); drop it or choose PNG, TIFF or WEBP
    """
    path = Path(path)
    fmt = format_from_path(path) if format is None else _normalize_format(format)
    pixels = _check_pixels(pixels)
    if bit_depth not in (8, 16):
        raise SubpixelError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and fmt not in _FORMATS_16BIT:
        raise SubpixelError(
            f"{fmt} cannot store 16-bit samples (bit_depth=16); use PNG or TIFF, or bit_depth=8"
        )
    channels = pixels.shape[-1]
    if fmt in _FORMATS_NO_ALPHA and channels in (2, 4):
        raise SubpixelError(
            f"{fmt} cannot store an alpha channel (pixels have {channels} channels); drop it or choose PNG, TIFF or WEBP"
        )
    if not path.parent.is_dir():
        raise SubpixelError(f"the folder of {str(path)!r} does not exist")
    if pixels.dtype in (np.uint8, np.uint16):
        expected = np.uint8 if bit_depth == 8 else np.uint16
        if pixels.dtype != expected:
            raise TypeError(f"integer pixels of dtype {pixels.dtype} do not match bit_depth={bit_depth}")
        array = pixels
    else:
        array = quantize(pixels, bit_depth)
    meta = metadata or ImageMetadata()
    profile = meta.icc_profile if meta.icc_profile and _icc_fits(meta.icc_profile, channels) else None
    exif = _exif_for(meta.exif, array.shape[1], array.shape[0]) if meta.exif else None
    with atomic_output(path) as tmp:
        if bit_depth == 16 and fmt == "TIFF":
            import tifffile

            data = array[..., 0] if channels == 1 else array
            photometric = "minisblack" if channels <= 2 else "rgb"
            extrasamples = ["unassalpha"] if channels in (2, 4) else None
            extra: dict[str, Any] = {}
            if meta.dpi:
                extra.update(resolution=meta.dpi, resolutionunit="INCH")
            if profile:
                extra["iccprofile"] = profile
            tifffile.imwrite(str(tmp), data, photometric=photometric, extrasamples=extrasamples, **extra)
        elif bit_depth == 16 and channels > 1:  # PNG: PIL cannot write 16-bit colour
            import png

            mode = {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
            height, width = array.shape[:2]
            with open(tmp, "wb") as handle:
                png.from_array(array.reshape(height, width * channels), mode).write(handle)
            _add_png_metadata(tmp, profile, meta.dpi, exif)
        else:
            if bit_depth == 16:
                image = Image.fromarray(array[..., 0].astype("<u2"))
            else:
                image = Image.fromarray(np.ascontiguousarray(array[..., 0] if channels == 1 else array))
            options: dict[str, Any] = {}
            if fmt == "JPEG":
                options = {"quality": int(quality), "subsampling": 0}
            elif fmt == "WEBP":
                options = {"quality": int(quality)}
            elif fmt == "TIFF":
                options = {"compression": "tiff_deflate"}
            if profile and fmt != "BMP":
                options["icc_profile"] = profile
            if meta.dpi and fmt != "WEBP":
                options["dpi"] = meta.dpi
            if exif and fmt in ("PNG", "JPEG", "WEBP"):  # PIL's TIFF writer fails on a foreign EXIF IFD
                options["exif"] = exif
            image.save(tmp, format=fmt, **options)
    return path
