"""The standard super-resolution evaluation protocol, reproducing MATLAB to the last bit.

Published SR numbers (SRCNN, ESPCN, FSRCNN and later papers) are measured this way:

1. crop the HR image to multiples of the scale ``r`` (:func:`modcrop`);
2. LR = MATLAB ``imresize(HR, 1/r, 'bicubic')`` (:func:`imresize`: Keys' cubic with ``a = -0.5``, kernel widened
   by ``r`` when shrinking, edge pixels repeated, height before width, and, for 8-bit images, rounding to
   integers after *each* pass as MATLAB does for ``uint8``);
3. super-resolve, clamp to [0, 1] and round to 8 bits as a saved image is (:func:`quantize_uint8`);
4. take the Y of BT.601 studio-range YCbCr as MATLAB ``rgb2ycbcr`` does (:func:`to_y`, :func:`rgb_to_ycbcr`);
   a grayscale image is its own Y;
5. crop ``r`` pixels from every border and compute :func:`psnr` (float64) and :func:`ssim` (Wang et al. 2004:
   Gaussian window 11, σ = 1.5, K1 = 0.01, K2 = 0.03) per image; report the mean over images.

:func:`score_pair` does steps 3 to 5 for one image, :func:`run_protocol` all five for an upscaler over a folder
(the ``img_NNN_SRF_{r}_HR.png`` / ``_LR.png`` layout of the standard test sets, or a plain folder of HR images),
and :func:`bicubic_upscaler` is the baseline every paper reports. :func:`score_images` is the one loop that
scores an upscaler image by image; :func:`run_protocol`, :func:`subpixel.sr.evaluate.evaluate` and training's
validation all go through it.

The protocol's pieces live by concept, and this module re-exports them:

* :mod:`subpixel.sr.resize`: :func:`modcrop`, MATLAB's :func:`imresize`, :func:`make_lr`, :func:`bicubic_upscaler`;
* :mod:`subpixel.sr.color`: :func:`rgb_to_ycbcr`, :func:`ycbcr_to_rgb`, :func:`to_y`, :func:`quantize_uint8`;
* :mod:`subpixel.sr.metrics`: :func:`psnr`, :func:`ssim`, :class:`Score`, :func:`score_pair`;
* :mod:`subpixel.sr.testsets`: :func:`find_test_images`, :func:`load_test_image`, :func:`read_image_exact`.

Conventions:

* Images are numpy arrays of shape ``(H, W)`` or ``(H, W, C)``, C = 1 (grayscale) or 3 (RGB): floating point in
  [0, 1], or ``uint8`` / ``uint16`` integers. :func:`imresize` and :func:`modcrop` also take torch tensors of
  shape ``(*, H, W)`` (channels first, as torch has them).
* YCbCr is on the 8-bit scale: ``Y ∈ [16, 235]`` and ``Cb, Cr ∈ [16, 240]`` for RGB in [0, 1] (MATLAB's
  ``255 * rgb2ycbcr(double(rgb) / 255)``). A Y-channel model sees ``Y / 255``.

Examples:
    >>> hr = np.random.default_rng(0).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    >>> lr = imresize(hr, 1 / 3)                       # uint8 in, uint8 out, rounded after each pass
    >>> lr.shape, lr.dtype
    ((8, 10, 3), dtype('uint8'))
    >>> sr = bicubic_upscaler(lr / 255.0, 3)            # float64 in [0, 1]
    >>> score = score_pair(hr, sr, 3)
    >>> 5 < score.psnr < 20 and 0 < score.ssim < 1
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from subpixel.errors import SubpixelError
from subpixel.sr._images import _check_scale_int
from subpixel.sr.color import quantize_uint8, rgb_to_ycbcr, to_y, ycbcr_to_rgb
from subpixel.sr.metrics import Score, psnr, score_pair, ssim
from subpixel.sr.resize import bicubic_upscaler, imresize, make_lr, modcrop
from subpixel.sr.testsets import (
    IMAGE_EXTENSIONS,
    LoadedImage,
    TestImage,
    find_test_images,
    load_test_image,
    read_image_exact,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageScore",
    "LoadedImage",
    "ProtocolResult",
    "Score",
    "ScoredImage",
    "TestImage",
    "UpscaleFn",
    "bicubic_upscaler",
    "find_test_images",
    "imresize",
    "load_test_image",
    "make_lr",
    "modcrop",
    "psnr",
    "quantize_uint8",
    "read_image_exact",
    "rgb_to_ycbcr",
    "run_protocol",
    "score_images",
    "score_pair",
    "ssim",
    "to_y",
    "ycbcr_to_rgb",
]

#: An upscaling function for the protocol (not :class:`subpixel.upscaling.image.Upscaler`): ``(lr, scale) -> sr``.
#: ``lr`` is float64 ``(h, w, C)`` in [0, 1] (C = 1 or 3); ``sr`` is the ``(h·r, w·r, C)`` image in [0, 1], or,
#: from a Y-channel model, the ``(h·r, w·r)`` plane ``Y / 255`` (for a gray ``lr``, the gray plane).
UpscaleFn = Callable[[np.ndarray, int], np.ndarray]


def _upscale_checked(
    upscaler: UpscaleFn, lr: np.ndarray, hr: np.ndarray, scale: int, name: str
) -> np.ndarray:
    """Run ``upscaler`` and check that it returned ``hr``'s shape or its Y plane."""
    sr = np.asarray(upscaler(lr, scale))
    ok = sr.shape[:2] == hr.shape[:2] and (sr.ndim == 2 or (sr.ndim == 3 and sr.shape[2] in (1, 3)))
    if not ok:
        raise SubpixelError(
            f"upscaler returned shape {sr.shape} for image {name!r}; expected {hr.shape} (or the Y plane "
            f"{hr.shape[:2]}) from an LR image of shape {lr.shape} at scale {scale}"
        )
    return sr


