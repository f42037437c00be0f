"""`subpixel upscale` on files and folders: outputs, formats, --force, corrupt inputs, summary and exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from subpixel.cli import main
from subpixel.cli.upscale import collect_jobs
from subpixel.imageio import load_image, write_image


def _image(path: Path, h: int = 6, w: int = 8, c: int = 3) -> Path:
    write_image(path, np.random.default_rng(0).random((h, w, c), dtype=np.float32))
    return path


def test_batch_goes_on_past_bad_inputs_and_summarises(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _image(tmp_path / "good.png")
    also_good = _image(tmp_path / "gray.bmp", c=1)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:70])
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("hello")
    out = tmp_path / "out"
    args = [str(p) for p in (good, truncated, not_image, also_good, tmp_path / "missing.png")]
    code = main(["upscale", *args, "--scale", "2", "--weights", str(weights), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["good.png", "gray.bmp"]
    assert load_image(out / "good.png").width == 16 and load_image(out / "gray.bmp").mode == "L"
    assert "2 of 5 inputs upscaled, 3 failed" in err
    for name in ("truncated.png", "notes.jpg", "missing.png"):
        assert name in err.split("failed:")[1]
    assert "truncated" in err


def test_single_file_default_name_and_force(tmp_path: Path, weights: Path) -> None:
    source = _image(tmp_path / "photo.png")
    base = ["upscale", str(source), "--scale", "2", "--weights", str(weights), "--quiet"]
    assert main(base) == 0
    target = tmp_path / "photo_x2.png"
    first = target.read_bytes()
    target.write_bytes(b"keep me")
    assert main(base) == 2  # exists: not overwritten, nothing done
    assert target.read_bytes() == b"keep me"
    assert main([*base, "--force"]) == 0
    assert target.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "photo.png",
        "photo_x2.png",
    ]  # no temporary files left


def test_folder_in_folder_out_with_format(tmp_path: Path, weights: Path) -> None:
    src = tmp_path / "shots"
    (src / "sub").mkdir(parents=True)
    _image(src / "a.png")
    _image(src / "sub" / "b.jpg")
    (src / "readme.txt").write_text("not an image")
    out = tmp_path / "shots_x2"
    code = main(
        ["upscale", str(src), "--scale", "2", "--weights", str(weights), "-o", str(out), "--format", "webp"]
    )
    assert code == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.*")) == ["a.webp", "sub/b.webp"]
    assert load_image(out / "sub" / "b.webp").format == "WEBP"


def test_tile_and_max_memory_give_the_same_file(tmp_path: Path, weights: Path) -> None:
    source = _image(tmp_path / "big.png", h=40, w=30)
    common = ["upscale", str(source), "--scale", "2", "--weights", str(weights), "--quiet"]
    assert main([*common, "-o", str(tmp_path / "a.png"), "--tile", "7"]) == 0
    assert main([*common, "-o", str(tmp_path / "b.png"), "--max-memory", "2G"]) == 0
    np.testing.assert_array_equal(
        load_image(tmp_path / "a.png").pixels, load_image(tmp_path / "b.png").pixels
    )


def test_usage_errors(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _image(tmp_path / "x.png")
    assert main(["upscale", str(source), "--scale", "3", "--weights", str(weights), "--quiet"]) == 2
    assert "×2 model, but --scale is 3" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "nothing"), "--scale", "2", "--weights", str(weights)]) == 2
    assert "nothing: no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["upscale", str(source), "--scale", "5"])
    with pytest.raises(SystemExit):
        main(["upscale", str(source), "--scale", "2", "--max-memory", "lots"])
    corrupt = tmp_path / "w.safetensors"
    corrupt.write_bytes(b"garbage")
    (tmp_path / "w.json").write_text((weights.with_suffix(".json")).read_text())
    assert main(["upscale", str(source), "--scale", "2", "--weights", str(corrupt), "--quiet"]) == 2


def test_collect_jobs(tmp_path: Path) -> None:
    a = _image(tmp_path / "a.png")
    b = _image(tmp_path / "b.tif")
    missing = tmp_path / "c.png"  # a problem, not a job: nothing is created for it
    jobs, problems = collect_jobs([a, b, missing, tmp_path / "d"], tmp_path / "out", 3, "jpg")
    assert jobs == [(a, tmp_path / "out" / "a.jpg"), (b, tmp_path / "out" / "b.jpg")]
    assert problems == [f"{missing}: no such file or folder", f"{tmp_path / 'd'}: no such file or folder"]
    assert collect_jobs([a], tmp_path / "single.png", 2, None)[0] == [(a, tmp_path / "single.png")]
    assert collect_jobs([a], None, 4, None)[0] == [(a, tmp_path / "a_x4.png")]


# ------------------------------------------------------------------------------------------ lost or eaten results


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["upscale", *map(str, args), "--quiet"])
    return code, capsys.readouterr().err


def test_name_collisions_are_refused_before_any_work(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _image(tmp_path / "a.png"), _image(tmp_path / "a.jpg")
    out = tmp_path / "out"
    code, err = _run(capsys, a, b, "--weights", weights, "-o", out, "--format", "png", "--force")
    assert code == 2
    assert str(a) in err and str(b) in err and "both be written to" in err
    assert not out.exists()
    # an output that would replace another input
    c = _image(tmp_path / "c.png")
    c_x2 = _image(tmp_path / "c_x2.png")
    before = c_x2.read_bytes()
    code, err = _run(capsys, c, c_x2, "--weights", weights)
    assert code == 2 and "would be written over the input" in err and str(c_x2) in err
    assert c_x2.read_bytes() == before
    code, err = _run(capsys, a, c, "--weights", weights, "-o", c_x2)  # two inputs, -o an existing file
    assert code == 2 and "is a file" in err and c_x2.read_bytes() == before


def test_reruns_do_not_upscale_their_own_outputs(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "f1"
    folder.mkdir()
    _image(folder / "x.png")
    for _ in range(2):
        assert _run(capsys, folder, "--weights", weights, "--force")[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == ["x.png", "x_x2.png"]
    for _ in range(2):
        assert _run(capsys, folder, "--weights", weights, "-o", folder / "up", "--force")[0] == 0
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png")) == [
        "up/x.png",
        "x.png",
        "x_x2.png",
    ]


def test_a_missing_input_creates_nothing(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _image(tmp_path / "two.png")
    code, err = _run(capsys, tmp_path / "tw0.png", "--weights", weights, "-o", tmp_path / "result.png")
    assert code == 2 and "tw0.png: no such file or folder" in err
    assert not (tmp_path / "result.png").exists()
    assert _run(capsys, tmp_path / "two.png", "--weights", weights, "-o", tmp_path / "result.png")[0] == 0
    assert (tmp_path / "result.png").is_file()
    # -o without an extension, for one input: a folder to put it in
    assert _run(capsys, tmp_path / "two.png", "--weights", weights, "-o", tmp_path / "up")[0] == 0
    assert (tmp_path / "up" / "two.png").is_file()


def test_orphaned_temporaries_are_cleaned_and_never_read(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    good = _image(src / "a.png")
    # what SIGKILL left: truncated images under temporary names, in the input and the output folder
    for folder in (src, out):
        (folder / ".a.999999999-0123456789ab.tmp.png").write_bytes(good.read_bytes()[:70])
        (folder / ".b.1f2e3d4c5b6a.tmp.png").write_bytes(good.read_bytes()[:70])
    code, err = _run(capsys, src, "--weights", weights, "-o", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


def test_skip_existing_resumes_a_batch_and_messages_name_no_python(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _image(src / name)
    assert _run(capsys, src, "--weights", weights, "-o", out)[0] == 0
    (out / "c.png").unlink()  # the batch was interrupted before c
    code, err = _run(capsys, src, "--weights", weights, "-o", out)
    assert code == 2 and "--skip-existing" in err and "force=True" not in err
    assert not (out / "c.png").exists()  # nothing done
    (out / "c.png").unlink(missing_ok=True)
    code = main(["upscale", str(src), "--weights", str(weights), "-o", str(out), "--skip-existing"])
    err = capsys.readouterr().err
    assert code == 0 and "1 of 3 inputs upscaled, 2 skipped" in err
    assert (out / "c.png").is_file()
    with pytest.raises(SystemExit):  # one or the other
        main(["upscale", str(src), "--weights", str(weights), "--force", "--skip-existing"])


def test_weights_define_the_scale(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _image(tmp_path / "x.png")
    code, err = _run(capsys, source, "--weights", weights)  # no --scale: the ×2 of the weights
    assert code == 0, err
    assert load_image(tmp_path / "x_x2.png").width == 16
    code, err = _run(capsys, source, "-o", tmp_path / "y.png")  # bundled weights: which scale?
    assert code == 2 and "--scale is needed" in err


def test_disk_full_stops_the_batch_with_one_line_naming_the_file(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from subpixel import _atomic

    src = tmp_path / "src"
    src.mkdir()
    _image(src / "a.png")
    _image(src / "b.png")
    real_open = os.open

    def full(path: str, flags: int, mode: int = 0o777) -> int:
        if ".tmp" in os.fspath(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(_atomic.os, "open", full)
    code, err = _run(capsys, src, "--weights", weights, "-o", tmp_path / "out")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert str(tmp_path / "out" / "a.png") in lines[0] and "No space left" in lines[0]
    assert not [p for p in (tmp_path / "out").iterdir()]


def test_interrupt_is_one_line_and_leaves_no_temporary(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from subpixel.upscaling import image

    source = _image(tmp_path / "x.png")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(image, "write_image", interrupted)
    code, err = _run(capsys, source, "--weights", weights)
    assert code == 130 and err.strip() == "subpixel upscale: interrupted"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


@pytest.mark.slow  # two interpreters (about 10 s); the orphan case runs by default above
def test_sigkill_mid_batch_then_rerun(tmp_path: Path, weights: Path) -> None:
    """Killed mid-batch: no partial file under a final name; the rerun removes the orphan and finishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        _image(src / f"p{i}.png", h=160, w=200)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-m",
        "subpixel.cli",
        "upscale",
        str(src),
        "--weights",
        str(weights),
        "-o",
        str(out),
    ]
    proc = subprocess.Popen([*command, "--quiet"], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.is_dir() and any(out.iterdir()):  # a temporary or a first result: mid-batch
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for path in out.iterdir():
        if not path.name.startswith("."):
            assert load_image(path).width == 400  # complete, or not there at all
    rerun = subprocess.run([*command, "--skip-existing", "--quiet"], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.png" for i in range(4)]
