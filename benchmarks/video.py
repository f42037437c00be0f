"""Frames per second of ``subpixel upscale`` on a video, end to end, beside the network alone and FFmpeg's lanczos.

A 4-second 640×360 clip (25 fps, H.264, with an AAC audio track) is synthesized with PyAV in a temporary folder
and upscaled ×2 (to 1280×720) and ×3 (to 1920×1080) by:

* ``subpixel <model> <precision>``: :func:`subpixel.upscaling.video.upscale_video`, the whole job (decode, network,
  encode with libx264 at CRF 18 and the default preset, audio copied), in this process; ``compiled``: the
  upscaler's ``compile=True``, warm (its first runs, not timed, compiled it: the case of every video after the
  first of a size in one process, and of long clips);
* ``ffmpeg lanczos``: the baseline a user would pick instead: the same decoding, FFmpeg's ``scale`` filter with
  ``flags=lanczos`` through PyAV's filter graph, the same encoder settings and the audio copied;
* ``network <model> <precision>``: the model alone on the clip's first LR luma plane (1×1×360×640), on as many
  threads as the video path gives it (one less than ``--threads``, at least 1).

Models: the bundled default (``subpixel.sr.pretrained(r)``: the ``"rep"`` family, a PReLU network of four 27-channel
3×3 layers with a nearest skip, since commit a4d1592; before it the paper's ESPCN with tanh), the bundled paper
ESPCN (``pretrained(r, model="espcn")``, tanh), and a stand-in for the PReLU network without the skip
(``ESPCN(r, widths=(27,) * 4, kernel_sizes=(3,) * 5, activation="prelu")``, random weights: the speed does not
depend on them). All contenders of a scale are timed in turn (interleaved, ``benchmarks/upscale.py``'s
``interleaved``) so load from other processes falls on all alike; medians and quartiles are reported.

``--cold`` also times the command a user types, ``subpixel upscale clip.mp4 --scale R`` (the video defaults: bf16
where the CPU has it, compilation when the clip pays for it) in a fresh process, Python start and imports
included, once per scale and model.

Writes ``benchmarks/results/video.json`` (``video-quick.json`` with ``--quick``); exits 0 whatever the result.

Usage::

    python benchmarks/video.py                 # ×2 and ×3, both models, ~5 minutes on 2 quiet cores
    python benchmarks/video.py --quick         # ×2, ESPCN only, fewer runs
    python benchmarks/video.py --cold
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _common import ROOT, machine_info
from subpixel.sr.models import ESPCN, pretrained, save
from subpixel.upscaling.image import Upscaler, make_runner
from subpixel.upscaling.video import DEFAULT_PRESET, upscale_video
from upscale import interleaved, model_for, summary

LR_W, LR_H, FPS, SECONDS = 640, 360, 25, 4
CRF = 18


def make_clip(
    path: Path, width: int = LR_W, height: int = LR_H, fps: int = FPS, seconds: int = SECONDS
) -> None:
    """A moving colour pattern in H.264 (CRF 20) with a stereo AAC sine, written with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "20", "preset": "veryfast"}
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        for i in range(fps * seconds):
            planes = [
                0.5
                + 0.35
                * np.sin((0.05 + 0.01 * k) * xx + 0.03 * yy + 0.3 * i + k)
                * np.cos(0.011 * xx * yy / height + 0.1 * i)
                for k in range(3)
            ]
            frame = av.VideoFrame.from_ndarray(
                (np.stack(planes, -1) * 255).round().astype(np.uint8), format="rgb24"
            )
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = (0.2 * np.sin(np.arange(48000 * seconds) * 0.05)).astype(np.float32)
        for start in range(0, samples.size, 1024):
            chunk = samples[start : start + 1024]
            frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48000, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


