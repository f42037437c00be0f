"""Training data for super-resolution: random aligned (LR, HR) patches from folders of HR images.

How a sample is made:

1. Once per process, every HR image is read (:func:`subpixel.imageio.read_image`; PNG, BMP, JPEG, TIFF, 8 or
   16 bit, grayscale or colour), converted to the model's channels (the Y of BT.601 ``rgb2ycbcr`` divided by
   255, a grayscale image taken as its RGB copy: :func:`~subpixel.sr.color.model_y`; or RGB),
   cropped to a multiple of the scale (``modcrop``) and downscaled
   **whole** with the protocol's MATLAB bicubic :func:`~subpixel.sr.protocol.imresize`; the LR image is rounded
   to 8-bit levels, as the test sets' LR images are. Both are kept in memory as float32.
2. A sample is an aligned pair: an LR patch of ``patch_size`` pixels at ``(y, x)`` and the HR patch of
   ``patch_size·r`` pixels at ``(y·r, x·r)``, i.e. exactly the HR pixels the LR patch was computed from (the
   bicubic support around the patch comes from the real image, not from a replicated patch border).
3. Then one of the 8 flips/90° rotations (the dihedral group; bicubic resizing commutes with all of them on a
   modcropped image).

Why whole images rather than each patch: an LR test image is the bicubic of a whole HR image, so near a patch's
border its pixels depend on HR pixels outside the patch. Downscaling the patch alone would replace those by
replicated patch edges (the protocol's border rule), a difference the test images never show. Speed is not the
reason: with the protocol's imresize one 51×51 patch takes about 0.03 ms, against about 0.4 ms
per patch for an ESPCN training step on one CPU thread (measured for ``docs/training.md``).

Sample ``i`` depends only on ``(seed, i)``: patch position (uniform over every aligned patch position of every
image) and augmentation come from ``numpy.random.default_rng([seed, i])``. The stream is therefore the same
with any number of DataLoader workers, on every rank of a distributed run, and after a resume.

Examples:
    >>> import tempfile, pathlib, numpy as np
    >>> from subpixel.imageio import write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_image(folder / "a.png", np.random.default_rng(0).random((40, 50, 3)))
    >>> data = PatchDataset([folder], scale=3, patch_size=8, length=10)
    >>> lr, hr = data[0]
    >>> lr.shape, hr.shape, len(data)
    (torch.Size([1, 8, 8]), torch.Size([1, 24, 24]), 10)
    >>> bool(torch.equal(data[3][1], data[3][1]))
    True
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from subpixel.errors import SubpixelError
from subpixel.imageio import IMAGE_EXTENSIONS, read_image
from subpixel.sr.color import model_y, quantize_uint8
from subpixel.sr.resize import imresize

__all__ = [
    "IMAGE_SUFFIXES",
    "PatchDataset",
    "PreparedImage",
    "list_images",
    "prepare_image",
    "to_model_channels",
]

#: file name endings read as images (case-insensitive)
IMAGE_SUFFIXES = IMAGE_EXTENSIONS  # the one list, subpixel.imageio.IMAGE_EXTENSIONS (kept for old imports)


def list_images(sources: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image files in folders (not recursive) and files given directly, sorted per folder.

    Args:
        sources: folders and/or image files.

    Returns:
        The image paths, in the order of ``sources``, each folder's files sorted by name.

    Raises:
        ValueError: a source does not exist, or no image is found at all.
    """
    files: list[Path] = []
    given = [Path(s) for s in sources]
    if not given:
        raise SubpixelError("no image folders given")
    for source in given:
        if source.is_dir():
            files.extend(
                sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            )
        elif source.is_file():
            files.append(source)
        else:
            raise SubpixelError(f"image source {str(source)!r} is neither a folder nor a file")
    if not files:
        raise SubpixelError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {[str(s) for s in given]}")
    return files


def to_model_channels(image: np.ndarray, channels: str) -> np.ndarray:
    """Convert a read image to a model's channels.

    Args:
        image: ``(H, W, C)`` in [0, 1], C in {1, 2, 3, 4} (alpha is dropped).
        channels: ``"y"``: :func:`~subpixel.sr.color.model_y` (BT.601 studio-range Y divided by 255; a
            grayscale image as its RGB copy); ``"rgb"``: RGB (grayscale repeated).

    Returns:
        float64 array ``(C', H, W)``, C' = 1 or 3.

    Examples:
        >>> white = np.ones((2, 2, 3))
        >>> float(to_model_channels(white, "y")[0, 0, 0]) * 255  # 16 + 65.481 + 128.553 + 24.966
        235.0
    """
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise SubpixelError(f"image must have shape (H, W, C) with C in 1..4, got {image.shape}")
    x = np.asarray(image, dtype=np.float64)
    gray = x.shape[2] <= 2
    if channels == "y":
        return model_y(x[..., :1] if gray else x[..., :3])[None]
    if channels == "rgb":
        rgb = np.repeat(x[..., :1], 3, axis=2) if gray else x[..., :3]
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))
    raise SubpixelError(f"channels must be 'y' or 'rgb', got {channels!r}")


@dataclass(frozen=True)
class PreparedImage:
    """An HR image and its LR version, both ``(C, H, W)`` float32 in [0, 1]; ``hr`` is ``r`` times ``lr``."""

    path: Path
    hr: np.ndarray
    lr: np.ndarray


