"""``subpixel evaluate``: score SR weights by the standard protocol, with bicubic beside them.

The protocol is :mod:`subpixel.sr.protocol` (../shared/GUIDE.md §3): modcrop, MATLAB bicubic LR (the
``*_LR.png`` files of a standard test set, or made from the HR images), super-resolve, clamp and round to 8 bits,
Y of BT.601, border crop = scale, PSNR and SSIM per image, means over the set.

How a model sees an image (the convention of training, :func:`subpixel.sr.data.to_model_channels`):

* ``channels == "y"``: the input is the LR image's Y divided by 255 (:func:`~subpixel.sr.color.model_y`: in
  [16/255, 235/255]; a grayscale image as its RGB copy, ``(16 + 219·g) / 255``, exactly as upscaling takes it);
  the output is read the same way, as ``Y / 255``, and scored on Y directly (rounded to 8-bit levels of Y); for
  a grayscale image the output is turned back into gray values (:func:`~subpixel.sr.color.gray_from_model_y`),
  which the protocol scores as their own Y. Colour figures take Cb and Cr from the bicubic image.
* ``channels == "rgb"``: the input is RGB in [0, 1] (a grayscale image repeated three times; the gray result is
  then the gray value of the output's Y); the output is RGB in [0, 1], scored through its Y.

Python API: :func:`evaluate` (one folder), :func:`format_table`, :func:`save_figure`; the standing beside the
published references (:data:`PUBLISHED_RESULTS`): :func:`standing`, :func:`format_standing`, :func:`save_macs_figure`. Command line
(:mod:`subpixel.cli.evaluate`)::

    subpixel evaluate --weights W.safetensors --data ../shared/data/sr/Set5 ../shared/data/sr/Set14 --scale 3 \\
        --json results.json --figure crops.png
    subpixel evaluate --pretrained --scale 3 --data ../shared/data/sr/Set5 ../shared/data/sr/Set14 \\
        --figure-macs standing_x3.png

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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from subpixel.errors import SubpixelError
from subpixel.sr.color import gray_from_model_y, model_y, quantize_uint8, rgb_to_ycbcr, to_y, ycbcr_to_rgb
from subpixel.sr.data import to_model_channels
from subpixel.sr.metrics import Score, score_pair
from subpixel.sr.protocol import UpscaleFn, score_images
from subpixel.sr.resize import bicubic_upscaler
from subpixel.sr.testsets import find_test_images

__all__ = [
    "PUBLISHED_RESULTS",
    "EvaluationResult",
    "ImageEvaluation",
    "PublishedResult",
    "StandingRow",
    "evaluate",
    "format_standing",
    "format_table",
    "model_upscaler",
    "save_figure",
    "save_macs_figure",
    "standing",
]

PROTOCOL_DESCRIPTION = (
    "modcrop to multiples of the scale; LR = MATLAB imresize(HR, 1/r, 'bicubic') (the set's *_LR.png when "
    "present); super-resolve; clamp to [0, 1] and round to 8 bits; Y of BT.601 rgb2ycbcr (grayscale is its own "
    "Y); crop r pixels per border; PSNR (float64, peak 255) and SSIM (Gaussian 11, sigma 1.5, K1 0.01, K2 0.03) "
    "per image; mean over images"
)


def model_upscaler(
    model: nn.Module, *, channels: str | None = None, device: torch.device | str | None = None
) -> UpscaleFn:
    """Wrap an SR model as an :data:`~subpixel.sr.protocol.UpscaleFn` (see the module docs for the convention).

    Args:
        model: a module whose forward maps ``(N, C, h, w)`` to ``(N, C, h·r, w·r)``; it runs in eval mode
            without gradients.
        channels: ``"y"`` or ``"rgb"``; by default the model's ``.channels``.
        device: where to run it (default: where its parameters are).

    Returns:
        ``(lr, scale) -> sr``: ``lr`` float ``(h, w, C)`` in [0, 1]; ``sr`` the ``(h·r, w·r)`` plane ``Y / 255``
        for a Y model, else ``(h·r, w·r, C)``; for a gray ``lr`` the ``(h·r, w·r)`` gray plane.

    Raises:
        SubpixelError: ``channels`` (or ``model.channels``) is missing or not ``"y"`` / ``"rgb"``.
    """
    if channels is None:
        channels = getattr(model, "channels", None)
    if channels not in ("y", "rgb"):
        raise SubpixelError(f"model channels must be 'y' or 'rgb', got {channels!r}")
    parameter = next(iter(model.parameters()), None)
    dtype = parameter.dtype if parameter is not None and parameter.dtype.is_floating_point else torch.float32
    run_device = (
        torch.device(device) if device is not None else (parameter.device if parameter is not None else None)
    )
    if device is not None:
        model = model.to(run_device)

    def upscale(lr: np.ndarray, scale: int) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(to_model_channels(lr, channels)))[None].to(
            run_device, dtype
        )
        model.eval()
        with torch.inference_mode():
            out = model(x)
        expected = (1, x.shape[1], x.shape[2] * scale, x.shape[3] * scale)
        if tuple(out.shape) != expected:
            raise SubpixelError(
                f"the model returned shape {tuple(out.shape)} for input {tuple(x.shape)}; expected {expected}"
            )
        sr = out[0].detach().to("cpu", torch.float64).numpy()
        gray = lr.shape[2] <= 2
        y = sr[0] if channels == "y" else (model_y(sr, channel_axis=0) if gray else None)
        if y is None:
            return sr.transpose(1, 2, 0)
        return gray_from_model_y(y) if gray else y

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

    def _mean(self, who: str, metric: str) -> float:
        return float(np.mean([getattr(getattr(i, who), metric) for i in self.images]))

    mean_psnr = property(lambda self: self._mean("model", "psnr"), doc="The model's mean Y-PSNR (dB).")
    mean_ssim = property(lambda self: self._mean("model", "ssim"), doc="The model's mean SSIM.")
    bicubic_mean_psnr = property(
        lambda self: self._mean("bicubic", "psnr"), doc="Bicubic's mean Y-PSNR (dB)."
    )
    bicubic_mean_ssim = property(lambda self: self._mean("bicubic", "ssim"), doc="Bicubic's mean SSIM.")

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
        raise SubpixelError(f"scale must be an integer >= 1, got {scale!r}")
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
    model_or_upscaler: nn.Module | UpscaleFn,
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
            through :func:`model_upscaler`; or an :data:`~subpixel.sr.protocol.UpscaleFn` callable.
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
            raise SubpixelError(f"the model upscales ×{model_scale}; it cannot be evaluated at scale {r}")
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
    results: Sequence[EvaluationResult],
    path: str | Path,
    *,
    crop: int = 96,
    max_rows: int = 8,
    label: str = "model",
) -> Path:
    """Save a PNG of side-by-side crops (HR, bicubic, model), one row per image, written atomically.

    Each crop is the ``crop × crop`` HR window where bicubic's error is largest, shown without smoothing.

    Args:
        results: from :func:`evaluate` with ``keep_pictures=True``.
        path: the PNG file (its folder must exist).
        crop: crop size in HR pixels (clipped to the image).
        max_rows: at most this many images (the first ones, in order).
        label: the model's name in the panel titles.

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
        raise SubpixelError(f"the folder of the figure {str(path)!r} does not exist")
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 8:
        raise SubpixelError(f"crop must be an integer >= 8 (HR pixels), got {crop!r}")
    rows = [(res, img) for res in results for img in res.images][: max(1, int(max_rows))]
    if not rows or any(img.pictures is None for _, img in rows):
        raise SubpixelError("save_figure needs results from evaluate(..., keep_pictures=True)")
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
            "model": f"{label} {img.model.psnr:.2f} dB",
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


