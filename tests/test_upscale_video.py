"""`subpixel upscale clip.mp4`: frames, size, timestamps, audio copied, and frames equal to the image path."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import subpixel
import subpixel.config

av = pytest.importorskip("av")

from subpixel.cli import main  # noqa: E402
from subpixel.sr.models import ESPCN, save  # noqa: E402
from subpixel.sr.protocol import rgb_to_ycbcr  # noqa: E402
from subpixel.upscaling.image import Upscaler, make_runner, upscale_pixels  # noqa: E402
from subpixel.upscaling.video import VideoReadError, upscale_video  # noqa: E402

FPS = 12
FRAMES = 7
WIDTH, HEIGHT = 32, 24
AUDIO_RATE = 8000


def _make_clip(path: Path) -> None:
    """A smooth moving pattern in H.264 (near lossless) and a sine in AAC, written with PyAV."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "12"}
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        for i in range(FRAMES):
            planes = [0.5 + 0.35 * np.sin(0.2 * xx + 0.15 * yy + 0.4 * i + k) for k in range(3)]
            image = (np.stack(planes, -1) * 255).round().astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        samples = (0.3 * np.sin(np.arange(AUDIO_RATE * FRAMES // FPS) * 0.07)).astype(np.float32)
        for start in range(0, samples.size, 1024):
            chunk = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024].copy(), format="fltp", layout="mono"
            )
            chunk.sample_rate, chunk.pts = AUDIO_RATE, start
            for packet in audio.encode(chunk):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)


