"""Time one training step of the SR families in fp32 / bf16 autocast, NCHW / channels-last, eager / compiled.

Every configuration trains its own copy of the same model (same initial weights, same batch) with
:func:`subpixel.sr.optim.optimization_step` — the step ``subpixel train`` runs — and the configurations are
timed interleaved, step by step, in one run (``layers.interleaved``), so load falls on all of them alike.
Reported: median ms per step, patches/s and LR pixels/s, and the ratio to fp32 NCHW eager.

    .venv/bin/python benchmarks/train_step.py --threads 2                  # rep ×2, LR patches 48, batch 32
    .venv/bin/python benchmarks/train_step.py --model espcn --scale 3 --patch-size 17 --batch-size 64

Results: ``benchmarks/results/train_step.json``. Whether bf16 costs quality is a training question, answered in
docs/training.md, not here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

from _common import machine_info
from layers import interleaved, summary
from subpixel.sr.optim import optimization_step
from subpixel.sr.train import TrainConfig

CONFIGS = [  # (name, bf16, channels_last, compile)
    ("fp32 NCHW", False, False, False),
    ("fp32 channels-last", False, True, False),
    ("bf16 NCHW", True, False, False),
    ("bf16 channels-last", True, True, False),
    ("fp32 channels-last compiled", False, True, True),
    ("bf16 channels-last compiled", True, True, True),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rep", choices=("rep", "espcn"))
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--patch-size", type=int, default=48, help="LR patch size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of interleaved timing")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled configurations")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = TrainConfig(data=["."], out=".", model=args.model, scale=args.scale)
    torch.manual_seed(0)
    reference = config.build_model()
    p, r, b = args.patch_size, args.scale, args.batch_size
    lr_batch = torch.rand(b, reference.config.in_channels, p, p)
    hr_batch = torch.rand(b, reference.config.in_channels, p * r, p * r)
    chosen = [c for c in CONFIGS if not (args.no_compile and c[3])]
    steps = []
    for name, bf16, channels_last, compiled in chosen:
        model = config.build_model()
        model.load_state_dict(reference.state_dict())
        inputs = lr_batch
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            inputs = lr_batch.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        forward = torch.compile(model) if compiled else model
        loss = nn.L1Loss()

        def step(forward=forward, optimizer=optimizer, inputs=inputs, bf16=bf16, loss=loss) -> None:
            optimization_step(forward, optimizer, loss, inputs, hr_batch, lr=1e-4, bf16=bf16)

        print(f"warming up {name} ...", file=sys.stderr)
        step()  # compiles
        steps.append(step)
    times = interleaved(steps, args.budget, min_runs=5)
    rows = []
    base = summary(times[0])["median_ms"]
    print(f"\n{args.model} ×{r}, batch {b} of {p}×{p} LR patches, {args.threads} threads\n")
    print("| configuration | ms/step | patches/s | LR Mpx/s | vs fp32 NCHW |\n|---|---|---|---|---|")
    for (name, *_), ts in zip(chosen, times):
        s = summary(ts)
        ms = s["median_ms"]
        row = {
            "configuration": name,
            **s,
            "patches_per_s": b / ms * 1e3,
            "lr_pixels_per_s": b * p * p / ms * 1e3,
            "speedup": base / ms,
        }
        rows.append(row)
        print(
            f"| {name} | {ms:.0f} | {row['patches_per_s']:.0f} | {row['lr_pixels_per_s'] / 1e6:.2f} | {base / ms:.2f}× |"
        )
    info = machine_info(args.threads, "benchmarks/train_step.py")
    document = {"info": info, "model": args.model, "scale": r, "patch_size": p, "batch_size": b, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_step.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
