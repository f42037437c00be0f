"""`subpixel upscale` on files and folders: outputs, formats, --force, corrupt inputs, summary and exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from subpixel.cli import main
from subpixel.cli.upscale import collect_jobs
from subpixel.imageio import load_image, write_image
from subpixel.sr.models import ESPCN, save


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny_x2.safetensors"
    save(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)), path)
    return path


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
    assert main(base) == 1  # exists: not overwritten
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
    missing = tmp_path / "c.png"  # an image name: kept, so that reading it reports "file not found"
    jobs, problems = collect_jobs([a, b, missing, tmp_path / "d"], tmp_path / "out", 3, "jpg")
    assert jobs == [
        (a, tmp_path / "out" / "a.jpg"),
        (b, tmp_path / "out" / "b.jpg"),
        (missing, tmp_path / "out" / "c.jpg"),
    ]
    assert problems == [f"{tmp_path / 'd'}: no such file or folder"]
    assert collect_jobs([a], tmp_path / "single.png", 2, None)[0] == [(a, tmp_path / "single.png")]
    assert collect_jobs([a], None, 4, None)[0] == [(a, tmp_path / "a_x4.png")]
