"""Upsampling layers from real networks: ``nn.ConvTransposeNd`` vs ``subpixel.SubPixelConvNd``, and the shuffles.

Every case times both sides in the same run, interleaved call by call (torch, subpixel, LR forced, then the
reverse order, ...), so that load from other processes and the allocator's state hit all alike; a case reports the median of its calls and the spread
(25th-75th percentile) of each side. The subpixel layer is converted from the torch layer's own weights
(``subpixel.from_conv_transpose``) and its output is checked against the torch layer's before timing.

* Layers: inference (``torch.no_grad``) and training (forward + backward: gradients of the input and of every
  parameter), fp32, batch 1 and a realistic batch, in every memory format that applies (``contiguous`` and
  ``channels_last`` / ``channels_last_3d``; the same format for both sides).
* Shuffles: ``subpixel.pixel_shuffle`` / ``pixel_unshuffle`` in 1-D, 2-D and 3-D, both channel orders, both
  memory formats, against ``clone()`` of the same bytes (the memory-bandwidth limit) and torch's 2-D op.

Writes ``benchmarks/results/layers.json`` (machine, torch version, threads, commit, every timing) and
``benchmarks/results/layers.png``; prints the tables and the geometric means. Exits 0 whatever the result.

Usage::

    python benchmarks/layers.py                 # the full panel (a few minutes on 2 cores)
    python benchmarks/layers.py --quick         # smoke run: batch 1, short timing budget
    python benchmarks/layers.py --threads 1 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import subpixel
from _common import geomean, keep_freed_memory, machine_info
from subpixel import native, timing
from subpixel.shuffle import pixel_shuffle, pixel_unshuffle

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LayerCase:
    """One upsampling layer of the panel."""

    network: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    output_padding: int
    size: tuple[int, ...]
    batches: tuple[int, int]

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def label(self) -> str:
        op = f", op{self.output_padding}" if self.output_padding else ""
        size = "x".join(str(s) for s in self.size)
        return (
            f"{self.network} {self.in_channels}->{self.out_channels} k{self.kernel} s{self.stride} "
            f"p{self.padding}{op} @{size}"
        )


def hifigan_lengths() -> list[int]:
    """Input lengths of HiFi-GAN's four up-samplers for 32 input frames (×8, ×8, ×2, ×2)."""
    return [32, 256, 2048, 4096]


PANEL = [
    LayerCase("DCGAN", 512, 256, 4, 2, 1, 0, (8, 8), (1, 16)),
    LayerCase("DCGAN", 256, 128, 4, 2, 1, 0, (16, 16), (1, 16)),
    LayerCase("DCGAN", 128, 64, 4, 2, 1, 0, (32, 32), (1, 16)),
    LayerCase("DCGAN", 64, 3, 4, 2, 1, 0, (64, 64), (1, 16)),
    LayerCase("U-Net", 1024, 512, 2, 2, 0, 0, (32, 32), (1, 4)),
    LayerCase("U-Net", 128, 64, 2, 2, 0, 0, (128, 128), (1, 4)),
    LayerCase("FSRCNN", 56, 1, 9, 3, 4, 2, (180, 320), (1, 4)),
    LayerCase("FCN-32s", 21, 21, 64, 32, 16, 0, (16, 16), (1, 4)),
    LayerCase("HiFi-GAN", 512, 256, 16, 8, 4, 0, (hifigan_lengths()[0],), (1, 8)),
    LayerCase("HiFi-GAN", 256, 128, 16, 8, 4, 0, (hifigan_lengths()[1],), (1, 8)),
    LayerCase("HiFi-GAN", 128, 64, 4, 2, 1, 0, (hifigan_lengths()[2],), (1, 8)),
    LayerCase("HiFi-GAN", 64, 32, 4, 2, 1, 0, (hifigan_lengths()[3],), (1, 8)),
    LayerCase("3D U-Net", 64, 32, 2, 2, 0, 0, (32, 32, 32), (1, 2)),
    LayerCase("3D U-Net", 32, 16, 3, 2, 1, 1, (32, 32, 32), (1, 2)),
]

# (ndim, lr shape, factor): the LR side of every shuffle case
SHUFFLES = [
    (1, (8, 128 * 8, 256), 8),
    (2, (4, 64 * 4, 64, 64), 2),
    (2, (1, 3 * 16, 180, 320), 4),
    (2, (1, 32 * 9, 96, 96), 3),
    (3, (1, 16 * 8, 32, 32, 32), 2),
]

