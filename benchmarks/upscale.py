"""Frames per second of ESPCN for 1920×1080 output at ×2, ×3, ×4: subpixel's runners vs plain PyTorch eager.

For each scale the bundled model (``subpixel.sr.pretrained``; a randomly initialised ESPCN of the same shape when
the weights are absent, which costs the same) is timed on one LR luma frame (1080/r × 1920/r) by:

* ``eager``: the same network written as plain PyTorch, ``Conv2d`` layers + ``nn.PixelShuffle``, NCHW, fp32 (the
  baseline; its output is checked against the model's before timing);
* ``subpixel fp32``: :func:`subpixel.upscaling.image.make_runner` default (channels_last, fp32);
* ``subpixel bf16``: the same in bfloat16 (oneDNN, AMX / AVX-512-BF16 where the CPU has them);
* ``onnxruntime``: the model exported to ONNX (dynamic shapes), ONNX Runtime CPU provider;
* ``subpixel fp32/bf16 compiled`` (with ``--compile``): the same through ``torch.compile`` with Inductor's
  freezing (oneDNN convolutions with the activation fused), when a C++ compiler works;
* ``subpixel.upscale, Y tensor`` / ``RGB uint8``: the one-call API with its defaults, called again and again
  with the same shape, on the frame's ``(h, w)`` luma tensor and on an RGB uint8 array (the whole image path:
  YCbCr, model, bicubic chroma, 8-bit rounding); the RGB ÷ Y time ratio is printed.

All contenders are called in turn (interleaved) until the time budget is spent, so that load from other processes
hits them alike; the median and the 25th-75th percentiles are reported, and every ratio is against ``eager`` from
the same run. ``pipeline`` rows time the whole image path of ``subpixel upscale`` for one RGB frame (YCbCr, model,
bicubic chroma, quantization to 8 bits) with the default runner.

The bf16 accuracy is measured too: Y-PSNR of fp32 and bf16 by the standard protocol on scikit-image's astronaut
(and Set5 when ``../shared/data/sr`` is present); bf16 is acceptable where it loses at most 0.05 dB.

``--memory`` also measures the peak resident memory of ``subpixel upscale`` producing a 7680×4320 output
(an LR of 2560×1440 at ×3) with ``/usr/bin/time -v``.

Writes ``benchmarks/results/upscale.json`` and ``benchmarks/results/upscale.png``; exits 0 whatever the result.

Usage::

    python benchmarks/upscale.py                    # all scales, 2 threads, ~2 minutes
    python benchmarks/upscale.py --quick            # short budget, ×3 only
    python benchmarks/upscale.py --compile --memory
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _common import machine_info
from subpixel import timing
from subpixel.imageio import write_image
from subpixel.sr.models import ESPCN, pretrained, pretrained_scales
from subpixel.sr.protocol import make_lr, modcrop, score_pair
from subpixel.upscaling.image import make_runner, upscale_pixels

ROOT = Path(__file__).resolve().parent.parent
OUT_W, OUT_H = 1920, 1080


def model_for(scale: int) -> tuple[nn.Module, str]:
    if scale in pretrained_scales():
        return pretrained(scale), "bundled"
    torch.manual_seed(scale)
    return ESPCN(scale).eval(), "random init (bundled weights absent)"


def plain_eager(model: nn.Module) -> nn.Sequential:
    """The same network as plain PyTorch: Conv2d layers + nn.PixelShuffle (+ the nearest skip), NCHW, fp32."""
    layers: list[nn.Module] = [copy.deepcopy(m) for m in model.features]
    up = model.upsample
    weight = up.weight.detach()  # (C·r², C_in, K, K) in CRD order: exactly Conv2d + PixelShuffle
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=weight.shape[2] // 2)
    with torch.no_grad():
        conv.weight.copy_(weight)
        bias = up.bias.detach() if up.bias is not None else torch.zeros(weight.shape[0] // model.scale**2)
        conv.bias.copy_(bias.repeat_interleave(model.scale**2))
    plain = nn.Sequential(*layers, conv, nn.PixelShuffle(model.scale)).eval()
    return _NearestSkip(plain, model.scale) if model.config.skip == "nearest" else plain


class _NearestSkip(nn.Module):
    """``body(x)`` plus ``x`` upsampled by nearest neighbour (``F.interpolate``): the bundled model's skip."""

    def __init__(self, body: nn.Module, scale: int) -> None:
        super().__init__()
        self.body, self.scale = body, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")