def _decode(path: Path) -> tuple[list[np.ndarray], list[int], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return [f.to_ndarray(format="rgb24") for f in frames], [int(f.pts) for f in frames], stream.time_base


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    _make_clip(path)
    return path


def _textured_model(seed: int, scale: int = 2) -> ESPCN:
    """A small ESPCN whose output is about its input's Y plus a seeded texture (a random one outputs about 0)."""
    torch.manual_seed(seed)
    model = ESPCN(scale, widths=(8,), kernel_sizes=(5, 3)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.3)
        model.features[0].weight[:, 0, 2, 2] += 1.0  # every feature ≈ Y
        model.upsample.weight[:, :, 1, 1] += 1.0 / 8  # every output phase ≈ the mean of the features
    return model


def test_video_upscale_matches_image_path(clip: Path, tmp_path: Path) -> None:
    model = _textured_model(0)
    weights = tmp_path / "w.safetensors"
    save(model, weights)
    target = tmp_path / "clip_x2.mp4"
    assert (
        main(["upscale", str(clip), "--scale", "2", "--weights", str(weights), "-o", str(target), "--quiet"])
        == 0
    )

    frames_in, pts_in, tb_in = _decode(clip)
    frames_out, pts_out, tb_out = _decode(target)
    assert len(frames_out) == len(frames_in) == FRAMES
    assert frames_out[0].shape == (2 * HEIGHT, 2 * WIDTH, 3)
    # timestamps (in seconds) and frame rate kept
    assert [p * tb_out for p in pts_out] == [p * tb_in for p in pts_in]
    with av.open(str(target)) as container:
        assert container.streams.video[0].average_rate == FPS
        assert [s.type for s in container.streams] == ["video", "audio"]
    # the audio stream is copied packet for packet, not re-encoded
    assert _audio_packets(target) == _audio_packets(clip)
    # every frame is the image path applied to the decoded input frame, up to the output codec's error: the luma
    # closely (the network sees the decoded Y plane either way), the colour a little less (the video path
    # resizes the 4:2:0 chroma planes directly instead of going through RGB)
    for got, lr in zip(frames_out, frames_in):
        want = upscale_pixels(lr.astype(np.float32) / 255, model, bit_depth=8)
        assert _psnr(_luma(got), _luma(want)) > 38
        assert _psnr(got, want) > 30
    # and the comparison can fail: a different model's output is far off
    other = upscale_pixels(frames_in[0].astype(np.float32) / 255, _textured_model(1), bit_depth=8)
    assert _psnr(_luma(frames_out[0]), _luma(other)) < 25


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range Y (16..235) of 8-bit RGB."""
    return rgb_to_ycbcr(rgb.astype(np.float64) / 255)[..., 0]


def test_video_refuses_overwrite_and_reports_bad_input(clip: Path, tmp_path: Path) -> None:
    from subpixel.upscaling.image import Upscaler

    net = ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval()
    upscaler = Upscaler(net)
    target = tmp_path / "out.mp4"
    target.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        upscale_video(clip, target, upscaler)
    assert target.read_bytes() == b"keep"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypmp42" + b"x" * 100)
    with pytest.raises(VideoReadError, match=r"broken\.mp4"):
        upscale_video(broken, tmp_path / "b_x2.mp4", upscaler)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "out.mp4"]  # no leftovers


def test_subtitle_stream_is_copied(tmp_path: Path) -> None:
    """A Matroska clip with an ASS subtitle stream: the subtitle packets come out unchanged."""
    from subpixel.upscaling.image import Upscaler

    source = tmp_path / "subs.mkv"
    with av.open(str(source), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        subs = out.add_stream("ass")
        subs.codec_context.extradata = (
            b"[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize\n"
            b"Style: Default,Arial,20\n\n[Events]\nFormat: Layer, Start, End, Style, Text\n"
        )
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((HEIGHT, WIDTH, 3), 60 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        for k, text in enumerate((b"0,0,Default,,0,0,0,,hello", b"1,0,Default,,0,0,0,,world")):
            packet = av.Packet(text)
            packet.stream, packet.pts, packet.dts, packet.duration = subs, 100 * k, 100 * k, 100
            packet.time_base = subs.time_base
            out.mux(packet)
    target = tmp_path / "subs_x2.mkv"
    result = upscale_video(source, target, Upscaler(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval()))
    assert result.copied_streams == ("subtitle",) and result.frames == 3

    def subtitle_packets(path: Path) -> list[tuple[bytes, int | None]]:
        with av.open(str(path)) as container:
            return [(bytes(p), p.pts) for p in container.demux(subtitles=0) if p.size]

    assert subtitle_packets(target) == subtitle_packets(source)
    assert len(subtitle_packets(source)) == 2


def test_empty_and_corrupt_inputs_give_one_line_errors(clip: Path, tmp_path: Path) -> None:
    from subpixel.upscaling.image import Upscaler

    upscaler = Upscaler(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval())
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    noise = tmp_path / "noise.mkv"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for source, reason in (
        (empty, "empty file"),
        (truncated, "corrupt|truncated|not a readable video|no video frames"),
        (noise, "not a readable video"),
        (tmp_path / "missing.mp4", "file not found"),
    ):
        with pytest.raises(VideoReadError) as info:
            upscale_video(source, tmp_path / f"{source.stem}_x2.mp4", upscaler)
        message = str(info.value)
        assert message.startswith(f"{source}: ") and "\n" not in message, message
        assert __import__("re").search(reason, message), message
    # nothing written, no temporary left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4", "noise.mkv", "truncated.mp4"]


def test_cli_reports_a_zero_byte_video_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    weights = tmp_path / "w.safetensors"
    save(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval(), weights)
    code = main(["upscale", str(empty), "--scale", "2", "--weights", str(weights), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{empty}: empty file (0 bytes), not a video" in err and "Traceback" not in err
    assert not (tmp_path / "empty_x2.mp4").exists()


_SLOW_UPSCALE = """
import sys, time
from subpixel.sr.models import ESPCN
from subpixel.upscaling.image import Upscaler
from subpixel.upscaling.video import upscale_video

def progress(done, total, fps):
    print(done, flush=True)
    time.sleep(0.1)  # a slow network: the signal lands mid-video

upscale_video(sys.argv[1], sys.argv[2], Upscaler(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval()),
              progress=progress)
"""


def _long_clip(path: Path, frames: int = 60) -> None:
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((HEIGHT, WIDTH, 3), 4 * i, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGKILL"])
def test_interrupted_video_leaves_no_partial_file(tmp_path: Path, signal_name: str) -> None:
    """Ctrl-C or kill -9 mid-video: nothing at the final name; the temporary is gone after the next run."""
    import os
    import signal
    import subprocess
    import sys

    source, target = tmp_path / "long.mp4", tmp_path / "long_x2.mp4"
    _long_clip(source)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_UPSCALE, str(source), str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    for _ in range(3):  # a few frames done: the temporary output exists
        assert child.stdout.readline(), child.stderr.read() if child.stderr else ""
    temporaries = [p for p in tmp_path.iterdir() if p.name.startswith(".long_x2.")]
    assert len(temporaries) == 1
    child.send_signal(getattr(signal, signal_name))
    child.communicate(timeout=60)
    assert child.returncode != 0
    assert not target.exists()
    left = [p.name for p in tmp_path.iterdir() if p.name != source.name]
    if signal_name == "SIGINT":
        assert left == []  # cleaned up on the way out
    else:
        assert left == [temporaries[0].name]  # a killed process cannot clean up ...
    result = upscale_video(source, target, Upscaler(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval()))
    assert result.frames == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name, target.name]  # ... the next run does


def test_compilation_only_when_it_pays(monkeypatch: pytest.MonkeyPatch) -> None:
    """FrameNetwork probes eagerly, compiles only for enough frames, and reuses compiled shapes."""
    from subpixel.upscaling.video import FrameNetwork

    net = ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval()
    upscaler = Upscaler(net, compile=True)
    eager = make_runner(net)
    compiled_calls: list[tuple[int, ...]] = []

    def compiled(x: torch.Tensor) -> torch.Tensor:  # stands for the compiled runner (no compiler needed)
        compiled_calls.append(tuple(x.shape))
        return eager(x)

    upscaler.runner = compiled
    x = torch.rand(1, 1, 24, 32)
    probe = FrameNetwork.PROBE_FRAMES + 1
    short = FrameNetwork(upscaler, [(24, 32)], frames=probe + 3)
    for _ in range(probe + 3):
        assert short(x).shape == (1, 1, 48, 64)
    assert compiled_calls == [] and short.compiled_from is None  # not worth compiling
    unknown = FrameNetwork(upscaler, [(24, 32)], frames=None)
    for _ in range(probe + 3):
        unknown(x)
    # compiled after the probe (one call on zeros per tile shape compiles it), then used for every frame
    assert unknown.compiled_from == probe and compiled_calls == [(1, 1, 24, 32)] * 4
    again = FrameNetwork(upscaler, [(24, 32)], frames=3)  # the next video of this size: compiled at once
    again(x)
    assert again.compiled_from == 0 and len(compiled_calls) == 5
    monkeypatch.setattr(FrameNetwork, "COMPILE_SECONDS", 0.0)  # compiling is free: even a short clip compiles
    other = FrameNetwork(upscaler, [(16, 16), (16, 8)], frames=probe + 1)
    for _ in range(probe):
        other(torch.rand(1, 1, 16, 16))
        other(torch.rand(1, 1, 16, 8))
    assert other.compiled_from == probe and compiled_calls[5:] == [(1, 1, 16, 8), (1, 1, 16, 16)]
    plain = FrameNetwork(Upscaler(net), [(24, 32)], frames=None)  # no compile asked: the upscaler's runner
    assert plain.runner is plain.compiled and plain.compiled_from is None


def test_yuv420_path_tiles_exactly_and_resizes_chroma_by_bicubic() -> None:
    from subpixel.upscaling.image import bicubic_upscale
    from subpixel.upscaling.tiling import receptive_radius
    from subpixel.upscaling.video import upscale_yuv420

    model = _textured_model(2, scale=3)
    runner = make_runner(model)
    rng = np.random.default_rng(0)
    height, width = 20, 26
    planes = rng.integers(16, 236, (height * 3 // 2, width), dtype=np.uint8)
    # one algorithm for every call: the dispatch's timed choice may differ between the whole frame's size and a
    # tile's, and two exact algorithms can round one sample differently (one level, seen under load)
    with subpixel.dispatch.force_algorithm("lr_shuffle"):
        whole = upscale_yuv420(planes, 3, runner, radius=receptive_radius(model))
        tiled = upscale_yuv420(planes, 3, runner, radius=receptive_radius(model), tile=7)
        with torch.inference_mode():
            y = runner(torch.from_numpy(planes[:height]).float().div(255)[None, None])[0, 0]
    assert whole.shape == (height * 3 * 3 // 2, width * 3)
    np.testing.assert_array_equal(tiled, whole)  # tiles with the receptive radius: the same frame
    want_y = (y * 255 + 0.5).clamp(16, 235.5).to(torch.uint8).numpy()
    np.testing.assert_array_equal(whole[: height * 3], want_y)
    chroma = torch.from_numpy(planes[height:]).reshape(1, 2, height // 2, width // 2).float()
    want_c = (bicubic_upscale(chroma, 3) + 0.5).clamp(16, 240.5).to(torch.uint8).numpy()
    np.testing.assert_array_equal(whole[height * 3 :].reshape(2, height * 3 // 2, width * 3 // 2), want_c[0])
    with pytest.raises(ValueError, match="H and W even"):
        upscale_yuv420(planes[:, :-1], 3, runner)


def test_video_upscaler_picks_bf16_where_native_and_keeps_given_settings() -> None:
    from subpixel.upscaling.video import video_upscaler

    net = ESPCN(2, widths=(4,), kernel_sizes=(3, 3)).eval()
    base = Upscaler(net)
    fast = video_upscaler(base)
    native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert (fast.precision, fast.compile) == ("bf16" if native else "fp32", False)  # eager: as fast, no start-up
    assert (base.precision, base.compile) == ("fp32", False)  # the images' upscaler is not changed
    kept = video_upscaler(base, precision="fp32", compile=False)
    assert kept is base


def _uneven(upscaler: Upscaler, fail_at: int | None = None) -> Upscaler:
    """``upscaler`` whose network takes 40 ms on every other call (so that frames in flight finish out of
    order) and raises on call ``fail_at``."""
    import threading
    import time

    runner, lock, calls = upscaler.runner, threading.Lock(), [0]

    def uneven(x: torch.Tensor) -> torch.Tensor:
        with lock:
            calls[0] += 1
            call = calls[0]
        if call == fail_at:
            raise RuntimeError("network failed on purpose")
        if call % 2:
            time.sleep(0.04)
        return runner(x)

    upscaler.runner = uneven
    return upscaler


def test_frames_in_flight_are_written_in_order(clip: Path, tmp_path: Path) -> None:
    """Several frames upscaled at once, finishing out of order, give the file of one frame at a time."""
    model = _textured_model(3)
    # one algorithm in every worker thread (process-wide): two runs may otherwise time a different one and round a
    # sample differently, which the encoder then spreads over a block; and fp32, where bf16 convolutions may round
    # a sample one way in one run and the other way in another (seen 1 run in ~10 under load)
    with subpixel.config.override(algorithm="lr_shuffle"):
        one = upscale_video(clip, tmp_path / "one.mp4", _uneven(Upscaler(model, precision="fp32")), threads=1)
        three = upscale_video(clip, tmp_path / "three.mp4", _uneven(Upscaler(model, precision="fp32")), threads=3)
    assert one.frames == three.frames == FRAMES and three.copied_streams == ("audio",)
    frames_one, pts_one, _ = _decode(tmp_path / "one.mp4")
    frames_three, pts_three, _ = _decode(tmp_path / "three.mp4")
    assert pts_three == pts_one
    for a, b in zip(frames_one, frames_three):
        np.testing.assert_array_equal(a, b)
    assert _audio_packets(tmp_path / "three.mp4") == _audio_packets(clip)


def test_a_failing_frame_stops_the_video_and_leaves_nothing(clip: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="network failed on purpose"):
        upscale_video(clip, target, _uneven(Upscaler(_textured_model(3)), fail_at=4), threads=2)
    assert list(tmp_path.iterdir()) == []  # no output, no temporary


def test_cli_shows_one_rate_and_ends_with_frames_time_and_rate(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    weights = tmp_path / "w.safetensors"
    save(_textured_model(1), weights)
    assert main(["upscale", str(clip), "--weights", str(weights), "-o", str(tmp_path / "out.mp4")]) == 0
    err = capsys.readouterr().err
    assert "fps=" not in err  # the bar's own rate is the only one (no second, differently measured rate)
    summary = re.search(r"(\d+) frames 32×24 -> 64×48 in ([\d.]+) s \(([\d.]+) frames per second end to end\)", err)
    assert summary is not None, err
    frames, seconds, rate = int(summary[1]), float(summary[2]), float(summary[3])
    assert frames == FRAMES and frames / (seconds + 0.05) <= rate + 0.05  # seconds are rounded to 0.1
    assert seconds <= 0.05 or rate - 0.05 <= frames / (seconds - 0.05)


def test_cli_preset_and_crf_reach_the_encoder(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--preset`` and ``--crf`` are the encoder's options; a lower CRF gives a larger file, values out of range
    are usage errors."""
    import subpixel.upscaling.video as video

    seen: list[tuple[str, int, str]] = []
    real = video._encoder_options

    def spy(encoder: str, crf: int, preset: str) -> dict[str, str]:
        seen.append((encoder, crf, preset))
        return real(encoder, crf, preset)

    monkeypatch.setattr(video, "_encoder_options", spy)
    weights = tmp_path / "w.safetensors"
    save(_textured_model(1), weights)
    sizes = {}
    for crf in (10, 40):
        out = tmp_path / f"crf{crf}.mp4"
        argv = ["upscale", str(clip), "--weights", str(weights), "-o", str(out), "--quiet"]
        assert main([*argv, "--preset", "ultrafast", "--crf", str(crf)]) == 0
        sizes[crf] = out.stat().st_size
    assert [(c, p) for _, c, p in seen] == [(10, "ultrafast"), (40, "ultrafast")]
    assert sizes[10] > sizes[40]
    for bad in (["--crf", "52"], ["--preset", "quick"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["upscale", str(clip), "--weights", str(weights), *bad])
        assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
