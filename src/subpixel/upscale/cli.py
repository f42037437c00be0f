"""``subpixel upscale``: upscale images, folders of images, or videos with the bundled or given weights.

Examples (shell)::

    subpixel upscale photo.png --scale 3 -o photo_x3.png
    subpixel upscale shots/ --scale 2 -o shots_x2/ --format webp
    subpixel upscale clip.mp4 --scale 2 -o clip_x2.mp4
    subpixel upscale big.tif --scale 4 --max-memory 256M --backend onnxruntime

A bad input (missing, not an image, truncated, too large) is reported with its name and the batch goes on; the
exit code is 1 when any input failed, with a summary at the end. Existing outputs are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from subpixel.cli import positive_int
from subpixel.imageio import DEFAULT_MAX_PIXELS, FORMAT_EXTENSIONS, ImageReadError
from subpixel.upscale.tiling import DEFAULT_MAX_MEMORY, format_size, parse_size

if TYPE_CHECKING:
    import torch

__all__ = ["add_arguments", "collect_jobs", "run"]

_IMAGE_EXTENSIONS = tuple(s for group in FORMAT_EXTENSIONS.values() for s in group)


def _memory(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``subpixel upscale``."""
    parser.add_argument(
        "inputs", nargs="+", metavar="IN", type=Path, help="image files, folders or video files"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="output file (one input) or folder (several inputs or a folder); "
        "default: NAME_xR.EXT beside each input",
    )
    parser.add_argument("--scale", type=int, choices=(2, 3, 4), required=True, help="upscaling factor")
    parser.add_argument(
        "--weights", type=Path, help="a .safetensors file from 'subpixel train' (default: bundled)"
    )
    parser.add_argument(
        "--format",
        choices=sorted({*(n.lower() for n in FORMAT_EXTENSIONS), "jpg", "tif"}),
        help="output image format (default: the input's)",
    )
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--tile", type=positive_int, help="tile side in LR pixels (default: from --max-memory)"
    )
    parser.add_argument(
        "--max-memory",
        type=_memory,
        default=DEFAULT_MAX_MEMORY,
        metavar="SIZE",
        help=f"memory budget of one tile, e.g. 256M or 1G (default {format_size(DEFAULT_MAX_MEMORY)})",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse larger input images (decompression-bomb guard; default PIL's {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default="torch", help="inference engine"
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help="torch backend: bf16 is faster on CPUs with AMX/AVX-512-BF16 (its Y-PSNR loss is measured by "
        "benchmarks/upscale.py); default fp32 for images, for videos bf16 where the CPU has it",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch backend: torch.compile with fused convolution + activation (seconds to compile per input "
        "size); default off for images, on for videos, which compile only when long enough to pay for it",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads (default: PyTorch's choice; for videos one less, leaving a core to the encoder)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in _IMAGE_EXTENSIONS


def _out_suffix(source: Path, fmt: str | None) -> str:
    if fmt is None:
        return source.suffix
    name = {"jpg": "jpeg", "tif": "tiff"}.get(fmt.lower(), fmt.lower())
    return FORMAT_EXTENSIONS[name.upper()][0]


def collect_jobs(
    inputs: Iterable[Path], output: Path | None, scale: int, fmt: str | None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pair every input file with its output path.

    A folder contributes its image and video files (recursively, sorted), mirrored under ``output``. With one
    input file, ``output`` is the output file (or a folder to put it in); otherwise a folder, created when
    missing. Without ``output``, each result goes beside its input as ``NAME_xR.EXT``.

    Args:
        inputs: files and folders.
        output: the ``-o`` argument.
        scale: the factor, for default names.
        fmt: the ``--format`` argument (changes output extensions).

    Returns:
        ``(jobs, problems)``: (input, output) pairs and messages about inputs that do not exist.
    """
    from subpixel.upscale.video import is_video

    jobs: list[tuple[Path, Path]] = []
    problems: list[str] = []
    inputs = list(inputs)
    single_file = len(inputs) == 1 and inputs[0].is_file()
    for item in inputs:
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and (_is_image(p) or is_video(p)))
            if not files:
                problems.append(f"{item}: no image or video files in this folder")
            for file in files:
                relative = file.relative_to(item)
                if output is None:
                    target = file.with_name(
                        f"{file.stem}_x{scale}{_out_suffix(file, None if is_video(file) else fmt)}"
                    )
                else:
                    base = output / item.name if len(inputs) > 1 else output
                    target = (base / relative).with_suffix(_out_suffix(file, None if is_video(file) else fmt))
                jobs.append((file, target))
        elif item.exists() or _is_image(item) or is_video(item):
            suffix = _out_suffix(item, None if is_video(item) else fmt)
            if output is None:
                target = item.with_name(f"{item.stem}_x{scale}{suffix}")
            elif single_file and not output.is_dir():
                target = output
            else:
                target = output / f"{item.stem}{suffix}"
            jobs.append((item, target))
        else:
            problems.append(f"{item}: no such file or folder")
    return jobs, problems


def _load_model(args: argparse.Namespace) -> torch.nn.Module:
    from subpixel import sr

    if args.weights is None:
        return sr.pretrained(args.scale)
    model = sr.load(args.weights)
    if model.scale != args.scale:
        raise ValueError(f"--weights {args.weights} is a ×{model.scale} model, but --scale is {args.scale}")
    return model


def run(args: argparse.Namespace) -> int:
    """Upscale every input; returns 0 when all succeeded, 1 when some failed, 2 on a usage error."""
    import torch
    from tqdm import tqdm

    from subpixel.upscale.image import Upscaler, upscale_file
    from subpixel.upscale.video import VideoReadError, is_video, upscale_video, video_upscaler

    if args.threads:
        torch.set_num_threads(args.threads)
    jobs, problems = collect_jobs(args.inputs, args.output, args.scale, args.format)
    if not jobs and problems:
        for message in problems:
            print(f"subpixel upscale: {message}", file=sys.stderr)
        return 2
    try:
        model = _load_model(args)
        upscaler = Upscaler(
            model,
            backend=args.backend,
            precision=args.precision or "fp32",
            compile=bool(args.compile),
            tile=args.tile,
            max_memory=args.max_memory,
            max_pixels=args.max_pixels,
        )
    except (ValueError, OSError, ImportError) as exc:
        print(f"subpixel upscale: {exc}", file=sys.stderr)
        return 2
    # one for all videos: the shapes it compiles are kept for the next video of that size
    for_videos = video_upscaler(upscaler, precision=args.precision, compile=args.compile)
    failures = [(None, m) for m in problems]
    done = 0
    show = not args.quiet
    bar = tqdm(total=len(jobs), unit="file", disable=not show or len(jobs) < 2, desc="upscale")

    def say(message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    for source, target in jobs:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_video(source):
                with tqdm(unit="frame", desc=source.name, disable=not show, leave=False) as frames:

                    def tick(count: int, total: int | None, fps: float, frames: tqdm = frames) -> None:
                        if total and frames.total != total:
                            frames.total = total
                        frames.update(count - frames.n)
                        frames.set_postfix(fps=f"{fps:.2f}")

                    video = upscale_video(
                        source,
                        target,
                        for_videos,
                        force=args.force,
                        threads=args.threads,
                        progress=tick,
                        warn=say,
                    )
                if show:
                    say(
                        f"{source} -> {target}: {video.frames} frames {video.size_in[0]}×{video.size_in[1]} -> "
                        f"{video.size_out[0]}×{video.size_out[1]} ({video.frames / video.seconds:.2f} fps)"
                    )
            else:
                with tqdm(
                    unit="px",
                    unit_scale=True,
                    desc=source.name,
                    disable=not show or len(jobs) > 1,
                    leave=False,
                ) as pixels:
                    result = upscale_file(
                        source,
                        target,
                        upscaler,
                        format=args.format,
                        force=args.force,
                        progress=pixels.update,
                        warn=say,
                    )
                if show and len(jobs) == 1:
                    say(
                        f"{source} -> {target}: {result.size_in[0]}×{result.size_in[1]} -> "
                        f"{result.size_out[0]}×{result.size_out[1]} {result.format} {result.bit_depth}-bit"
                    )
            done += 1
        except (
            ImageReadError,
            VideoReadError,
            FileExistsError,
            ValueError,
            OSError,
            RuntimeError,
            MemoryError,
        ) as exc:
            failures.append((source, str(exc)))
            say(f"subpixel upscale: {exc}")
        bar.update(1)
    bar.close()
    total = len(jobs) + len(problems)
    if failures:
        print(
            f"subpixel upscale: {done} of {total} inputs upscaled, {len(failures)} failed:", file=sys.stderr
        )
        for _, message in failures:
            print(f"  {message}", file=sys.stderr)
        return 1
    if show and len(jobs) > 1:
        print(f"subpixel upscale: {done} of {total} inputs upscaled", file=sys.stderr)
    return 0