def interleaved(fns: list[Callable[[], object]], budget_s: float, min_runs: int = 5) -> list[list[float]]:
    """:func:`subpixel.timing.interleaved` until the budget is spent; each function's times in seconds."""
    return timing.interleaved(fns, budget_s=budget_s, min_runs=min_runs)


def summary(ts: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
    med = statistics.median(ts)
    return {
        "fps": 1 / med,
        "median_ms": med * 1e3,
        "p25_ms": q[0] * 1e3,
        "p75_ms": q[2] * 1e3,
        "runs": len(ts),
    }


def bench_scale(scale: int, budget_s: float, threads: int, use_compile: bool) -> dict[str, object]:
    model, weights = model_for(scale)
    h, w = OUT_H // scale, OUT_W // scale
    x = torch.rand(1, 1, h, w)
    eager = plain_eager(model)
    with torch.inference_mode():
        reference = model(x)
        error = (eager(x) - reference).abs().max().item()
    assert error < 1e-4, f"plain eager network differs from the model by {error}"
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "eager": lambda t: eager(t),
        "subpixel fp32": make_runner(model),
        "subpixel bf16": make_runner(model, precision="bf16"),
        "onnxruntime": make_runner(model, backend="onnxruntime", threads=threads),
    }
    if use_compile:
        for precision in ("fp32", "bf16"):
            runner = make_runner(model, precision=precision, compile=True)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # a failed compilation falls back with a warning: skip it
                    runner(x)
                runners[f"subpixel {precision} compiled"] = runner
            except Exception as exc:  # no compiler, or Inductor failed
                print(f"  torch.compile ({precision}) unavailable: {type(exc).__name__}: {str(exc)[:200]}")
    errors = {}
    with torch.inference_mode():
        for name, fn in runners.items():
            errors[name] = (fn(x).float() - reference).abs().max().item()
    rgb = np.random.default_rng(0).random((h, w, 3), dtype=np.float32)
    default_runner = runners["subpixel fp32"]
    bf16_runner = runners["subpixel bf16"]
    calls: dict[str, Callable[[], object]] = {}
    for name, fn in runners.items():
        calls[name] = lambda fn=fn: torch.inference_mode()(fn)(x)
    calls["pipeline fp32 (RGB frame)"] = lambda: upscale_pixels(
        rgb, model, runner=default_runner, bit_depth=8
    )
    calls["pipeline bf16 (RGB frame)"] = lambda: upscale_pixels(rgb, model, runner=bf16_runner, bit_depth=8)
    if "subpixel bf16 compiled" in runners:
        fast = runners["subpixel bf16 compiled"]
        calls["pipeline bf16 compiled (RGB)"] = lambda: upscale_pixels(rgb, model, runner=fast, bit_depth=8)
    if weights == "bundled":  # the one-call API on the same bundled network, its defaults, called again and again
        import subpixel

        y_plane, rgb8 = x[0, 0].clone(), np.round(rgb * 255).astype(np.uint8)
        calls["subpixel.upscale, Y tensor"] = lambda: subpixel.upscale(y_plane, scale)
        calls["subpixel.upscale, RGB uint8"] = lambda: subpixel.upscale(rgb8, scale)
    times = interleaved(list(calls.values()), budget_s)
    rows = {name: summary(t) for name, t in zip(calls, times)}
    base = rows["eager"]["fps"]
    for name, row in rows.items():
        row["vs_eager"] = row["fps"] / base
        if name in errors:
            row["max_abs_error_vs_model"] = errors[name]
    return {"scale": scale, "weights": weights, "lr_size": [w, h], "out_size": [OUT_W, OUT_H], "rows": rows}


