"""``subpixel evaluate``: score SR weights by the standard protocol, with bicubic beside them.

The protocol is :mod:`subpixel.sr.protocol` (../shared/GUIDE.md §3): modcrop, MATLAB bicubic LR (the
``*_LR.png`` files of a standard test set, or made from the HR images), super-resolve, clamp and round to 8 bits,
Y of BT.601, border crop = scale, PSNR and SSIM per image, means over the set.

How a model sees an image (the convention of training, :func:`subpixel.sr.data.to_model_channels`):

* ``channels == "y"``: the input is the LR image's Y divided by 255, ``rgb_to_ycbcr(lr)[..., 0] / 255`` (so
  in [16/255, 235/255]; a grayscale image is its own Y, i.e. the gray values in [0, 1]); the output is read the
  same way, as ``Y / 255``, and scored on Y directly (rounded to 8-bit levels of Y). Colour figures take Cb and
  Cr from the bicubic image.
* ``channels == "rgb"``: the input is RGB in [0, 1] (a grayscale image repeated three times; the output's mean
  over the channels is then the gray result); the output is RGB in [0, 1], scored through its Y.

Python API: :func:`evaluate` (one folder), :func:`format_table`, :func:`save_figure`. Command line
(:mod:`subpixel.cli.evaluate`)::

    subpixel evaluate --weights W.safetensors --data ../shared/data/sr/Set5 ../shared/data/sr/Set14 --scale 3 \\
        --json results.json --figure crops.png
    subpixel evaluate --pretrained --scale 3 --data ../shared/data/sr/Set5

Examples:
    >>> import tempfile, pathlib
    >>> from subpixel.imageio import write_image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_image(folder / "wave.png", 0.5 + 0.4 * np.sin(np.arange(48)[None, :, None] / 4) * np.ones((42, 1, 3)))
    >>> result = evaluate(bicubic_upscaler, folder, 3, progress=False)   # any upscaler, or an nn.Module
    >>> round(result.mean_psnr - result.bicubic_mean_psnr, 6)
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from subpixel.sr.color import quantize_uint8, rgb_to_ycbcr, to_y, ycbcr_to_rgb
from subpixel.sr.metrics import Score, score_pair
from subpixel.sr.protocol import Upscaler, score_images
from subpixel.sr.resize import bicubic_upscaler
from subpixel.sr.testsets import find_test_images

__all__ = [
    "EvaluationResult",
    "ImageEvaluation",
    "evaluate",
    "format_table",
    "model_upscaler",
    "save_figure",
]

PROTOCOL_DESCRIPTION = (
    "modcrop to multiples of the scale; LR = MATLAB imresize(HR, 1/r, 'bicubic') (the set's *_LR.png when "
    "present); super-resolve; clamp to [0, 1] and round to 8 bits; Y of BT.601 rgb2ycbcr (grayscale is its own "
    "Y); crop r pixels per border; PSNR (float64, peak 255) and SSIM (Gaussian 11, sigma 1.5, K1 0.01, K2 0.03) "
    "per image; mean over images"
)


def _model_input(lr: np.ndarray, channels: str) -> np.ndarray:
    """``(C, h, w)`` float64 model input from an LR image ``(h, w, C)`` in [0, 1], as training builds it."""
    from subpixel.sr.data import to_model_channels

    return to_model_channels(lr, channels)


def model_upscaler(model: nn.Module, *, device: torch.device | str | None = None) -> Upscaler:
    """Wrap an SR model as an :data:`~subpixel.sr.protocol.Upscaler` (see the module docs for the convention).

    Args:
        model: a module with ``.channels`` (``"y"`` or ``"rgb"``) whose forward maps ``(N, C, h, w)`` to
            ``(N, C, h·r, w·r)``; it runs in eval mode without gradients.
        device: where to run it (default: where its parameters are).

    Returns:
        ``(lr, scale) -> sr``: ``lr`` float ``(h, w, C)`` in [0, 1]; ``sr`` the ``(h·r, w·r)`` plane ``Y / 255``
        for a Y model, else ``(h·r, w·r, C)`` (gray for a gray ``lr``).

    Raises:
        ValueError: ``model.channels`` is missing or not ``"y"`` / ``"rgb"``.
    """
    channels = getattr(model, "channels", None)
    if channels not in ("y", "rgb"):
        raise ValueError(f"model.channels must be 'y' or 'rgb', got {channels!r}")
    parameter = next(iter(model.parameters()), None)
    dtype = parameter.dtype if parameter is not None and parameter.dtype.is_floating_point else torch.float32
    run_device = (
        torch.device(device) if device is not None else (parameter.device if parameter is not None else None)
    )
    if device is not None:
        model = model.to(run_device)

    def upscale(lr: np.ndarray, scale: int) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(_model_input(lr, channels)))[None].to(run_device, dtype)
        model.eval()
        with torch.inference_mode():
            out = model(x)
        expected = (1, x.shape[1], x.shape[2] * scale, x.shape[3] * scale)
        if tuple(out.shape) != expected:
            raise ValueError(
                f"the model returned shape {tuple(out.shape)} for input {tuple(x.shape)}; expected {expected}"
            )
        sr = out[0].detach().to("cpu", torch.float64).numpy()
        if channels == "y":
            return sr[0]
        rgb = sr.transpose(1, 2, 0)
        return rgb.mean(axis=2, keepdims=True) if lr.shape[2] == 1 else rgb

    return upscale


@dataclass(frozen=True)
class ImageEvaluation:
    """One image's scores, and (when asked for) the pictures for a figure.

    Attributes:
        name: the image's name.
        path: its HR file.
        shape: HR ``(height, width)`` after modcrop.
        model: the model's :class:`~subpixel.sr.protocol.Score`.
        bicubic: the bicubic baseline's score.
        pictures: ``{"hr", "bicubic", "model"}`` -> float ``(H, W, C)`` in [0, 1], 8-bit values (only with
            ``keep_pictures=True``).
    """

    name: str
    path: str
    shape: tuple[int, int]
    model: Score
    bicubic: Score
    pictures: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (without the pictures)."""
        return {
            "name": self.name,
            "path": self.path,
            "height": self.shape[0],
            "width": self.shape[1],
            "psnr": self.model.psnr,
            "ssim": self.model.ssim,
            "bicubic_psnr": self.bicubic.psnr,
            "bicubic_ssim": self.bicubic.ssim,
        }


