"""`subpixel demo`: runs with no arguments (bundled weights), prints Y-PSNR of bicubic and ESPCN, writes a PNG."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from subpixel.cli import main
from subpixel.imageio import load_image, write_image
from subpixel.sr.models import ESPCN, pretrained_scales, save


def _scores(out: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2)) for m in re.finditer(r"^(bicubic|ESPCN ×\d)\s+([0-9.]+)", out, re.M)
    }


def test_demo_with_given_weights_and_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)), weights)
    yy, xx = np.mgrid[0:48, 0:40] / 40
    image = tmp_path / "pic.png"
    write_image(image, np.stack([np.sin(5 * xx) ** 2, yy, xx * yy], -1).astype(np.float32))
    figure = tmp_path / "cmp.png"
    code = main(["demo", "--scale", "2", "--weights", str(weights), "--image", str(image), "-o", str(figure)])
    out = capsys.readouterr().out
    assert code == 0
    assert set(_scores(out)) == {"bicubic", "ESPCN ×2"}
    assert f"comparison: {figure.resolve()}" in out
    assert load_image(figure).format == "PNG"
    assert main(["demo", "--scale", "3", "--weights", str(weights), "-o", str(tmp_path / "x.png")]) == 2
    # the weights know their scale (for the demo too)
    assert (
        main(["demo", "--weights", str(weights), "--image", str(image), "-o", str(tmp_path / "y.png")]) == 0
    )
    assert set(_scores(capsys.readouterr().out)) == {"bicubic", "ESPCN ×2"}


@pytest.mark.skipif(3 not in pretrained_scales(), reason="bundled ×3 weights not present")
def test_demo_without_arguments_beats_bicubic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    scores = _scores(capsys.readouterr().out)
    assert scores["ESPCN ×3"] > scores["bicubic"] + 0.3
    assert load_image(tmp_path / "subpixel_demo.png").width > 600
