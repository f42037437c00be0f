"""The study's families, width solver and pipeline (a tiny synthetic run; the real --quick run is slow-marked)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from subpixel.cli.study import add_arguments, run
from subpixel.sr.models import ESPCN, pretrained
from subpixel.sr.rep_blocks import RepConv2d
from subpixel.study import BicubicUpsample2d
from subpixel.study.experiment import StudyConfig, run_study
from subpixel.study.families import (
    FAMILIES,
    REP_FAMILIES,
    FamilySpec,
    build,
    deploy,
    macs_per_hr_pixel,
    solve_widths,
)


def _hand_macs(spec: FamilySpec) -> float:
    """MACs per HR pixel on a 1080p frame, counted by hand."""
    r, a, b = spec.scale, spec.w1, spec.w2
    h, w = 1080 // r, 1920 // r
    bicubic = (4 * r - r % 2) ** 2 * (h + 4) * (w + 4) / (1080 * 1920)  # ConvTranspose on the padded LR grid
    if spec.family == "hr":
        return bicubic + 81 * a + a * b + 25 * b
    if spec.family == "rep":  # 3×3 convs 1 → a → a → b → b → r², all in LR space
        return 9 * (a + a * a + a * b + b * b + b * r * r) / (r * r)
    if spec.family == "hr-rep":  # the same five 3×3 convs in HR space, to 1 channel
        return bicubic + 9 * (a + a * a + a * b + b * b + b)
    return (25 * a + 9 * a * b + 9 * b * r * r) / (r * r)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_macs_per_pixel_by_hand(family: str, scale: int) -> None:
    spec = FamilySpec(family, scale, 12, 7)
    assert macs_per_hr_pixel(spec) == pytest.approx(_hand_macs(spec), rel=1e-12)
    x = torch.rand(1, 1, 5, 6)
    assert build(spec)(x).shape == (1, 1, 5 * scale, 6 * scale)


@pytest.mark.parametrize("multiple", [0.25, 1.0, 4.0])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_equal_budgets_within_5_percent(multiple: float, scale: int) -> None:
    budget = multiple * macs_per_hr_pixel(FamilySpec("lr", scale, 64, 32))
    for family in FAMILIES:
        if (family, scale, multiple) == ("hr-rep", 4, 0.25):
            # five HR convolutions of width 3 or 4 (313 or 412 MACs) straddle 385 ± 5%: refused, clearly
            with pytest.raises(ValueError, match=r"closest: hr-rep-3-4, 412\.4"):
                solve_widths(family, scale, budget)
            continue
        spec, macs = solve_widths(family, scale, budget)
        assert abs(macs / budget - 1) <= 0.05
        assert macs == pytest.approx(_hand_macs(spec), rel=1e-12)


def test_espcn_budget_is_espcn() -> None:
    spec, _ = solve_widths("lr", 3, macs_per_hr_pixel(FamilySpec("lr", 3, 64, 32)))
    assert (spec.w1, spec.w2) == (64, 32)


@pytest.mark.parametrize("family", REP_FAMILIES)
def test_rep_families_deploy_exactly(family: str) -> None:
    """The collapsed network (counted, timed, scored, stored) computes the trained one's function, borders included."""
    torch.manual_seed(0)
    model = build(FamilySpec(family, 3, 5, 4), dtype=torch.float64)
    with (
        torch.no_grad()
    ):  # move every parameter away from its init (edge scales and inner biases start near 0)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    deployed = deploy(model)
    assert any(isinstance(m, RepConv2d) for m in model.modules())
    assert not any(isinstance(m, RepConv2d) for m in deployed.modules())
    x = torch.rand(2, 1, 7, 6, dtype=torch.float64)
    with torch.no_grad():
        assert (deployed(x) - model(x)).abs().max() < 1e-10


def test_rep_family_at_espcn_budget_is_the_shipped_network() -> None:
    spec, _ = solve_widths("rep", 3, macs_per_hr_pixel(FamilySpec("lr", 3, 64, 32)))
    deployed = deploy(build(spec))
    assert isinstance(deployed, ESPCN) and deployed.config == pretrained(3).config


def test_deconv_and_lr_families_compute_the_same_function() -> None:
    """The FSRCNN-like ConvTranspose(k=3r, stride r, padding r) is the ESPCN-like layer: same init draw, same output."""
    torch.manual_seed(3)
    deconv = build(FamilySpec("deconv", 3, 8, 4))
    torch.manual_seed(3)
    lr = build(FamilySpec("lr", 3, 8, 4))
    x = torch.rand(2, 1, 9, 7)
    assert torch.allclose(deconv(x), lr(x), atol=1e-6)


