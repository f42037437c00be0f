"""``subpixel evaluate``: score SR weights by the standard protocol (:mod:`subpixel.sr.evaluate`), with bicubic.

Prints each model's per-image table, then the standing: bicubic, every model evaluated and the published
references (SRCNN, ESPCN, FSRCNN: :data:`subpixel.sr.evaluate.PUBLISHED_RESULTS`) with MACs per HR pixel;
``--figure-macs`` draws PSNR against MACs with those points.

Examples (shell)::

    subpixel evaluate --weights W.safetensors --data ../shared/data/sr/Set5 ../shared/data/sr/Set14 \\
        --json results.json --figure crops.png
    subpixel evaluate --pretrained --scale 3 --data ../shared/data/sr/Set5 ../shared/data/sr/Set14 \\
        --json x3.json --figure-macs x3_macs.png        # every bundled model for ×3
    subpixel evaluate --pretrained --model espcn --scale 3 --data ../shared/data/sr/Set5
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subpixel.cli._args import positive_int
from subpixel.errors import SubpixelError

if TYPE_CHECKING:
    from torch import nn

    from subpixel.sr.evaluate import EvaluationResult, StandingRow

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``subpixel evaluate``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--weights", type=Path, metavar="W", help="SR weights (.safetensors, config .json beside)"
    )
    source.add_argument(
        "--pretrained",
        action="store_true",
        help="use the bundled weights for --scale: every bundled model, or the one named by --model",
    )
    parser.add_argument(
        "--model", metavar="NAME", help="with --pretrained: the bundled model to evaluate (e.g. rep, espcn)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        metavar="DIR",
        help="test sets: img_NNN_SRF_{r}_HR.png/_LR.png folders (Set5, Set14) or folders of HR images",
    )
    parser.add_argument("--scale", type=positive_int, help="SR scale (default: the weights' scale)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="write the results as JSON")
    parser.add_argument(
        "--figure", type=Path, metavar="OUT.png", help="write side-by-side crops (HR, bicubic, first model)"
    )
    parser.add_argument(
        "--figure-macs",
        type=Path,
        metavar="OUT.png",
        help="write PSNR against MACs per HR pixel: the models, bicubic and the published references",
    )
    parser.add_argument(
        "--crop", type=positive_int, default=96, help="figure crop size in HR pixels (default 96)"
    )
    parser.add_argument(
        "--figure-rows", type=positive_int, default=8, help="images in the figure (default 8)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the --json / --figure files if they exist"
    )
    parser.add_argument("--device", default="cpu", help="torch device to run the model on (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fail(message: str) -> int:
    print(f"subpixel evaluate: error: {message}", file=sys.stderr)
    return 2


def _load_models(args: argparse.Namespace) -> list[tuple[str, str, nn.Module]]:
    """``(name, source, model)`` of every model to evaluate."""
    from subpixel.sr import models

    if args.model is not None and not args.pretrained:
        raise SubpixelError(f"--model {args.model!r} picks a bundled model: it needs --pretrained")
    if args.pretrained:
        if args.scale is None:
            raise SubpixelError(
                f"--pretrained needs --scale (bundled scales: {list(models.pretrained_scales())})"
            )
        if args.scale not in models.pretrained_scales():
            raise SubpixelError(
                f"no bundled weights for scale={args.scale}; bundled scales are {list(models.pretrained_scales())}"
            )
        bundled = models.pretrained_models(args.scale)
        if args.model is not None and args.model not in bundled:
            raise SubpixelError(
                f"--model {args.model!r}: no bundled weights at ×{args.scale}; bundled: {list(bundled)}"
            )
        names = [args.model] if args.model is not None else list(bundled)
        return [
            (name, f"pretrained:{name}_x{args.scale}", models.pretrained(args.scale, model=name))
            for name in names
        ]
    weights = Path(args.weights)
    if not weights.is_file():
        raise SubpixelError(f"--weights {str(weights)!r}: file not found")
    return [(weights.stem, str(weights), models.load(weights))]


def _macs(model: nn.Module) -> float | None:
    macs = getattr(model, "multiply_adds_per_pixel", None)
    return float(macs()) if callable(macs) else None


def run(args: argparse.Namespace) -> int:
    """Run ``subpixel evaluate``; returns the exit code (0, or 2 with a message on bad input)."""
    import torch

    from subpixel._atomic import atomic_output
    from subpixel.cli._outputs import check_output
    from subpixel.sr.evaluate import (
        evaluate,
        format_standing,
        format_table,
        save_figure,
        save_macs_figure,
        standing,
    )

    for folder in args.data:
        if not Path(folder).exists():
            return _fail(f"--data {str(folder)!r}: no such folder; give a test set's folder (e.g. Set5)")
        if not Path(folder).is_dir():
            return _fail(f"--data {str(folder)!r} is a file; give a test set's folder (e.g. Set5)")
    outputs = (("--json", args.json), ("--figure", args.figure), ("--figure-macs", args.figure_macs))
    inputs = [p for folder in args.data for p in Path(folder).rglob("*") if p.is_file()]
    if args.weights is not None:
        inputs += [Path(args.weights), Path(args.weights).with_suffix(".json")]
    chosen = [Path(out) for _, out in outputs if out is not None]
    for option, out in outputs:
        if out is not None:
            check_output(Path(out), option=option, inputs=inputs, force=args.force)  # before any work
    if len({p.resolve() for p in chosen}) < len(chosen):
        return _fail("--json, --figure and --figure-macs must name different files")
    for option, out in outputs[1:]:
        if out is not None and Path(out).suffix.lower() != ".png":
            return _fail(f"{option} {str(out)!r}: expected a .png file name")
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise SubpixelError("CUDA is not available")
    except (RuntimeError, ValueError) as exc:
        return _fail(f"--device {args.device!r}: {exc}")
    try:
        loaded = _load_models(args)
    except SubpixelError as exc:
        return _fail(str(exc))
    scale = args.scale if args.scale is not None else int(loaded[0][2].scale)
    for _, source, model in loaded:
        if int(getattr(model, "scale", scale)) != scale:
            return _fail(f"the weights {source} upscale ×{model.scale}, not ×{scale} (--scale {scale})")
    evaluated: list[tuple[str, str, nn.Module, list[EvaluationResult]]] = []
    try:
        for index, (name, source, model) in enumerate(loaded):
            results = []
            for folder in args.data:
                result = evaluate(
                    model,
                    folder,
                    scale,
                    device=device,
                    progress=not args.no_progress,
                    keep_pictures=args.figure is not None and index == 0,
                )
                results.append(result)
                print(f"{name} ({source})")
                print(format_table(result))
                print()
            evaluated.append((name, source, model, results))
    except SubpixelError as exc:
        return _fail(str(exc))
    rows = standing({name: (_macs(model), results) for name, _, model, results in evaluated}, scale)
    print(format_standing(rows, scale))
    if args.json is not None:
        document = _json_document(evaluated, rows, scale, args.figure_macs)
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.figure is not None:
        first = evaluated[0]
        save_figure(first[3], args.figure, crop=args.crop, max_rows=args.figure_rows, label=first[0])
        print(f"wrote {args.figure}")
    if args.figure_macs is not None:
        save_macs_figure(rows, args.figure_macs, scale)
        print(f"wrote {args.figure_macs}")
    return 0


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _json_document(
    evaluated: list[tuple[str, str, nn.Module, list[EvaluationResult]]],
    rows: list[StandingRow],
    scale: int,
    figure_macs: Path | None,
) -> dict[str, Any]:
    import numpy as np
    import torch

    import subpixel
    from subpixel._paths import portable_paths
    from subpixel.sr.evaluate import PROTOCOL_DESCRIPTION

    entries = []
    for name, source, model, results in evaluated:
        config = getattr(model, "config", None)
        sets = []
        for result in results:
            entry = result.to_dict()
            for image in entry["images"]:  # a perfect reconstruction has infinite PSNR: JSON null
                for key in ("psnr", "bicubic_psnr"):
                    image[key] = _finite(image[key])
            for key in ("psnr", "bicubic_psnr"):
                entry["mean"][key] = _finite(entry["mean"][key])
            sets.append(entry)
        entries.append(
            {
                "name": name,
                "weights": source,
                "channels": getattr(model, "channels", None),
                "config": config.to_dict() if hasattr(config, "to_dict") else None,
                "multiply_adds_per_pixel": _macs(model),
                "results": sets,
            }
        )
    standing_rows = []
    for row in rows:
        item = row.to_dict()
        item["psnr"] = {k: _finite(v) for k, v in item["psnr"].items()}
        standing_rows.append(item)
    document = {
        "command": "subpixel evaluate",
        "scale": scale,
        "protocol": PROTOCOL_DESCRIPTION,
        "models": entries,
        "standing": standing_rows,
        "figure_macs": None if figure_macs is None else str(figure_macs),
        "versions": {
            "subpixel": subpixel.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return portable_paths(document)  # a record to keep: no absolute paths of this machine