def ffmpeg_lanczos(source: Path, target: Path, scale: int, preset: str = DEFAULT_PRESET) -> int:
    """``ffmpeg -i SOURCE -vf scale=iw*R:ih*R:flags=lanczos -c:v libx264 -preset P -crf 18 -c:a copy TARGET``.

    Through PyAV (no ffmpeg binary needed): the same decoder settings and encoder options as the video path.
    Returns the number of frames written.
    """
    import av

    frames = 0
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = inp.streams.audio[0]
        width, height = vin.codec_context.width * scale, vin.codec_context.height * scale
        vout = out.add_stream("libx264", rate=vin.average_rate or Fraction(FPS))
        vout.width, vout.height, vout.pix_fmt, vout.time_base = width, height, "yuv420p", vin.time_base
        vout.options = {"crf": str(CRF), "preset": preset}
        aout = out.add_stream_from_template(ain)
        graph = av.filter.Graph()
        buffer = graph.add_buffer(template=vin)
        scaler = graph.add("scale", f"{width}:{height}:flags=lanczos")
        sink = graph.add("buffersink")
        buffer.link_to(scaler)
        scaler.link_to(sink)
        graph.configure()
        for packet in inp.demux(vin, ain):
            if packet.stream is ain:
                if packet.dts is not None:
                    packet.stream = aout
                    out.mux(packet)
                continue
            for frame in packet.decode():
                graph.push(frame)
                scaled = graph.pull()
                scaled.pts, scaled.time_base = frame.pts, frame.time_base
                out.mux(vout.encode(scaled))
                frames += 1
        out.mux(vout.encode(None))
    return frames


def first_luma(clip: Path) -> torch.Tensor:
    """``Y / 255`` of the clip's first frame, ``(1, 1, H, W)``, as the video path feeds the network."""
    import av

    with av.open(str(clip)) as container:
        frame = next(container.decode(video=0))
        y = frame.to_ndarray()[: frame.height]  # yuv420p: the luma plane first
    return torch.from_numpy(y).to(torch.float32).div(255)[None, None]


def stand_in(scale: int) -> nn.Module:
    """The plain PReLU network's stand-in: 4 hidden 3×3 convolutions of 27 channels, random weights."""
    torch.manual_seed(scale)
    return ESPCN(scale, widths=(27, 27, 27, 27), kernel_sizes=(3, 3, 3, 3, 3), activation="prelu").eval()


def bench_scale(
    scale: int, clip: Path, folder: Path, models: dict[str, nn.Module], budget: float, min_runs: int
) -> dict[str, object]:
    """End-to-end and network-only rows for one scale, all interleaved."""
    calls: dict[str, Callable[[], object]] = {}
    frames = {"n": 0}
    for name, model in models.items():
        settings = [("bf16", False), ("bf16", True)]
        if name == "rep":
            settings.insert(0, ("fp32", False))
        for precision, compiled in settings:
            upscaler = Upscaler(model, precision=precision, compile=compiled)  # type: ignore[arg-type]
            target = folder / f"{name}-{precision}-x{scale}.mp4"
            label = f"subpixel {name} {precision}{' compiled' if compiled else ''}"

            def run(upscaler: Upscaler = upscaler, target: Path = target) -> None:
                result = upscale_video(clip, target, upscaler, force=True)
                frames["n"] = result.frames
                if result.copied_streams != ("audio",):
                    print(f"  warning: audio not kept ({result.copied_streams})")
                if upscaler.compile and result.compiled_from != 0:  # warm runs must be compiled throughout
                    print(f"  note: compiled network used from frame {result.compiled_from}")

            calls[label] = run
    calls["ffmpeg lanczos"] = lambda: ffmpeg_lanczos(clip, folder / f"lanczos-x{scale}.mp4", scale)
    times = interleaved(list(calls.values()), budget, min_runs=min_runs)
    rows = {name: _per_frame(summary(t), frames["n"]) for name, t in zip(calls, times)}

    plane = first_luma(clip)  # real content: random noise runs some activations at another speed
    threads = torch.get_num_threads()
    torch.set_num_threads(network_threads())  # as upscale_video runs the network
    network: dict[str, Callable[[], object]] = {}
    for name, model in models.items():
        for precision, compiled in (("fp32", False), ("bf16", False), ("bf16", True)):
            runner = make_runner(model, precision=precision, compile=compiled)  # type: ignore[arg-type]
            label = f"network {name} {precision}{' compiled' if compiled else ''}"
            network[label] = lambda runner=runner: torch.inference_mode()(runner)(plane)
    times = interleaved(list(network.values()), budget / 4, min_runs=10)
    rows.update({name: summary(t) for name, t in zip(network, times)})
    torch.set_num_threads(threads)
    return {
        "scale": scale,
        "lr_size": [LR_W, LR_H],
        "out_size": [LR_W * scale, LR_H * scale],
        "frames": frames["n"],
        "rows": rows,
    }


