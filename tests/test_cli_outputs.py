"""Nothing lost, nothing surprising: what every command that writes refuses, and the messages it gives.

Each command that writes follows one rule: never over an input; over an existing file only with ``--force``;
atomically. A rerun never takes earlier outputs for inputs, existing outputs are not failures, and each message
says, in the user's words, what is wrong and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from subpixel.cli import main
from subpixel.imageio import load_image, write_image


def _image(path: Path, h: int = 6, w: int = 8, c: int = 3, seed: int = 0) -> Path:
    write_image(path, np.random.default_rng(seed).random((h, w, c), dtype=np.float32))
    return path


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main([*map(str, args)])
    return code, capsys.readouterr().err


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# --- 1. a video is never written over itself -----------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "symlink"])
def test_a_video_upscaled_onto_itself_is_refused_even_with_force(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    av = pytest.importorskip("av")
    from test_upscale_video import _make_clip

    assert av is not None
    clip = tmp_path / "sv.mp4"
    _make_clip(clip)
    before = clip.read_bytes()
    target = clip
    if how == "symlink":
        target = tmp_path / "link.mp4"
        target.symlink_to(clip)
    code, err = _run(capsys, "upscale", clip, "--weights", weights, "-o", target, "--force", "--quiet")
    assert code == 2, err
    assert "never inputs" in err and len(err.strip().splitlines()) == 1, err
    assert clip.read_bytes() == before


def test_the_video_function_refuses_its_input_as_output(tmp_path: Path, weights: Path) -> None:
    pytest.importorskip("av")
    from subpixel.errors import SubpixelError
    from subpixel.sr import load
    from subpixel.upscaling.image import Upscaler
    from subpixel.upscaling.video import upscale_video, video_upscaler
    from test_upscale_video import _make_clip

    clip = tmp_path / "sv.mp4"
    _make_clip(clip)
    before = clip.read_bytes()
    with pytest.raises(SubpixelError, match="over its input"):
        upscale_video(clip, clip, video_upscaler(Upscaler(load(weights))), force=True)
    assert clip.read_bytes() == before


# --- 2. demo and evaluate: never over an input, over an existing file only with --force ----------------------


def test_demo_never_writes_over_its_input_image(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    mine = _image(tmp_path / "mine.png", 24, 24)
    before = mine.read_bytes()
    for extra in ([], ["--force"]):
        code, err = _run(capsys, "demo", "--weights", weights, "--image", mine, "-o", mine, *extra)
        assert code == 2 and "is an input" in err and len(err.strip().splitlines()) == 1, err
        assert mine.read_bytes() == before


def test_demo_and_evaluate_keep_existing_files_without_force(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    photo = _image(tmp_path / "photo.png", 24, 24)
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"keep me")
    code, err = _run(capsys, "demo", "--weights", weights, "--image", photo, "-o", existing)
    assert code == 2 and "--force" in err and existing.read_bytes() == b"keep me", err
    code, err = _run(capsys, "demo", "--weights", weights, "--image", photo, "-o", existing, "--force")
    assert code == 0, err
    assert load_image(existing).format == "PNG"

    data = tmp_path / "set"
    data.mkdir()
    _image(data / "a.png", 24, 24)
    record = tmp_path / "existing.json"
    record.write_text("{}")
    for option in ("--json", "--figure", "--figure-macs"):
        target = record if option == "--json" else existing
        before = target.read_bytes()
        code, err = _run(
            capsys, "evaluate", "--weights", weights, "--data", data, option, target, "--no-progress"
        )
        assert code == 2 and f"{option} {target} exists; pass --force" in err, err
        assert target.read_bytes() == before
    # never over an input, --force or not: an image of the test set, the weights
    for target in (data / "a.png", weights):
        before = target.read_bytes()
        code, err = _run(
            capsys,
            "evaluate",
            "--weights",
            weights,
            "--data",
            data,
            "--json",
            target,
            "--force",
            "--no-progress",
        )
        assert code == 2 and "is an input" in err, err
        assert target.read_bytes() == before
    code, err = _run(
        capsys, "evaluate", "--weights", weights, "--data", data, "--json", record, "--force", "--no-progress"
    )
    assert code == 0, err
    assert record.read_text().startswith("{\n")


# --- 3. reruns at another scale or format never take earlier outputs for inputs -------------------------------


def test_reruns_at_other_scales_and_formats_leave_earlier_outputs_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    for i in range(3):
        _image(folder / f"img{i}.png", seed=i)
    originals = _tree(folder)
    runs = [("2", None), ("3", None), ("4", "webp"), ("2", "jpg")]
    for scale, fmt in runs:
        extra = ["--format", fmt] if fmt else []
        code, err = _run(capsys, "upscale", folder, "--scale", scale, "--quiet", "--force", *extra)
        assert code == 0, err
    expected = set(originals)
    for scale, fmt in runs:
        ext = {"webp": ".webp", "jpg": ".jpg", None: ".png"}[fmt]
        expected |= {f"img{i}_x{scale}{ext}" for i in range(3)}
    assert set(_tree(folder)) == expected  # no img0_x2_x3.png and the like
    code, err = _run(capsys, "upscale", folder, "--scale", "3", "--force")
    assert code == 0 and "3 of 3 inputs upscaled" in err, err


def test_an_output_named_file_is_still_upscaled_when_named(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rule leaves earlier outputs out of a folder's walk; a file given by its own name is always an input."""
    _image(tmp_path / "a.png")
    shot = _image(tmp_path / "a_x2.png")
    code, err = _run(capsys, "upscale", shot, "--weights", weights, "--quiet")
    assert code == 0, err
    assert (tmp_path / "a_x2_x2.png").is_file()


