"""``subpixel study --resume``: saved networks, reuse after a kill, added seeds, config checks, corrupt weights.

One tiny synthetic study (3 networks, 4 steps) is run once per module; every test works on its own copy of the
output folder. Training is deterministic (fixed seeds, one thread), so a network retrained after an interruption
must score exactly as in the uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from subpixel.cli.study import add_arguments, run
from subpixel.sr.evaluate import model_upscaler
from subpixel.sr.models import load_state, save_state
from subpixel.study import experiment
from subpixel.study.experiment import StudyConfig, plan, run_study
from subpixel.study.families import build


@dataclass
class Study:
    data: Path
    out: Path  # a finished seed-0 run
    results: dict[str, Any]

    def config(self, out: Path, **changes: Any) -> StudyConfig:
        kwargs: dict[str, Any] = {
            "train": [str(self.data / "train")],
            "test": [str(self.data / "test")],
            "out": str(out),
            "multiples": (0.05,),
            "steps": 4,
            "batch_size": 2,
            "patch_size": 8,
            "frame": (36, 48),
            "timing_rounds": 1,
            "threads": 1,
            "progress": False,
            "seeds": (0,),
        }
        return StudyConfig(**(kwargs | changes))

    def copy(self, dst: Path) -> Path:
        shutil.copytree(self.out, dst)
        return dst


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, write_synthetic_images) -> Study:
    data = tmp_path_factory.mktemp("study-data")
    write_synthetic_images(data / "train", 2, (60, 63), 0)
    write_synthetic_images(data / "test", 2, (30, 36), 1)
    s = Study(data, data / "finished", {})
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: the rest of the run keeps its thread count
    try:
        s.results = run_study(s.config(s.out), log=lambda _: None)
    finally:
        torch.set_num_threads(before)
    return s


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The ``desc`` of every ``train_model`` call made by ``run_study``."""
    calls: list[str] = []
    real = experiment.train_model

    def spy(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs["desc"])
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_model", spy)
    yield calls


def _psnrs(results: dict[str, Any]) -> list[tuple[str, int, float]]:
    return [(r["network"], r["seed"], r["scores"]["test"]["psnr"]) for r in results["runs"]]


def _logger() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


def test_weights_are_saved_as_safetensors_and_reproduce_the_scores(study: Study) -> None:
    from subpixel.sr.protocol import run_protocol

    files = sorted(p.name for p in (study.out / "models").iterdir())
    assert files == sorted(f"{r['network']}-seed0.safetensors" for r in study.results["runs"])
    config = study.config(study.out)
    for row, record in zip(plan(config), study.results["runs"], strict=True):
        model = build(row["spec"])
        meta = load_state(model, study.out / record["weights"])
        assert (meta["network"], meta["seed"]) == (record["network"], "0")
        res = run_protocol(model_upscaler(model.eval(), channels="y"), config.test[0], config.scale)
        assert res.mean_psnr == record["scores"]["test"]["psnr"]


def test_resume_of_a_finished_run_trains_nothing(study: Study, tmp_path: Path, trainings: list[str]) -> None:
    out = study.copy(tmp_path / "out")
    lines, log = _logger()
    results = run_study(study.config(out, resume=True, timing_rounds=2, threads=1), log=log)
    assert trainings == []
    assert sum(" reused " in line for line in lines) == 3
    assert results["runs"] == study.results["runs"]
    assert results["complete"] and set(results["timing"]["ms"]) == set(study.results["timing"]["ms"])
    recorded = json.loads((out / "results.json").read_text())
    assert recorded["runs"] == study.results["runs"]
    # the shipped record names folders relative to the working directory, never absolutely
    assert not os.path.isabs(recorded["config"]["out"])
    assert Path(recorded["config"]["out"]).resolve() == out.resolve()


