"""``subpixel evaluate``: score SR weights by the standard protocol (:mod:`subpixel.sr.evaluate`), with bicubic.

Examples (shell)::

    subpixel evaluate --weights W.safetensors --data ../shared/data/sr/Set5 ../shared/data/sr/Set14 \\
        --json results.json --figure crops.png
    subpixel evaluate --pretrained --scale 3 --data ../shared/data/sr/Set5
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

if TYPE_CHECKING:
    from torch import nn

    from subpixel.sr.evaluate import EvaluationResult

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``subpixel evaluate``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--weights", type=Path, metavar="W", help="ESPCN weights (.safetensors, config .json beside)"
    )
    source.add_argument("--pretrained", action="store_true", help="use the bundled weights for --scale")
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
        "--figure", type=Path, metavar="OUT.png", help="write side-by-side crops (HR, bicubic, model)"
    )
    parser.add_argument(
        "--crop", type=positive_int, default=96, help="figure crop size in HR pixels (default 96)"
    )
    parser.add_argument(
        "--figure-rows", type=positive_int, default=8, help="images in the figure (default 8)"
    )
    parser.add_argument("--device", default="cpu", help="torch device to run the model on (default cpu)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fail(message: str) -> int:
    print(f"subpixel evaluate: error: {message}", file=sys.stderr)
    return 2


def _load_model(args: argparse.Namespace) -> tuple[nn.Module, str]:
    from subpixel.sr import models

    if args.pretrained:
        if args.scale is None:
            raise ValueError(
                f"--pretrained needs --scale (bundled scales: {list(models.pretrained_scales())})"
            )
        return models.pretrained(args.scale), f"pretrained:x{args.scale}"
    weights = Path(args.weights)
    if not weights.is_file():
        raise ValueError(f"--weights {str(weights)!r}: file not found")
    return models.load(weights), str(weights)


def run(args: argparse.Namespace) -> int:
    """Run ``subpixel evaluate``; returns the exit code (0, or 2 with a message on bad input)."""
    import torch

    from subpixel._atomic import atomic_output
    from subpixel.sr.evaluate import evaluate, format_table, save_figure

    for folder in args.data:
        if not Path(folder).is_dir():
            return _fail(f"--data {str(folder)!r}: not a folder")
    for option, out in (("--json", args.json), ("--figure", args.figure)):
        if out is not None and not Path(out).resolve().parent.is_dir():
            return _fail(f"{option} {str(out)!r}: its folder does not exist")
    if args.figure is not None and Path(args.figure).suffix.lower() != ".png":
        return _fail(f"--figure {str(args.figure)!r}: expected a .png file name")
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("CUDA is not available")
    except (RuntimeError, ValueError) as exc:
        return _fail(f"--device {args.device!r}: {exc}")
    try:
        model, source = _load_model(args)
    except ValueError as exc:
        return _fail(str(exc))
    scale = args.scale if args.scale is not None else int(model.scale)
    if int(getattr(model, "scale", scale)) != scale:
        return _fail(f"the weights {source} upscale ×{model.scale}, not ×{scale} (--scale {scale})")
    results = []
    try:
        for folder in args.data:
            result = evaluate(
                model,
                folder,
                scale,
                device=device,
                progress=not args.no_progress,
                keep_pictures=args.figure is not None,
            )
            results.append(result)
            print(format_table(result))
            print()
    except ValueError as exc:
        return _fail(str(exc))
    if args.json is not None:
        document = _json_document(model, source, scale, results)
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.figure is not None:
        save_figure(results, args.figure, crop=args.crop, max_rows=args.figure_rows)
        print(f"wrote {args.figure}")
    return 0


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_document(
    model: nn.Module, source: str, scale: int, results: list[EvaluationResult]
) -> dict[str, Any]:
    import numpy as np
    import torch

    import subpixel
    from subpixel.sr.evaluate import PROTOCOL_DESCRIPTION

    config = getattr(model, "config", None)
    macs = getattr(model, "multiply_adds_per_pixel", None)
    sets = []
    for result in results:
        entry = result.to_dict()
        for image in entry["images"]:  # a perfect reconstruction has infinite PSNR: JSON null
            for key in ("psnr", "bicubic_psnr"):
                image[key] = _finite(image[key])
        for key in ("psnr", "bicubic_psnr"):
            entry["mean"][key] = _finite(entry["mean"][key])
        sets.append(entry)
    return {
        "command": "subpixel evaluate",
        "weights": source,
        "scale": scale,
        "model": {
            "channels": getattr(model, "channels", None),
            "config": config.to_dict() if hasattr(config, "to_dict") else None,
            "multiply_adds_per_pixel": macs() if callable(macs) else None,
        },
        "protocol": PROTOCOL_DESCRIPTION,
        "results": sets,
        "versions": {
            "subpixel": subpixel.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
