"""Upscale a video through PyAV (FFmpeg): frames streamed one at a time, other streams copied.

The first video stream is decoded frame by frame, each frame goes through the image path
(:class:`~subpixel.upscale.image.Upscaler`, tiled, quantized to 8 bits) and is encoded at once, so memory holds
a few frames whatever the clip's length. Audio and subtitle streams are remuxed packet by packet (no re-encoding).
Each output frame keeps its input frame's timestamp in the input stream's time base, so the frame rate (constant
or variable) is kept. The output is written to a temporary file in the destination folder and renamed when
complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from subpixel.imageio import atomic_output
from subpixel.upscale.image import Upscaler

__all__ = ["VIDEO_EXTENSIONS", "VideoReadError", "VideoResult", "is_video", "upscale_video"]

#: File extensions treated as videos by ``subpixel upscale``.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts")

# Encoders tried, in order, when the input's codec has no encoder here.
_FALLBACK_CODECS = ("libx264", "mpeg4")


class VideoReadError(ValueError):
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
    """

    source: Path
    target: Path
    frames: int
    size_in: tuple[int, int]
    size_out: tuple[int, int]
    codec: str
    copied_streams: tuple[str, ...]
    seconds: float


def is_video(path: str | Path) -> bool:
    """Whether ``path``'s extension is a video container's.

    Examples:
        >>> is_video("clip.MP4"), is_video("photo.png")
        (True, False)
    """
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _encoder_for(name: str) -> str:
    import av

    for candidate in (name, *_FALLBACK_CODECS):
        try:
            return str(av.codec.Codec(candidate, "w").name)  # e.g. "h264" -> "libx264"
        except Exception:  # no such encoder in this FFmpeg build
            continue
    raise ValueError(f"no video encoder available (tried {name}, {', '.join(_FALLBACK_CODECS)})")


def upscale_video(
    source: str | Path,
    target: str | Path,
    upscaler: Upscaler,
    *,
    force: bool = False,
    codec: str | None = None,
    crf: int = 18,
    progress: Callable[[int, int | None, float], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> VideoResult:
    """Upscale every frame of ``source``'s first video stream; copy its audio and subtitle streams.

    Args:
        source: the input video.
        target: the output file; its extension picks the container.
        upscaler: the model and settings (frames go through the same path as images, in 8 bits).
        force: replace an existing ``target``.
        codec: output video encoder (default: the input's codec when it can be encoded here, else libx264).
        crf: constant-rate factor for x264/x265/VP9 (lower is better; 18 is visually lossless).
        progress: called after each frame with (frames done, frames in the stream or ``None`` when the
            container does not say, frames per second so far).
        warn: receives warnings (e.g. a stream that cannot be copied into this container).

    Returns:
        A :class:`VideoResult`.

    Raises:
        VideoReadError: the input is missing, not a video, or has no video stream.
        FileExistsError: ``target`` exists and ``force`` is false.
    """
    import av

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise VideoReadError(f"{source}: file not found")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists; pass --force (force=True) to replace it")
    if not target.parent.is_dir():
        raise ValueError(f"the folder of {str(target)!r} does not exist")
    try:
        inp = av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoReadError(f"{source}: not a readable video ({exc})") from exc
    started = time.perf_counter()
    with inp:
        if not inp.streams.video:
            raise VideoReadError(f"{source}: no video stream")
        vin = inp.streams.video[0]
        total = int(vin.frames) or None
        width, height = vin.codec_context.width, vin.codec_context.height
        scale = upscaler.scale
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        copied = [s for s in inp.streams if s.type in ("audio", "subtitle")]
        frames = 0
        with atomic_output(target) as tmp:
            with av.open(str(tmp), mode="w", format=_container_format(target)) as out:
                encoder = _encoder_for(codec or vin.codec_context.name)
                vout = out.add_stream(encoder, rate=rate)
                vout.width, vout.height = width * scale, height * scale
                vout.pix_fmt = _pix_fmt(encoder, vin.codec_context.pix_fmt)
                vout.time_base = vin.time_base
                if encoder in ("libx264", "libx265", "libvpx-vp9"):
                    vout.options = {"crf": str(crf)}
                else:  # encoders without a quality factor: a generous bit rate (about 1 bit per pixel)
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

                def encode(frame: Any) -> None:
                    for packet in vout.encode(frame):
                        out.mux(packet)

                try:
                    for packet in inp.demux(vin, *mapping):
                        if packet.stream is not vin:
                            if packet.dts is None:  # demuxer flush packets
                                continue
                            packet.stream = mapping[packet.stream]
                            out.mux(packet)
                            continue
                        for frame in packet.decode():
                            rgb = frame.to_ndarray(format="rgb24").astype(np.float32) / np.float32(255)
                            up = upscaler(rgb, bit_depth=8)
                            new = av.VideoFrame.from_ndarray(np.ascontiguousarray(up), format="rgb24")
                            new.pts, new.time_base = frame.pts, frame.time_base
                            encode(new)
                            frames += 1
                            if progress is not None:
                                progress(frames, total, frames / max(time.perf_counter() - started, 1e-9))
                    encode(None)
                except av.error.FFmpegError as exc:
                    raise VideoReadError(f"{source}: corrupt or truncated video ({exc})") from exc
    if frames == 0:
        raise VideoReadError(f"{source}: no video frames could be decoded")
    return VideoResult(
        source=source,
        target=target,
        frames=frames,
        size_in=(width, height),
        size_out=(width * scale, height * scale),
        codec=encoder,
        copied_streams=copied_kinds,
        seconds=time.perf_counter() - started,
    )


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