def test_bicubic_resampler_equals_the_protocol_imresize() -> None:
    """BicubicUpsample2d (edge replication) is MATLAB-style imresize upscaling, as the protocol implements it."""
    from subpixel.sr.protocol import imresize

    x = torch.rand(1, 1, 7, 9, dtype=torch.float64)
    for r in (2, 3, 4):
        ref = imresize(x[0, 0].numpy(), output_shape=(7 * r, 9 * r))
        ours = BicubicUpsample2d(r, dtype=torch.float64)(x)[0, 0].numpy()
        assert np.abs(ours - ref).max() <= 1e-12


def test_errors() -> None:
    with pytest.raises(ValueError, match="family"):
        build(FamilySpec("srgan", 3, 4, 2))
    with pytest.raises(ValueError, match="budget"):
        solve_widths("lr", 3, -1.0)
    with pytest.raises(ValueError, match="within"):
        solve_widths("hr", 3, 5.0)  # below the fixed resampler's own cost
    with pytest.raises(ValueError, match="budget"):
        StudyConfig(train=["."], test=["."], budget="SRCNN")
    with pytest.raises(ValueError, match="families"):
        StudyConfig(train=["."], test=["."], families=("cnn",))
    with pytest.raises(ValueError, match="frame"):
        StudyConfig(train=["."], test=["."], frame=(100, 100))


def test_pipeline_on_synthetic_images(tmp_path: Path, write_synthetic_images, single_thread) -> None:
    write_synthetic_images(tmp_path / "train", 2, (60, 63), 0)
    write_synthetic_images(tmp_path / "test", 2, (30, 36), 1)
    config = StudyConfig(
        train=[str(tmp_path / "train")],
        test=[str(tmp_path / "test")],
        out=str(tmp_path / "out"),
        multiples=(0.25,),
        families=tuple(FAMILIES),
        steps=4,
        batch_size=2,
        patch_size=8,
        frame=(36, 48),
        timing_rounds=1,
        threads=1,
        progress=False,
        seeds=(0,),
    )
    results = run_study(config, log=lambda _: None)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["complete"] and len(saved["runs"]) == len(FAMILIES)
    assert {r["family"] for r in saved["runs"]} == set(FAMILIES)
    assert all(abs(r["deviation"]) <= 0.05 for r in saved["runs"])
    assert all(np.isfinite(r["scores"]["test"]["psnr"]) for r in saved["runs"])
    assert set(saved["timing"]["ms"]) == {r["network"] for r in saved["runs"]}
    assert saved["identity"][0]["max_abs_error"] < 1e-10
    assert results["runs"][0]["network"] == saved["runs"][0]["network"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "bicubic" in table and saved["runs"][0]["network"] in table
    for name in ("psnr_vs_macs.png", "psnr_vs_time.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000


def test_cli_reports_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--data", str(tmp_path / "nowhere"), "--quick"])) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_runs_the_rep_families(tmp_path: Path, write_synthetic_images) -> None:
    """``subpixel study --families rep hr-rep``: the shipped network and its HR-space counterpart, collapsed."""
    from subpixel.cli import main

    for name in ("T91", "Set5"):
        write_synthetic_images(tmp_path / "data" / name, 2, (48, 48), 0)
    out = tmp_path / "out"
    argv = [
        "study",
        "--quick",
        "--families",
        "rep",
        "hr-rep",
        "--multiples",
        "0.25",
        "--steps",
        "2",
        "--patch-size",
        "8",
    ]
    argv += ["--train", str(tmp_path / "data" / "T91"), "--test", str(tmp_path / "data" / "Set5")]
    assert main([*argv, "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert {r["network"] for r in saved["runs"]} == {"rep-13-13", "hr-rep-5-4"}
    assert "rep-13-13" in (out / "results.md").read_text()


@pytest.mark.slow
def test_quick_study_on_the_standard_sets(shared_sr_data: Path, tmp_path: Path) -> None:
    """`subpixel study --quick`: the whole pipeline on the real data (about a minute)."""
    from subpixel.cli import main

    out = tmp_path / "quick"
    assert main(["study", "--quick", "--data", str(shared_sr_data), "--out", str(out), "--no-progress"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["complete"] and len(saved["runs"]) == 6
    assert set(saved["baseline"]) == {"Set5", "Set14"}
    assert 30.0 < saved["baseline"]["Set5"]["psnr"] < 31.0  # bicubic ×3 on Set5: 30.39 dB published
