"""Upscale a video through PyAV (FFmpeg): decoding, the network and encoding run side by side.

The stages run at once, joined by short queues (so memory holds a few frames whatever the clip's length):

* a **reader** thread demuxes the input and decodes the first video stream (FFmpeg's frame threads);
* **network workers**, one per CPU thread given to the network, each upscaling a whole frame on one thread
  (frames in flight side by side: a small network on one thread wastes nothing on synchronisation, and both
  cores of a 2-core machine compute);
* the calling thread puts the frames back in order, encodes them and muxes them with the other streams'
  packets.

PyAV and PyTorch release the GIL while they work, so the encoder and the decoder fill the gaps between the
network's frames instead of adding to them.

**Frames stay in YUV** when they can (8-bit 4:2:0, limited range, even size, a ``"y"`` model): the network sees
the decoded luma plane itself (``Y / 255``, the input of ESPCN-style models), the two quarter-size chroma planes
are upscaled by MATLAB's bicubic (:func:`~subpixel.upscaling.image.bicubic_upscale`), and the planes go to the
encoder as they are: no RGB conversion either way, and the chroma is resized at a quarter of the pixels. Other
frames (RGB models, 4:4:4, 10-bit, full range, odd sizes) take the image path
(:func:`~subpixel.upscaling.image.upscale_pixels`, 8-bit RGB).

**Compilation** (``Upscaler(compile=True)``, not the default: the eager bf16 channels-last network runs as
fast here and starts at once) is paid only when it pays: the first frames run eagerly and are timed, and the
network is compiled (once per tile shape, kept in the :class:`Upscaler` for the next video of the same size) only
when the frames left would save more than compiling costs (:class:`FrameNetwork`); a compiled network runs one
frame at a time on all CPU threads but one.

Audio and subtitle streams are remuxed packet by packet (no re-encoding). Each output frame keeps its input
frame's timestamp in the input stream's time base, so the frame rate (constant or variable) is kept. The output is
written to a temporary file in the destination folder and renamed when complete; temporaries left by killed runs
are removed at the start of the next.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from subpixel._atomic import atomic_output, clean_temporaries
from subpixel.errors import SubpixelError
from subpixel.upscaling.image import (
    _PIPELINE_HR_CHANNELS,
    BICUBIC_RADIUS,
    Runner,
    Upscaler,
    bicubic_upscale,
    make_runner,
    resolve_precision,
    upscale_pixels,
)
from subpixel.upscaling.tiling import (
    plan_tiles,
    receptive_radius,
    tile_side,
    tiled_map,
)

__all__ = [
    "DEFAULT_PRESET",
    "VIDEO_EXTENSIONS",
    "X264_PRESETS",
    "FrameNetwork",
    "VideoReadError",
    "VideoResult",
    "is_video",
    "upscale_video",
    "upscale_yuv420",
    "video_upscaler",
]

#: File extensions treated as videos by ``subpixel upscale``.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts")

#: x264/x265 speed preset: "veryfast" encodes 720p about 4× faster than x264's default "medium" (measured by
#: ``benchmarks/video.py``), at the same CRF a somewhat larger file.
DEFAULT_PRESET = "veryfast"

#: x264's speed presets, fastest first.
X264_PRESETS: tuple[str, ...] = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"
)  # fmt: skip

# Encoders tried, in order, when the input's codec has no encoder here.
_FALLBACK_CODECS = ("libx264", "mpeg4")
# Frames (or packets) waiting between two stages.
_QUEUE_DEPTH = 6
# float32 HR planes per luma tile in upscale_yuv420 (the network's output and its quantized copy).
_LUMA_HR_CHANNELS = 2
# Limited ("TV") range, +0.5 for rounding: the RGB image path can only produce these values (RGB in 0..255).
_LEGAL_Y, _LEGAL_C = (16.0, 235.5), (16.0, 240.5)
# AVColorRange: 2 is full ("JPEG") range.
_FULL_RANGE = 2


class VideoReadError(SubpixelError):
    """A video file could not be read; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoResult:
    """What :func:`upscale_video` wrote.

    Attributes:
        source, target: input and output files.
        frames: video frames written.
        size_in, size_out: (width, height).
        codec: the output video codec.
        copied_streams: kinds of the streams copied (``"audio"``, ``"subtitle"``).
        seconds: wall time.
        yuv_frames: frames upscaled in YUV (the rest went through RGB).
        compiled_from: index of the first frame run by the compiled network (``None``: none was).
    """

    source: Path
    target: Path
    frames: int
    size_in: tuple[int, int]
    size_out: tuple[int, int]
    codec: str
    copied_streams: tuple[str, ...]
    seconds: float
    yuv_frames: int = 0
    compiled_from: int | None = None

    @property
    def fps(self) -> float:
        """Frames written per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def is_video(path: str | Path) -> bool:
    """Whether ``path``'s extension is a video container's.

    Examples:
        >>> is_video("clip.MP4"), is_video("photo.png")
        (True, False)
    """
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


class FrameNetwork:
    """The upscaler's network for the frames of one video, compiled only when that pays for this clip.

    Without ``upscaler.compile`` (or with ONNX Runtime) this is ``upscaler.runner``. With it, the first
    :data:`PROBE_FRAMES` frames run eagerly (same precision) and are timed; then the network is compiled, one
    graph per tile shape, if the frames left would save more than the compilation costs
    (:data:`COMPILE_SECONDS`, assuming the compiled network takes :data:`COMPILED_FRACTION` of the eager time;
    always when the frame count is unknown). Shapes compiled once stay compiled in the :class:`Upscaler` (the
    next video of the same size uses them from its first frame, without probing).

    Compilation happens in the calling thread: a background compile would hold the GIL for seconds and stall
    the other stages.

    Args:
        upscaler: the model and its settings.
        tile_shapes: the ``(h, w)`` LR tile shapes a frame is cut into (one call each per frame).
        frames: frames in the video (``None``: unknown).

    Shape:
        ``(N, C, h, w) -> (N, C, h·r, w·r)``, float32.
    """

    #: eager frames timed before deciding whether to compile (the first one, warming up, is not counted)
    PROBE_FRAMES = 4
    #: seconds that compiling a small SR network for one frame size costs (2.3–3.2 s measured here, fresh process)
    COMPILE_SECONDS = 3.0
    #: the compiled network's time as a fraction of the eager one's (bf16, 1 thread: ESPCN 0.4, the PReLU
    #: stand-in 0.6, measured here)
    COMPILED_FRACTION = 0.5

    # tile shapes already compiled, per compiled runner
    _compiled_shapes: ClassVar[weakref.WeakKeyDictionary[Runner, set[tuple[int, ...]]]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, upscaler: Upscaler, tile_shapes: list[tuple[int, int]], frames: int | None) -> None:
        self.compiled: Runner = upscaler.runner
        self.in_channels = 1 if upscaler.channels == "y" else 3
        self.shapes = sorted(set(tile_shapes))
        self.per_frame = max(len(tile_shapes), 1)
        self.frames = frames
        self.calls = 0
        self.eager_seconds = 0.0
        self.compiled_from: int | None = None  # frame index
        self.decided = not upscaler.compile or upscaler.backend != "torch"
        self.runner: Runner = self.compiled
        if self.decided:
            return
        done = self._compiled_shapes.get(self.compiled, set())
        if all((self.in_channels, *shape) in done for shape in self.shapes):
            self.decided, self.compiled_from = True, 0
            return
        self.runner = make_runner(upscaler.model, precision=upscaler.precision, device=upscaler.device)

    def __call__(self, x: Tensor) -> Tensor:
        """Run the network on one tile."""
        if self.decided:
            self.calls += 1
            return self.runner(x)
        started = time.perf_counter()
        y = self.runner(x)
        if self.calls >= self.per_frame:  # not the first frame's calls (warm-up)
            self.eager_seconds += time.perf_counter() - started
        self.calls += 1
        if self.calls == self.per_frame * (self.PROBE_FRAMES + 1):
            self._decide()
        return y

    def _decide(self) -> None:
        """Compile now if the frames left pay for it; from now on, one runner."""
        self.decided = True
        frame = self.calls // self.per_frame
        per_frame = self.eager_seconds / self.PROBE_FRAMES
        left = None if self.frames is None else max(self.frames - frame, 0)
        if left is not None and left * per_frame * (1 - self.COMPILED_FRACTION) < self.COMPILE_SECONDS:
            return  # a short clip: stay eager
        done = self._compiled_shapes.setdefault(self.compiled, set())
        for h, w in self.shapes:
            self.compiled(
                torch.zeros(1, self.in_channels, h, w)
            )  # compiles (or falls back to eager, warning)
            done.add((self.in_channels, h, w))
        self.runner, self.compiled_from = self.compiled, frame


def video_upscaler(
    upscaler: Upscaler, *, precision: str | None = None, compile: bool | None = None
) -> Upscaler:
    """``upscaler`` with the fastest settings measured for videos where ``precision`` / ``compile`` are ``None``.

    With the torch backend: bf16 where the hardware computes it natively (:func:`resolve_precision`; its
    Y-PSNR loss is measured by ``benchmarks/upscale.py``, under 0.05 dB), eager (no compilation: the eager bf16
    channels-last network runs as fast as the compiled one here and starts at once; ``benchmarks/video.py``
    measures both). Given values are kept, and so is everything about the ONNX Runtime backend.

    Examples:
        >>> from subpixel.sr.models import ESPCN
        >>> up = video_upscaler(Upscaler(ESPCN(2, widths=(4,), kernel_sizes=(3, 3))), precision="fp32")
        >>> up.precision, up.compile
        ('fp32', False)
    """
    if upscaler.backend != "torch":
        return upscaler
    precision = resolve_precision(  # type: ignore[arg-type]
        precision or "auto", upscaler.backend, upscaler.device, upscaler.model
    )
    compile = upscaler.compile if compile is None else compile
    if (precision, compile) == (upscaler.precision, upscaler.compile):
        return upscaler
    return dataclasses.replace(upscaler, precision=precision, compile=compile)  # type: ignore[arg-type]


def _tile_for(upscaler: Upscaler, hr_channels: int, radius: int) -> int:
    """The tile side in LR pixels for this upscaler's memory budget (:func:`~subpixel.upscaling.tiling.tile_side`,
    as :func:`upscale_pixels` chooses it)."""
    return tile_side(
        upscaler.model,
        upscaler.scale,
        radius,
        tile=upscaler.tile,
        max_memory=upscaler.max_memory,
        extra_hr_channels=hr_channels,
    )


def upscale_yuv420(
    planes: np.ndarray, scale: int, luma: Runner, *, radius: int = 0, tile: int | None = None
) -> np.ndarray:
    """Upscale an 8-bit YUV 4:2:0 frame: ``luma`` on ``Y / 255``, MATLAB bicubic on the chroma planes.

    Args:
        planes: uint8 array ``(3·H/2, W)``, PyAV's ``yuv420p`` layout: the ``(H, W)`` Y plane, then the
            ``(H/2, W/2)`` U and V planes, each flattened (H and W even).
        scale: the factor ``r``.
        luma: the network, ``(1, 1, h, w) -> (1, 1, h·r, w·r)`` on ``Y / 255``.
        radius: the network's receptive radius in LR pixels, for tiling.
        tile: tile side in LR pixels for the luma (default: the whole plane at once).

    Returns:
        uint8 array ``(3·H·r/2, W·r)`` in the same layout: every plane upscaled by ``r``, rounded half up and
        clamped to the limited range (Y 16..235, U and V 16..240), as the RGB image path's output would be.

    Shape:
        ``(3·H/2, W) -> (3·H·r/2, W·r)``.

    Examples:
        >>> flat = np.full((6, 4), 100, np.uint8)  # a 4×4 frame
        >>> out = upscale_yuv420(flat, 2, lambda y: torch.nn.functional.interpolate(y, scale_factor=2))
        >>> out.shape, int(out.min()), int(out.max())
        ((12, 8), 100, 100)
        >>> int(upscale_yuv420(flat, 2, lambda y: torch.zeros(1, 1, 8, 8))[:8].max())  # luma clamped to 16
        16
    """
    rows, width = planes.shape
    height = rows * 2 // 3
    if planes.dtype != np.uint8 or rows * 2 % 3 or height % 2 or width % 2:
        raise SubpixelError(
            f"planes must be uint8 (3·H/2, W) with H and W even, got {planes.dtype} {planes.shape}"
        )
    out = np.empty((rows * scale, width * scale), np.uint8)
    hr_h = height * scale
    y_out = torch.from_numpy(out[:hr_h])
    y_in = torch.from_numpy(planes[:height]).to(torch.float32).div_(255.0)[None, None]

    def sink(piece: Tensor, region: tuple[int, int, int, int]) -> None:  # round half up into uint8
        values = piece[0, 0].mul(255.0).add_(0.5).clamp_(*_LEGAL_Y).nan_to_num_(nan=_LEGAL_Y[0])  # one buffer
        y_out[region[0] : region[1], region[2] : region[3]] = values  # float -> uint8 truncates: floor

    tiled_map(luma, y_in, scale, radius=radius, tile=tile or max(height, width), sink=sink)
    chroma = torch.from_numpy(planes[height:]).reshape(1, 2, height // 2, width // 2).to(torch.float32)
    chroma_out = bicubic_upscale(chroma, scale).add_(0.5).clamp_(*_LEGAL_C)
    torch.from_numpy(out[hr_h:]).view(-1).copy_(chroma_out.reshape(-1))
    return out


def _yuv_ready(frame: Any, channels: str) -> bool:
    """Whether ``frame`` can be upscaled in YUV (see the module docstring)."""
    return (
        channels == "y"
        and frame.format.name == "yuv420p"
        and frame.color_range != _FULL_RANGE
        and frame.width % 2 == 0
        and frame.height % 2 == 0
    )


def _encoder_for(name: str) -> str:
    import av

    for candidate in (name, *_FALLBACK_CODECS):
        try:
            return str(av.codec.Codec(candidate, "w").name)  # e.g. "h264" -> "libx264"
        except Exception:  # no such encoder in this FFmpeg build
            continue
    raise SubpixelError(f"no video encoder available (tried {name}, {', '.join(_FALLBACK_CODECS)})")


class _Stopped(Exception):
    """Another stage failed or the run was interrupted: this stage stops."""


class _Channel:
    """A bounded queue between two stages whose ``put``/``get`` give up when ``stop`` is set."""

    def __init__(self, stop: threading.Event) -> None:
        self.items: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.stop = stop

    def put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def get(self) -> Any:
        while not self.stop.is_set():
            try:
                return self.items.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped


_END = object()


class _Stage(threading.Thread):
    """A daemon thread running ``work``; its exception is kept for the caller and stops the other stages."""

    def __init__(self, name: str, work: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self.work, self.stop = work, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the calling thread
            self.error = exc
            self.stop.set()


def _open_input(source: Path) -> Any:
    import av

    if not source.is_file():
        raise VideoReadError(f"{source}: file not found")
    if source.stat().st_size == 0:
        raise VideoReadError(f"{source}: empty file (0 bytes), not a video")
    try:
        container = av.open(str(source))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise VideoReadError(f"{source}: not a readable video ({reason})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{source}: no video stream")
    return container


def upscale_video(
    source: str | Path,
    target: str | Path,
    upscaler: Upscaler,
    *,
    force: bool = False,
    codec: str | None = None,
    crf: int = 18,
    preset: str = DEFAULT_PRESET,
    threads: int | None = None,
    progress: Callable[[int, int | None, float], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> VideoResult:
    """Upscale every frame of ``source``'s first video stream; copy its audio and subtitle streams.

    Args:
        source: the input video.
        target: the output file; its extension picks the container.
        upscaler: the model and settings (``compile=True`` compiles in the background, see :class:`FrameNetwork`).
        force: replace an existing ``target``.
        codec: output video encoder (default: the input's codec when it can be encoded here, else libx264).
        crf: constant-rate factor for x264/x265/VP9 (lower is better; 18 is visually lossless).
        preset: x264/x265 speed preset (default :data:`DEFAULT_PRESET`; ``"medium"`` is x264's own default).
        threads: CPU threads for the network (default :func:`torch.get_num_threads`): as many frames in
            flight, one thread each; with ``upscaler.compile``, one frame at a time on this many threads
            (default one less, at least 1). The process's thread count is restored afterwards.
        progress: called after each frame with (frames done, frames in the stream or ``None`` when the
            container does not say, frames per second so far).
        warn: receives warnings (e.g. a stream that cannot be copied into this container).

    Returns:
        A :class:`VideoResult`.

    Raises:
        VideoReadError: the input is missing, empty, not a video, has no video stream, or is corrupt.
        FileExistsError: ``target`` exists and ``force`` is false.
        SubpixelError: ``target`` is ``source`` (through links too), whatever ``force``.
    """

    source, target = Path(source), Path(target)
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force (force=True) to replace it")
    if target.resolve() == source.resolve() or (target.exists() and os.path.samefile(target, source)):
        raise SubpixelError(f"refusing to write the output over its input {source} (force replaces outputs only)")
    if not target.parent.is_dir():
        raise SubpixelError(f"the folder of {str(target)!r} does not exist")
    inp = _open_input(source)
    clean_temporaries(target.parent)
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    workers, per_worker = _schedule(upscaler, threads)
    try:
        return _upscale_stream(
            inp, source, target, upscaler, codec, crf, preset, progress, warn, started, workers, per_worker
        )
    finally:
        torch.set_num_threads(previous_threads)  # the workers' setting also changed the process default


def _schedule(upscaler: Upscaler, threads: int | None) -> tuple[int, int]:
    """``(network workers, threads each)``: frames in flight, one thread each, for the eager network; one
    worker on all but one thread for the compiled one (its kernels are built for a thread count).

    Examples:
        >>> from subpixel.sr.models import ESPCN
        >>> net = ESPCN(2, widths=(4,), kernel_sizes=(3, 3))
        >>> _schedule(Upscaler(net), 2), _schedule(Upscaler(net, compile=True), 3)
        ((2, 1), (1, 3))
    """
    if upscaler.compile and upscaler.backend == "torch":
        return 1, threads or max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))
    return max(1, threads or torch.get_num_threads()), 1


def _upscale_stream(
    inp: Any,
    source: Path,
    target: Path,
    upscaler: Upscaler,
    codec: str | None,
    crf: int,
    preset: str,
    progress: Callable[[int, int | None, float], None] | None,
    warn: Callable[[str], None] | None,
    started: float,
    workers: int,
    per_worker: int,
) -> VideoResult:
    """:func:`upscale_video` once the input is open (it is closed on return)."""
    import av

    with inp:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"  # frame and slice threads in the decoder
        total = int(vin.frames) or None
        width, height = vin.codec_context.width, vin.codec_context.height
        scale = upscaler.scale
        if not width or not height:
            raise VideoReadError(f"{source}: the video stream has no frame size")
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        copied = [s for s in inp.streams if s.type in ("audio", "subtitle")]
        radius = receptive_radius(upscaler.model)
        luma_tile = _tile_for(upscaler, _LUMA_HR_CHANNELS, radius)
        if upscaler.channels == "y":  # the tiles of the YUV path; else those of upscale_pixels
            plan = plan_tiles(height, width, luma_tile, radius)
        else:
            rgb_radius = max(radius, BICUBIC_RADIUS)
            plan = plan_tiles(
                height, width, _tile_for(upscaler, _PIPELINE_HR_CHANNELS, rgb_radius), rgb_radius
            )
        tiles = [(t.in_y1 - t.in_y0, t.in_x1 - t.in_x0) for t in plan]
        network = FrameNetwork(upscaler, tiles, total or _estimated_frames(inp, vin, rate))
        counts = {"frames": 0, "yuv": 0}
        with atomic_output(target) as tmp:
            with av.open(str(tmp), mode="w", format=_container_format(target)) as out:
                encoder = _encoder_for(codec or vin.codec_context.name)
                vout = out.add_stream(encoder, rate=rate)
                vout.width, vout.height = width * scale, height * scale
                vout.pix_fmt = _pix_fmt(encoder, vin.codec_context.pix_fmt)
                vout.time_base = vin.time_base
                vout.options = _encoder_options(encoder, crf, preset)
                if encoder not in ("libx264", "libx265", "libvpx-vp9"):  # no quality factor: ~1 bit per pixel
                    vout.bit_rate = int(vout.width * vout.height * float(rate))
                mapping: dict[Any, Any] = {}
                for stream in copied:
                    try:
                        mapping[stream] = out.add_stream_from_template(stream)
                    except (ValueError, av.error.FFmpegError) as exc:
                        (warn or _stderr)(
                            f"{source}: stream #{stream.index} ({stream.type}) not copied: {exc}"
                        )
                copied_kinds = tuple(s.type for s in mapping)

                stop = threading.Event()
                decoded, upscaled = _Channel(stop), _Channel(stop)

                def read() -> None:  # every item numbered, so that the writer restores the order
                    number = 0
                    try:
                        for packet in inp.demux(vin, *mapping):
                            if packet.stream is not vin:
                                if packet.dts is not None:  # not a demuxer flush packet
                                    packet.stream = mapping[packet.stream]
                                    decoded.put((number, packet))
                                    number += 1
                                continue
                            for frame in packet.decode():
                                decoded.put((number, frame))
                                number += 1
                    except av.error.FFmpegError as exc:
                        reason = getattr(exc, "strerror", None) or str(exc)
                        raise VideoReadError(f"{source}: corrupt or truncated video ({reason})") from None
                    for _ in range(workers):
                        decoded.put(_END)

                def upscale(frame: Any) -> tuple[Any, bool]:
                    """The upscaled frame, and whether it was upscaled in YUV."""
                    yuv = False
                    if _yuv_ready(frame, upscaler.channels):
                        planes = upscale_yuv420(
                            frame.to_ndarray(), scale, network, radius=radius, tile=luma_tile
                        )
                        new = av.VideoFrame.from_ndarray(planes, format="yuv420p")
                        new.colorspace, new.color_range = frame.colorspace, frame.color_range
                        yuv = True
                    else:
                        rgb = frame.to_ndarray(format="rgb24").astype(np.float32) / np.float32(255)
                        up = upscale_pixels(
                            rgb,
                            upscaler.model,
                            runner=network,
                            tile=upscaler.tile,
                            max_memory=upscaler.max_memory,
                            bit_depth=8,
                        )
                        new = av.VideoFrame.from_ndarray(np.ascontiguousarray(up), format="rgb24")
                    new.pts, new.time_base = frame.pts, frame.time_base
                    return new, yuv

                def work() -> None:  # one network worker: frames in, upscaled frames out
                    torch.set_num_threads(per_worker)  # this thread's own OpenMP thread count
                    with torch.inference_mode():
                        while (item := decoded.get()) is not _END:
                            number, payload = item
                            done = (payload, False) if isinstance(payload, av.Packet) else upscale(payload)
                            upscaled.put((number, done))
                    upscaled.put(_END)

                stages = [_Stage("subpixel-decode", read, stop)]
                stages += [_Stage(f"subpixel-network-{i}", work, stop) for i in range(workers)]
                for stage in stages:
                    stage.start()
                try:  # this thread encodes and muxes, in the input's order
                    waiting: dict[int, Any] = {}
                    following, ended = 0, 0
                    while ended < workers:
                        item = upscaled.get()
                        if item is _END:
                            ended += 1
                            continue
                        waiting[item[0]] = item[1]
                        while following in waiting:
                            ready, yuv = waiting.pop(following)
                            following += 1
                            if isinstance(ready, av.Packet):
                                out.mux(ready)
                                continue
                            counts["yuv"] += yuv
                            out.mux(vout.encode(ready))
                            counts["frames"] += 1
                            if progress is not None:
                                elapsed = max(time.perf_counter() - started, 1e-9)
                                progress(counts["frames"], total, counts["frames"] / elapsed)
                    _finish(stages)  # a stage's error, if one failed
                    out.mux(vout.encode(None))
                except _Stopped:  # a stage failed: its error is raised below
                    _finish(stages)
                    raise
                except BaseException:  # encoding failed, or Ctrl-C: stop the stages, then clean up
                    stop.set()
                    for stage in stages:
                        stage.join()
                    raise
            if counts["frames"] == 0:
                raise VideoReadError(f"{source}: no video frames could be decoded")
    return VideoResult(
        source=source,
        target=target,
        frames=counts["frames"],
        size_in=(width, height),
        size_out=(width * scale, height * scale),
        codec=encoder,
        copied_streams=copied_kinds,
        seconds=time.perf_counter() - started,
        yuv_frames=counts["yuv"],
        compiled_from=network.compiled_from,
    )


def _estimated_frames(container: Any, stream: Any, rate: Fraction) -> int | None:
    """Frames in ``stream`` from its duration (or the container's) and frame rate, for containers that do not
    count them (Matroska, WebM); ``None`` when neither duration is known."""
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / 1_000_000  # AV_TIME_BASE
    else:
        return None
    return max(round(seconds * float(rate)), 1)


def _finish(stages: list[_Stage]) -> None:
    """Wait for the stages and raise the first error one of them met."""
    for stage in stages:
        stage.join()
    for stage in stages:
        if stage.error is not None:
            raise stage.error


def _encoder_options(encoder: str, crf: int, preset: str) -> dict[str, str]:
    """Quality and speed options of the encoders that have them."""
    if encoder in ("libx264", "libx265"):
        return {"crf": str(crf), "preset": preset}
    if encoder == "libvpx-vp9":
        return {"crf": str(crf), "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    return {}


def _container_format(target: Path) -> str | None:
    """FFmpeg muxer for the target's extension (the temporary name keeps it, but be explicit)."""
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}.get(
        target.suffix.lower()
    )


def _pix_fmt(encoder: str, source_fmt: str | None) -> str:
    import av

    formats = [f.name for f in (av.codec.Codec(encoder, "w").video_formats or [])]
    if source_fmt and source_fmt in formats:
        return source_fmt
    return "yuv420p" if "yuv420p" in formats or not formats else formats[0]


def _stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr)