# ------------------------------------------------------------------------------------------------ standing


@dataclass(frozen=True)
class PublishedResult:
    """One published network's figures at one scale, from its authors' paper.

    Attributes:
        model: the network, as its paper names it (``"FSRCNN (56,12,4)"``).
        source: the paper.
        training_data: what it was trained on (figures are comparable only within one protocol and data).
        scale: the SR scale factor.
        macs_per_pixel: multiply-adds per HR pixel of the published architecture (Y channel, weights only).
        set5, set14: mean Y-PSNR (dB) on Set5 and Set14 by the standard protocol (``None``: not published).
    """

    model: str
    source: str
    training_data: str
    scale: int
    macs_per_pixel: float
    set5: float | None
    set14: float | None

    def psnr(self, dataset: str) -> float | None:
        """The published Y-PSNR on ``dataset`` (``"Set5"`` or ``"Set14"``, any case), else ``None``."""
        return {"set5": self.set5, "set14": self.set14}.get(dataset.lower())


_SRCNN = ("SRCNN 9-5-5", "Dong et al. 2016, TPAMI 38(2)", "ImageNet")
_ESPCN = ("ESPCN", "Shi et al. 2016, CVPR", "T91")
_FSRCNN = ("FSRCNN (56,12,4)", "Dong, Loy, Tang 2016, ECCV", "T91 + General-100")