# --- 4. existing outputs are not failures ----------------------------------------------------------------------


def test_a_rerun_without_flags_says_how_many_outputs_exist_once(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(3):
        _image(src / f"{i}.png", seed=i)
    assert _run(capsys, "upscale", src, "--weights", weights, "-o", out, "--quiet")[0] == 0
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    code, err = _run(capsys, "upscale", src, "--weights", weights, "-o", out)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "3 of 3 outputs exist already" in lines[0]
    assert "--skip-existing" in lines[0] and "--force" in lines[0] and "failed" not in lines[0]
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    code, err = _run(capsys, "upscale", src, "--weights", weights, "-o", out, "--skip-existing")
    assert code == 0 and "0 of 3 inputs upscaled, 3 skipped (outputs exist)" in err, err


def test_each_failure_is_printed_once(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _image(src / "good.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    code, err = _run(capsys, "upscale", src, "--weights", weights, "-o", tmp_path / "out", "--quiet")
    assert code == 1, err
    assert err.count("not an image PIL can identify") == 1, err
    assert "1 of 2 inputs upscaled, 1 failed" in err and str(src / "broken.png") in err.splitlines()[-1]


# --- 5. several inputs need a folder ---------------------------------------------------------------------------


@pytest.mark.parametrize("as_folder", [False, True])
def test_several_inputs_with_a_file_name_for_o_are_refused(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str], as_folder: bool
) -> None:
    a, b = _image(tmp_path / "a.png"), _image(tmp_path / "b.png")
    inputs = [tmp_path] if as_folder else [a, b]
    out = tmp_path / "two.png"
    code, err = _run(capsys, "upscale", *inputs, "--weights", weights, "-o", out, "--quiet")
    assert code == 2 and "must be a folder" in err and "without the .png extension" in err, err
    assert not out.exists()


# --- 6. messages in the user's words ------------------------------------------------------------------------------


def test_a_video_with_an_image_output_name_is_explained(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("av")
    from test_upscale_video import _make_clip

    clip = tmp_path / "clip.mp4"
    _make_clip(clip)
    code, err = _run(capsys, "upscale", clip, "--weights", weights, "-o", tmp_path / "out.png", "--quiet")
    assert code == 2 and "is a video" in err and "video extension" in err, err
    assert "image2" not in err and "codec" not in err
    code, err = _run(
        capsys, "upscale", _image(tmp_path / "p.png"), "--weights", weights, "-o", tmp_path / "v.mp4"
    )
    assert code == 2 and "is an image" in err and "image extension" in err, err
    assert not (tmp_path / "out.png").exists() and not (tmp_path / "v.mp4").exists()


def test_an_unsupported_input_type_is_named(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    gif = tmp_path / "g.gif"
    Image.new("RGB", (8, 6), (10, 200, 30)).save(gif)
    code, err = _run(capsys, "upscale", gif, "--weights", weights, "--quiet")
    assert code == 2, err
    assert ".gif files are not upscaled" in err and ".png" in err and "output format" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.gif"]


def test_an_output_path_through_a_file_is_explained(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = _image(tmp_path / "photo.png")
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    code, err = _run(capsys, "upscale", photo, "--weights", weights, "-o", afile / "out.png", "--quiet")
    assert code == 2 and f"{afile} is a file, not a folder" in err and "File exists" not in err, err
    code, err = _run(capsys, "upscale", photo, photo.with_name("x.png"), "--weights", weights, "-o", afile)
    assert code == 2 and "is a file" in err and "File exists" not in err, err


def test_train_out_that_is_a_file_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_synthetic_images
) -> None:
    write_synthetic_images(tmp_path / "data", 2, (64, 64), 0)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    code, err = _run(capsys, "train", "--data", tmp_path / "data", "--out", afile, "--steps", "1")
    assert code == 2 and f"--out {afile} is a file" in err and "Errno" not in err, err
    assert afile.read_text() == "mine"


def test_evaluate_data_that_does_not_exist_is_explained(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(capsys, "evaluate", "--weights", weights, "--data", tmp_path / "nodir")
    assert code == 2 and "no such folder" in err and "holds no image files" not in err, err


# --- the commands' messages never point at files an installed package lacks ----------------------------------


def test_help_names_no_file_of_the_source_tree(capsys: pytest.CaptureFixture[str]) -> None:
    from subpixel.cli import COMMANDS

    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        out = capsys.readouterr().out
        assert "benchmarks/" not in out and "docs/" not in out, (name, out)


def test_python_dash_m_subpixel_runs_the_command_line() -> None:
    import subprocess
    import sys

    import subpixel

    env = dict(os.environ, PYTHONPATH=str(Path(subpixel.__file__).resolve().parent.parent))
    proc = subprocess.run(
        [sys.executable, "-m", "subpixel", "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == subpixel.__version__, proc.stderr


def test_upscale_help_documents_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["upscale", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0" in text and "2 nothing done" in text and "--skip-existing" in text
