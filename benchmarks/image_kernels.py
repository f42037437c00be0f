"""The compiled image-path kernels against the torch ops they replace, on one 1080p frame (×3 from 640×360).

Each pair is timed in one interleaved run (:func:`subpixel.timing.interleaved`, alternating order), medians:

* **bicubic**: two chroma planes 640×360 → 1920×1080 by MATLAB's bicubic: the separable kernel
  (:func:`subpixel.native.bicubic_upscale_into`) vs the LR-space convolution + shuffle it replaces
  (:func:`subpixel.upscaling.image.bicubic_upscale` with the kernel switched off);
* **colour + rounding**: YCbCr planes → 8-bit RGB (H, W, 3): one pass (:func:`subpixel.native.colour_quantize_into`)
  vs the torch conversion (a 3×3 ``addmm``) followed by the rounding pass;
* **rounding**: float RGB → uint8 (H, W, 3): :func:`subpixel.native.quantize_into` vs :func:`subpixel.imageio.quantize`;
* **last layer** (×2 and ×3 int8 networks, 640×360): PReLU, sub-pixel convolution, shuffle and nearest skip in
  one pass (:class:`subpixel.native.LRConvShuffle`) vs the bf16 torch ops (PReLU in place, oneDNN convolution,
  shuffle, interpolate, add); both sides first copy the layer's input into a work buffer (the composed PReLU
  works in place), the same cost on each side.

Both sides of each row are checked to agree before timing. The process keeps freed memory
(:func:`subpixel.allocator.keep_freed_memory`, as the command line does). Writes
``benchmarks/results/image_kernels.json``.

Usage::

    python benchmarks/image_kernels.py            # 1 thread (a video worker's setting)
    python benchmarks/image_kernels.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from _common import ROOT, keep_freed_memory, machine_info
from subpixel import native, timing
from subpixel.imageio import quantize
from subpixel.shuffle import pixel_shuffle
from subpixel.sr.models import pretrained
from subpixel.upscaling.image import _colour_affine, _convert_colour, bicubic_upscale, prelu_in_place
from subpixel.upscaling.int8 import int8_network

LR_H, LR_W, SCALE = 360, 640, 3


def _pair(name: str, kernel: Callable[[], object], torch_ops: Callable[[], object], budget: float) -> dict[str, object]:
    times = timing.interleaved([kernel, torch_ops], budget_s=budget, min_runs=10, alternate=True)
    k, t = (statistics.median(ts) * 1e3 for ts in times)
    print(f"  {name:<34} kernel {k:7.2f} ms   torch {t:7.2f} ms   {t / k:5.1f}x")
    return {"name": name, "kernel_ms": k, "torch_ms": t, "speedup": t / k, "runs": len(times[0])}


def bicubic_row(budget: float) -> dict[str, object]:
    chroma = torch.rand(1, 2, LR_H, LR_W) * 200 + 20
    with native.enabled(False):
        reference = bicubic_upscale(chroma, SCALE)
    torch.testing.assert_close(bicubic_upscale(chroma, SCALE), reference, rtol=0, atol=1e-3)

    def composed() -> object:
        with native.enabled(False):
            return bicubic_upscale(chroma, SCALE)

    return _pair("bicubic, 2 planes to 1080p", lambda: bicubic_upscale(chroma, SCALE), composed, budget)


def colour_rows(budget: float) -> list[dict[str, object]]:
    h, w = LR_H * SCALE, LR_W * SCALE
    ycbcr = torch.cat([torch.rand(1, 1, h, w) * 219 + 16, torch.rand(1, 2, h, w) * 224 + 16], dim=1)
    out = np.empty((h, w, 3), np.uint8)
    target = torch.from_numpy(out).permute(2, 0, 1)
    matrix, offset = _colour_affine("to_rgb")

    def composed() -> np.ndarray:
        rgb = _convert_colour(ycbcr, "to_rgb")[0]
        return quantize(rgb.permute(1, 2, 0).numpy(), 8)

    assert native.colour_quantize_into(target, ycbcr[0], matrix, offset)
    assert np.abs(out.astype(int) - composed().astype(int)).max() <= 1
    rgb = _convert_colour(ycbcr, "to_rgb")[0].contiguous()
    assert native.quantize_into(target, rgb)
    np.testing.assert_array_equal(out, quantize(rgb.permute(1, 2, 0).numpy(), 8))
    return [
        _pair(
            "YCbCr -> RGB + rounding, 1080p", lambda: native.colour_quantize_into(target, ycbcr[0], matrix, offset),
            composed, budget,
        ),
        _pair(
            "rounding to uint8, 1080p RGB", lambda: native.quantize_into(target, rgb),
            lambda: quantize(rgb.permute(1, 2, 0).numpy(), 8), budget,
        ),
    ]  # fmt: skip


def tail_row(scale: int, budget: float) -> dict[str, object]:
    net = int8_network(pretrained(scale))
    x = torch.rand(1, 1, LR_H, LR_W).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        features = net.middle(net.first(x.to(torch.bfloat16)))

    work = features.clone()  # the composed PReLU works in place: both sides start from a fresh copy (same cost)

    def composed() -> torch.Tensor:
        a = prelu_in_place(work.copy_(features), net.last_slope)
        y = pixel_shuffle(net.last(a).float(), scale)
        return y.add_(F.interpolate(x, scale_factor=scale, mode="nearest"))

    def one_pass() -> torch.Tensor | None:
        return net.tail(work.copy_(features), x)

    with torch.inference_mode():
        fused, reference = one_pass(), composed()
        assert fused is not None, "the one-pass kernel is unavailable"
        assert (fused - reference).abs().max().item() < 0.02
        return _pair(f"last layer x{scale}, 640x360 (int8 net)", one_pass, composed, budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds of timing per row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    if not native.available():
        raise SystemExit(f"the compiled kernels are unavailable: {native.info()['error']}")
    info = machine_info(args.threads, "benchmarks/image_kernels.py")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {info['cpu']}, commit {info['commit']}")
    rows = [bicubic_row(args.budget), *colour_rows(args.budget), tail_row(2, args.budget), tail_row(3, args.budget)]
    out = ROOT / "benchmarks" / "results" / "image_kernels.json"
    out.write_text(json.dumps({"info": info, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