@dataclass(frozen=True)
class ImageScore:
    """The score of one image of a test set."""

    name: str
    psnr: float
    ssim: float
    path: str = ""


@dataclass(frozen=True)
class ProtocolResult:
    """Per-image and mean scores of one upscaler on one test set.

    Attributes:
        dataset: the folder's name (e.g. ``"Set5"``).
        scale: the SR scale factor.
        images: one :class:`ImageScore` per image.
    """

    dataset: str
    scale: int
    images: tuple[ImageScore, ...] = field(default_factory=tuple)

    @property
    def mean_psnr(self) -> float:
        """Mean Y-PSNR over the images (dB)."""
        return float(np.mean([s.psnr for s in self.images]))

    @property
    def mean_ssim(self) -> float:
        """Mean SSIM over the images."""
        return float(np.mean([s.ssim for s in self.images]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "dataset": self.dataset,
            "scale": self.scale,
            "mean_psnr": self.mean_psnr,
            "mean_ssim": self.mean_ssim,
            "images": [s.__dict__ for s in self.images],
        }


@dataclass(frozen=True)
class ScoredImage:
    """One image scored by :func:`score_images`.

    Attributes:
        image: the image read: name, HR file, ``hr`` ``(H, W, C)`` and ``lr`` ``(H / r, W / r, C)``.
        sr: the upscaler's output, ``(H, W, C)`` or the Y plane ``(H, W)``.
        score: its Y-PSNR and SSIM.
    """

    image: LoadedImage
    sr: np.ndarray
    score: Score


def _as_loaded(
    item: TestImage | LoadedImage | tuple[np.ndarray, np.ndarray], index: int, scale: int
) -> LoadedImage:
    if isinstance(item, LoadedImage):
        return item
    if isinstance(item, TestImage):
        hr, lr = load_test_image(item, scale)
        return LoadedImage(item.name, str(item.hr_path), hr, lr)
    if isinstance(item, tuple) and len(item) == 2:
        return LoadedImage(f"image {index}", "", np.asarray(item[0]), np.asarray(item[1]))
    raise TypeError(
        f"images[{index}] must be a TestImage, a LoadedImage or an (hr, lr) pair, got {type(item).__name__}"
    )


def score_images(
    upscaler: UpscaleFn,
    images: Iterable[TestImage | LoadedImage | tuple[np.ndarray, np.ndarray]],
    scale: int,
    *,
    progress: bool = False,
    desc: str = "",
) -> Iterator[ScoredImage]:
    """The protocol's one evaluation loop: read (if needed), upscale and score each image, one at a time.

    Args:
        upscaler: ``(lr, scale) -> sr`` (see :data:`UpscaleFn`).
        images: :class:`TestImage` (read here by :func:`load_test_image`), :class:`LoadedImage`, or ``(hr, lr)``
            float pairs already read (``hr`` ``(H, W, C)``, ``lr`` ``(H / r, W / r, C)``, in [0, 1]).
        scale: the SR scale factor ``r``.
        progress: show a progress bar (tqdm).
        desc: the progress bar's label.

    Yields:
        One :class:`ScoredImage` per image, in order.

    Raises:
        ValueError: an unreadable image, or an upscaler output of the wrong shape.

    Examples:
        >>> hr = np.tile(np.linspace(0.0, 1.0, 24)[None, :, None], (20, 1, 3))
        >>> [s.score.psnr > 30 for s in score_images(bicubic_upscaler, [(hr, make_lr(hr, 2))], 2)]
        [True]
    """
    r = _check_scale_int(scale)
    iterator: Any = images
    if progress:
        from tqdm import tqdm

        total = len(images) if hasattr(images, "__len__") else None
        iterator = tqdm(images, desc=desc, unit="image", total=total, leave=False)
    for index, item in enumerate(iterator):
        image = _as_loaded(item, index, r)
        sr = _upscale_checked(upscaler, image.lr, image.hr, r, image.name)
        yield ScoredImage(image, sr, score_pair(image.hr, sr, r))


def run_protocol(
    upscaler: UpscaleFn, data_dir: str | Path, scale: int, *, progress: bool = False
) -> ProtocolResult:
    """Score an upscaler on a test-set folder by the whole protocol (steps 1 to 5).

    Args:
        upscaler: ``(lr, scale) -> sr`` (see :data:`UpscaleFn`), e.g. :func:`bicubic_upscaler`.
        data_dir: a standard test set (``img_NNN_SRF_{r}_HR.png`` + ``_LR.png``) or a plain folder of HR images.
        scale: the SR scale factor ``r``.
        progress: show a progress bar.

    Returns:
        A :class:`ProtocolResult` with per-image and mean Y-PSNR / SSIM.

    Examples:
        >>> import tempfile, pathlib
        >>> from subpixel.imageio import write_image
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = write_image(folder / "ramp.png", np.tile(np.linspace(0, 1, 40), (36, 1)))
        >>> result = run_protocol(bicubic_upscaler, folder, 2)
        >>> [s.name for s in result.images], result.mean_psnr > 40
        (['ramp'], True)
    """
    r = _check_scale_int(scale)
    scored = score_images(
        upscaler, find_test_images(data_dir, r), r, progress=progress, desc=f"{Path(data_dir).name} ×{r}"
    )
    scores = [ImageScore(s.image.name, s.score.psnr, s.score.ssim, s.image.path) for s in scored]
    return ProtocolResult(Path(data_dir).name, r, tuple(scores))
