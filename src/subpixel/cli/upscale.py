"""``subpixel upscale``: upscale images, folders of images, or videos with the bundled or given weights.

Examples (shell)::

    subpixel upscale photo.png --scale 3 -o photo_x3.png
    subpixel upscale shots/ --scale 2 -o shots_x2/ --format webp
    subpixel upscale clip.mp4 --scale 2 -o clip_x2.mp4
    subpixel upscale big.tif --scale 4 --max-memory 256M --backend onnxruntime

Exit status: 0 when every output was written (or kept, with ``--skip-existing``); 1 when some inputs failed
(each reason printed once as it happens, the failed inputs named in the summary at the end; the batch goes on
past a missing, unreadable, truncated or too large input); 2 when nothing was done: a usage error, or outputs
that exist already without ``--skip-existing`` (keep them and upscale the rest: resumes an interrupted batch) or
``--force`` (replace them).

Nothing is lost: before any work the run refuses two inputs that would write the same output and an output that
would be written over an input (its own included, whatever the flags: ``--force`` replaces outputs, never
inputs). A folder's walk leaves out the outputs of earlier runs (:func:`earlier_outputs`: ``NAME_xR.EXT`` beside
a ``NAME.*``, for any factor R and any format), anything under ``-o``, and temporary files; the temporaries a
killed run left in the output folders are removed. ``--weights`` files know their scale, so ``--scale`` is only
needed for the bundled weights.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from subpixel._atomic import clean_temporaries, is_temporary
from subpixel.cli._args import add_model_arguments, positive_int
from subpixel.cli._errors import describe
from subpixel.cli._outputs import blocking_file, same_file
from subpixel.errors import SubpixelError
from subpixel.imageio import DEFAULT_MAX_PIXELS, FORMAT_EXTENSIONS, IMAGE_EXTENSIONS
from subpixel.upscaling.tiling import DEFAULT_MAX_MEMORY, format_size, parse_size
from subpixel.upscaling.video import DEFAULT_PRESET, X264_PRESETS

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
    parser.epilog = (
        "exit status: 0 every output written (or kept, with --skip-existing); 1 some inputs failed (named at the "
        "end); 2 nothing done: a usage error, or outputs that exist already without --skip-existing or --force"
    )
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
    existing.add_argument("--force", action="store_true", help="replace existing outputs (never an input)")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="keep existing outputs and upscale the rest (resumes an interrupted batch); without this or "
        "--force, existing outputs stop the run before any work (exit 2)",
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
        choices=("auto", "fp32", "bf16", "int8"),
        help="torch backend: bf16 is 2-3x faster on CPUs with AVX-512-BF16 or AMX and costs a few hundredths of a "
        "dB of Y-PSNR; int8 (CPU, bundled models only) runs the bundled networks about 1.5x faster than bf16 on "
        "CPUs with AVX-512-VNNI, within 0.02 dB of it; default auto: int8 where it applies and the CPU has "
        "VNNI and bf16, else bf16 where the CPU or GPU computes it natively, else fp32",
    )
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help="torch backend: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda or cuda:N",
    )
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch backend: torch.compile with fused convolution + activation (seconds to compile per input "
        "size; videos compile only when long enough to pay for it); default off",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads (default: PyTorch's choice); a video has as many frames in flight, one thread each",
    )
    parser.add_argument(
        "--preset",
        choices=X264_PRESETS,
        default=DEFAULT_PRESET,
        help=f"video: x264/x265 speed preset (default {DEFAULT_PRESET}; superfast halves the encoder's CPU time "
        "for a larger file at the same quality, medium is x264's own default)",
    )
    parser.add_argument(
        "--crf",
        type=int,
        choices=range(52),
        default=18,
        metavar="0-51",
        help="video: constant-rate factor, lower is better quality (default 18, visually lossless)",
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


#: the name of an output written without ``-o``: ``NAME_xR`` (R = the factor), then the format's extension
_OUTPUT_STEM = re.compile(r"^(?P<name>.+)_x(?P<scale>[1-9][0-9]*)$")


def earlier_outputs(files: list[Path]) -> set[Path]:
    """The files of a folder's walk that earlier runs wrote, which are never inputs.

    The rule: ``NAME_xR.EXT`` is an output when a ``NAME.*`` lies in the same folder, whatever the factor ``R``
    and the extensions (so outputs of another ``--scale`` or ``--format`` are left out too), and so is an output
    of an output (``NAME_x2_x3.EXT``). Pass such a file by its own name to upscale it anyway.

    Examples:
        >>> names = ["a.png", "a_x2.png", "a_x3.webp", "a_x2_x3.png", "b_x2.png", "shot_x4.jpg"]
        >>> sorted(p.name for p in earlier_outputs([Path(n) for n in names]))
        ['a_x2.png', 'a_x2_x3.png', 'a_x3.webp']
    """
    stems = {(p.parent, p.stem) for p in files}
    found: set[Path] = set()
    for path in files:
        match = _OUTPUT_STEM.match(path.stem)
        if match is not None and (path.parent, match.group("name")) in stems:
            found.add(path)
    return found


def _check_output_option(inputs: list[Path], output: Path, fmt: str | None) -> bool:
    """Whether ``-o`` names the output *file* (else a folder); refuse the combinations that cannot work.

    Raises:
        SubpixelError: several inputs (or a folder) with ``-o`` naming a file; an image's output with a video
            extension or a video's with an image extension; a path that runs through a file.
    """
    from subpixel.upscaling.video import VIDEO_EXTENSIONS, is_video

    blocker = blocking_file(output)
    if blocker is not None:
        raise SubpixelError(f"-o {output}: {blocker} is a file, not a folder; choose another output path")
    single_file = len(inputs) == 1 and not inputs[0].is_dir()  # a missing one is reported as a problem
    named_file = not output.is_dir() and (_is_image(output) or is_video(output))
    if not single_file:
        if output.exists() and not output.is_dir():
            raise SubpixelError(
                f"-o {output} is a file; with several inputs or a folder, -o must be a folder (new or existing)"
            )
        if named_file:
            what = "a folder" if len(inputs) == 1 else f"{len(inputs)} inputs"
            raise SubpixelError(
                f"-o {output}: with {what}, -o must be a folder, and {output.name} looks like a file name; "
                f"give a folder name without the {output.suffix} extension"
            )
        return False
    source = inputs[0]
    if is_video(source) and _is_image(output):
        raise SubpixelError(
            f"-o {output}: {source} is a video, so its output needs a video extension "
            f"({', '.join(VIDEO_EXTENSIONS[:4])}, ...)"
        )
    if not is_video(source) and is_video(output):
        raise SubpixelError(
            f"-o {output}: {source} is an image, so its output needs an image extension "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    is_file = named_file or bool(fmt and output.suffix and not output.is_dir())
    if not is_file and output.exists() and not output.is_dir():
        raise SubpixelError(
            f"-o {output} is an existing file without an image or video extension; give an output file name "
            "with one, or a folder"
        )
    return is_file


def _check_input_kind(item: Path, output: Path | None, fmt: str | None) -> str | None:
    """A message when a file given by name is neither a video nor an image whose output format is known."""
    from subpixel.upscaling.video import is_video

    if is_video(item) or _is_image(item) or fmt is not None or (output is not None and _is_image(output)):
        return None
    kind = f"{item.suffix} files" if item.suffix else "files without an extension"
    return (
        f"{item}: {kind} are not upscaled; images: {', '.join(IMAGE_EXTENSIONS)}, or a video "
        "(pass --format to upscale an image with another extension)"
    )


def collect_jobs(
    inputs: Iterable[Path], output: Path | None, scale: int, fmt: str | None
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Pair every input file with its output path, and refuse pairs that would lose a result.

    A folder contributes its image and video files (recursively, sorted), mirrored under ``output``; its walk
    leaves out temporary files (:func:`subpixel._atomic.is_temporary`), anything under ``output``, and the
    outputs of earlier runs (:func:`earlier_outputs`: ``NAME_xR.EXT`` beside a ``NAME.*``, any factor, any
    format). With one input file, ``output`` is the output file when it has an image or video extension,
    otherwise the folder to put it in; with several inputs or a folder, it must be a folder. Without
    ``output``, each result goes beside its input as ``NAME_xR.EXT``.

    Args:
        inputs: files and folders.
        output: the ``-o`` argument.
        scale: the factor, for default names.
        fmt: the ``--format`` argument (changes output extensions).

    Returns:
        ``(jobs, problems)``: (input, output) pairs of existing inputs, and messages about inputs that do not
        exist, folders without images, and files of a kind that is not upscaled.

    Raises:
        SubpixelError: two inputs would write the same output, an output would replace an input (its own
            included: ``--force`` never replaces an input), or ``-o`` does not fit the inputs; nothing has been
            written then.
    """
    from subpixel.upscaling.video import is_video

    jobs: list[tuple[Path, Path]] = []
    problems: list[str] = []
    inputs = list(inputs)
    output_is_file = output is not None and _check_output_option(inputs, output, fmt)
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
            earlier = earlier_outputs(files)
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
            problem = _check_input_kind(item, output if output_is_file else None, fmt)
            if problem is not None:
                problems.append(problem)
                continue
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
        replaced = sources.get(key)
        if replaced is None and target.exists():
            replaced = next((s for s in sources.values() if same_file(target, s)), None)  # a hard link
        if replaced is not None:
            whose = "its own input" if same_file(replaced, source) else f"the input {replaced}"
            raise SubpixelError(
                f"the output of {source} would be written over {whose}; --force replaces outputs, never "
                "inputs: choose another output (-o)"
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
        raise SubpixelError(
            f"--weights {args.weights} is a ×{model.scale} model, but --scale is {args.scale}"
        )
    return model


#: errors after which the next files would fail the same way: the batch stops with one line
_FATAL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def run(args: argparse.Namespace) -> int:
    """Upscale every input; returns the exit status of the module docstring (0 done, 1 some inputs failed, 2
    nothing done)."""
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
    existing = [target for _, target in jobs if target.exists()]
    if existing and not (args.force or args.skip_existing):
        some = f"{existing[0]} and {len(existing) - 1} more" if len(existing) > 1 else str(existing[0])
        print(
            f"subpixel upscale: {len(existing)} of {len(jobs)} outputs exist already ({some}); nothing was "
            "upscaled: pass --skip-existing to keep them and upscale the rest, or --force to replace them",
            file=sys.stderr,
        )
        return 2
    for folder in sorted({target.parent for _, target in jobs}):
        clean_temporaries(folder)  # what a killed run left behind
    upscaler = Upscaler(
        model,
        backend=args.backend,
        precision=args.precision or "auto",
        compile=bool(args.compile),
        device=args.device,
        tile=args.tile,
        max_memory=args.max_memory,
        max_pixels=args.max_pixels,
    )
    # one for all videos: the shapes it compiles are kept for the next video of that size
    for_videos = video_upscaler(upscaler, precision=args.precision, compile=args.compile)
    failures = list(problems)
    done = skipped = 0
    show = not args.quiet
    bar = tqdm(total=len(jobs), unit="file", disable=not show or len(jobs) < 2, desc="upscale")

    def say(message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    for message in problems:
        say(f"subpixel upscale: {message}")
    failed: list[Path] = []
    for source, target in jobs:
        try:
            if target.exists() and not args.force:  # --skip-existing (checked above)
                skipped += 1
                if show and len(jobs) == 1:
                    say(f"{target} exists; skipped")
                bar.update(1)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if is_video(source):
                # one rate: frames written per second since the video was opened (tqdm's own, unsmoothed)
                with tqdm(unit="frame", desc=source.name, disable=not show, leave=False, smoothing=0) as frames:

                    def tick(count: int, total: int | None, fps: float, frames: tqdm = frames) -> None:
                        if total and frames.total != total:
                            frames.total = total
                        frames.update(count - frames.n)

                    video = upscale_video(
                        source,
                        target,
                        for_videos,
                        force=True,
                        threads=args.threads,
                        crf=args.crf,
                        preset=args.preset,
                        progress=tick,
                        warn=say,
                    )
                if show:
                    say(
                        f"{source} -> {target}: {video.frames} frames {video.size_in[0]}×{video.size_in[1]} -> "
                        f"{video.size_out[0]}×{video.size_out[1]} in {video.seconds:.1f} s "
                        f"({video.fps:.1f} frames per second end to end)"
                    )
            else:
                with tqdm(
                    total=_pixel_count(source),
                    unit="px",
                    unit_scale=True,
                    desc=f"{source.name} (input pixels)",
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
            failed.append(source)
            say(f"subpixel upscale: {message}")
        except (SubpixelError, RuntimeError, MemoryError) as exc:  # ImageReadError, VideoReadError included
            failed.append(source)
            say(f"subpixel upscale: {exc}")
        bar.update(1)
    bar.close()
    total = len(jobs) + len(problems)
    kept = f", {skipped} skipped (outputs exist)" if skipped else ""
    if failed or failures:
        # each reason was printed once above; the summary names the inputs
        names = [str(p) for p in failed] + [m.split(": ", 1)[0] for m in failures]
        print(
            f"subpixel upscale: {done} of {total} inputs upscaled{kept}, {len(names)} failed: "
            + ", ".join(names),
            file=sys.stderr,
        )
        return 1
    if show and (len(jobs) > 1 or skipped):
        print(f"subpixel upscale: {done} of {total} inputs upscaled{kept}", file=sys.stderr)
    return 0


def _pixel_count(path: Path) -> int | None:
    """Width × height from the image's header (for the progress bar's total), or ``None`` if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.size[0] * image.size[1])
    except Exception:  # the upscale itself reports an unreadable file
        return None
