"""The ConvTranspose → LR weight re-indexing: the view chain (the definition, what tracing records) against the
eager path (:mod:`subpixel._reindex`: the compiled tiled gather, or with ``--no-native`` torch's two copies), forward
and forward + backward, for the weights of the layer panel.

A layer converted from a ConvTranspose holds the original's weight and re-indexes it on every training step when
the LR form runs, so this cost is part of every such step. Both sides are timed in one interleaved loop
(:func:`subpixel.timing.interleaved`), medians; ``clone()`` of the same weight is the memory-bandwidth floor.
Writes ``benchmarks/results/reindex.json`` (``reindex-no-native.json``); exits 0 whatever the result.

Usage::

    python benchmarks/reindex.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

import subpixel.geometry as geometry
from _common import ROOT, geomean, machine_info
from subpixel import native
from subpixel._atomic import atomic_write
from subpixel.geometry import conv_transpose_weight_to_lr
from subpixel.timing import interleaved

#: (label, ConvTranspose weight shape, stride): the weights of benchmarks/layers.py's panel
WEIGHTS = [
    ("DCGAN 512->256 k4 s2", (512, 256, 4, 4), 2),
    ("DCGAN 256->128 k4 s2", (256, 128, 4, 4), 2),
    ("U-Net 1024->512 k2 s2", (1024, 512, 2, 2), 2),
    ("U-Net 128->64 k2 s2", (128, 64, 2, 2), 2),
    ("FSRCNN 56->1 k9 s3", (56, 1, 9, 9), 3),
    ("FCN-32s 21->21 k64 s32", (21, 21, 64, 64), 32),
    ("HiFi-GAN 512->256 k16 s8", (512, 256, 16), 8),
    ("HiFi-GAN 128->64 k4 s2", (128, 64, 4), 2),
    ("3D U-Net 64->32 k2 s2", (64, 32, 2, 2, 2), 2),
    ("3D U-Net 32->16 k3 s2", (32, 16, 3, 3, 3), 2),
]


def views(*args, **kwargs) -> torch.Tensor:
    """:func:`conv_transpose_weight_to_lr` with the eager path switched off (the view chain)."""
    eager = geometry.is_eager_plain
    geometry.is_eager_plain = lambda *tensors: False
    try:
        return conv_transpose_weight_to_lr(*args, **kwargs)
    finally:
        geometry.is_eager_plain = eager


def bench(label: str, shape: tuple[int, ...], stride: int, channels_last: bool, budget: float) -> dict:
    n = len(shape) - 2
    fmt = (
        (torch.channels_last if n == 2 else torch.channels_last_3d)
        if channels_last
        else torch.contiguous_format
    )
    w = torch.randn(*shape).contiguous(memory_format=fmt).requires_grad_(True)
    grad = torch.randn_like(views(w, stride, memory_format=fmt))

    def forward(fn):
        def call() -> None:
            with torch.no_grad():
                fn(w, stride, memory_format=fmt)

        return call

    def both(fn):
        def call() -> None:
            fn(w, stride, memory_format=fmt).backward(grad)

        return call

    def clone() -> None:
        with torch.no_grad():
            w.clone()

    fns = [
        forward(views),
        forward(conv_transpose_weight_to_lr),
        both(views),
        both(conv_transpose_weight_to_lr),
        clone,
    ]
    times = interleaved(fns, budget_s=budget, min_runs=10)
    ms = [statistics.median(t) * 1e3 for t in times]
    return {
        "weight": label,
        "shape": list(shape),
        "format": "channels_last" if channels_last else "contiguous",
        "views_forward_ms": ms[0],
        "eager_forward_ms": ms[1],
        "views_forward_backward_ms": ms[2],
        "eager_forward_backward_ms": ms[3],
        "clone_ms": ms[4],
        "ratio_forward": ms[0] / ms[1],
        "ratio_forward_backward": ms[2] / ms[3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timing per case (all sides)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    parser.add_argument(
        "--no-native", action="store_true", help="the eager path without the compiled kernel (torch's copies)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with native.enabled(not args.no_native):
        return run(args)


def run(args: argparse.Namespace) -> int:
    print(f"eager path: {'compiled tiled gather' if native.available() else 'torch copies'}")
    rows = []
    print(
        "| weight | format | views fwd ms | eager fwd ms | ratio | views fwd+bwd ms | eager fwd+bwd ms | ratio | clone ms |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, shape, stride in WEIGHTS:
        for cl in (False, True) if len(shape) > 3 else (False,):
            r = bench(label, shape, stride, cl, args.budget)
            rows.append(r)
            print(
                f"| {label} | {r['format']} | {r['views_forward_ms']:.3f} | {r['eager_forward_ms']:.3f} | "
                f"{r['ratio_forward']:.2f}× | {r['views_forward_backward_ms']:.3f} | "
                f"{r['eager_forward_backward_ms']:.3f} | {r['ratio_forward_backward']:.2f}× | {r['clone_ms']:.3f} |"
            )
    fwd = geomean([r["ratio_forward"] for r in rows])
    both = geomean([r["ratio_forward_backward"] for r in rows])
    print(
        f"\ngeometric mean: forward {fwd:.2f}×, forward + backward {both:.2f}× (eager path over the view chain)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / ("reindex.json" if native.available() else "reindex-no-native.json")
    info = machine_info(args.threads, "benchmarks/reindex.py")
    document = {"machine": info, "rows": rows, "geomean": {"forward": fwd, "forward_backward": both}}
    atomic_write(out, lambda tmp: tmp.write_text(json.dumps(document, indent=1) + "\n"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