def network_threads() -> int:
    """The threads :func:`upscale_video` gives the network by default: one less than torch's, at least 1."""
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))


def _per_frame(row: dict[str, float], frames: int) -> dict[str, float]:
    """A whole-clip row of :func:`summary` turned into frames per second (the clip's seconds kept)."""
    return {
        "fps": frames / (row["median_ms"] / 1e3),
        "clip_median_s": row["median_ms"] / 1e3,
        "clip_p25_s": row["p25_ms"] / 1e3,
        "clip_p75_s": row["p75_ms"] / 1e3,
        "runs": row["runs"],
    }


def cold_run(clip: Path, folder: Path, scale: int, weights: Path | None) -> dict[str, object]:
    """``subpixel upscale clip.mp4 --scale R`` (the video defaults) in a fresh process, timed from outside."""
    target = folder / f"cold-x{scale}.mp4"
    command = [sys.executable, "-m", "subpixel.cli", "upscale", str(clip), "--scale", str(scale)]
    command += ["-o", str(target), "--quiet", "--force"]  # default threads: one less than torch's for videos
    if weights is not None:
        command += ["--weights", str(weights)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stderr[-2000:])
    return {
        "command": f"subpixel upscale clip.mp4 --scale {scale}"
        + (" --weights STAND_IN" if weights is not None else ""),
        "seconds": seconds,
        "fps": FPS * SECONDS / seconds,
        "exit_code": done.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=40.0, help="seconds of end-to-end timing per scale")
    parser.add_argument("--quick", action="store_true", help="×2 and the bundled ESPCN only, 3 runs")
    parser.add_argument("--cold", action="store_true", help="also time the CLI in a fresh process")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    import av

    info = machine_info(
        args.threads,
        "benchmarks/video.py",
        av=av.__version__,
        ffmpeg=".".join(map(str, av.library_versions.get("libavcodec", ()))) + " (libavcodec)",
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        network_threads=network_threads(),
        preset=DEFAULT_PRESET,
        crf=CRF,
    )
    print(f"torch {info['torch']}, PyAV {info['av']}, {args.threads} threads, {info['cpu']}")
    print(f"commit {info['commit']}, load average {info['load_average']}")
    scales = [2] if args.quick else [2, 3]
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = folder / "clip.mp4"
        make_clip(clip)
        for scale in scales:
            models = {"rep": model_for(scale)[0]}
            if not args.quick:
                models["espcn"] = pretrained(scale, model="espcn")
                models["prelu27"] = stand_in(scale)
            result = bench_scale(scale, clip, folder, models, 6.0 if args.quick else args.budget, 3)
            if args.cold:
                result["cold"] = {"rep": cold_run(clip, folder, scale, None)}
                if "prelu27" in models:
                    weights = folder / f"prelu27-x{scale}.safetensors"
                    save(models["prelu27"], weights)
                    result["cold"]["prelu27"] = cold_run(clip, folder, scale, weights)
            results.append(result)
            _print(result)
    report = {"info": info, "clip": {"size": [LR_W, LR_H], "fps": FPS, "seconds": SECONDS}, "speed": results}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("video-quick.json" if args.quick else "video.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


def _print(result: dict[str, object]) -> None:
    scale = result["scale"]
    print(f"\n×{scale}: {LR_W}×{LR_H} -> {LR_W * scale}×{LR_H * scale}, {result['frames']} frames")  # type: ignore[operator]
    print(f"  {'contender':<34} {'fps':>7} {'p25-p75':>16}")
    for name, row in result["rows"].items():  # type: ignore[attr-defined]
        if "clip_median_s" in row:
            spread = f"{result['frames'] / row['clip_p75_s']:.1f}-{result['frames'] / row['clip_p25_s']:.1f}"
        else:
            spread = f"{1e3 / row['p75_ms']:.1f}-{1e3 / row['p25_ms']:.1f}"
        print(f"  {name:<34} {row['fps']:>7.1f} {spread:>16}")
    for name, cold in result.get("cold", {}).items():  # type: ignore[attr-defined]
        label = f"cold CLI run, {name}"
        seconds = f"({cold['seconds']:.1f} s whole process, exit {cold['exit_code']})"
        print(f"  {label:<34} {cold['fps']:>7.1f}   {seconds}")


if __name__ == "__main__":
    sys.exit(main())
