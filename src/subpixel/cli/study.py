"""``subpixel study``: LR-space versus HR-space networks at equal compute (see :mod:`subpixel.study.experiment`).

The default (``subpixel study --scale 3 --budget ESPCN``) trains 9 networks (3 families × 3 budgets: ESPCN's
MACs per HR pixel, a quarter of it, four times it) for 6000 steps each on T91 + BSDS200 and evaluates them on
Set5 and Set14; ``--quick`` checks the pipeline in about a minute (tiny budgets, 30 steps, 8 training images, a
small timed frame): its numbers mean nothing.

Every trained network is saved to ``OUT/models/<network>-seed<seed>.safetensors``. ``--resume`` goes on with an
interrupted run in ``OUT`` (same options; only the networks without a record and loadable weights are trained), or
adds seeds to a finished one: ``subpixel study --seeds 0 1 2 --resume`` after ``subpixel study --seeds 0`` trains
seeds 1 and 2 only, then redoes timing, table and figures over all three.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from subpixel.cli._args import positive_int
from subpixel.cli._errors import require
from subpixel.errors import SubpixelError
from subpixel.study.families import FAMILIES

__all__ = ["add_arguments", "run"]

_DATA_HINT = "../shared/data/sr"


def _default_data() -> Path:
    return Path.cwd().parent / "shared" / "data" / "sr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``subpixel study``."""
    parser.add_argument("--scale", type=positive_int, default=3, help="upscaling factor r (default 3)")
    parser.add_argument(
        "--budget",
        default="ESPCN",
        help="reference budget: 'ESPCN' (its MACs per HR pixel at this scale) or a number of MACs per HR pixel",
    )
    parser.add_argument(
        "--multiples",
        type=float,
        nargs="+",
        default=None,
        help="budgets as multiples of the reference (default 0.25 1 4; --quick: 0.05 0.1)",
    )
    parser.add_argument(
        "--families",
        nargs="+",
        default=["hr", "deconv", "lr"],
        choices=list(FAMILIES),
        help="families (default hr deconv lr; 'rep' is the shipped re-parameterized LR-space network and "
        "'hr-rep' its HR-space counterpart, both trained as re-parameterizable blocks and run collapsed)",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help=f"folder with T91/, BSDS200/, Set5/, Set14/ ({_DATA_HINT})"
    )
    parser.add_argument(
        "--train", type=Path, nargs="+", default=None, help="training folders (default T91 BSDS200)"
    )
    parser.add_argument(
        "--test", type=Path, nargs="+", default=None, help="test folders (default Set5 Set14)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("study-results"), help="output folder (default study-results)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=None, help="training steps per network (default 6000)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16, help="patches per step (default 16)")
    parser.add_argument("--patch-size", type=positive_int, default=17, help="LR patch size (default 17)")
    parser.add_argument(
        "--lr", type=float, default=1e-3, help="Adam learning rate, cosine-annealed (default 1e-3)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2; --quick: 0)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=2, help="torch threads for training and timing (default 2)"
    )
    parser.add_argument(
        "--timing-rounds", type=positive_int, default=None, help="interleaved timing rounds (default 5)"
    )
    parser.add_argument(
        "--max-train-images", type=positive_int, default=None, help="use only the first N training images"
    )
    parser.add_argument(
        "--quick", action="store_true", help="pipeline check in about a minute; numbers mean nothing"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the trained networks of an earlier (interrupted or finished) run in --out and train only the "
        "missing (network, seed) runs; the training options must be the same, --seeds may add seeds",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the study; returns the exit code."""
    from subpixel.study.experiment import StudyConfig, run_study

    require("PIL", "safetensors", "matplotlib", "tqdm")  # before any work: the study needs the 'sr' extra

    data = args.data if args.data is not None else _default_data()
    train = args.train or [data / "T91", data / "BSDS200"]
    test = args.test or [data / "Set5", data / "Set14"]
    for folder in [*train, *test]:
        if not Path(folder).is_dir():
            print(
                f"subpixel study: data folder {str(folder)!r} not found; pass --data DIR (with T91/, BSDS200/, "
                "Set5/, Set14/) or --train/--test",
                file=sys.stderr,
            )
            return 2
    quick = args.quick
    try:
        config = StudyConfig(
            train=[str(t) for t in train],
            test=[str(t) for t in test],
            out=str(args.out),
            scale=args.scale,
            budget=args.budget,
            multiples=tuple(args.multiples or ((0.05, 0.1) if quick else (0.25, 1.0, 4.0))),
            families=tuple(args.families),
            steps=args.steps or (30 if quick else StudyConfig.steps),
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            lr=args.lr,
            seeds=tuple(args.seeds or ((0,) if quick else StudyConfig.seeds)),
            frame=(216, 384) if quick else (1080, 1920),
            timing_rounds=args.timing_rounds or (2 if quick else 5),
            threads=args.threads,
            max_train_images=args.max_train_images
            if args.max_train_images is not None
            else (8 if quick else None),
            progress=not args.no_progress,
            resume=args.resume,
            command=["subpixel", "study", *sys.argv[2:]]
            if len(sys.argv) > 1 and sys.argv[1] == "study"
            else [],
        )
        args.out.mkdir(
            parents=True, exist_ok=True
        )  # before any work: an --out that cannot be written fails now
        run_study(config)
    except SubpixelError as exc:
        print(f"subpixel study: {exc}", file=sys.stderr)
        return 2
    return 0