FORMATS = {
    1: ["contiguous"],
    2: ["contiguous", "channels_last"],
    3: ["contiguous", "channels_last_3d"],
}


def to_format(x: torch.Tensor, name: str) -> torch.Tensor:
    return x.contiguous(
        memory_format=getattr(torch, name) if name != "contiguous" else torch.contiguous_format
    )


def interleaved(
    fns: list[Callable[[], object]], budget_s: float, min_runs: int = 5, max_runs: int = 200
) -> list[list[float]]:
    """:func:`subpixel.timing.interleaved` until the budget is spent, the order reversed every other round (each
    side follows and precedes each other side as often: the allocator's state after the previous call, e.g. whether
    a large freed output went back to the kernel, then falls on all alike); each function's times in ms."""
    times = timing.interleaved(fns, budget_s=budget_s, min_runs=min_runs, max_runs=max_runs, alternate=True)
    return [[1e3 * t for t in ts] for ts in times]


def summary(ts: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
    return {"median_ms": statistics.median(ts), "p25_ms": q[0], "p75_ms": q[2], "runs": len(ts)}


def bench_layer(case: LayerCase, batch: int, fmt: str, mode: str, budget_s: float) -> dict[str, object]:
    conv_t = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[case.ndim]
    torch.manual_seed(0)
    ref = conv_t(
        case.in_channels, case.out_channels, case.kernel, case.stride, case.padding, case.output_padding
    )
    sub = subpixel.from_conv_transpose(ref)  # the drop-in: the ConvTranspose weight held, any exact algorithm
    # beside it, the LR form's own standing: the paper's layer (LR weight as the parameter), LR conv + shuffle forced
    sub_lr = subpixel.from_conv_transpose(ref, weight_layout="lr")
    sub_lr.algorithm = "lr_shuffle"
    if fmt != "contiguous":  # a channels-last model, as PyTorch's guide makes one: weights too, on all sides
        ref = ref.to(memory_format=getattr(torch, fmt))
        sub = sub.to(memory_format=getattr(torch, fmt))
        sub_lr = sub_lr.to(memory_format=getattr(torch, fmt))
    x = to_format(torch.randn(batch, case.in_channels, *case.size), fmt)
    with torch.no_grad():
        y_ref, y_sub = ref(x), sub(x)
    err = (y_ref - y_sub).abs().max().item() / max(y_ref.abs().max().item(), 1e-30)
    if mode == "inference":

        def run(m: nn.Module) -> Callable[[], object]:
            def f() -> object:
                with torch.no_grad():
                    return m(x)

            return f

    else:
        xg = x.detach().clone().requires_grad_(True)
        grad = to_format(torch.randn_like(y_ref), fmt)

        def run(m: nn.Module) -> Callable[[], object]:
            params = [p for p in m.parameters()]

            def f() -> object:
                return torch.autograd.grad(m(xg), [xg, *params], grad)

            return f

    with torch.set_grad_enabled(mode == "training"):
        plan = sub.plan(
            x if mode == "inference" else xg
        )  # chosen on the first call (timed where several are valid)
    t_ref, t_sub, t_lr = interleaved([run(ref), run(sub), run(sub_lr)], budget_s)
    a, b, c = summary(t_ref), summary(t_sub), summary(t_lr)
    return {
        "algorithm": plan.algorithm if plan is not None else "lr_shuffle",
        "plan_reason": plan.reason if plan is not None else "",
        "lr_forced": c,
        "ratio_lr_forced": a["median_ms"] / c["median_ms"],
        "layer": case.label,
        "network": case.network,
        "ndim": case.ndim,
        "batch": batch,
        "mode": mode,
        "format": fmt,
        "torch": a,
        "subpixel": b,
        "ratio": a["median_ms"] / b["median_ms"],
        "max_rel_error": err,
        "out_format_same": y_sub.stride() == y_ref.stride(),
    }


def bench_shuffle(ndim: int, shape: tuple[int, ...], r: int, op: str, order: str, fmt: str, budget_s: float):
    torch.manual_seed(0)
    if op == "shuffle":
        x = to_format(torch.randn(shape), fmt)
        fn = lambda: pixel_shuffle(x, r, order=order, ndim=ndim)  # noqa: E731
        check = (lambda: F.pixel_shuffle(x, r)) if ndim == 2 and order == "crd" else None
    else:
        hr = (shape[0], shape[1] // r**ndim, *[s * r for s in shape[2:]])
        x = to_format(torch.randn(hr), fmt)
        fn = lambda: pixel_unshuffle(x, r, order=order, ndim=ndim)  # noqa: E731
        check = (lambda: F.pixel_unshuffle(x, r)) if ndim == 2 and order == "crd" else None
    fns = [fn, x.clone]
    if check is not None:
        if not torch.equal(fn(), check()):
            raise AssertionError(f"{op} {shape} {order} {fmt} differs from torch")
        fns.append(check)
    times = interleaved(fns, budget_s)
    gbytes = 2 * x.numel() * x.element_size() / 1e9  # read + write
    res = {
        "op": op,
        "ndim": ndim,
        "lr_shape": list(shape),
        "factor": r,
        "order": order,
        "format": fmt,
        "subpixel": summary(times[0]),
        "clone": summary(times[1]),
        "torch": summary(times[2]) if check is not None else None,
    }
    for key in ("subpixel", "clone", "torch"):
        if res[key] is not None:
            res[key]["GB_per_s"] = gbytes / (res[key]["median_ms"] / 1e3)
    res["fraction_of_clone"] = res["subpixel"]["GB_per_s"] / res["clone"]["GB_per_s"]
    res["vs_torch"] = res["torch"]["median_ms"] / res["subpixel"]["median_ms"] if check is not None else None
    return res


def markdown_table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| layer | batch | mode | format | torch ms | subpixel ms | ratio | algorithm | LR forced ms | LR ratio |",
        "|---|---:|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        a, b = r["torch"], r["subpixel"]
        lines.append(
            f"| {r['layer']} | {r['batch']} | {r['mode']} | {r['format']} | {a['median_ms']:.3f} "  # type: ignore[index]
            f"| {b['median_ms']:.3f} | {r['ratio']:.2f}× | {r['algorithm']} "  # type: ignore[index]
            f"| {r['lr_forced']['median_ms']:.3f} | {r['ratio_lr_forced']:.2f}× |"  # type: ignore[index]
        )
    return "\n".join(lines)


def shuffle_table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| op | LR shape | r | order | format | subpixel GB/s | clone GB/s | % of clone | torch 2-D GB/s | vs torch |",
        "|---|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["torch"]
        lines.append(
            f"| {r['op']} | {tuple(r['lr_shape'])} | {r['factor']} | {r['order']} | {r['format']} "  # type: ignore[arg-type]
            f"| {r['subpixel']['GB_per_s']:.1f} | {r['clone']['GB_per_s']:.1f} "  # type: ignore[index]
            f"| {100 * r['fraction_of_clone']:.0f}% "  # type: ignore[operator]
            f"| {t['GB_per_s']:.1f} | {r['vs_torch']:.2f}× |"  # type: ignore[index]
            if t is not None
            else f"| {r['op']} | {tuple(r['lr_shape'])} | {r['factor']} | {r['order']} | {r['format']} "  # type: ignore[arg-type]
            f"| {r['subpixel']['GB_per_s']:.1f} | {r['clone']['GB_per_s']:.1f} "  # type: ignore[index]
            f"| {100 * r['fraction_of_clone']:.0f}% | – | – |"  # type: ignore[operator]
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, object]], shuffles: list[dict[str, object]], path: Path, info: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 2, figsize=(15, max(5, 0.22 * len(rows))), gridspec_kw={"width_ratios": [3, 2]}
    )
    ax = axes[0]
    labels = [f"{r['layer']} b{r['batch']} {r['mode'][:5]} {r['format'][:8]}" for r in rows]
    ratios = [float(r["ratio"]) for r in rows]  # type: ignore[arg-type]
    colors = ["tab:green" if x >= 1 else "tab:red" for x in ratios]
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("speed-up of SubPixelConv over ConvTranspose (torch ms / subpixel ms, log)")
    ax.set_title("Layers")
    ax = axes[1]
    slabels = [
        f"{s['op'][:5]} {s['ndim']}D r{s['factor']} {s['order']} {s['format'][:8]} {tuple(s['lr_shape'])}"
        for s in shuffles
    ]
    frac = [100 * float(s["fraction_of_clone"]) for s in shuffles]  # type: ignore[arg-type]
    tfrac = [
        100 * s["torch"]["GB_per_s"] / s["clone"]["GB_per_s"] if s["torch"] else 0.0  # type: ignore[index]
        for s in shuffles
    ]
    ys = range(len(shuffles))
    ax.barh([y - 0.2 for y in ys], frac, height=0.4, label="subpixel", color="tab:blue")
    ax.barh([y + 0.2 for y in ys], tfrac, height=0.4, label="torch 2-D op", color="tab:orange")
    ax.axvline(60, color="k", lw=0.8, ls="--")
    ax.set_yticks(list(ys), slabels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("bandwidth, % of clone() of the same bytes")
    ax.set_title("Shuffles")
    ax.legend(fontsize=7)
    fig.suptitle(
        f"torch {info['torch']}, {info['threads']} threads, {info['cpu']}, commit {info['commit']}"
        + (", glibc keeps freed memory" if info["allocator"]["keep_freed_memory"] else ""),  # type: ignore[index]
        fontsize=9,
    )
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 1 only, short timing budget")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--budget", type=float, default=None, help="seconds of timing per case (both sides)")
    parser.add_argument("--only", default="", help="run only layers whose label contains this text")
    parser.add_argument("--no-shuffles", action="store_true", help="skip the shuffle cases")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc mallopt: keep freed memory instead of returning it to the kernel (both sides; subpixel.allocator)",
    )
    parser.add_argument(
        "--no-native",
        action="store_true",
        help="switch off the compiled copy kernel (subpixel.native): time the pure-PyTorch fallback",
    )
    args = parser.parse_args(argv)
    try:
        with native.enabled(not args.no_native):
            return run(args)
    except Exception as exc:  # a benchmark reports, it does not fail the build
        print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 0


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    budget = args.budget if args.budget is not None else (0.15 if args.quick else 1.0)
    if args.keep_freed_memory and not keep_freed_memory():
        print(
            "--keep-freed-memory: glibc's mallopt not available; running with the default allocator",
            file=sys.stderr,
        )
    info = machine_info(torch.get_num_threads(), "benchmarks/layers.py")
    print(
        f"torch {info['torch']}, threads {info['threads']}, {info['cpu']}, commit {info['commit']}, "
        f"allocator {info['allocator']}, native copy kernel {info['native_copy_kernel']}"
    )
    jobs = []
    for case in PANEL:
        if args.only and args.only not in case.label:
            continue
        for batch in case.batches[:1] if args.quick else case.batches:
            for mode in ("inference", "training"):
                for fmt in FORMATS[case.ndim]:
                    jobs.append((case, batch, fmt, mode))
    rows = [bench_layer(*job, budget) for job in tqdm(jobs, desc="layers", file=sys.stderr)]
    shuffles = []
    if not args.no_shuffles:
        sjobs = [
            (nd, shape, r, op, order, fmt)
            for nd, shape, r in SHUFFLES
            for op in ("shuffle", "unshuffle")
            for order in ("crd", "dcr")
            for fmt in FORMATS[nd]
        ]
        sbudget = budget / 2
        shuffles = [bench_shuffle(*job, sbudget) for job in tqdm(sjobs, desc="shuffles", file=sys.stderr)]
    result: dict[str, object] = {"info": info, "budget_s": budget, "quick": args.quick, "layers": rows}
    gm = {}
    for mode in ("inference", "training"):
        sel = [float(r["ratio"]) for r in rows if r["mode"] == mode]  # type: ignore[arg-type]
        if sel:
            worst = min((r for r in rows if r["mode"] == mode), key=lambda r: float(r["ratio"]))  # type: ignore[arg-type]
            gm[mode] = {
                "geomean": geomean(sel),
                "geomean_lr_forced": geomean(
                    [float(r["ratio_lr_forced"]) for r in rows if r["mode"] == mode]  # type: ignore[arg-type]
                ),
                "worst_ratio": worst["ratio"],
                "worst": f"{worst['layer']} b{worst['batch']} {worst['format']}",
            }
    result["geomean"] = gm
    result["shuffles"] = shuffles
    print()
    print(markdown_table(rows))
    print()
    for mode, g in gm.items():
        print(
            f"{mode}: geometric mean {g['geomean']:.2f}× (LR form forced: {g['geomean_lr_forced']:.2f}×), "
            f"worst {g['worst_ratio']:.2f}× ({g['worst']})"
        )
    if shuffles:
        print()
        print(shuffle_table(shuffles))
        print(
            f"\nshuffles: worst {100 * min(s['fraction_of_clone'] for s in shuffles):.0f}% of clone bandwidth"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    name = "layers-quick" if args.quick else "layers"
    if info["allocator"]["keep_freed_memory"]:  # type: ignore[index]
        name += "-keep-freed-memory"
    if not info["native_copy_kernel"]["available"]:  # type: ignore[index]
        name += "-no-native"
    path = args.out / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, path)
    plot(rows, shuffles, path.with_suffix(".png"), info)
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