def bf16_accuracy(scales: list[int]) -> list[dict[str, object]]:
    """Y-PSNR of fp32 and bf16 by the protocol on the astronaut (and Set5 if present)."""
    from subpixel.cli.demo import sample_image

    images: list[tuple[str, np.ndarray]] = [("astronaut", sample_image()[0])]
    set5 = ROOT.parent / "shared" / "data" / "sr" / "Set5"
    if set5.is_dir():
        from subpixel.imageio import read_image

        for path in sorted(set5.glob("*_SRF_2_HR.png")):
            images.append((path.name.split("_SRF")[0], read_image(path).astype(np.float64)))
    results = []
    for scale in scales:
        model, weights = model_for(scale)
        fp32, bf16 = make_runner(model), make_runner(model, precision="bf16")
        scores: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _, image in images:
            hr = np.floor(modcrop(image[..., :3] if image.shape[-1] >= 3 else image, scale) * 255 + 0.5) / 255
            lr = (np.floor(np.clip(make_lr(hr, scale), 0, 1) * 255 + 0.5) / 255).astype(np.float32)  # an 8-bit LR
            for name, runner in (("fp32", fp32), ("bf16", bf16)):
                sr = upscale_pixels(lr, model, runner=runner)
                scores[name].append(score_pair(hr, sr, scale).psnr)
        mean = {k: float(np.mean(v)) for k, v in scores.items()}
        results.append(
            {
                "scale": scale,
                "weights": weights,
                "images": [n for n, _ in images],
                "psnr_fp32": mean["fp32"],
                "psnr_bf16": mean["bf16"],
                "loss_db": mean["fp32"] - mean["bf16"],
            }
        )
    return results


def print_accuracy(rows: list[dict[str, object]]) -> None:
    """Print the rows of :func:`bf16_accuracy`."""
    print("\nbf16 accuracy (mean Y-PSNR by the protocol):")
    for row in rows:
        print(
            f"  ×{row['scale']} on {', '.join(row['images'])}: fp32 {row['psnr_fp32']:.3f} dB, "  # type: ignore[arg-type]
            f"bf16 {row['psnr_bf16']:.3f} dB, loss {row['loss_db']:+.3f} dB ({row['weights']})"
        )


def peak_memory(scale: int = 3, max_memory: str | None = None) -> dict[str, object]:
    """Peak RSS of ``subpixel upscale`` making a 7680×4320 PNG, by /usr/bin/time -v."""
    lr_w, lr_h = 7680 // scale, 4320 // scale
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "lr.png"
        yy, xx = np.mgrid[0:lr_h, 0:lr_w].astype(np.float32)
        planes = [0.5 + 0.4 * np.sin(xx / (7 + k) + yy / (11 + k)) for k in range(3)]
        write_image(source, np.stack(planes, -1))
        del planes, yy, xx
        cmd = [
            "/usr/bin/time",
            "-v",
            sys.executable,
            "-m",
            "subpixel.cli",
            "upscale",
            str(source),
            "--scale",
            str(scale),
            "-o",
            str(Path(folder) / "out.png"),
            "--quiet",
        ]
        if max_memory:
            cmd += ["--max-memory", max_memory]
        if scale not in pretrained_scales():  # same network shape, random weights: the same memory
            from subpixel.sr.models import save

            save(model_for(scale)[0], Path(folder) / "random.safetensors")
            cmd += ["--weights", str(Path(folder) / "random.safetensors")]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        if done.returncode != 0:
            print(done.stderr[-2000:])
        peak = int(match.group(1)) * 1024 if match else None
        out_ok = (Path(folder) / "out.png").exists()
    return {
        "command": "subpixel upscale LR.png --scale 3 -o OUT.png"
        + (f" --max-memory {max_memory}" if max_memory else ""),
        "lr_size": [lr_w, lr_h],
        "out_size": [lr_w * scale, lr_h * scale],
        "peak_rss_bytes": peak,
        "peak_rss_mib": peak / 2**20 if peak else None,
        "seconds": seconds,
        "exit_code": done.returncode,
        "output_written": out_ok,
    }