@dataclass(frozen=True)
class EvaluationResult:
    """Per-image and mean scores of a model and of bicubic on one test set."""

    dataset: str
    data_dir: str
    scale: int
    images: tuple[ImageEvaluation, ...]

    @property
    def mean_psnr(self) -> float:
        """The model's mean Y-PSNR (dB)."""
        return float(np.mean([i.model.psnr for i in self.images]))

    @property
    def mean_ssim(self) -> float:
        """The model's mean SSIM."""
        return float(np.mean([i.model.ssim for i in self.images]))

    @property
    def bicubic_mean_psnr(self) -> float:
        """Bicubic's mean Y-PSNR (dB)."""
        return float(np.mean([i.bicubic.psnr for i in self.images]))

    @property
    def bicubic_mean_ssim(self) -> float:
        """Bicubic's mean SSIM."""
        return float(np.mean([i.bicubic.ssim for i in self.images]))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "scale": self.scale,
            "mean": {
                "psnr": self.mean_psnr,
                "ssim": self.mean_ssim,
                "bicubic_psnr": self.bicubic_mean_psnr,
                "bicubic_ssim": self.bicubic_mean_ssim,
            },
            "images": [i.to_dict() for i in self.images],
        }


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    return scale


def _display_pictures(hr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray) -> dict[str, np.ndarray]:
    """HR, bicubic and model pictures as 8-bit-valued floats ``(H, W, C)``; a Y output gets bicubic's Cb, Cr."""
    bic8 = quantize_uint8(bicubic) / 255.0
    if hr.shape[2] == 1:  # grayscale: the model's output is the picture
        model = quantize_uint8(sr.reshape(hr.shape)) / 255.0
    elif sr.ndim == 2 or sr.shape[2] == 1:  # the Y plane of a Y model, for an RGB image
        ycbcr = rgb_to_ycbcr(bic8)
        ycbcr[..., 0] = quantize_uint8(sr.reshape(sr.shape[:2])).astype(np.float64)
        model = quantize_uint8(ycbcr_to_rgb(ycbcr)) / 255.0
    else:
        model = quantize_uint8(sr) / 255.0
    return {"hr": hr, "bicubic": bic8, "model": model}


def evaluate(
    model_or_upscaler: nn.Module | Upscaler,
    data_dir: str | Path,
    scale: int,
    *,
    device: torch.device | str | None = None,
    progress: bool = True,
    keep_pictures: bool = False,
) -> EvaluationResult:
    """Score a model (or any upscaler) and bicubic on one test-set folder by the protocol.

    Args:
        model_or_upscaler: an ``nn.Module`` with ``.channels`` (and ``.scale``, checked against ``scale``), run
            through :func:`model_upscaler`; or an :data:`~subpixel.sr.protocol.Upscaler` callable.
        data_dir: a standard test set (``img_NNN_SRF_{r}_HR.png`` + ``_LR.png``) or a plain folder of HR images.
        scale: the SR scale factor ``r``.
        device: where to run a model.
        progress: show a progress bar (tqdm).
        keep_pictures: keep HR, bicubic and model pictures per image (for :func:`save_figure`).

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        ValueError: a model trained for another scale, a bad folder, unreadable images, wrong output shapes.
    """
    r = _check_scale(scale)
    if isinstance(model_or_upscaler, nn.Module):
        model_scale = getattr(model_or_upscaler, "scale", None)
        if model_scale is not None and model_scale != r:
            raise ValueError(f"the model upscales ×{model_scale}; it cannot be evaluated at scale {r}")
        upscaler = model_upscaler(model_or_upscaler, device=device)
    elif callable(model_or_upscaler):
        upscaler = model_or_upscaler
    else:
        raise TypeError(
            f"model_or_upscaler must be an nn.Module or a callable, got {type(model_or_upscaler).__name__}"
        )
    folder = Path(data_dir)
    scored = score_images(
        upscaler, find_test_images(folder, r), r, progress=progress, desc=f"{folder.name} ×{r}"
    )
    results = []
    for item in scored:
        hr, lr = item.image.hr, item.image.lr
        bicubic = bicubic_upscaler(lr, r)
        results.append(
            ImageEvaluation(
                name=item.image.name,
                path=item.image.path,
                shape=(hr.shape[0], hr.shape[1]),
                model=item.score,
                bicubic=score_pair(hr, bicubic, r),
                pictures=_display_pictures(hr, bicubic, item.sr) if keep_pictures else None,
            )
        )
    return EvaluationResult(folder.name, str(folder), r, tuple(results))


