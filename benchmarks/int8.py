"""Does int8 inference of the bundled SR networks pay on this CPU? Speed and accuracy against the bf16 runner.

For each scale the bundled network (``subpixel.sr.pretrained``: Conv3x3 1→27, PReLU, three Conv3x3 27→27 +
PReLU, a sub-pixel convolution 27→r², a nearest-neighbour skip) is run by:

* ``bf16``: :func:`subpixel.upscaling.image.make_runner` with ``precision="bf16"`` (what ``subpixel upscale``
  runs on a CPU with AVX-512-BF16): eager, channels-last, PReLU in place. The baseline of every ratio.
* ``int8``: ``make_runner(precision="int8")`` (:mod:`subpixel.upscaling.int8`): the three 27→27 convolutions
  (nine tenths of the multiply-adds) in int8 through oneDNN's quantized convolution
  (``torch.ops.onednn.qconv2d_pointwise``: VNNI, uint8 activations per tensor, int8 weights per output channel,
  int32 accumulation, bf16 output), PReLU + quantization to uint8 in one pass between them, the first and the
  sub-pixel convolutions in bf16; channels equalized across each PReLU; activation ranges calibrated on T91 and
  stored with the package (``--write-ranges`` recomputes them, the ``--percentile`` of each activation's values at
  either end, default 99.999 %).
* ``int8 torchao``: torchao's PT2E flow: ``torch.export`` (dynamic height and width), ``prepare_pt2e`` with
  ``X86InductorQuantizer`` (default static config, per-channel weights), calibration on the same T91 images,
  ``convert_pt2e``, then ``torch.compile`` with Inductor's freezing, as torchao documents it; one compilation for
  the timed frame's shape. Only when ``torchao`` imports. Its PSNR is that of the converted graph uncompiled
  (the same quantize/dequantize arithmetic; the compiled graph fails on a second input shape in torch 2.13).

Each candidate's start-up (building the runner, including torchao's calibration and compilation, plus its first
call) is timed once. The frame is one 640×360 luma frame from a photograph (BSDS200, mirrored at the edges; 720p
output at ×2); the candidates are called in turn (:func:`subpixel.timing.interleaved`, alternating order) on ONE
thread, median and min per frame reported. Accuracy: Y-PSNR by the standard protocol
(:func:`subpixel.sr.evaluate.evaluate`) on Set5 and Set14 from ``../shared/data/sr``, beside fp32 and bf16 (the
cost of int8 is its PSNR minus bf16's, the runner it replaces), and the PSNR of each output against bf16's on
the frame.

Writes ``benchmarks/results/int8.json`` (``--out DIR`` elsewhere); exits 0 whatever the result.

Usage::

    python benchmarks/int8.py                       # scales 2 3 4, ~5 minutes on one thread
    python benchmarks/int8.py --scales 2 --budget 10 --no-psnr --no-torchao
    python benchmarks/int8.py --write-ranges        # recalibrate (after retraining the bundled weights)
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _common import ROOT, keep_freed_memory, machine_info
from subpixel import timing
from subpixel._atomic import atomic_write
from subpixel.sr.data import prepare_image, read_image, to_model_channels
from subpixel.sr.evaluate import evaluate
from subpixel.sr.models import ESPCN, pretrained
from subpixel.upscaling import int8
from subpixel.upscaling.image import make_runner

DATA = ROOT.parent / "shared" / "data" / "sr"
Runner = Callable[[Tensor], Tensor]


def build_torchao(model: ESPCN, lrs: list[Tensor]) -> tuple[Runner, Runner]:
    """The compiled int8 graph (timed; one shape per compilation) and the same converted graph uncompiled (its
    quantize/dequantize reference arithmetic: scored, because the compiled one fails on a second input shape with
    ``dynamic=True`` in torch 2.13, a stride assertion in the lowering of the quantized convolution)."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    net = copy.deepcopy(model).eval()
    example = (torch.rand(1, 1, 360, 640),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dims = {"input": {2: torch.export.Dim("h", min=4), 3: torch.export.Dim("w", min=4)}}
        exported = torch.export.export(net, example, dynamic_shapes=dims).module()
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for x in lrs:
                prepared(x)
        converted = convert_pt2e(prepared)
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compiled = torch.compile(converted, dynamic=False)

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return compiled(x)

    def reference(x: Tensor) -> Tensor:
        with torch.no_grad():
            return converted(x)

    return run, reference


def natural_frame() -> Tensor:
    """A 640×360 luma frame ``(1, 1, 360, 640)`` from a photograph (BSDS200's first image, mirrored at the edges):
    the int8 ranges are calibrated on photographs, and uniform noise lies far outside them."""
    path = sorted((DATA / "BSDS200").iterdir())[0]
    y = torch.from_numpy(np.ascontiguousarray(to_model_channels(read_image(path), "y")))[None].float()
    h, w = y.shape[-2:]
    y = F.pad(y, (0, max(0, 640 - w), 0, max(0, 360 - h)), mode="reflect")
    return y[..., :360, :640].contiguous()


class _AsModel(nn.Module):
    """A runner with the ``scale`` and ``channels`` that :func:`evaluate` reads."""

    def __init__(self, run: Runner, scale: int) -> None:
        super().__init__()
        self.run, self.scale, self.channels = run, scale, "y"

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)