def plot(results: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results[0]["rows"])
    figure, axis = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        fps = [r["rows"][name]["fps"] for r in results]
        axis.bar([k + i * width for k in range(len(results))], fps, width, label=name)
    axis.set_xticks([k + 0.4 - width / 2 for k in range(len(results))], [f"×{r['scale']}" for r in results])
    axis.set_ylabel("frames per second (1920×1080 output)")
    axis.set_title("ESPCN on CPU: subpixel runners vs plain PyTorch eager (higher is better)")
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=12.0, help="seconds of timing per scale")
    parser.add_argument("--quick", action="store_true", help="×3 only, 4 s budget, no accuracy check")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument(
        "--memory", action="store_true", help="also measure peak memory of a 7680×4320 output"
    )
    parser.add_argument(
        "--accuracy-only",
        action="store_true",
        help="only the bf16 accuracy check (after new weights), to upscale-accuracy.json",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    import onnxruntime

    info = machine_info(args.threads, "benchmarks/upscale.py", onnxruntime=onnxruntime.__version__)
    scales = [3] if args.quick else [2, 3, 4]
    budget = 4.0 if args.quick else args.budget
    if args.accuracy_only:
        accuracy = bf16_accuracy(scales)
        print_accuracy(accuracy)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "upscale-accuracy.json"
        path.write_text(json.dumps({"info": info, "bf16_accuracy": accuracy}, indent=2) + "\n")
        print(f"wrote {path}")
        return 0
    print(f"torch {info['torch']}, onnxruntime {info['onnxruntime']}, {args.threads} threads, {info['cpu']}")
    print(f"commit {info['commit']}, load average {info['load_average']}")
    results = []
    for scale in scales:
        result = bench_scale(scale, budget, args.threads, args.compile)
        results.append(result)
        print(
            f"\n×{scale}: LR {result['lr_size'][0]}×{result['lr_size'][1]} -> 1920×1080, weights {result['weights']}"
        )
        print(
            f"  {'runner':<28} {'fps':>7} {'median ms':>10} {'p25-p75 ms':>14} {'vs eager':>9} {'max err':>9}"
        )
        for name, row in result["rows"].items():
            err = row.get("max_abs_error_vs_model")
            print(
                f"  {name:<28} {row['fps']:>7.2f} {row['median_ms']:>10.1f} "
                f"{row['p25_ms']:>6.1f}-{row['p75_ms']:<7.1f} {row['vs_eager']:>8.2f}x "
                f"{'' if err is None else f'{err:.1e}':>9}"
            )
        rows = result["rows"]
        if "subpixel.upscale, Y tensor" in rows:
            ratio = rows["subpixel.upscale, RGB uint8"]["median_ms"] / rows["subpixel.upscale, Y tensor"]["median_ms"]
            result["api_rgb_over_y"] = ratio
            print(f"  subpixel.upscale: RGB path ÷ Y plane time {ratio:.2f}x")
    report: dict[str, object] = {"info": info, "speed": results}
    if not args.quick:
        accuracy = bf16_accuracy(scales)
        report["bf16_accuracy"] = accuracy
        print_accuracy(accuracy)
    if args.memory:
        memory = peak_memory()
        report["peak_memory"] = memory
        print(
            f"\npeak memory, 7680×4320 output: {memory['peak_rss_mib']:.0f} MiB RSS in {memory['seconds']:.1f} s "
            f"(/usr/bin/time -v; exit {memory['exit_code']})"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "upscale-quick" if args.quick else "upscale"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(results, args.out / f"{stem}.png")
    print(f"\nwrote {args.out / f'{stem}.json'} and {args.out / f'{stem}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