def test_resume_after_a_kill_trains_only_the_rest(
    study: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real = experiment.train_model
    calls: list[str] = []

    def killed_at_second(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs["desc"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is stopped while training the second network
        return real(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_model", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        run_study(study.config(out), log=lambda _: None)
    partial = json.loads((out / "results.json").read_text())
    assert not partial["complete"] and len(partial["runs"]) == 1
    assert sorted(p.name for p in (out / "models").iterdir()) == [
        f"{partial['runs'][0]['network']}-seed0.safetensors"
    ]

    calls.clear()
    monkeypatch.setattr(
        experiment, "train_model", lambda *a, **k: (calls.append(k["desc"]), real(*a, **k))[1]
    )
    results = run_study(study.config(out, resume=True), log=lambda _: None)
    names = [r["network"] for r in study.results["runs"]]
    assert calls == [f"{n} seed 0" for n in names[1:]]
    assert _psnrs(results) == _psnrs(study.results)  # bit-identical to the uninterrupted run
    assert [r["final_loss"] for r in results["runs"]] == [r["final_loss"] for r in study.results["runs"]]
    assert results["complete"]


def test_adding_seeds_reuses_the_earlier_seed(study: Study, tmp_path: Path, trainings: list[str]) -> None:
    out = study.copy(tmp_path / "out")
    results = run_study(study.config(out, seeds=(0, 1), resume=True), log=lambda _: None)
    names = [r["network"] for r in study.results["runs"]]
    assert trainings == [f"{n} seed 1" for n in names]
    assert [(r["network"], r["seed"]) for r in results["runs"]] == [(n, s) for s in (0, 1) for n in names]
    assert results["runs"][:3] == study.results["runs"]
    psnr = {(r["network"], r["seed"]): r["scores"]["test"]["psnr"] for r in results["runs"]}
    assert all(psnr[n, 1] != psnr[n, 0] for n in names)  # seed 1 is another training run
    assert " ± " in (out / "results.md").read_text()  # the table averages over both seeds
    assert len(list((out / "models").glob("*-seed1.safetensors"))) == 3


def test_resume_with_another_config_names_the_keys(study: Study, tmp_path: Path) -> None:
    out = study.copy(tmp_path / "out")
    with pytest.raises(ValueError, match=r"steps: recorded 4, now 5.*lr: recorded 0\.001, now 0\.002"):
        run_study(study.config(out, steps=5, lr=2e-3, resume=True), log=lambda _: None)
    recorded = json.loads((out / "results.json").read_text())["config"]
    # seeds, threads, timing rounds and the output folder may change, a folder may be given relative: no error
    same = study.config(tmp_path / "elsewhere", seeds=(3,), threads=2, timing_rounds=9)
    same.train = [os.path.relpath(study.data / "train")]
    assert experiment.config_mismatches(recorded, same) == []
    other = study.config(out, test=[str(study.data / "train")], families=("lr", "hr", "deconv"))
    assert [m.split(":")[0] for m in experiment.config_mismatches(recorded, other)] == ["families", "test"]


def test_cli_resume_mismatch_exits_non_zero(
    study: Study, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = study.copy(tmp_path / "out")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = ["--train", str(study.data / "train"), "--test", str(study.data / "test"), "--out", str(out)]
    argv += ["--multiples", "0.05", "--steps", "5", "--batch-size", "2", "--patch-size", "8", "--no-progress"]
    assert run(parser.parse_args([*argv, "--resume"])) == 2
    assert "steps: recorded 4, now 5" in capsys.readouterr().err


def test_corrupt_or_missing_weights_are_retrained(study: Study, tmp_path: Path, trainings: list[str]) -> None:
    out = study.copy(tmp_path / "out")
    names = [r["network"] for r in study.results["runs"]]
    corrupt = out / "models" / f"{names[0]}-seed0.safetensors"
    corrupt.write_bytes(corrupt.read_bytes()[:-50])  # truncated
    missing = out / "models" / f"{names[2]}-seed0.safetensors"
    missing.unlink()
    lines, log = _logger()
    results = run_study(study.config(out, resume=True), log=log)
    assert trainings == [f"{names[0]} seed 0", f"{names[2]} seed 0"]
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 2
    assert str(corrupt) in warnings[0] and "not a readable safetensors file" in warnings[0]
    assert str(missing) in warnings[1] and "missing" in warnings[1]
    assert _psnrs(results) == _psnrs(study.results)
    load_state(build(plan(study.config(out))[0]["spec"]), corrupt)  # rewritten whole


def test_weights_of_another_run_are_not_reused(study: Study, tmp_path: Path, trainings: list[str]) -> None:
    """A weights file overwritten by a run with other settings (killed before its results.json) is retrained."""
    out = study.copy(tmp_path / "out")
    names = [r["network"] for r in study.results["runs"]]
    target = out / "models" / f"{names[1]}-seed0.safetensors"
    save_state(build(plan(study.config(out))[1]["spec"]), target, {"network": names[1], "seed": "0"})
    lines, log = _logger()
    run_study(study.config(out, resume=True), log=log)
    assert trainings == [f"{names[1]} seed 0"]
    assert any(str(target) in line and "another run" in line for line in lines)


def test_without_resume_an_earlier_run_gets_a_hint(study: Study, tmp_path: Path) -> None:
    out = study.copy(tmp_path / "out")
    (tmp_path / "empty").mkdir()
    lines, log = _logger()
    with pytest.raises(ValueError, match="no images"):  # stops before training anything
        run_study(study.config(out, train=[str(tmp_path / "empty")]), log=log)
    assert any("--resume" in line and "results.json exists" in line for line in lines)
