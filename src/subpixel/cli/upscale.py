"""``subpixel upscale``: upscale images, folders of images, or videos with the bundled or given weights.

Examples (shell)::

    subpixel upscale photo.png --scale 3 -o photo_x3.png
    subpixel upscale shots/ --scale 2 -o shots_x2/ --format webp
    subpixel upscale clip.mp4 --scale 2 -o clip_x2.mp4
    subpixel upscale big.tif --scale 4 --max-memory 256M --backend onnxruntime

A bad input (missing, not an image, truncated, too large) is reported with its name and the batch goes on; the
exit code is 1 when any input failed, with a summary at the end. Existing outputs are kept: ``--skip-existing``
counts them as done (so an interrupted batch resumes where it stopped), ``--force`` replaces them. Before any work
the run refuses two inputs that would write the same output, and an input that another input's output would
replace; a folder's walk leaves out earlier outputs (``NAME_xR.EXT`` beside ``NAME.EXT``, anything under ``-o``)
and temporary files, and the temporaries a killed run left in the output folders are removed. ``--weights``
files know their scale, so ``--scale`` is only needed for the bundled weights.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from subpixel._atomic import clean_temporaries, is_temporary
from subpixel.cli._args import add_model_arguments, positive_int
from subpixel.cli._errors import describe
from subpixel.errors import SubpixelError
from subpixel.imageio import DEFAULT_MAX_PIXELS, FORMAT_EXTENSIONS, IMAGE_EXTENSIONS
from subpixel.upscaling.tiling import DEFAULT_MAX_MEMORY, format_size, parse_size

if TYPE_CHECKING:
    import torch

__all__ = ["add_arguments", "collect_jobs", "run"]


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
        help="output file (one input, a name with an image or video extension) or folder (otherwise); "
        "default: NAME_xR.EXT beside each input",
    )
    parser.add_argument(
        "--scale",
        type=int,
        choices=(2, 3, 4),
        help="upscaling factor (needed for the bundled weights; --weights files know theirs)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--format",
        choices=sorted({*(n.lower() for n in FORMAT_EXTENSIONS), "jpg", "tif"}),
        help="output image format (default: the input's)",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--force", action="store_true", help="replace existing outputs")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep existing outputs and count them as done (resumes an interrupted batch)",
    )
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
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _out_suffix(source: Path, fmt: str | None) -> str:
    if fmt is None:
        return source.suffix
    name = {"jpg": "jpeg", "tif": "tiff"}.get(fmt.lower(), fmt.lower())
    return FORMAT_EXTENSIONS[name.upper()][0]


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder)


def _earlier_outputs(files: list[Path], scale: int) -> set[Path]:
    """Files named ``NAME_xR.*`` beside a ``NAME.*`` of the same list: what a run without ``-o`` wrote."""
    stems = {(p.parent, p.stem) for p in files}
    suffix = f"_x{scale}"
    return {p for p in files if p.stem.endswith(suffix) and (p.parent, p.stem[: -len(suffix)]) in stems}


def collect_jobs(
    inputs: Iterable[Path], output: Path | None, scale: int, fmt: str | None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pair every input file with its output path, and refuse pairs that would lose a result.

    A folder contributes its image and video files (recursively, sorted), mirrored under ``output``; its walk
    leaves out temporary files (:func:`subpixel._atomic.is_temporary`), anything under ``output``, and the
    ``NAME_xR.EXT`` files beside a ``NAME.EXT`` (the outputs of an earlier run without ``-o``). With one input
    file, ``output`` is the output file (or, when it is a folder or has no extension, the folder to put it in);
    otherwise a folder. Without ``output``, each result goes beside its input as ``NAME_xR.EXT``.

    Args:
        inputs: files and folders.
        output: the ``-o`` argument.
        scale: the factor, for default names.
        fmt: the ``--format`` argument (changes output extensions).

    Returns:
        ``(jobs, problems)``: (input, output) pairs of existing inputs, and messages about inputs that do not
        exist or folders without images.

    Raises:
        ValueError: two inputs would write the same output, an output would replace an input (the message
            names both), or ``output`` is a file where a folder is needed; nothing has been written then.
    """
    from subpixel.upscaling.video import is_video

    jobs: list[tuple[Path, Path]] = []
    problems: list[str] = []
    inputs = list(inputs)
    single_file = len(inputs) == 1 and inputs[0].exists() and not inputs[0].is_dir()
    output_is_file = (
        single_file
        and output is not None
        and not output.is_dir()
        and (_is_image(output) or is_video(output) or bool(fmt and output.suffix))
    )
    if output is not None and not output_is_file and output.exists() and not output.is_dir():
        raise SubpixelError(f"-o {output} is a file; with these inputs it must be a folder")
    skip_under = None if output is None or output_is_file else output.resolve()
    for item in inputs:
        if item.is_dir():
            files = [
                p
                for p in sorted(item.rglob("*"))
                if p.is_file()
                and (_is_image(p) or is_video(p))
                and not is_temporary(p)
                and not _inside(p, skip_under)
            ]
            earlier = _earlier_outputs(files, scale)
            files = [p for p in files if p not in earlier]
            if not files:
                problems.append(f"{item}: no image or video files in this folder")
            for file in files:
                relative = file.relative_to(item)
                suffix = _out_suffix(file, None if is_video(file) else fmt)
                if output is None:
                    target = file.with_name(f"{file.stem}_x{scale}{suffix}")
                else:
                    base = output / item.name if len(inputs) > 1 else output
                    target = (base / relative).with_suffix(suffix)
                jobs.append((file, target))
        elif item.exists():
            suffix = _out_suffix(item, None if is_video(item) else fmt)
            if output is None:
                target = item.with_name(f"{item.stem}_x{scale}{suffix}")
            elif output_is_file:
                target = output
            else:
                target = output / f"{item.stem}{suffix}"
            jobs.append((item, target))
        else:
            problems.append(f"{item}: no such file or folder")
    _check_collisions(jobs)
    return jobs, problems


