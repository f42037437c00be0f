"""Training: the run folder, no overwriting, exact resume after SIGKILL, DDP on two CPU processes, errors."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from subpixel.cli.train import add_arguments, run
from subpixel.imageio import write_image
from subpixel.sr import load
from subpixel.sr.protocol import imresize
from subpixel.sr.train import (
    CHECKPOINT,
    TrainConfig,
    learning_rate,
    load_checkpoint,
    train,
)

TINY = ["--scale", "2", "--patch-size", "6", "--widths", "8", "4", "--kernel-sizes", "3", "3", "3"]


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 48), (36, 44), (42, 38)]):
        small = rng.random((h // 4 + 2, w // 4 + 2, 3))
        write_image(folder / f"img{i}.png", np.clip(imresize(small, output_shape=(h, w)), 0, 1))
    return folder


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def tiny_config(data: Path, out: Path, **kwargs: object) -> TrainConfig:
    values: dict[str, object] = {
        "data": [str(data)],
        "out": str(out),
        "scale": 2,
        "patch_size": 6,
        "widths": (8, 4),
        "kernel_sizes": (3, 3, 3),
        "batch_size": 8,
        "steps": 30,
        "lr": 3e-3,
        "threads": 1,
        "progress": False,
        "seed": 3,
        "log_every": 5,
        "checkpoint_every": 10,
    }
    values.update(kwargs)
    return TrainConfig(**values)  # type: ignore[arg-type]


def cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_learning_rate_schedules() -> None:
    cfg = TrainConfig(data=["."], out=".", steps=100, lr=1e-3, lr_min=1e-5)
    rates = [learning_rate(cfg, s) for s in range(101)]
    assert rates[0] == 1e-3 and rates[100] == pytest.approx(1e-5)
    assert all(a >= b for a, b in itertools.pairwise(rates))
    step = TrainConfig(data=["."], out=".", steps=100, lr=1e-3, schedule="step")
    assert [learning_rate(step, s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5]
    )
    assert learning_rate(TrainConfig(data=["."], out=".", schedule="constant"), 99) == 1e-3
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(data=["."], out=".", schedule="poly")
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(data=["."], out=".", loss="huber")
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(data=["."], out=".", batch_size=0)


def test_run_folder_and_no_overwrite(hr_folder: Path, tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    weights = train(tiny_config(hr_folder, out, val=str(hr_folder), val_every=10))
    assert weights == out / "model.safetensors"
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.safetensors",
        "curves.png",
        "log.jsonl",
        "model.json",
        "model.safetensors",
    ]
    model = load(weights)
    assert model.config.widths == (8, 4) and model.scale == 2
    summary = json.loads((out / "model.json").read_text())["training"]
    assert summary["steps"] == 30 and summary["world_size"] == 1 and summary["wall_time_s"] > 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [5, 10, 15, 20, 25, 30]
    assert [e["step"] for e in log if "val_psnr" in e] == [10, 20, 30]
    assert summary["final_val_psnr"] == log[-1]["val_psnr"]
    assert log[-1]["loss"] < log[0]["loss"]  # it learns
    assert all(e["patches_per_s"] > 0 for e in log)

    before = weights.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        train(tiny_config(hr_folder, out))
    assert run(cli_args("--data", str(hr_folder), "--out", str(out), "--no-progress", *TINY)) == 2
    assert weights.read_bytes() == before
    # resuming a finished run changes nothing
    assert train(tiny_config(hr_folder, out, resume=True)) == weights and weights.read_bytes() == before
    # --force trains again (another seed gives other weights)
    train(tiny_config(hr_folder, out, force=True, seed=4))
    assert weights.read_bytes() != before


def test_unfinished_run_needs_resume_or_force(hr_folder: Path, tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    train(tiny_config(hr_folder, out, steps=10))
    (out / "model.safetensors").unlink()  # as if killed after the last checkpoint
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(hr_folder, out, steps=20))
    with pytest.raises(ValueError, match="widths"):
        train(tiny_config(hr_folder, out, steps=20, widths=(8, 8), resume=True))
    (out / CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"checkpoint.*checkpoint\.safetensors.*not a readable"):
        train(tiny_config(hr_folder, out, steps=20, resume=True))


def test_resume_with_more_steps_extends_a_finished_run(
    hr_folder: Path, tmp_path: Path, one_thread: None
) -> None:
    """``--resume --steps 20`` on a finished 10-step run trains steps 11..20 (the 10-step weights are kept)."""
    out = tmp_path / "run"
    first = train(tiny_config(hr_folder, out, steps=10))
    before = first.read_bytes()
    assert train(tiny_config(hr_folder, out, steps=20, resume=True)) == first
    assert json.loads((out / "model.json").read_text())["training"]["steps"] == 20
    assert first.read_bytes() != before
    assert (out / "model_step10.safetensors").read_bytes() == before and (out / "model_step10.json").is_file()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [5, 10, 15, 20]
    # the same number of steps again: nothing to do, nothing written
    after = first.read_bytes()
    assert train(tiny_config(hr_folder, out, steps=20, resume=True)) == first and first.read_bytes() == after
    with pytest.raises(ValueError, match=r"step 20; --steps 15 is fewer"):
        train(tiny_config(hr_folder, out, steps=15, resume=True))


def test_resume_refuses_another_scale_even_when_finished(
    hr_folder: Path, tmp_path: Path, one_thread: None
) -> None:
    out = tmp_path / "run"
    weights = train(tiny_config(hr_folder, out, steps=10))
    before = weights.read_bytes()
    for steps in (10, 20):  # finished (nothing to extend) or extended: a ×3 run cannot resume a ×2 checkpoint
        with pytest.raises(ValueError, match=r"scale=2, the run asks for 3"):
            train(tiny_config(hr_folder, out, steps=steps, scale=3, resume=True))
    assert weights.read_bytes() == before and not (out / "model_step10.safetensors").exists()


def test_bad_data_leaves_no_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from subpixel.cli import main

    (tmp_path / "nodata").mkdir()
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "nodata"), "--out", str(out), "--no-progress", *TINY]) == 2
    assert "nodata" in capsys.readouterr().err
    assert not out.exists()


def test_scale_one_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from subpixel.cli import main

    with pytest.raises(ValueError, match=r"scale must be an int >= 2, got 1"):
        TrainConfig(data=["."], out=".", scale=1)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path), "--out", str(out), "--no-progress", "--scale", "1"]
    assert main(argv) == 2
    assert "scale" in capsys.readouterr().err and not out.exists()


def test_cli_errors(hr_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from subpixel.cli import main

    missing = tmp_path / "nowhere"
    assert main(["train", "--data", str(missing), "--out", str(tmp_path / "r"), "--no-progress", *TINY]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and len(err.strip().splitlines()) == 1
    assert (
        main(
            ["train", "--data", str(hr_folder), "--out", str(tmp_path / "r"), *TINY[:2], "--patch-size", "30"]
        )
        == 2
    )
    assert "smaller than one HR patch" in capsys.readouterr().err


def _tiny_cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY,
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--seed",
        "3",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def test_resume_after_sigkill_equals_uninterrupted_run(
    hr_folder: Path, tmp_path: Path, one_thread: None
) -> None:
    steps = 400
    out = tmp_path / "killed"
    args = [
        *_tiny_cli(hr_folder, out, "--steps", str(steps), "--checkpoint-every", "20", "--log-every", "20")
    ]
    proc = subprocess.Popen([sys.executable, "-m", "subpixel.cli", *args], env=_env())
    deadline = time.monotonic() + 120
    try:
        while not (out / CHECKPOINT).exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()
    _, meta = load_checkpoint(out / CHECKPOINT)
    killed_at = meta["step"]
    assert 0 < killed_at < steps

    resumed = subprocess.run(
        [sys.executable, "-m", "subpixel.cli", *args, "--resume"], env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == list(range(20, steps + 1, 20))  # no step logged twice or lost

    reference = train(
        tiny_config(hr_folder, tmp_path / "uninterrupted", steps=steps, checkpoint_every=0, log_every=0)
    )
    a, b = load(out / "model.safetensors").state_dict(), load(reference).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), f"resumed from step {killed_at}, weights differ"


def test_ddp_two_cpu_processes_train_the_same_model(
    hr_folder: Path, tmp_path: Path, one_thread: None
) -> None:
    """torchrun with 2 gloo processes: both ranks end with bit-identical weights, equal (to rounding) to one
    process taking both ranks' samples in one batch of twice the size."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "subpixel.cli",
        *_tiny_cli(hr_folder, out, "--steps", "20", "--batch-size", "4"),
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "model.json").read_text())["training"]
    assert summary["world_size"] == 2
    digests = summary["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]

    single = train(tiny_config(hr_folder, tmp_path / "single", steps=20, batch_size=8))
    a, b = load(out / "model.safetensors").state_dict(), load(single).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_init_from_weights(hr_folder: Path, tmp_path: Path, one_thread: None) -> None:
    first = train(tiny_config(hr_folder, tmp_path / "a", steps=10))
    # a run with a vanishing learning rate keeps the weights it started from
    second = train(tiny_config(hr_folder, tmp_path / "b", steps=3, init=str(first), lr=1e-20, lr_min=0.0))
    a, b = load(first).state_dict(), load(second).state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-12) for k in a)
    fresh = load(train(tiny_config(hr_folder, tmp_path / "c", steps=3, lr=1e-20, lr_min=0.0, seed=9)))
    assert not all(torch.equal(a[k], fresh.state_dict()[k]) for k in a)
    with pytest.raises(ValueError, match="init weights"):
        train(tiny_config(hr_folder, tmp_path / "d", steps=3, init=str(first), widths=(8, 8)))