#: The published reference figures, the one table in the code that holds them: Y-PSNR (dB) on Set5 / Set14 by
#: the standard protocol and MACs per HR pixel computed from the published architectures. Source: the authors'
#: papers, as tabulated in ../shared/GUIDE.md §3 (PSNR) and §6 (PSNR, MACs per HR pixel). ESPCN's authors
#: published ×3 only (T91 training).
PUBLISHED_RESULTS: tuple[PublishedResult, ...] = (
    PublishedResult(*_SRCNN, 2, 57_184, 36.66, 32.45),
    PublishedResult(*_SRCNN, 3, 57_184, 32.75, 29.30),
    PublishedResult(*_SRCNN, 4, 57_184, 30.48, 27.50),
    PublishedResult(*_ESPCN, 3, 2_514, 32.55, 29.08),
    PublishedResult(*_FSRCNN, 2, 3_116, 36.94, 32.63),
    PublishedResult(*_FSRCNN, 3, 1_385, 33.06, 29.37),
    PublishedResult(*_FSRCNN, 4, 779, 30.55, 27.50),
)


@dataclass(frozen=True)
class StandingRow:
    """One line of the standing: a measured model, the bicubic baseline, or a published figure.

    Attributes:
        name: what is scored.
        kind: ``"measured"`` (a model scored here), ``"baseline"`` (bicubic, scored here) or ``"published"``.
        macs_per_pixel: multiply-adds per HR pixel (``None`` for bicubic, a fixed interpolation).
        psnr: mean Y-PSNR (dB) per dataset name, ``None`` where there is no figure.
        source: where a published figure comes from (``""`` for measured rows).
    """

    name: str
    kind: str
    macs_per_pixel: float | None
    psnr: dict[str, float | None]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {
            "name": self.name,
            "kind": self.kind,
            "macs_per_pixel": self.macs_per_pixel,
            "psnr": dict(self.psnr),
            "source": self.source,
        }


def standing(
    measured: Mapping[str, tuple[float | None, Sequence[EvaluationResult]]], scale: int
) -> list[StandingRow]:
    """The standing at ``scale``: bicubic, every measured model, and the published figures of that scale.

    Args:
        measured: model name -> ``(MACs per HR pixel or None, its results per dataset)`` from :func:`evaluate`;
            bicubic is read from the first model's results.
        scale: the SR scale factor.

    Returns:
        Rows: bicubic first, then the measured models in the given order, then :data:`PUBLISHED_RESULTS` of
        ``scale`` by MACs; PSNR per dataset evaluated (published figures exist for Set5 and Set14 only).

    Raises:
        ValueError: no model, or results of another scale.

    Examples:
        >>> s = Score(30.0, 0.9)
        >>> res = EvaluationResult("Set5", "Set5", 3, (ImageEvaluation("a", "a.png", (6, 6), s, Score(28.0, 0.8)),))
        >>> rows = standing({"espcn": (2514.0, [res])}, 3)
        >>> [(r.name, r.psnr["Set5"]) for r in rows][:3]
        [('bicubic', 28.0), ('espcn', 30.0), ('FSRCNN (56,12,4)', 33.06)]
    """
    if not measured:
        raise SubpixelError("standing needs at least one measured model")
    first = next(iter(measured.values()))[1]
    datasets = [r.dataset for r in first]
    for name, (_, results) in measured.items():
        for result in results:
            if result.scale != scale:
                raise SubpixelError(
                    f"the results of {name!r} on {result.dataset} are at ×{result.scale}, not ×{scale}"
                )
    rows = [StandingRow("bicubic", "baseline", None, {r.dataset: r.bicubic_mean_psnr for r in first})]
    for name, (macs, results) in measured.items():
        rows.append(StandingRow(name, "measured", macs, {r.dataset: r.mean_psnr for r in results}))
    published = sorted((p for p in PUBLISHED_RESULTS if p.scale == scale), key=lambda p: p.macs_per_pixel)
    for p in published:
        rows.append(
            StandingRow(
                f"{p.model}",
                "published",
                p.macs_per_pixel,
                {d: p.psnr(d) for d in datasets},
                f"{p.source}; trained on {p.training_data}",
            )
        )
    return rows


