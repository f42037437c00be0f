"""Small upsampling layers, where the per-call cost of the route counts: a converted ``SubPixelConvNd`` against the
``nn.ConvTransposeNd`` it came from.

Batch 1, one thread, ``torch.inference_mode()``, after a warm-up (the timed choice is made then); both modules are
called interleaved (:func:`subpixel.timing.interleaved`, alternating order) and each row reports the median of
every call of each side and the ratio subpixel / torch (below 1: the converted layer is faster). The outputs are
checked equal before timing.

Usage::

    python benchmarks/small_layers.py                  # 400 calls per side and row
    python benchmarks/small_layers.py --calls 2000 --json /tmp/small.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass

import torch
from torch import nn

import subpixel
from _common import geomean, machine_info
from subpixel import timing

CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


@dataclass(frozen=True)
class Case:
    """One small layer: channels in and out, kernel, stride, padding and the input's spatial size."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    size: tuple[int, ...]


CASES = (
    Case("1-D k4 s2, 16 ch, L 64", 16, 16, 4, 2, 1, (64,)),
    Case("1-D k16 s8, 32 ch, L 32 (vocoder)", 32, 16, 16, 8, 4, (32,)),
    Case("2-D k2 s2, 16 ch, 16²  (U-Net)", 16, 16, 2, 2, 0, (16, 16)),
    Case("2-D k4 s2 p1, 32 ch, 8²  (DCGAN)", 32, 16, 4, 2, 1, (8, 8)),
    Case("2-D k3 s2 p1, 8 ch, 32²", 8, 8, 3, 2, 1, (32, 32)),
    Case("3-D k2 s2, 8 ch, 8³", 8, 8, 2, 2, 0, (8, 8, 8)),
    Case("3-D k3 s2 p1, 8 ch, 6³", 8, 4, 3, 2, 1, (6, 6, 6)),
)


def run_case(case: Case, calls: int) -> dict[str, object]:
    """Median µs per call of torch's module and of the converted layer, and their ratio."""
    torch.manual_seed(0)
    n = len(case.size)
    output_padding = 1 if case.kernel % 2 and case.kernel > case.stride else 0
    deconv = CONV_T[n](
        case.in_channels, case.out_channels, case.kernel, stride=case.stride, padding=case.padding,
        output_padding=output_padding,
    ).eval()  # fmt: skip
    layer = subpixel.from_conv_transpose(deconv).eval()
    x = torch.randn(1, case.in_channels, *case.size)
    with torch.inference_mode():
        reference = deconv(x)
        assert (layer(x) - reference).abs().max().item() < 1e-4, case.name
        plan = layer.plan(x)
        times = timing.interleaved(
            [lambda: deconv(x), lambda: layer(x)], min_runs=calls, warmup=50, alternate=True
        )
    t_torch, t_ours = (statistics.median(t) * 1e6 for t in times)
    return {
        "case": case.name,
        "torch_us": t_torch,
        "subpixel_us": t_ours,
        "ratio": t_ours / t_torch,
        "algorithm": None if plan is None else plan.algorithm,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="timed calls per side and row (default 400)")
    parser.add_argument("--json", help="also write the rows and the machine to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [run_case(case, args.calls) for case in CASES]
    info = machine_info(1, "benchmarks/small_layers.py")
    print(
        f"{info['cpu']}, torch {torch.__version__}, 1 thread, batch 1, inference mode, median of {args.calls} calls"
    )
    print(f"{'layer':38s} {'torch µs':>9s} {'subpixel µs':>12s} {'ratio':>6s}  algorithm")
    for r in rows:
        print(
            f"{r['case']:38s} {r['torch_us']:9.1f} {r['subpixel_us']:12.1f} {r['ratio']:6.2f}  {r['algorithm']}"
        )
    print(
        f"geometric mean of the ratios: {geomean([r['ratio'] for r in rows]):.2f}; worst {max(r['ratio'] for r in rows):.2f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "calls": args.calls, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
