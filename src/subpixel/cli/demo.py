"""``subpixel demo``: the main job on an embedded default, with no arguments.

Takes a sample picture that ships with an installed dependency (scikit-image's ``astronaut``; a generated test
pattern when scikit-image is absent), makes its ×3 low-resolution version by the standard protocol
(MATLAB bicubic, :func:`subpixel.sr.protocol.make_lr`), upscales it back with bicubic and with the bundled ESPCN
weights (:func:`subpixel.sr.pretrained`), prints the Y-PSNR / SSIM of both against the original
(:func:`subpixel.sr.protocol.score_pair`), and writes a comparison PNG (original crop, bicubic, ESPCN) whose path
it prints. Like every command, it never writes over an input (``--image``) nor, without ``--force``, over an
existing file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from subpixel.cli._args import add_model_arguments, positive_int
from subpixel.errors import SubpixelError

__all__ = ["add_arguments", "crop_box", "run", "sample_image"]


def sample_image() -> tuple[np.ndarray, str]:
    """A sample RGB image as float64 (H, W, 3) in [0, 1], and its name.

    scikit-image's ``astronaut`` (512×512, public domain, NASA) when scikit-image is installed; otherwise a
    generated 384×384 pattern (rings, edges and gradients), so the demo never needs the network.

    Examples:
        >>> image, name = sample_image()
        >>> image.ndim, image.shape[2], float(image.min()) >= 0, float(image.max()) <= 1
        (3, 3, True, True)
    """
    try:
        from skimage import data

        return data.astronaut().astype(np.float64) / 255.0, "scikit-image astronaut (NASA, public domain)"
    except Exception:  # scikit-image missing or its data unavailable: a generated picture
        size = 384
        yy, xx = np.mgrid[0:size, 0:size] / size
        rings = 0.5 + 0.5 * np.cos(60 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * np.pi)
        bars = (np.floor(xx * 24) % 2) * (yy > 0.75)
        image = np.stack([rings, 0.6 * rings + 0.4 * xx, np.where(yy > 0.75, bars, yy)], -1)
        return np.clip(image, 0, 1), "generated test pattern"


def crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """A centred square crop ``(y0, y1, x0, x1)`` of side at most ``size``.

    Examples:
        >>> crop_box(512, 512, 128)
        (192, 320, 192, 320)
    """
    side = min(size, height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    return y0, y0 + side, x0, x0 + side


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``subpixel demo`` (all optional)."""
    parser.add_argument(
        "--scale", type=int, choices=(2, 3, 4), help="upscaling factor (default: the weights', or 3)"
    )
    parser.add_argument("--image", type=Path, help="use this picture instead of the sample")
    add_model_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("subpixel_demo.png"),
        help="comparison PNG (default: %(default)s)",
    )
    parser.add_argument(
        "--crop", type=positive_int, default=160, help="side of the compared crop in HR pixels"
    )
    parser.add_argument("--force", action="store_true", help="replace the comparison PNG if it exists")


def run(args: argparse.Namespace) -> int:
    """Run the demonstration; returns the exit code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from subpixel import sr
    from subpixel._atomic import atomic_output
    from subpixel.cli._outputs import check_output
    from subpixel.imageio import load_image, quantize
    from subpixel.sr.protocol import bicubic_upscaler, make_lr, modcrop, score_pair
    from subpixel.upscaling.image import upscale_pixels

    inputs = [p for p in (args.image, args.weights) if p is not None]
    check_output(args.output, option="-o", inputs=inputs, force=args.force)  # before any work
    try:
        model = sr.load(args.weights) if args.weights else sr.pretrained(args.scale or 3, model=args.model)
        scale = int(model.scale)
        if args.scale is not None and model.scale != args.scale:
            raise SubpixelError(
                f"--weights {args.weights} is a ×{model.scale} model, but --scale is {args.scale}"
            )
        if args.image is not None:
            loaded = load_image(args.image)
            hr_float = loaded.pixels[..., :3].astype(np.float64)
            if hr_float.shape[-1] == 1:
                hr_float = hr_float.repeat(3, -1)
            name = str(args.image)
        else:
            hr_float, name = sample_image()
    except (SubpixelError, OSError) as exc:  # ImageReadError included
        print(f"subpixel demo: {exc}", file=sys.stderr)
        return 2

    hr = quantize(modcrop(hr_float, scale))  # the 8-bit original, cropped to a multiple of the scale
    lr = make_lr(hr, scale)  # MATLAB bicubic ×1/r (float64 in [0, 1])
    started = time.perf_counter()
    bicubic = bicubic_upscaler(lr, scale)
    espcn = upscale_pixels(lr.astype(np.float32), model)
    seconds = time.perf_counter() - started
    scores = {"bicubic": score_pair(hr, bicubic, scale), f"ESPCN ×{scale}": score_pair(hr, espcn, scale)}

    print(
        f"image: {name}, {hr.shape[1]}×{hr.shape[0]}, low resolution {lr.shape[1]}×{lr.shape[0]} (×{scale})"
    )
    print(f"weights: {args.weights or f'bundled {args.model!r} ×{scale}'} ({model.channels} channel)")
    print(f"{'method':<12} {'Y-PSNR (dB)':>12} {'SSIM':>8}")
    for label, score in scores.items():
        print(f"{label:<12} {score.psnr:>12.2f} {score.ssim:>8.4f}")
    gain = scores[f"ESPCN ×{scale}"].psnr - scores["bicubic"].psnr
    print(f"ESPCN - bicubic: {gain:+.2f} dB  ({seconds:.2f} s for both on this CPU)")

    y0, y1, x0, x1 = crop_box(hr.shape[0], hr.shape[1], args.crop)
    panels = [
        ("original", hr),
        (f"bicubic  {scores['bicubic'].psnr:.2f} dB", quantize(bicubic)),
        (f"ESPCN ×{scale}  {scores[f'ESPCN ×{scale}'].psnr:.2f} dB", quantize(espcn)),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.4), constrained_layout=True)
    for axis, (title, image) in zip(axes, panels):
        axis.imshow(image[y0:y1, x0:x1], interpolation="nearest")
        axis.set_title(title)
        axis.set_axis_off()
    figure.suptitle(f"{name}: ×{scale} from {lr.shape[1]}×{lr.shape[0]} (Y-PSNR over the whole image)")
    with atomic_output(args.output) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    print(f"comparison: {args.output.resolve()}")
    return 0
