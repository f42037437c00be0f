"""Whole networks of published architectures: the original model against ``subpixel.convert_model`` of it.

A new user's check: build the network, convert it, time both. Every case times the original, the converted model
(automatic algorithm choice) and the converted model with the LR form forced, interleaved call by call with the
timing loop of ``layers.py`` (medians; ratio = original ms / converted ms, above 1: converted is faster).

* DCGAN generator (Radford et al. 2016): z (100) → 4² … 64² RGB, ConvTranspose2d k4 s2 p1, BatchNorm, ReLU.
* 2-D U-Net (Ronneberger et al. 2015), widths 32-512, "same" 3×3 convs, up-convolutions ConvTranspose2d k2 s2.
* 3-D U-Net (Çiçek et al. 2016), widths 16-128, up-convolutions ConvTranspose3d k2 s2 and k3 s2 p1 op1.
* HiFi-GAN-style decoder (Kong et al. 2020, V1 up-sampling ×8 ×8 ×2 ×2 of 80-band mel frames), one
  dilated residual block per stage, every convolution under ``torch.nn.utils.parametrizations.weight_norm``.
* A k = s transformer neck (ViTDet's simple feature pyramid, Li et al. 2022): ViT-B tokens (768 ch, 32²) to
  strides 4, 8 (ConvTranspose2d k2 s2) and 16.

Modes: inference (``eval()``, ``no_grad``) and a training step (``train()``, forward + backward of the mean output
into every parameter's ``.grad``); memory formats: contiguous and channels-last (2-D and 3-D networks; model and
input converted with ``.to(memory_format=...)``). Writes ``benchmarks/results/models.json``; exits 0 whatever
the result.

Usage::

    python benchmarks/models.py --threads 2            # all networks (a few minutes)
    python benchmarks/models.py --only U-Net --budget 3
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

import subpixel
from _common import geomean, keep_freed_memory, machine_info
from layers import interleaved, summary, to_format
from subpixel import dispatch, native

ROOT = Path(__file__).resolve().parent.parent
WeightNorm = torch.nn.utils.parametrizations.weight_norm


def dcgan_generator(nz: int = 100, ngf: int = 64) -> nn.Module:
    """DCGAN's generator as in the PyTorch DCGAN example: (N, 100, 1, 1) → (N, 3, 64, 64)."""

    def up(cin: int, cout: int, stride: int = 2, padding: int = 1) -> list[nn.Module]:
        return [
            nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(True),
        ]

    return nn.Sequential(
        *up(nz, ngf * 8, 1, 0),
        *up(ngf * 8, ngf * 4),
        *up(ngf * 4, ngf * 2),
        *up(ngf * 2, ngf),
        nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def _double_conv(conv: type[nn.Module], norm: type[nn.Module], cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        conv(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(True),
        conv(cout, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(True),
    )  # fmt: skip


class UNet(nn.Module):
    """U-Net (2-D or 3-D): encoder of double convs and max-pools, decoder of up-convolutions, skip concatenation.

    ``up[i]`` builds the up-convolution from ``widths[i + 1]`` to ``widths[i]`` channels.

    Shape:
        - input: ``(N, C_in, *S)`` with ``S`` divisible by ``2^(len(widths) − 1)``; output: ``(N, classes, *S)``.
    """

    def __init__(
        self, ndim: int, widths: list[int], up: list[Callable[[int, int], nn.Module]], c_in: int, classes: int
    ) -> None:
        super().__init__()
        conv = {2: nn.Conv2d, 3: nn.Conv3d}[ndim]
        norm = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim]
        self.pool = {2: nn.MaxPool2d, 3: nn.MaxPool3d}[ndim](2)
        self.down = nn.ModuleList(
            [_double_conv(conv, norm, c, w) for c, w in zip([c_in, *widths[:-1]], widths, strict=True)]
        )
        self.up = nn.ModuleList([up[i](widths[i + 1], widths[i]) for i in range(len(widths) - 1)])
        self.dec = nn.ModuleList([_double_conv(conv, norm, 2 * w, w) for w in widths[:-1]])
        self.head = conv(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.dec[i](torch.cat([skips[i], self.up[i](x)], dim=1))
        return self.head(x)


def unet2d() -> nn.Module:
    """2-D U-Net, widths 32-512, up-convolutions ConvTranspose2d(k2, s2)."""
    return UNet(2, [32, 64, 128, 256, 512], [lambda a, b: nn.ConvTranspose2d(a, b, 2, 2)] * 4, 1, 2)


def unet3d() -> nn.Module:
    """3-D U-Net, widths 16-128: ConvTranspose3d(k3, s2, p1, op1) into the two finest levels, k2 s2 below."""
    k3 = lambda a, b: nn.ConvTranspose3d(a, b, 3, 2, 1, 1)  # noqa: E731
    k2 = lambda a, b: nn.ConvTranspose3d(a, b, 2, 2)  # noqa: E731
    return UNet(3, [16, 32, 64, 128], [k3, k3, k2], 1, 2)


class ResBlock1d(nn.Module):
    """HiFi-GAN's residual block (type 2): leaky ReLU and a dilated k3 conv per dilation, residual sums."""

    def __init__(self, channels: int, dilations: tuple[int, ...] = (1, 3)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [WeightNorm(nn.Conv1d(channels, channels, 3, dilation=d, padding=d)) for d in dilations]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(nn.functional.leaky_relu(x, 0.1))
        return x


def hifigan_decoder() -> nn.Module:
    """HiFi-GAN V1's up-sampling path (512 channels, ×8 ×8 ×2 ×2, kernels 16 16 4 4), one residual block per stage,
    every conv under weight_norm: (N, 80, T) mel frames → (N, 1, 256·T) samples."""
    layers: list[nn.Module] = [WeightNorm(nn.Conv1d(80, 512, 7, padding=3))]
    channels = 512
    for k, s in ((16, 8), (16, 8), (4, 2), (4, 2)):
        layers += [
            nn.LeakyReLU(0.1),
            WeightNorm(nn.ConvTranspose1d(channels, channels // 2, k, s, (k - s) // 2)),
            ResBlock1d(channels // 2),
        ]
        channels //= 2
    layers += [nn.LeakyReLU(0.1), WeightNorm(nn.Conv1d(channels, 1, 7, padding=3)), nn.Tanh()]
    return nn.Sequential(*layers)


def vitdet_neck(dim: int = 768, out: int = 256) -> nn.Module:
    """ViTDet's simple feature pyramid from one ViT-B/16 feature map: strides 4 (two k2 s2 up-convs), 8 (one),
    16 (identity); each level a 1×1 and a 3×3 conv. Returns the levels concatenated after flattening (one tensor)."""

    class Neck(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale4 = nn.Sequential(
                nn.ConvTranspose2d(dim, dim // 2, 2, 2), nn.GroupNorm(1, dim // 2), nn.GELU(),
                nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2),
            )  # fmt: skip
            self.scale8 = nn.ConvTranspose2d(dim, dim // 2, 2, 2)
            self.heads = nn.ModuleList(
                [
                    nn.Sequential(
                        nn.Conv2d(c, out, 1, bias=False), nn.GroupNorm(1, out), nn.Conv2d(out, out, 3, 1, 1)
                    )
                    for c in (dim // 4, dim // 2, dim)
                ]
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            levels = [self.scale4(x), self.scale8(x), x]
            return torch.cat([h(f).flatten(2) for h, f in zip(self.heads, levels, strict=True)], dim=2)

    return Neck()


NETWORKS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "DCGAN generator": (dcgan_generator, (16, 100, 1, 1)),
    "2-D U-Net (k2 s2)": (unet2d, (1, 1, 256, 256)),
    "3-D U-Net (k3 s2 p1 op1, k2 s2)": (unet3d, (1, 1, 48, 48, 48)),
    "HiFi-GAN decoder (weight_norm)": (hifigan_decoder, (1, 80, 64)),
    "ViTDet neck (k = s)": (vitdet_neck, (1, 768, 32, 32)),
}
FORMATS = {3: ["contiguous"], 4: ["contiguous", "channels_last"], 5: ["contiguous", "channels_last_3d"]}


def _has_parametrized_conv_transpose(model: nn.Module) -> bool:
    return any(
        parametrize.is_parametrized(m)
        for m in model.modules()
        if isinstance(
            m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, subpixel.SubPixelConvNd)
        )
    )


def convert(model: nn.Module, **options: object) -> tuple[nn.Module, str]:
    """``subpixel.convert_model`` of a copy (with ``options``), and a note. Where this checkout's ``convert_model``
    does not keep a parametrization of a ConvTranspose, it is removed (folded) from the original's up-samplers
    first, so that both sides compute the same network."""
    converted = subpixel.convert_model(copy.deepcopy(model), **options)
    converted = converted[0] if isinstance(converted, tuple) else converted
    note = ""
    if _has_parametrized_conv_transpose(model) and not _has_parametrized_conv_transpose(converted):
        for m in model.modules():
            if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
                if parametrize.is_parametrized(m, "weight"):
                    parametrize.remove_parametrizations(m, "weight")
        note = "weight_norm folded into the up-samplers on both sides (convert_model here drops it)"
    return converted, note


def bench_network(name: str, fmt: str, mode: str, budget_s: float) -> dict[str, object]:
    build, shape = NETWORKS[name]
    torch.manual_seed(0)
    dispatch.clear_caches()  # plans of this case only (each is chosen again on its first call)
    original = build()
    converted, note = convert(original)  # the drop-in: ConvTranspose weights held, any exact algorithm
    # beside it, the LR form's own standing: LR weights as the parameters, LR conv + shuffle forced (below)
    forced, _ = convert(original, weight_layout="lr")
    models = [original, converted, forced]
    if fmt != "contiguous":
        models = [m.to(memory_format=getattr(torch, fmt)) for m in models]
    x = to_format(torch.randn(shape), fmt)
    for m in models:
        m.train(mode == "training")
    with torch.no_grad():
        for m in models:
            m.eval()
        y_ref, y_new = models[0](x), models[1](x)
        for m in models:
            m.train(mode == "training")
    err = (y_ref - y_new).abs().max().item() / max(y_ref.abs().max().item(), 1e-30)

    def run(m: nn.Module, force: str | None) -> Callable[[], object]:
        def infer() -> object:
            with torch.no_grad(), dispatch.force_algorithm(force):
                return m(x)

        def train() -> object:
            with dispatch.force_algorithm(force):
                m(x).mean().backward()
            for p in m.parameters():
                p.grad = None
            return None

        return infer if mode == "inference" else train

    t_orig, t_conv, t_lr = interleaved(
        [run(models[0], None), run(models[1], None), run(models[2], "lr_shuffle")], budget_s, min_runs=3
    )
    a, b, c = summary(t_orig), summary(t_conv), summary(t_lr)
    chosen = [
        p for p in dispatch.cached_plans() if p.reason != "forced"
    ]  # the automatic choices of this case
    algorithms = {a: sum(p.algorithm == a for p in chosen) for a in dispatch.ALGORITHMS}
    return {
        "network": name,
        "mode": mode,
        "format": fmt,
        "input": list(shape),
        "original": a,
        "converted": b,
        "lr_forced": c,
        "ratio": a["median_ms"] / b["median_ms"],
        "ratio_lr_forced": a["median_ms"] / c["median_ms"],
        "max_rel_error": err,
        "algorithms_cached": algorithms,
        "note": note,
    }


def markdown_table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| network | mode | format | original ms | converted ms | ratio | LR forced ms | LR ratio | max rel. error |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        a, b, c = r["original"], r["converted"], r["lr_forced"]
        lines.append(
            f"| {r['network']} | {r['mode']} | {r['format']} | {a['median_ms']:.2f} | {b['median_ms']:.2f} "  # type: ignore[index]
            f"| {r['ratio']:.2f}× | {c['median_ms']:.2f} | {r['ratio_lr_forced']:.2f}× | {r['max_rel_error']:.1e} |"  # type: ignore[index]
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timing per case (all sides)")
    parser.add_argument("--only", default="", help="run only networks whose name contains this text")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="output folder")
    parser.add_argument(
        "--keep-freed-memory", action="store_true", help="glibc keeps freed memory (layers.py)"
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Exception as exc:  # a benchmark reports, it does not fail the build
        print(f"benchmark failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 0


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    info = machine_info(torch.get_num_threads(), "benchmarks/models.py")
    print(f"torch {info['torch']}, threads {info['threads']}, {info['cpu']}, commit {info['commit']}")
    rows = []
    for name, (_, shape) in NETWORKS.items():
        if args.only and args.only not in name:
            continue
        for mode in ("inference", "training"):
            for fmt in FORMATS[len(shape)]:
                row = bench_network(name, fmt, mode, args.budget)
                print(
                    f"{name} {mode} {fmt}: {row['ratio']:.2f}× (LR forced {row['ratio_lr_forced']:.2f}×) "
                    f"{row['algorithms_cached']} {row['note']}",
                    file=sys.stderr,
                )
                rows.append(row)
    gm = {
        mode: {
            "geomean": geomean([float(r["ratio"]) for r in rows if r["mode"] == mode]),  # type: ignore[arg-type]
            "geomean_lr_forced": geomean(
                [float(r["ratio_lr_forced"]) for r in rows if r["mode"] == mode]  # type: ignore[arg-type]
            ),
        }
        for mode in ("inference", "training")
    }
    gm["all"] = {
        "geomean": geomean([float(r["ratio"]) for r in rows]),  # type: ignore[arg-type]
        "geomean_lr_forced": geomean([float(r["ratio_lr_forced"]) for r in rows]),  # type: ignore[arg-type]
    }
    print()
    print(markdown_table(rows))
    print()
    for mode, g in gm.items():
        print(f"{mode}: geometric mean {g['geomean']:.2f}× (LR form forced: {g['geomean_lr_forced']:.2f}×)")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "models" if not args.only else "models-partial"
    name += "-keep-freed-memory" if args.keep_freed_memory else ""
    name += "" if native.available() else "-no-native"
    path = args.out / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"info": info, "budget_s": args.budget, "rows": rows, "geomean": gm}, indent=1))
    os.replace(tmp, path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