def prepare_image(path: str | os.PathLike[str], scale: int, channels: str = "y") -> PreparedImage:
    """Read, convert, modcrop and downscale one HR image (LR rounded to 8-bit levels).

    Args:
        path: the image file.
        scale: the factor ``r``.
        channels: ``"y"`` or ``"rgb"``.

    Returns:
        The prepared pair; shapes ``(C, r·h, r·w)`` and ``(C, h, w)``.
    """
    path = Path(path)
    image = to_model_channels(read_image(path), channels)
    h, w = image.shape[1] // scale * scale, image.shape[2] // scale * scale
    hr = image[:, :h, :w]
    if h == 0 or w == 0:
        raise SubpixelError(
            f"{path}: image of {image.shape[1]}×{image.shape[2]} pixels is smaller than scale {scale}"
        )
    lr = quantize_uint8(imresize(np.ascontiguousarray(hr.transpose(1, 2, 0)), 1.0 / scale)) / 255.0
    if lr.ndim == 2:
        lr = lr[..., None]
    return PreparedImage(
        path=path,
        hr=np.ascontiguousarray(hr, dtype=np.float32),
        lr=np.ascontiguousarray(lr.transpose(2, 0, 1), dtype=np.float32),
    )


class PatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Random aligned (LR, HR) training patches, deterministic per ``(seed, index)``.

    Args:
        sources: folders of HR images and/or image files.
        scale: the factor ``r``.
        patch_size: LR patch size (HR patches are ``patch_size·r``; the paper's 17·r is ``patch_size=17``).
        channels: ``"y"`` or ``"rgb"``.
        augment: apply a random flip/90° rotation.
        seed: the seed of the sample stream.
        length: the value of ``len()`` (any non-negative index is valid; the stream is endless).
        progress: show a progress bar while the images are prepared.
        skip_small: leave out images smaller than one HR patch (listed in :attr:`skipped`) instead of raising.

    Shape:
        - item: ``(lr, hr)``, float32 tensors ``(C, p, p)`` and ``(C, p·r, p·r)``.

    Raises:
        ValueError: an image is unreadable (the message names the file) or smaller than one HR patch.
    """

    def __init__(
        self,
        sources: Sequence[str | os.PathLike[str]],
        scale: int,
        *,
        patch_size: int = 17,
        channels: str = "y",
        augment: bool = True,
        seed: int = 0,
        length: int = 1_000_000,
        progress: bool = False,
        skip_small: bool = False,
    ) -> None:
        if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
            raise SubpixelError(f"scale must be a positive int, got {scale!r}")
        if not isinstance(patch_size, int) or isinstance(patch_size, bool) or patch_size < 1:
            raise SubpixelError(f"patch_size must be a positive int (LR pixels), got {patch_size!r}")
        if channels not in ("y", "rgb"):
            raise SubpixelError(f"channels must be 'y' or 'rgb', got {channels!r}")
        self.scale = scale
        self.patch_size = patch_size
        self.channels = channels
        self.augment = augment
        self.seed = int(seed)
        self.length = int(length)
        files = list_images(sources)
        if progress:
            from tqdm.auto import tqdm

            files_iter: Iterable[Path] = tqdm(files, desc="preparing images", unit="img")
        else:
            files_iter = files
        self.images: list[PreparedImage] = []
        #: images left out because they are smaller than one HR patch (with ``skip_small``)
        self.skipped: list[Path] = []
        counts = []
        for file in files_iter:
            item = prepare_image(file, scale, channels)
            _, h, w = item.lr.shape
            if (h < patch_size or w < patch_size) and skip_small:
                self.skipped.append(Path(file))
                continue
            if h < patch_size or w < patch_size:
                raise SubpixelError(
                    f"{file}: image of {item.hr.shape[1]}×{item.hr.shape[2]} pixels is smaller than one HR patch "
                    f"of {patch_size * scale}×{patch_size * scale} (patch_size={patch_size} LR pixels × scale "
                    f"{scale}); use a smaller patch_size or remove the image"
                )
            self.images.append(item)
            counts.append((h - patch_size + 1) * (w - patch_size + 1))
        if not self.images:
            raise SubpixelError(f"every image is smaller than one HR patch of {patch_size * scale} pixels")
        #: cumulative count of aligned patch positions, to draw a position uniformly over all images
        self._cumulative = np.cumsum(np.asarray(counts, dtype=np.int64))

    def __len__(self) -> int:
        return self.length

    @property
    def positions(self) -> int:
        """The number of distinct aligned patch positions (before augmentation)."""
        return int(self._cumulative[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(index)
        if index < 0:
            raise IndexError(f"index must be non-negative, got {index}")
        rng = np.random.default_rng([self.seed, index])
        flat = int(rng.integers(self.positions))
        k = int(np.searchsorted(self._cumulative, flat, side="right"))
        offset = flat - (int(self._cumulative[k - 1]) if k else 0)
        image = self.images[k]
        p, r = self.patch_size, self.scale
        cols = image.lr.shape[2] - p + 1
        y, x = divmod(offset, cols)
        lr = image.lr[:, y : y + p, x : x + p]
        hr = image.hr[:, y * r : (y + p) * r, x * r : (x + p) * r]
        if self.augment:
            t = int(rng.integers(8))
            lr, hr = _dihedral(lr, t), _dihedral(hr, t)
        return torch.from_numpy(np.ascontiguousarray(lr)), torch.from_numpy(np.ascontiguousarray(hr))


def _dihedral(x: np.ndarray, t: int) -> np.ndarray:
    """Element ``t`` (0..7) of the dihedral group on the last two axes: rotate by ``t % 4`` quarter turns, then
    mirror left-right when ``t >= 4``."""
    x = np.rot90(x, t % 4, axes=(-2, -1))
    return x[..., ::-1] if t >= 4 else x