def format_standing(rows: Sequence[StandingRow], scale: int) -> str:
    """A text table of :func:`standing`: Y-PSNR per dataset and MACs per HR pixel.

    Examples:
        >>> print(format_standing([StandingRow("bicubic", "baseline", None, {"Set5": 30.39})], 3))
        Standing at ×3: mean Y-PSNR (dB) by the standard protocol, MACs per HR pixel
        model                  figure       MACs/HR px    Set5
        bicubic                baseline              —   30.39
    """
    datasets = list(dict.fromkeys(d for row in rows for d in row.psnr))
    lines = [
        f"Standing at ×{scale}: mean Y-PSNR (dB) by the standard protocol, MACs per HR pixel",
        f"{'model':<22} {'figure':<10} {'MACs/HR px':>12}" + "".join(f"  {d:>6}" for d in datasets),
    ]
    for row in rows:
        macs = "—" if row.macs_per_pixel is None else f"{row.macs_per_pixel:,.0f}"
        cells = "".join(
            f"  {'—':>6}" if row.psnr.get(d) is None else f"  {row.psnr[d]:6.2f}" for d in datasets
        )
        lines.append(f"{row.name[:22]:<22} {row.kind:<10} {macs:>12}" + cells)
    return "\n".join(lines)


def save_macs_figure(rows: Sequence[StandingRow], path: str | Path, scale: int) -> Path:
    """Save a PNG of PSNR against MACs per HR pixel, one panel per dataset, written atomically.

    Measured models are filled markers, published figures hollow ones, each labelled; bicubic is a dashed
    horizontal line. MACs are on a log axis.

    Args:
        rows: from :func:`standing`.
        path: the PNG file (its folder must exist).
        scale: the SR scale factor (for the title).

    Returns:
        ``path``.

    Raises:
        ValueError: a missing folder, or no row with both MACs and a PSNR.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    from subpixel.imageio import atomic_output

    path = Path(path)
    if not path.parent.is_dir():
        raise SubpixelError(f"the folder of the figure {str(path)!r} does not exist")
    datasets = list(dict.fromkeys(d for row in rows for d in row.psnr))
    points = [r for r in rows if r.macs_per_pixel is not None and any(v is not None for v in r.psnr.values())]
    if not datasets or not points:
        raise SubpixelError("save_macs_figure needs rows with MACs per HR pixel and a PSNR (from standing())")
    fig = Figure(figsize=(5.0 * len(datasets), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets, strict=True):
        for row in rows:
            value = row.psnr.get(dataset)
            if value is None:
                continue
            if row.macs_per_pixel is None:
                ax.axhline(value, color="gray", ls="--", lw=1, label=f"{row.name} {value:.2f}")
                continue
            filled = row.kind == "measured"
            ax.scatter(
                [row.macs_per_pixel],
                [value],
                s=50,
                marker="o" if filled else "s",
                facecolors="C0" if filled else "none",
                edgecolors="C0" if filled else "C3",
                zorder=3,
            )
            ax.annotate(
                f"{row.name} {value:.2f}",
                (row.macs_per_pixel, value),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        low, high = ax.get_xlim()
        ax.set_xlim(low / 1.3, high * 3.0)  # room for the labels right of the points
        ax.set_xlabel("multiply-adds per HR pixel")
        ax.set_ylabel("Y-PSNR (dB)")
        ax.set_title(f"{dataset} ×{scale} (filled: measured here; hollow: published)", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
