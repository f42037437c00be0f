"""``subpixel train``: the command line of :func:`subpixel.sr.train.train` (arguments → :class:`TrainConfig`).

Examples (shell)::

    subpixel train --scale 2 --data ../shared/data/sr/T91 ../shared/data/sr/BSDS200 --val ../shared/data/sr/Set5 \\
        --out runs/x2 --loss l1 --precision bf16 --compile
    torchrun --standalone --nproc-per-node 2 -m subpixel.cli train ...   # data-parallel
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from subpixel.cli._args import non_negative_int, positive_int
from subpixel.errors import SubpixelError
from subpixel.sr.models import FAMILIES, SKIPS
from subpixel.sr.train import TrainConfig, train

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``subpixel train``."""
    d = TrainConfig(data=[], out="")
    parser.add_argument(
        "--scale", type=positive_int, default=d.scale, help="upscaling factor (default %(default)s)"
    )
    parser.add_argument(
        "--data", nargs="+", required=True, metavar="DIR", help="folders of HR training images"
    )
    parser.add_argument(
        "--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, log, weights)"
    )
    parser.add_argument("--val", metavar="DIR", help="validation folder (e.g. Set5) for periodic Y-PSNR")
    parser.add_argument("--channels", choices=("y", "rgb"), default=d.channels)
    parser.add_argument(
        "--model",
        choices=sorted(FAMILIES),
        default=d.model,
        help="'rep': re-parameterized blocks + nearest skip (saved collapsed); 'espcn': the paper's network",
    )
    parser.add_argument("--widths", type=int, nargs="+", help="hidden layer widths (default: the model's)")
    parser.add_argument("--kernel-sizes", type=int, nargs="+", help="odd kernels (default: the model's)")
    parser.add_argument(
        "--activation", choices=("tanh", "relu", "prelu", "identity"), help="(default: the model's)"
    )
    parser.add_argument("--skip", choices=SKIPS, help="global skip (default: the model's)")
    parser.add_argument(
        "--patch-size", type=positive_int, default=d.patch_size, help="LR patch size (HR = ×scale)"
    )
    parser.add_argument(
        "--skip-small",
        action="store_true",
        help="leave out images smaller than one HR patch instead of failing",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=d.batch_size, help="patches per step per process"
    )
    parser.add_argument("--steps", type=positive_int, default=d.steps)
    parser.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    parser.add_argument("--lr-min", type=float, default=d.lr_min, help="final learning rate of 'cosine'")
    parser.add_argument("--schedule", choices=("cosine", "step", "constant"), default=d.schedule)
    parser.add_argument("--loss", choices=("l2", "l1"), default=d.loss)
    parser.add_argument("--val-every", type=int, default=d.val_every, metavar="STEPS")
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="STEPS")
    parser.add_argument("--log-every", type=int, default=d.log_every, metavar="STEPS")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument(
        "--workers", type=non_negative_int, default=d.workers, help="DataLoader worker processes"
    )
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads per process")
    parser.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--init",
        metavar="WEIGHTS",
        help="start from these weights (.safetensors + .json) or a run's checkpoint.safetensors, e.g. another "
        "scale's (the sub-pixel layer is then initialised afresh)",
    )
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default=d.precision, help="bf16: autocast forward pass"
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=d.channels_last,
        help="channels-last memory format (default on: faster on CPU)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step's forward")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.safetensors")
    parser.add_argument("--force", action="store_true", help="start over, overwriting RUN_DIR's weights")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _check_run_folder(out: Path) -> None:
    """Refuse an ``--out`` that cannot be a folder, before any work (one line, exit 2)."""
    from subpixel.cli._outputs import blocking_file

    if out.exists() and not out.is_dir():
        raise SubpixelError(f"--out {out} is a file; the run folder must be a new or an existing folder")
    blocker = blocking_file(out)
    if blocker is not None:
        raise SubpixelError(f"--out {out}: {blocker} is a file, not a folder; choose another run folder")


def run(args: argparse.Namespace) -> int:
    """``subpixel train``: returns 0 on success, 2 on bad input or a run folder that must not be overwritten."""
    _check_run_folder(Path(args.out))
    config = TrainConfig(
        data=args.data,
        out=args.out,
        scale=args.scale,
        channels=args.channels,
        model=args.model,
        widths=tuple(args.widths) if args.widths else None,
        kernel_sizes=tuple(args.kernel_sizes) if args.kernel_sizes else None,
        activation=args.activation,
        skip=args.skip,
        patch_size=args.patch_size,
        skip_small=args.skip_small,
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        lr_min=args.lr_min,
        schedule=args.schedule,
        loss=args.loss,
        val=args.val,
        val_every=args.val_every,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        seed=args.seed,
        workers=args.workers,
        threads=args.threads,
        device=args.device,
        init=args.init,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        resume=args.resume,
        force=args.force,
        progress=not args.no_progress,
        command=["subpixel", "train", *sys.argv[2:]] if len(sys.argv) > 1 else [],
    )
    try:
        path = train(config)
    except FileExistsError as exc:  # the message says what to pass; not an environment error
        print(f"subpixel train: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"weights: {path}  ({shlex.join(config.command) or 'train()'})")
    return 0