def format_table(result: EvaluationResult) -> str:
    """A text table: per image and mean Y-PSNR / SSIM of bicubic and the model, and the gain in dB.

    Examples:
        >>> s = Score(30.0, 0.9)
        >>> table = format_table(EvaluationResult("Set0", "x", 2, (ImageEvaluation("a", "a.png", (4, 6), s, s),)))
        >>> print(table.splitlines()[-1])
        mean                    30.00 / 0.9000   30.00 / 0.9000   +0.00
    """
    head = f"{result.dataset} ×{result.scale}: Y-PSNR (dB) / SSIM, {len(result.images)} images, border {result.scale}"
    lines = [head, f"{'image':<12} {'size':>9}  {'bicubic':>15}  {'model':>15}  {'gain':>6}"]
    for i in result.images:
        size = f"{i.shape[1]}×{i.shape[0]}"
        lines.append(
            f"{i.name[:12]:<12} {size:>9}  {i.bicubic.psnr:6.2f} / {i.bicubic.ssim:.4f}  "
            f"{i.model.psnr:6.2f} / {i.model.ssim:.4f}  {i.model.psnr - i.bicubic.psnr:+6.2f}"
        )
    lines.append(
        f"{'mean':<12} {'':>9}  {result.bicubic_mean_psnr:6.2f} / {result.bicubic_mean_ssim:.4f}  "
        f"{result.mean_psnr:6.2f} / {result.mean_ssim:.4f}  {result.mean_psnr - result.bicubic_mean_psnr:+6.2f}"
    )
    return "\n".join(lines)


def _crop_window(hr: np.ndarray, bicubic: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size × size`` window where bicubic's squared Y error is largest."""
    err = (to_y(hr) - to_y(bicubic)) ** 2
    integral = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    )
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)


def save_figure(
    results: Sequence[EvaluationResult], path: str | Path, *, crop: int = 96, max_rows: int = 8
) -> Path:
    """Save a PNG of side-by-side crops (HR, bicubic, model), one row per image, written atomically.

    Each crop is the ``crop × crop`` HR window where bicubic's error is largest, shown without smoothing.

    Args:
        results: from :func:`evaluate` with ``keep_pictures=True``.
        path: the PNG file (its folder must exist).
        crop: crop size in HR pixels (clipped to the image).
        max_rows: at most this many images (the first ones, in order).

    Returns:
        ``path``.

    Raises:
        ValueError: no pictures kept, a bad crop size, or a missing folder.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from subpixel.imageio import atomic_output

    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"the folder of the figure {str(path)!r} does not exist")
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 8:
        raise ValueError(f"crop must be an integer >= 8 (HR pixels), got {crop!r}")
    rows = [(res, img) for res in results for img in res.images][: max(1, int(max_rows))]
    if not rows or any(img.pictures is None for _, img in rows):
        raise ValueError("save_figure needs results from evaluate(..., keep_pictures=True)")
    fig = Figure(figsize=(9.0, 3.1 * len(rows)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for row, (res, img) in enumerate(rows):
        pics = img.pictures or {}
        size = min(crop, img.shape[0], img.shape[1])
        top, left = _crop_window(pics["hr"], pics["bicubic"], size)
        titles = {
            "hr": f"{res.dataset}/{img.name} ×{res.scale}: HR",
            "bicubic": f"bicubic {img.bicubic.psnr:.2f} dB",
            "model": f"model {img.model.psnr:.2f} dB",
        }
        for col, key in enumerate(("hr", "bicubic", "model")):
            picture = np.clip(pics[key][top : top + size, left : left + size], 0.0, 1.0)
            ax = axes[row][col]
            if picture.shape[2] == 1:
                ax.imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(picture, interpolation="nearest")
            ax.set_title(titles[key], fontsize=9)
            ax.set_axis_off()
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