def psnrs(run: Runner, scale: int) -> dict[str, float]:
    return {
        name: evaluate(_AsModel(run, scale), DATA / name, scale, progress=False).mean_psnr
        for name in ("Set5", "Set14")
    }


def t91_inputs(scale: int) -> list[Tensor]:
    """T91 at the LR size (``Y / 255``, ``(1, 1, h, w)``): the calibration images (the training set)."""
    return [torch.from_numpy(prepare_image(p, scale).lr)[None] for p in sorted((DATA / "T91").iterdir())]


def write_ranges(scales: list[int], percentile: float) -> None:
    """Calibrate the bundled networks on T91 and write :data:`subpixel.upscaling.int8.RANGES_FILE`."""
    models = {}
    for scale in scales:
        model = pretrained(scale).eval()
        models[int8.weights_key(model)] = {
            "scale": scale,
            "model": "rep",
            "ranges": [list(r) for r in int8.calibrate(model, t91_inputs(scale), percentile)],
        }
    doc = {
        "about": "uint8 activation ranges (low, high) of the three int8 convolutions' inputs of the bundled networks, "
        "equalized (subpixel.upscaling.int8.equalize); keyed by subpixel.upscaling.int8.weights_key",
        "calibration": f"T91 at the LR size, percentile {percentile} at each end",
        "command": "python benchmarks/int8.py --write-ranges",
        "models": models,
    }
    atomic_write(int8.RANGES_FILE, lambda tmp: tmp.write_text(json.dumps(doc, indent=1) + "\n"))
    print(f"wrote {int8.RANGES_FILE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--budget", type=float, default=25.0, help="seconds of timing per scale")
    parser.add_argument("--percentile", type=float, default=99.999, help="calibration range (100: min/max)")
    parser.add_argument(
        "--write-ranges", action="store_true", help="calibrate the bundled networks and write the ranges file"
    )
    parser.add_argument("--no-torchao", action="store_true", help="leave out the torchao candidate")
    parser.add_argument("--no-psnr", action="store_true", help="time only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(1)
    keep_freed_memory()
    if not all((DATA / name).is_dir() for name in ("Set5", "Set14", "T91", "BSDS200")):
        raise SystemExit(f"int8 benchmark: needs Set5, Set14, T91 and BSDS200 under {DATA}")
    if args.write_ranges:
        write_ranges(args.scales, args.percentile)
        int8._stored_ranges.cache_clear()
    torchao_version = None
    if not args.no_torchao:
        try:
            import torchao

            torchao_version = torchao.__version__
        except ImportError:
            print("torchao is not installed: its candidate is left out", file=sys.stderr)
    rows = []
    frame = natural_frame()
    for scale in args.scales:
        model = pretrained(scale).eval()
        runners: dict[str, Runner] = {}
        startup: dict[str, float] = {}
        scored: dict[str, Runner] = {}
        for name, precision in (("bf16", "bf16"), ("int8", "int8")):
            t0 = time.perf_counter()
            runners[name] = make_runner(model, precision=precision)
            runners[name](frame)
            startup[name] = time.perf_counter() - t0
        if torchao_version:
            lrs = t91_inputs(scale)
            t0 = time.perf_counter()
            try:
                runners["int8 torchao"], scored["int8 torchao"] = build_torchao(model, lrs)
                runners["int8 torchao"](frame)
                startup["int8 torchao"] = time.perf_counter() - t0
            except Exception as exc:  # report, do not stop the other candidates
                print(f"x{scale}: torchao failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                runners.pop("int8 torchao", None)
        names = list(runners)
        ref = runners["bf16"](frame)
        times = timing.interleaved(
            [lambda f=runners[n]: f(frame) for n in names],
            budget_s=args.budget,
            min_runs=8,
            warmup=2,
            alternate=True,
        )
        base = statistics.median(times[0])
        fp32 = {} if args.no_psnr else psnrs(make_runner(model, precision="fp32"), scale)
        for name, t in zip(names, times, strict=True):
            diff = runners[name](frame) - ref
            row = {
                "scale": scale,
                "candidate": name,
                "ms_median": 1e3 * statistics.median(t),
                "ms_min": 1e3 * min(t),
                "ratio_to_bf16": statistics.median(t) / base,
                "runs": len(t),
                "startup_s": startup[name],
                "psnr_vs_bf16_output_db": float(10 * torch.log10(1 / diff.pow(2).mean().clamp_min(1e-20))),
            }
            if not args.no_psnr:
                row["psnr"] = psnrs(scored.get(name, runners[name]), scale)
                row["psnr_fp32"] = fp32
            rows.append(row)
            print(json.dumps(row), flush=True)
    bf = {r["scale"]: r for r in rows if r["candidate"] == "bf16"}
    print(
        f"\none 640x360 luma frame (720p out at x2), {torch.get_num_threads()} thread; cost = PSNR - bf16 PSNR (dB)"
    )
    print(f"{'scale':>5} {'candidate':<13} {'ms med':>7} {'ms min':>7} {'x bf16':>7} {'start s':>7}"
          f" {'Set5':>8} {'Set14':>8} {'cost5':>7} {'cost14':>7}")  # fmt: skip
    nan = float("nan")
    for r in rows:
        p, b = r.get("psnr", {}), bf[r["scale"]].get("psnr", {})
        cost = [p[k] - b[k] if p else nan for k in ("Set5", "Set14")]
        print(
            f"{r['scale']:>5} {r['candidate']:<13} {r['ms_median']:7.1f} {r['ms_min']:7.1f} {r['ratio_to_bf16']:7.2f}"
            f" {r['startup_s']:7.2f} {p.get('Set5', nan):8.3f} {p.get('Set14', nan):8.3f} {cost[0]:+7.3f} {cost[1]:+7.3f}"
        )
    for s in args.scales:
        if "psnr_fp32" in bf[s]:
            f = bf[s]["psnr_fp32"]
            print(f"{s:>5} {'fp32 (PSNR)':<13} {'':>37} {f['Set5']:8.3f} {f['Set14']:8.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = machine_info(1, "benchmarks/int8.py", torchao=torchao_version, percentile=args.percentile)
    meta["command"] = "python benchmarks/int8.py " + " ".join(sys.argv[1:])
    path = args.out / "int8.json"
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
