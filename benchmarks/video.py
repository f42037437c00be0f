"""Frames per second of ``subpixel upscale`` on a video: every stage's CPU cost, the pipeline, the whole command.

A 12-second 640×360 clip (25 fps, 300 frames, H.264, with an AAC audio track) is synthesized with PyAV in a
temporary folder and upscaled ×2 (to 1280×720) and ×3 (to 1920×1080) with the bundled model. Printed per scale:

* **stages**, CPU milliseconds per frame, each measured alone on the clip's content: decoding (FFmpeg, all its
  threads), the network on one thread (``--precision`` as the command chooses it: int8 for the bundled networks on
  CPUs with VNNI, else bf16 where the CPU has it, else fp32),
  the rest of a frame's work (chroma bicubic, rounding, plane copies), encoding (libx264 at CRF 18 and the default
  preset, all its threads);
* **the network alone on all cores**: as many frames in flight as threads, one thread each (what the video path
  does), and one frame at a time on all threads, in frames per second;
* **end to end, in this process** (interleaved, medians): :func:`subpixel.upscaling.video.upscale_video` with the
  defaults (eager, frames in flight), the same with one frame at a time on all threads, the same in bf16 (where
  the default is int8), the bf16 network compiled (``compile=True``, warm: compiled by its warm-up runs), and FFmpeg's lanczos ``scale`` filter with the same
  decoder, encoder and audio copy; the process CPU seconds per frame of the default, and the **pipeline
  efficiency** (end-to-end fps ÷ the network's own fps on all cores);
* **the whole command** ``subpixel upscale clip.mp4 --scale R -o out.mp4 --quiet --force`` in a fresh process,
  Python start, imports and weights included: the first run and the median of the next ones (``--cold``; with
  ``--compile`` also ``--compile`` runs, the first with an empty compile cache).

Writes ``benchmarks/results/video.json`` (``video-quick.json`` with ``--quick``); exits 0 whatever the result.

Usage::

    python benchmarks/video.py --cold           # ×2 and ×3, ~10 minutes on 2 quiet cores
    python benchmarks/video.py --quick          # ×2 only, fewer runs, no fresh processes
    python benchmarks/video.py --cold --compile
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

import subpixel.upscaling.video as video
from _common import ROOT, keep_freed_memory, machine_info
from subpixel import timing
from subpixel.upscaling.image import Upscaler, make_runner, resolve_precision
from subpixel.upscaling.tiling import receptive_radius
from subpixel.upscaling.video import DEFAULT_PRESET, upscale_video, upscale_yuv420
from upscale import model_for, summary

LR_W, LR_H, FPS, SECONDS = 640, 360, 25, 12
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


def cpu_seconds() -> float:
    """CPU seconds of this process so far, every thread (FFmpeg's and OpenMP's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def decoded_frames(clip: Path, count: int) -> list[object]:
    """The clip's first ``count`` decoded frames (PyAV ``VideoFrame``)."""
    import av

    with av.open(str(clip)) as container:
        return [f for _, f in zip(range(count), container.decode(video=0))]


def stage_costs(clip: Path, scale: int, model: nn.Module, precision: str, frames: int) -> dict[str, float]:
    """CPU milliseconds per frame of each stage of the video path, each measured alone."""
    import av

    costs: dict[str, float] = {}
    start = cpu_seconds()
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = sum(1 for _ in container.decode(stream))
    costs["decode"] = (cpu_seconds() - start) / n * 1e3

    sample = decoded_frames(clip, 12)
    planes = [f.to_ndarray() for f in sample]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runner = make_runner(model, precision=precision)  # type: ignore[arg-type]
    radius = receptive_radius(model)
    with torch.inference_mode():
        lumas = [torch.from_numpy(p[:LR_H]).float().div(255)[None, None] for p in planes]
        outputs = [runner(y) for y in lumas[:2]]  # warm-up
        start = time.thread_time()
        outputs = [runner(y) for y in lumas]
        costs["network (1 thread)"] = (time.thread_time() - start) / len(lumas) * 1e3
        start = time.thread_time()
        for p, y in zip(planes, outputs):
            up = upscale_yuv420(p, scale, lambda _, y=y: y, radius=radius)  # the network's output, given
            av.VideoFrame.from_ndarray(up, format="yuv420p")
        costs["chroma, rounding, copies"] = (time.thread_time() - start) / len(planes) * 1e3
    torch.set_num_threads(threads)

    big = [f.reformat(LR_W * scale, LR_H * scale, interpolation="BICUBIC") for f in sample[:frames]]
    buffer = Path(tempfile.mkdtemp()) / "encode.mp4"
    with av.open(str(buffer), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = LR_W * scale, LR_H * scale, "yuv420p"
        stream.options = {"crf": str(CRF), "preset": DEFAULT_PRESET}
        start = cpu_seconds()
        for i in range(frames * 2):  # the sample twice over: x264's lookahead sees motion, not stills
            frame = big[i % len(big)]
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        costs["encode"] = (cpu_seconds() - start) / (frames * 2) * 1e3
    buffer.unlink()
    return costs


def network_fps(model: nn.Module, precision: str, plane: torch.Tensor, workers: int, seconds: float) -> float:
    """Frames per second of the network alone: ``workers`` frames in flight, one thread each (``workers=0``:
    one frame at a time on all threads)."""
    threads = torch.get_num_threads()
    runner = make_runner(model, precision=precision)  # type: ignore[arg-type]
    with torch.inference_mode():
        runner(plane)
    if workers == 0:
        count, start = 0, time.perf_counter()
        with torch.inference_mode():
            while time.perf_counter() - start < seconds:
                runner(plane)
                count += 1
        return count / (time.perf_counter() - start)
    counts = [0] * workers
    stop = threading.Event()

    def work(i: int) -> None:
        torch.set_num_threads(1)
        with torch.inference_mode():
            runner(plane)
            while not stop.is_set():
                runner(plane)
                counts[i] += 1

    pool = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in pool:
        t.start()
    time.sleep(1.0)  # every worker warm
    first, start = sum(counts), time.perf_counter()
    time.sleep(seconds)
    done, elapsed = sum(counts) - first, time.perf_counter() - start
    stop.set()
    for t in pool:
        t.join()
    torch.set_num_threads(threads)
    return done / elapsed


def one_frame_at_a_time(upscaler: Upscaler, threads: int | None) -> tuple[int, int]:
    """The schedule of one frame at a time on all threads (the video path before frames in flight)."""
    return 1, threads or torch.get_num_threads()


def bench_scale(scale: int, clip: Path, folder: Path, budget: float, min_runs: int) -> dict[str, object]:
    """Stages, network, end-to-end rows for one scale."""
    model = model_for(scale)[0]
    precision = resolve_precision("auto", model=model)  # what the command's default runs
    threads = torch.get_num_threads()
    result: dict[str, object] = {
        "scale": scale,
        "lr_size": [LR_W, LR_H],
        "out_size": [LR_W * scale, LR_H * scale],
        "precision": precision,
        "stages_cpu_ms_per_frame": stage_costs(clip, scale, model, precision, 30),
    }
    plane = first_luma(clip)
    result["network_fps"] = {
        f"{threads} frames in flight, 1 thread each": network_fps(model, precision, plane, threads, budget / 8),
        f"1 frame at a time, {threads} threads": network_fps(model, precision, plane, 0, budget / 8),
    }
    default = Upscaler(model, precision=precision)  # type: ignore[arg-type]
    bf16 = Upscaler(model, precision="bf16") if precision != "bf16" else None
    compiled = Upscaler(model, precision="bf16", compile=True)  # int8 runs eagerly: compile the bf16 network
    frames = {"n": 0}
    cpu: list[float] = []

    def run_default() -> None:
        start = cpu_seconds()
        got = upscale_video(clip, folder / f"default-x{scale}.mp4", default, force=True)
        cpu.append(cpu_seconds() - start)
        frames["n"] = got.frames
        if got.copied_streams != ("audio",):
            print(f"  warning: audio not kept ({got.copied_streams})")

    def run_serial() -> None:
        real = video._schedule
        video._schedule = one_frame_at_a_time  # type: ignore[assignment]
        try:
            upscale_video(clip, folder / f"serial-x{scale}.mp4", default, force=True)
        finally:
            video._schedule = real  # type: ignore[assignment]

    def run_bf16() -> None:
        upscale_video(clip, folder / f"bf16-x{scale}.mp4", bf16, force=True)

    def run_compiled() -> None:
        got = upscale_video(clip, folder / f"compiled-x{scale}.mp4", compiled, force=True)
        if got.compiled_from != 0:
            print(f"  note: compiled network used from frame {got.compiled_from}")

    calls: dict[str, Callable[[], object]] = {
        f"subpixel default ({precision}, frames in flight)": run_default,
        f"subpixel {precision}, 1 frame at a time": run_serial,
        **({"subpixel bf16, frames in flight": run_bf16} if bf16 is not None else {}),
        "subpixel bf16 compiled (warm)": run_compiled,
        "ffmpeg lanczos": lambda: ffmpeg_lanczos(clip, folder / f"lanczos-x{scale}.mp4", scale),
    }
    # one untimed run each first (it compiles the compiled one), then rounds until the budget is spent
    times = timing.interleaved(list(calls.values()), budget_s=budget, min_runs=min_runs, warmup=1)
    rows = {name: _per_frame(summary(t), frames["n"]) for name, t in zip(calls, times)}
    result["frames"] = frames["n"]
    result["end_to_end"] = rows
    e2e = next(iter(rows.values()))["fps"]
    best_network = max(result["network_fps"].values())  # type: ignore[attr-defined]
    result["process_cpu_ms_per_frame"] = statistics.median(cpu) / frames["n"] * 1e3
    result["pipeline_efficiency"] = e2e / best_network
    return result


def _per_frame(row: dict[str, float], frames: int) -> dict[str, float]:
    """A whole-clip row of :func:`summary` turned into frames per second (the clip's seconds kept)."""
    return {
        "fps": frames / (row["median_ms"] / 1e3),
        "clip_median_s": row["median_ms"] / 1e3,
        "clip_p25_s": row["p25_ms"] / 1e3,
        "clip_p75_s": row["p75_ms"] / 1e3,
        "runs": row["runs"],
    }


def command_runs(clip: Path, folder: Path, scale: int, runs: int, extra: list[str]) -> dict[str, object]:
    """``subpixel upscale clip.mp4 --scale R`` in fresh processes, timed from outside: the first and the rest.

    With ``--compile`` the compile cache starts empty (a folder of its own), so the first run is cold.
    """
    target = folder / f"command-x{scale}.mp4"
    command = [sys.executable, "-m", "subpixel.cli", "upscale", str(clip), "--scale", str(scale)]
    command += ["-o", str(target), "--quiet", "--force", *extra]
    env = dict(os.environ)
    if "--compile" in extra:
        env["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(dir=folder)
    seconds: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        seconds.append(time.perf_counter() - started)
        if done.returncode != 0:
            print(done.stderr[-2000:])
            break
    frames = FPS * SECONDS
    warm = statistics.median(seconds[1:]) if len(seconds) > 1 else float("nan")
    return {
        "command": " ".join(["subpixel upscale clip.mp4 --scale", str(scale), "-o out.mp4 --quiet", *extra]),
        "first_s": seconds[0],
        "first_fps": frames / seconds[0],
        "again_median_s": warm,
        "again_fps": frames / warm,
        "runs": len(seconds),
        "exit_code": done.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=90.0, help="seconds of end-to-end timing per scale")
    parser.add_argument("--quick", action="store_true", help="×2 only, a short budget, no fresh processes")
    parser.add_argument("--cold", action="store_true", help="also time the whole command in fresh processes")
    parser.add_argument("--compile", action="store_true", help="with --cold: also the command with --compile")
    parser.add_argument("--scales", type=int, nargs="+", choices=(2, 3), help="default: 2 and 3 (--quick: 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    keep_freed_memory()  # as the subpixel command does, so that the in-process rows run as the command runs
    import av

    info = machine_info(
        args.threads,
        "benchmarks/video.py",
        av=av.__version__,
        ffmpeg=".".join(map(str, av.library_versions.get("libavcodec", ()))) + " (libavcodec)",
        preset=DEFAULT_PRESET,
        crf=CRF,
    )
    print(f"torch {info['torch']}, PyAV {info['av']}, {args.threads} threads, {info['cpu']}")
    print(f"commit {info['commit']}, load average {info['load_average']}")
    scales = args.scales or ([2] if args.quick else [2, 3])
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = folder / "clip.mp4"
        make_clip(clip)
        for scale in scales:
            result = bench_scale(scale, clip, folder, 10.0 if args.quick else args.budget, 2 if args.quick else 3)
            if args.cold and not args.quick:
                result["command"] = {"default": command_runs(clip, folder, scale, 4, [])}
                if args.compile:
                    result["command"]["compile"] = command_runs(clip, folder, scale, 3, ["--compile"])  # type: ignore[index]
            results.append(result)
            _print(result)
    report = {"info": info, "clip": {"size": [LR_W, LR_H], "fps": FPS, "seconds": SECONDS}, "speed": results}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("video-quick.json" if args.quick else "video.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {path}")
    return 0


def _print(result: dict[str, object]) -> None:
    scale, frames = result["scale"], result["frames"]
    print(f"\n×{scale}: {LR_W}×{LR_H} -> {LR_W * scale}×{LR_H * scale}, {frames} frames, {result['precision']}")  # type: ignore[operator]
    print("  stage                              CPU ms per frame")
    for name, ms in result["stages_cpu_ms_per_frame"].items():  # type: ignore[attr-defined]
        print(f"  {name:<34} {ms:>8.1f}")
    print(f"  {'whole video path (process CPU)':<34} {result['process_cpu_ms_per_frame']:>8.1f}")
    print(f"  {'contender':<44} {'fps':>7} {'p25-p75':>12}")
    for name, fps in result["network_fps"].items():  # type: ignore[attr-defined]
        print(f"  {'network alone, ' + name:<44} {fps:>7.1f}")
    for name, row in result["end_to_end"].items():  # type: ignore[attr-defined]
        spread = f"{frames / row['clip_p75_s']:.1f}-{frames / row['clip_p25_s']:.1f}"  # type: ignore[operator]
        print(f"  {name:<44} {row['fps']:>7.1f} {spread:>12}")
    print(f"  pipeline efficiency (end to end ÷ network on all cores): {result['pipeline_efficiency']:.2f}")
    in_process = next(iter(result["end_to_end"].values()))["clip_median_s"]  # type: ignore[attr-defined]
    for name, row in result.get("command", {}).items():  # type: ignore[attr-defined]
        print(
            f"  whole command, {name}: first run {row['first_s']:.1f} s ({row['first_fps']:.1f} fps), "
            f"again {row['again_median_s']:.1f} s ({row['again_fps']:.1f} fps); fixed cost (again − the default "
            f"in process) {row['again_median_s'] - in_process:.1f} s   [{row['command']}]"
        )


if __name__ == "__main__":
    sys.exit(main())