def _check_collisions(jobs: list[tuple[Path, Path]]) -> None:
    sources = {source.resolve(): source for source, _ in jobs}
    writers: dict[Path, Path] = {}
    for source, target in jobs:
        key = target.resolve()
        if key in writers:
            raise SubpixelError(
                f"{writers[key]} and {source} would both be written to {target}; upscale them into separate "
                "folders (-o) or give one a different name"
            )
        writers[key] = source
        if key in sources and sources[key].resolve() != source.resolve():
            raise SubpixelError(
                f"the output of {source} would replace the input {sources[key]}; choose another output (-o)"
            )


def _load_model(args: argparse.Namespace) -> torch.nn.Module:
    from subpixel import sr

    if args.weights is None:
        if args.scale is None:
            raise SubpixelError(
                "--scale is needed with the bundled weights (2, 3 or 4); a --weights file knows its own scale"
            )
        return sr.pretrained(args.scale, model=args.model)
    if not args.weights.is_file():
        raise SubpixelError(f"--weights {str(args.weights)!r}: file not found")
    model = sr.load(args.weights)
    if args.scale is not None and model.scale != args.scale:
        raise SubpixelError(f"--weights {args.weights} is a ×{model.scale} model, but --scale is {args.scale}")
    return model


#: errors after which the next files would fail the same way: the batch stops with one line
_FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def run(args: argparse.Namespace) -> int:
    """Upscale every input; returns 0 when all succeeded (or were skipped), 1 when some failed, 2 on a usage
    error."""
    import torch
    from tqdm import tqdm

    from subpixel.upscaling.image import Upscaler, upscale_file
    from subpixel.upscaling.video import is_video, upscale_video, video_upscaler

    if args.threads:
        torch.set_num_threads(args.threads)
    model = _load_model(args)
    scale = int(model.scale)
    jobs, problems = collect_jobs(args.inputs, args.output, scale, args.format)
    if not jobs:
        for message in problems or ["nothing to upscale"]:
            print(f"subpixel upscale: {message}", file=sys.stderr)
        return 2
    for folder in sorted({target.parent for _, target in jobs}):
        clean_temporaries(folder)  # what a killed run left behind
    upscaler = Upscaler(
        model,
        backend=args.backend,
        precision=args.precision or "fp32",
        compile=bool(args.compile),
        tile=args.tile,
        max_memory=args.max_memory,
        max_pixels=args.max_pixels,
    )
    # one for all videos: the shapes it compiles are kept for the next video of that size
    for_videos = video_upscaler(upscaler, precision=args.precision, compile=args.compile)
    failures = [(None, m) for m in problems]
    done = skipped = 0
    show = not args.quiet
    bar = tqdm(total=len(jobs), unit="file", disable=not show or len(jobs) < 2, desc="upscale")

    def say(message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    for source, target in jobs:
        try:
            if target.exists() and not args.force:
                if not args.skip_existing:
                    raise FileExistsError(
                        f"{target} exists; pass --skip-existing to keep it or --force to replace it"
                    )
                skipped += 1
                if show and len(jobs) == 1:
                    say(f"{target} exists; skipped")
                bar.update(1)
                continue
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
                        force=True,
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
                        force=True,
                        progress=pixels.update,
                        warn=say,
                    )
                if show and len(jobs) == 1:
                    say(
                        f"{source} -> {target}: {result.size_in[0]}×{result.size_in[1]} -> "
                        f"{result.size_out[0]}×{result.size_out[1]} {result.format} {result.bit_depth}-bit"
                    )
            done += 1
        except OSError as exc:
            if exc.errno in _FATAL_ERRNOS:
                raise  # disk full, read-only: every next file would fail the same way
            message = describe(exc)[0] if exc.errno is not None else str(exc)
            failures.append((source, message))
            say(f"subpixel upscale: {message}")
        except (SubpixelError, RuntimeError, MemoryError) as exc:  # ImageReadError, VideoReadError included
            failures.append((source, str(exc)))
            say(f"subpixel upscale: {exc}")
        bar.update(1)
    bar.close()
    total = len(jobs) + len(problems)
    kept = f", {skipped} skipped (outputs exist)" if skipped else ""
    if failures:
        print(
            f"subpixel upscale: {done} of {total} inputs upscaled{kept}, {len(failures)} failed:",
            file=sys.stderr,
        )
        for _, message in failures:
            print(f"  {message}", file=sys.stderr)
        return 1
    if show and (len(jobs) > 1 or skipped):
        print(f"subpixel upscale: {done} of {total} inputs upscaled{kept}", file=sys.stderr)
    return 0
