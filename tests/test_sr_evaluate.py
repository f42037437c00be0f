"""``subpixel evaluate`` and :func:`subpixel.sr.evaluate.evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from subpixel import cli
from subpixel.imageio import write_image
from subpixel.sr.evaluate import evaluate, format_table, save_figure
from subpixel.sr.protocol import bicubic_upscaler, imresize, run_protocol


class BicubicModel(nn.Module):
    """A parameter-light stand-in for an SR model: MATLAB bicubic on (N, C, h, w), in float64."""

    def __init__(self, scale: int, channels: str) -> None:
        super().__init__()
        self.scale = scale
        self.channels = channels
        self.anchor = nn.Parameter(torch.zeros((), dtype=torch.float64))  # sets the dtype the wrapper feeds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return imresize(x, self.scale) + self.anchor


class WrongShape(BicubicModel):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    """A plain folder with one colour and one grayscale image."""
    folder = tmp_path / "small"
    folder.mkdir()
    yy, xx = np.mgrid[0:45, 0:51]
    wave = 0.5 + 0.35 * np.sin(xx / 4.0)[..., None] * np.cos(yy / 6.0)[..., None] * np.array([1.0, 0.7, 0.4])
    wave = wave + np.random.default_rng(0).normal(
        0, 0.04, wave.shape
    )  # texture: PSNR far above rounding noise
    write_image(folder / "colour.png", wave)
    write_image(folder / "gray.png", wave[..., :1])
    return folder


def test_rgb_model_scores_exactly_as_the_bicubic_baseline(small_set: Path) -> None:
    result = evaluate(BicubicModel(3, "rgb"), small_set, 3, progress=False)
    reference = run_protocol(bicubic_upscaler, small_set, 3)
    assert [i.name for i in result.images] == ["colour", "gray"]
    for ours, ref in zip(result.images, reference.images, strict=True):
        assert ours.model.psnr == ref.psnr and ours.model.ssim == ref.ssim
        assert ours.bicubic.psnr == ref.psnr and ours.bicubic.ssim == ref.ssim
    assert result.mean_psnr == pytest.approx(reference.mean_psnr)


def test_y_model_sees_y_over_255(small_set: Path) -> None:
    # bicubic on the Y plane vs bicubic on RGB then Y: equal up to the clamping and the 8-bit rounding
    result = evaluate(BicubicModel(3, "y"), small_set, 3, progress=False, keep_pictures=True)
    for image in result.images:
        assert abs(image.model.psnr - image.bicubic.psnr) < 0.05
        assert abs(image.model.ssim - image.bicubic.ssim) < 1e-3
        assert image.pictures is not None and image.pictures["model"].shape == image.pictures["hr"].shape
    gray = result.images[1]  # grayscale is its own Y, so the two routes are the same computation
    assert gray.model == gray.bicubic
    assert "mean" in format_table(result) and "colour" in format_table(result)


def test_save_figure(small_set: Path, tmp_path: Path) -> None:
    result = evaluate(BicubicModel(2, "y"), small_set, 2, progress=False, keep_pictures=True)
    out = save_figure([result], tmp_path / "fig.png", crop=32)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100
    with pytest.raises(ValueError, match="keep_pictures=True"):
        save_figure([evaluate(bicubic_upscaler, small_set, 2, progress=False)], tmp_path / "no.png")


def test_evaluate_errors(small_set: Path) -> None:
    with pytest.raises(ValueError, match="upscales ×3; it cannot be evaluated at scale 2"):
        evaluate(BicubicModel(3, "y"), small_set, 2, progress=False)
    with pytest.raises(ValueError, match=r"model channels must be 'y' or 'rgb'"):
        evaluate(BicubicModel(2, "ycbcr"), small_set, 2, progress=False)
    with pytest.raises(ValueError, match=r"returned shape \(1, 1, 15, 17\)"):
        evaluate(WrongShape(3, "y"), small_set, 3, progress=False)
    with pytest.raises(ValueError, match="scale must be an integer >= 1"):
        evaluate(bicubic_upscaler, small_set, 0, progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        evaluate(bicubic_upscaler, small_set / "nope", 2, progress=False)


# ------------------------------------------------------------------------------------------------ command line


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    from subpixel.sr.models import ESPCN, save

    return save(ESPCN(3, widths=(8,), kernel_sizes=(3, 3)), tmp_path / "tiny.safetensors")


def test_cli_end_to_end_on_set5(
    shared_sr_data: Path, tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    args = [
        "evaluate",
        "--weights",
        str(tiny_weights),
        "--data",
        str(shared_sr_data / "Set5"),
        "--scale",
        "3",
    ]
    args += ["--json", str(out / "set5.json"), "--figure", str(out / "set5.png"), "--no-progress"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "Set5 ×3" in printed and "butterfly" in printed and "mean" in printed
    document = json.loads((out / "set5.json").read_text())
    (model_entry,) = document["models"]
    (result,) = model_entry["results"]
    assert document["scale"] == 3 and model_entry["channels"] == "y" and model_entry["name"] == "tiny"
    assert [i["name"] for i in result["images"]] == ["baby", "bird", "butterfly", "head", "woman"]
    assert abs(result["mean"]["bicubic_psnr"] - 30.39) <= 0.05  # the published bicubic figure
    assert all(np.isfinite(i["psnr"]) and 0 <= i["ssim"] <= 1 for i in result["images"])
    with Image.open(out / "set5.png") as image:
        assert image.format == "PNG"
    assert sorted(p.name for p in out.iterdir()) == ["set5.json", "set5.png"]  # no temporary files left


def test_cli_default_scale_is_the_weights_scale(
    small_set: Path, tiny_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(["evaluate", "--weights", str(tiny_weights), "--data", str(small_set), "--no-progress"]) == 0
    )
    assert "small ×3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights", "{tmp}/missing.safetensors"], "missing.safetensors': file not found"),
        (["--weights", "{tmp}/corrupt.safetensors"], "corrupt.safetensors"),
        (["--weights", "{weights}", "--scale", "4"], "upscale ×3, not ×4"),
        (["--pretrained"], "--pretrained needs --scale"),
        (["--pretrained", "--scale", "7"], "scale=7"),
        (["--weights", "{weights}", "--figure", "{tmp}/fig.jpg"], "expected a .png file name"),
        (["--weights", "{weights}", "--json", "{tmp}/no/such/dir/out.json"], "does not exist; create it first"),
        (["--weights", "{weights}", "--figure-macs", "{tmp}/macs.svg"], "expected a .png file name"),
        (["--weights", "{weights}", "--model", "espcn"], "needs --pretrained"),
        (["--pretrained", "--scale", "3", "--model", "no-such-model"], "'no-such-model': no bundled weights"),
    ],
)
def test_cli_errors(
    small_set: Path,
    tiny_weights: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00garbage" * 10)
    corrupt.with_suffix(".json").write_text(tiny_weights.with_suffix(".json").read_text())
    extra = [e.format(tmp=tmp_path, weights=tiny_weights) for e in extra]
    assert cli.main(["evaluate", "--data", str(small_set), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("subpixel evaluate: error:") and message in err


def test_cli_rejects_missing_data_and_bad_scale(
    tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["evaluate", "--weights", str(tiny_weights), "--data", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", "--weights", str(tiny_weights), "--data", str(tmp_path), "--scale", "0"])
    assert exc.value.code == 2
    assert "expected an integer >= 1" in capsys.readouterr().err


def test_published_results_table() -> None:
    """One row per (model, scale), Set5 above Set14, and ESPCN's MACs are our ESPCN architecture's."""
    from subpixel.sr.evaluate import PUBLISHED_RESULTS
    from subpixel.sr.models import pretrained

    keys = [(p.model, p.scale) for p in PUBLISHED_RESULTS]
    assert len(keys) == len(set(keys))
    for scale in (2, 3, 4):
        assert {"SRCNN 9-5-5", "FSRCNN (56,12,4)"} <= {m for m, s in keys if s == scale}
    assert all(p.set5 is not None and p.set14 is not None and p.set5 > p.set14 for p in PUBLISHED_RESULTS)
    (espcn,) = [p for p in PUBLISHED_RESULTS if p.model == "ESPCN"]
    assert round(pretrained(espcn.scale, model="espcn").multiply_adds_per_pixel()) == espcn.macs_per_pixel


def test_cli_pretrained_evaluates_every_bundled_model_and_the_standing(
    small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from subpixel.sr.evaluate import PUBLISHED_RESULTS
    from subpixel.sr.models import pretrained_models

    bundled = pretrained_models(3)
    assert "espcn" in bundled
    json_path, figure = tmp_path / "x3.json", tmp_path / "x3_macs.png"
    args = ["evaluate", "--pretrained", "--scale", "3", "--data", str(small_set), "--no-progress"]
    assert cli.main([*args, "--json", str(json_path), "--figure-macs", str(figure)]) == 0
    printed = capsys.readouterr().out
    standing_text = printed[printed.index("Standing at ×3") :]
    document = json.loads(json_path.read_text())
    assert [m["name"] for m in document["models"]] == list(bundled)
    published = [p for p in PUBLISHED_RESULTS if p.scale == 3]
    rows = document["standing"]
    by_macs = [p.model for p in sorted(published, key=lambda p: p.macs_per_pixel)]
    assert [r["name"] for r in rows] == ["bicubic", *bundled, *by_macs]
    for row in rows:
        assert row["name"][:22] in standing_text
    for model, row in zip(document["models"], rows[1 : 1 + len(bundled)], strict=True):
        assert row["psnr"]["small"] == model["results"][0]["mean"]["psnr"]
        assert row["macs_per_pixel"] == model["multiply_adds_per_pixel"] > 0
    assert rows[0]["psnr"]["small"] == document["models"][0]["results"][0]["mean"]["bicubic_psnr"]
    assert all(
        r["psnr"]["small"] is None for r in rows if r["kind"] == "published"
    )  # no figures for this set
    assert not any(Path(i["path"]).is_absolute() for i in document["models"][0]["results"][0]["images"])
    with Image.open(figure) as image:
        assert image.format == "PNG"

    assert cli.main([*args, "--model", "espcn"]) == 0
    printed = capsys.readouterr().out
    assert "espcn (pretrained:espcn_x3)" in printed and printed.count("(pretrained:") == 1


def test_standing_takes_published_figures_for_set5_and_set14(tmp_path: Path) -> None:
    from subpixel.sr.evaluate import (
        PUBLISHED_RESULTS,
        EvaluationResult,
        ImageEvaluation,
        format_standing,
        save_macs_figure,
        standing,
    )
    from subpixel.sr.protocol import Score

    def result(dataset: str, psnr: float) -> EvaluationResult:
        image = ImageEvaluation("a", "a.png", (8, 8), Score(psnr, 0.9), Score(psnr - 2.0, 0.8))
        return EvaluationResult(dataset, dataset, 4, (image,))

    rows = standing({"mine": (700.0, [result("Set5", 31.0), result("Set14", 28.0)])}, 4)
    by_name = {r.name: r for r in rows}
    assert by_name["bicubic"].psnr == {"Set5": 29.0, "Set14": 26.0}
    for p in (p for p in PUBLISHED_RESULTS if p.scale == 4):
        assert by_name[p.model].psnr == {"Set5": p.set5, "Set14": p.set14}
        assert by_name[p.model].macs_per_pixel == p.macs_per_pixel
    assert "ESPCN" not in by_name  # its authors published ×3 only
    table = format_standing(rows, 4)
    assert "mine" in table and "31.00" in table and "FSRCNN" in table
    with pytest.raises(ValueError, match="not ×3"):
        standing({"mine": (700.0, [result("Set5", 31.0)])}, 3)
    assert save_macs_figure(rows, tmp_path / "m.png", 4).is_file()
