"""Test sets of the SR protocol: finding their images in a folder and reading them exactly.

A standard test set (Set5, Set14) holds ``img_NNN_SRF_{r}_HR.png`` beside MATLAB's ``img_NNN_SRF_{r}_LR.png``;
any other folder of images is read as HR images whose LR is made by :func:`subpixel.sr.resize.make_lr`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subpixel.errors import SubpixelError
from subpixel.imageio import IMAGE_EXTENSIONS
from subpixel.sr._images import _check_scale_int, _to_float01
from subpixel.sr.resize import make_lr, modcrop

__all__ = [
    "IMAGE_EXTENSIONS",
    "LoadedImage",
    "TestImage",
    "find_test_images",
    "load_test_image",
    "read_image_exact",
]


def read_image_exact(path: str | Path) -> np.ndarray:
    """Read an image file as its integer samples: ``uint8`` or ``uint16`` of shape ``(H, W, C)``, C = 1 or 3.

    Decoding goes through :func:`subpixel.imageio.load_image` (formats, 16-bit, EXIF orientation, clear errors);
    an alpha channel is dropped.

    Args:
        path: the image file.

    Returns:
        The samples, exactly as stored.

    Shape:
        ``(H, W, C)``, C = 1 (grayscale) or 3 (RGB).

    Raises:
        subpixel.imageio.ImageReadError: (a ``ValueError``) the file is missing, not an image, truncated...
    """
    from subpixel.imageio import load_image

    image = load_image(path)
    top = 65535.0 if image.bit_depth == 16 else 255.0
    dtype = np.uint16 if image.bit_depth == 16 else np.uint8
    pixels = image.pixels
    if image.has_alpha:
        pixels = pixels[..., :-1]
    # gray + alpha comes back from load_image as RGBA with equal R, G, B
    if pixels.shape[-1] == 3 and image.mode in ("L", "LA"):
        pixels = pixels[..., :1]
    return np.rint(pixels.astype(np.float64) * top).astype(dtype)


@dataclass(frozen=True)
class TestImage:
    """One image of a test set: where its HR (and, if given, LR) file lies.

    Attributes:
        name: a short name (from ``NAMES.txt`` beside the files when there is one, else the file stem).
        hr_path: the HR file.
        lr_path: the LR file (the standard sets' MATLAB-made ``_LR.png``), or ``None``: the LR is made by
            :func:`make_lr`.
    """

    __test__ = False  # not a pytest test class

    name: str
    hr_path: Path
    lr_path: Path | None = None


_SRF_PATTERN = re.compile(r"^(?P<stem>.+)_SRF_(?P<scale>\d+)_HR$", re.IGNORECASE)


def _read_names(folder: Path) -> dict[str, str]:
    names: dict[str, str] = {}
    file = folder / "NAMES.txt"
    if file.is_file():
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2:
                names[parts[0]] = parts[1].strip()
    return names


def find_test_images(data_dir: str | Path, scale: int) -> list[TestImage]:
    """List the test images of a folder for ``scale``.

    A folder in the standard layout (``img_NNN_SRF_{r}_HR.png`` beside ``img_NNN_SRF_{r}_LR.png``) gives its
    ``r = scale`` pairs; any other folder gives every image file in it (sorted by name), whose LR is made by
    :func:`make_lr`.

    Args:
        data_dir: the folder.
        scale: the SR scale factor ``r``.

    Returns:
        The images, sorted by file name.

    Raises:
        ValueError: the folder does not exist, holds no image, or holds the standard layout for other scales only.
    """
    r = _check_scale_int(scale)
    folder = Path(data_dir)
    if not folder.is_dir():
        raise SubpixelError(f"data folder {str(folder)!r} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    layout = {p: _SRF_PATTERN.match(p.stem) for p in files}
    if any(m is not None for m in layout.values()):
        names = _read_names(folder)
        found: list[TestImage] = []
        scales: set[int] = set()
        for path, match in layout.items():
            if match is None:
                continue
            scales.add(int(match["scale"]))
            if int(match["scale"]) != r:
                continue
            lr = path.with_name(path.name[: match.end("scale")] + "_LR" + path.suffix)
            stem = match["stem"]
            found.append(TestImage(names.get(stem, stem), path, lr if lr.is_file() else None))
        if not found:
            raise SubpixelError(
                f"data folder {str(folder)!r} holds *_SRF_r_HR files for scales {sorted(scales)}, not for scale {r}"
            )
        return found
    if not files:
        raise SubpixelError(
            f"data folder {str(folder)!r} holds no image files (expected {', '.join(IMAGE_EXTENSIONS)})"
        )
    return [TestImage(p.stem, p, None) for p in files]


def load_test_image(image: TestImage, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one test image's HR (modcropped) and LR as float64 in [0, 1].

    Args:
        image: from :func:`find_test_images`.
        scale: the SR scale factor ``r``.

    Returns:
        ``(hr, lr)`` as float64 arrays.

    Shape:
        ``hr``: ``(H, W, C)`` with H, W multiples of ``r`` and C = 1 or 3; ``lr``: ``(H / r, W / r, C)``.

    Raises:
        ValueError: an unreadable file, an LR file of the wrong size or colour layout, an image too small.
    """
    r = _check_scale_int(scale)
    raw = modcrop(read_image_exact(image.hr_path), r)
    if raw.shape[0] < r or raw.shape[1] < r:
        raise SubpixelError(
            f"{image.hr_path}: image of {raw.shape[1]}×{raw.shape[0]} pixels is smaller than scale {r}"
        )
    hr = _to_float01(raw)
    if image.lr_path is None:
        return hr, make_lr(raw, r)
    lr = _to_float01(read_image_exact(image.lr_path))
    expected = (hr.shape[0] // r, hr.shape[1] // r, hr.shape[2])
    if lr.shape != expected:
        raise SubpixelError(
            f"{image.lr_path}: LR image has shape {lr.shape}, expected {expected} for HR {image.hr_path.name} "
            f"of shape {hr.shape} at scale {r}"
        )
    return hr, lr


@dataclass(frozen=True)
class LoadedImage:
    """One test image read and ready for the protocol.

    Attributes:
        name: the image's name.
        path: its HR file (``""`` for images that came from memory).
        hr: the modcropped ground truth, float64 ``(H, W, C)`` in [0, 1].
        lr: its LR image, float64 ``(H / r, W / r, C)`` in [0, 1].
    """

    name: str
    path: str
    hr: np.ndarray
    lr: np.ndarray
