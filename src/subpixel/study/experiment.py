"""The fixed-budget experiment: HR-space, deconvolution-last and LR-space networks at equal MACs per HR pixel.

:func:`run_study` does, in one run:

1. for every budget (multiples of a reference, ESPCN's MACs per HR pixel by default) and every family of
   :mod:`subpixel.study.families`, the widths whose MACs per HR output pixel are within ±5% of the budget;
2. the exact identity for every HR-space network: :func:`~subpixel.study.to_lr_space`, its float64 error, and
   the parameters and MACs of both forms;
3. trains every network with the same recipe: the same patches in the same order
   (:class:`~subpixel.sr.data.PatchDataset` over the training folders: sample ``i`` depends only on the seed and
   ``i``), the same initialisation seed, Adam with the learning rate of :func:`subpixel.sr.optim.scheduled_lr`,
   MSE loss, the same number of steps, by ``subpixel train``'s loop (:func:`subpixel.sr.train.run_steps`); the
   rep families train as re-parameterizable blocks and are collapsed (:func:`~subpixel.study.families.deploy`);
4. evaluates each on the test folders by the SR protocol (:func:`subpixel.sr.protocol.run_protocol` with
   :func:`subpixel.sr.evaluate.model_upscaler`, as ``subpixel evaluate`` runs a Y model: MATLAB bicubic LR, Y
   channel, 8-bit rounding, border crop ``r``);
5. times a forward pass on a 1080p frame (LR ``1080/r × 1920/r`` → 1080×1920) for every network, interleaved
   (each round times every network once), median over rounds;
6. writes ``results.json``, ``results.md`` and two figures, ``psnr_vs_macs.png`` and ``psnr_vs_time.png``.

After every (network, seed) run the trained weights go to ``<out>/models/<network>-seed<seed>.safetensors``
(:func:`subpixel.sr.models.save_state`: safetensors, with the run's identity and training configuration as
metadata; a rep family's collapsed network), then the
run's record to ``results.json``; both are written atomically. With ``resume=True`` (``subpixel study
--resume``) a run that was killed, or a finished one given more seeds, goes on where it stopped: the configuration
recorded in ``results.json`` must match the current one on every key of :data:`RUN_KEYS` (:func:`config_mismatches`;
otherwise :class:`ValueError`), every (network, seed) of the current plan with a record and loadable weights is
reused (its record kept, its weights loaded), and only the others are trained. Timing, table and figures are always
redone over all runs of the current plan.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from subpixel._atomic import atomic_write
from subpixel._paths import portable_paths
from subpixel._validation import check_positive_int
from subpixel.errors import SubpixelError
from subpixel.sr.data import PatchDataset, list_images
from subpixel.sr.evaluate import model_upscaler
from subpixel.sr.models import load_state, save_state
from subpixel.sr.optim import scheduled_lr
from subpixel.sr.protocol import bicubic_upscaler, run_protocol
from subpixel.sr.train import run_steps
from subpixel.study.families import (
    FAMILIES,
    FRAME_HR,
    FamilySpec,
    build,
    deploy,
    espcn_macs_per_pixel,
    solve_widths,
)
from subpixel.study.lr_space import to_lr_space
from subpixel.study.macs import count_macs

__all__ = [
    "RUN_KEYS",
    "StudyConfig",
    "config_mismatches",
    "identity_rows",
    "plan",
    "run_study",
    "time_frames",
    "train_model",
]

#: the :class:`StudyConfig` fields that define a training run and its scores: ``--resume`` requires them unchanged
RUN_KEYS: tuple[str, ...] = (
    "scale",
    "budget",
    "multiples",
    "families",
    "steps",
    "batch_size",
    "patch_size",
    "lr",
    "lr_min",
    "max_train_images",
    "train",
    "test",
)


@dataclass
class StudyConfig:
    """Everything one study run needs.

    Args:
        train: folders (or files) of HR training images (T91 and BSDS200).
        test: test-set folders (Set5 and Set14).
        out: folder for the results and figures.
        scale: the upscaling factor ``r``.
        budget: the reference budget: ``"ESPCN"`` (its MACs per HR pixel at ``scale``) or a number.
        multiples: the budgets, as multiples of the reference.
        families: which families to run.
        steps, batch_size, patch_size: training length, patches per step, LR patch size.
        lr, lr_min: Adam's learning rate, cosine-annealed from ``lr`` to ``lr_min``.
        seeds: one training run per seed and network (initialisation and sample stream).
        frame: HR size of the timed frame.
        timing_rounds: rounds of the interleaved timing.
        threads: torch intra-op threads for training and timing.
        max_train_images: use only the first N training images (``None``: all).
        progress: show progress bars.
        resume: reuse the trained networks of an earlier run in ``out`` (see the module docstring).
        command: the command line, recorded in ``results.json``.
    """

    train: list[str]
    test: list[str]
    out: str = "study-results"
    scale: int = 3
    budget: str | float = "ESPCN"
    multiples: tuple[float, ...] = (0.25, 1.0, 4.0)
    families: tuple[str, ...] = ("hr", "deconv", "lr")
    steps: int = 6000
    batch_size: int = 16
    patch_size: int = 17
    lr: float = 1e-3
    lr_min: float = 1e-5
    seeds: tuple[int, ...] = (0, 1, 2)
    frame: tuple[int, int] = FRAME_HR
    timing_rounds: int = 5
    threads: int = 2
    max_train_images: int | None = None
    progress: bool = True
    resume: bool = False
    command: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "patch_size", "timing_rounds", "threads"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.scale, "scale", minimum=2)
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown or not self.families:
            raise SubpixelError(
                f"families must be a non-empty subset of {sorted(FAMILIES)}, got {list(self.families)}"
            )
        if not self.multiples or any(not m > 0 for m in self.multiples):
            raise SubpixelError(f"multiples must be positive numbers, got {list(self.multiples)}")
        if not self.seeds:
            raise SubpixelError("seeds must not be empty")
        if isinstance(self.budget, str) and self.budget.upper() != "ESPCN":
            try:
                self.budget = float(self.budget)
            except ValueError:
                raise SubpixelError(
                    f"budget must be 'ESPCN' or a number of MACs per HR pixel, got {self.budget!r}"
                ) from None
        if not isinstance(self.budget, str) and not self.budget > 0:
            raise SubpixelError(f"budget must be positive, got {self.budget!r}")
        if any(f % self.scale for f in self.frame):
            raise SubpixelError(f"frame {self.frame} must be a multiple of scale {self.scale} on both axes")

    def reference_macs(self) -> float:
        """MACs per HR pixel of the reference budget."""
        if isinstance(self.budget, str):
            return espcn_macs_per_pixel(self.scale)
        return float(self.budget)


def plan(config: StudyConfig) -> list[dict[str, Any]]:
    """The networks of the study: for every budget and family, the widths and MACs per HR pixel.

    Returns:
        One dict per network: ``budget`` (label), ``budget_macs``, ``family``, ``spec`` (:class:`FamilySpec`),
        ``macs_per_pixel``, ``deviation`` (relative to the budget), ``params``.
    """
    ref = config.reference_macs()
    ref_name = "ESPCN" if isinstance(config.budget, str) else f"{ref:g}"
    rows = []
    for m in config.multiples:
        label = ref_name if m == 1 else f"{m:g}×{ref_name}"
        target = ref * m
        for family in config.families:
            spec, macs = solve_widths(family, config.scale, target)
            rows.append(
                {
                    "budget": label,
                    "budget_macs": target,
                    "family": family,
                    "spec": spec,
                    "macs_per_pixel": macs,
                    "deviation": macs / target - 1,
                    "params": sum(p.numel() for p in deploy(build(spec)).parameters()),
                }
            )
    return rows


def identity_rows(specs: Sequence[FamilySpec], frame: tuple[int, int]) -> list[dict[str, Any]]:
    """For every HR-space spec: :func:`to_lr_space` in float64, its max error, params and MACs of both forms.

    Examples:
        >>> row = identity_rows([FamilySpec("hr", 3, 4, 2)], (36, 36))[0]
        >>> row["max_abs_error"] < 1e-10, row["lr_macs"] > row["hr_macs"]
        (True, True)
    """
    rows = []
    for spec in specs:
        if spec.family != "hr":
            continue
        torch.manual_seed(0)
        hr = build(spec, dtype=torch.float64)
        lr = to_lr_space(hr, spec.scale)
        x = torch.rand(2, 1, 17, 19, dtype=torch.float64)
        with torch.no_grad():
            err = float((hr(x) - lr(x)).abs().max())
        shape = (1, 1, frame[0] // spec.scale, frame[1] // spec.scale)
        hr_count, lr_count = count_macs(hr, shape), count_macs(lr, shape)
        pixels = hr_count.output_pixels
        rows.append(
            {
                "network": spec.name,
                "max_abs_error": err,
                "hr_params": hr_count.params,
                "lr_params": lr_count.params,
                "hr_macs": hr_count.total / pixels,
                "lr_macs": lr_count.total / pixels,
                "lr_macs_nonzero": lr_count.nonzero_total / pixels,
                "lr_layers": [type(m).__name__ for m in lr],
            }
        )
    return rows


def train_model(
    model: nn.Module,
    dataset: torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    lr_min: float,
    progress: bool = False,
    desc: str = "train",
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` with Adam, MSE loss and the cosine schedule: ``subpixel train``'s loop
    (:func:`subpixel.sr.train.run_steps`), without its run folder.

    Step ``s`` uses samples ``s·batch_size … (s+1)·batch_size − 1`` of the dataset, so every model sees the same
    batches in the same order.

    Returns:
        ``{"seconds": …, "final_loss": …, "loss": [mean loss per 1% of the steps]}``.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    bar = None
    if progress:
        from tqdm.auto import tqdm  # the 'sr' extra

        bar = tqdm(total=steps, desc=desc, unit="step", leave=False)
    losses: list[float] = []
    curve: list[float] = []
    every = max(1, steps // 100)
    start = time.perf_counter()
    for step, loss, _ in run_steps(
        model,
        optimizer,
        itertools.islice(loader, steps),
        rate=lambda s: scheduled_lr(lr, lr_min, "cosine", s, steps),
        loss_fn=nn.functional.mse_loss,
    ):
        losses.append(loss)
        if step % every == 0:
            curve.append(float(np.mean(losses[-every:])))
        if bar is not None:
            bar.update(1)
            if step % 20 == 1:
                bar.set_postfix(loss=f"{loss:.2e}")
    if bar is not None:
        bar.close()
    model.eval()
    return {
        "seconds": time.perf_counter() - start,
        "final_loss": float(np.mean(losses[-every:])),
        "loss": curve,
    }


def time_frames(
    models: dict[str, nn.Module], lr_shape: tuple[int, ...], rounds: int, *, progress: bool = False
) -> dict[str, dict[str, float]]:
    """Wall time of one forward pass per model, interleaved: every round times every model once.

    Returns:
        ``name -> {"median_ms", "min_ms", "max_ms"}``.
    """
    x = torch.rand(lr_shape)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(x)
        iterator: Any = range(rounds)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="timing 1080p frames", unit="round", leave=False)
        for _ in iterator:
            for name, model in models.items():
                t0 = time.perf_counter()
                model(x)
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {
        name: {"median_ms": statistics.median(t), "min_ms": min(t), "max_ms": max(t)}
        for name, t in times.items()
    }


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`subpixel._atomic.atomic_write`), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _run_values(config: dict[str, Any]) -> dict[str, Any]:
    """The :data:`RUN_KEYS` of a config (``asdict(StudyConfig)`` or as recorded in JSON), in one normal form."""
    values: dict[str, Any] = {}
    for key in RUN_KEYS:
        value = config.get(key, "<missing>")
        if key == "budget":
            value = value.upper() if isinstance(value, str) else float(value)
        elif key in ("multiples",) and isinstance(value, list | tuple):
            value = [float(v) for v in value]
        elif key in ("train", "test") and isinstance(value, list | tuple):
            value = [str(Path(v).resolve()) for v in value]  # relative to the working directory
        elif isinstance(value, tuple):
            value = list(value)
        values[key] = value
    return values


def config_mismatches(recorded: dict[str, Any], config: StudyConfig) -> list[str]:
    """The :data:`RUN_KEYS` on which a recorded configuration (``results.json``'s ``config``) differs from ``config``.

    Seeds, timing rounds, threads, progress, output folder and command line may differ: they do not change a
    trained network or its scores. Train and test folders are compared as absolute paths (relative ones resolved
    against the current working directory), so ``../data/T91`` and ``/work/data/T91`` can be the same folder.

    Returns:
        One ``"key: recorded X, now Y"`` per differing key (empty when the runs are interchangeable).

    Examples:
        >>> now = StudyConfig(train=["T91"], test=["Set5"], steps=10)
        >>> config_mismatches(asdict(now) | {"steps": 20, "seeds": [0, 1], "threads": 8}, now)
        ['steps: recorded 20, now 10']
    """
    old, new = _run_values(recorded), _run_values(asdict(config))
    return [f"{key}: recorded {old[key]!r}, now {new[key]!r}" for key in RUN_KEYS if old[key] != new[key]]


def _earlier_runs(
    path: Path, config: StudyConfig, log: Callable[[str], None]
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """The run records of an earlier ``results.json`` with the same :data:`RUN_KEYS`, by (budget, network, seed)."""
    if not path.exists():
        log(f"resume: no {path} yet; starting afresh")
        return {}
    try:
        earlier = json.loads(path.read_text())
        recorded = earlier["config"]
        runs = {(r["budget"], r["network"], int(r["seed"])): r for r in earlier["runs"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SubpixelError(
            f"cannot resume: {str(path)!r} is not a readable study results.json ({exc!r})"
        ) from exc
    if not isinstance(recorded, dict):
        raise SubpixelError(f"cannot resume: {str(path)!r} has no recorded config")
    diffs = config_mismatches(recorded, config)
    if diffs:
        raise SubpixelError(
            f"cannot resume from {str(path)!r}: its configuration differs in "
            + "; ".join(diffs)
            + " (these define the trained networks; run without --resume to start afresh, or use another --out)"
        )
    return runs


def _reuse(
    weights: Path, spec: FamilySpec, seed: int, run_config: str, log: Callable[[str], None]
) -> nn.Module | None:
    """The network of an earlier run with its trained weights, or ``None`` (with a warning) when they are unusable."""
    what = f"retraining {spec.name} seed {seed}"
    if not weights.is_file():
        log(f"warning: weights file {weights} is missing; {what}")
        return None
    model = deploy(build(spec))
    try:
        metadata = load_state(model, weights)
    except ValueError as exc:
        log(f"warning: {exc}; {what}")
        return None
    expected = {"network": spec.name, "seed": str(seed), "run_config": run_config}
    wrong = [key for key, value in expected.items() if metadata.get(key) != value]
    if wrong:
        log(f"warning: weights file {weights} comes from another run (its {', '.join(wrong)} differ); {what}")
        return None
    model.eval()
    return model


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_study(config: StudyConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole study (see the module docstring); returns the results written to ``results.json``."""
    torch.set_num_threads(config.threads)
    out = Path(config.out)
    rows = plan(config)
    earlier: dict[tuple[str, str, int], dict[str, Any]] = {}
    if config.resume:
        earlier = _earlier_runs(out / "results.json", config, log)
    elif (out / "results.json").exists():
        log(
            f"an earlier run's results.json exists in {out}: starting afresh and overwriting it "
            "(pass --resume to reuse its trained networks)"
        )
    _log_plan(config, rows, log)
    identity = identity_rows([row["spec"] for row in rows], config.frame)
    for item in identity:
        log(
            f"identity {item['network']}: LR form max |error| {item['max_abs_error']:.1e} (float64); MACs/HR px "
            f"HR {item['hr_macs']:.0f}, LR dense {item['lr_macs']:.0f}, LR non-zero {item['lr_macs_nonzero']:.0f}; "
            f"params HR {item['hr_params']:,}, LR {item['lr_params']:,}"
        )
    files = list_images(config.train)[: config.max_train_images]
    if not files:
        raise SubpixelError(f"no training images found in {config.train}")
    results = _new_results(config, len(files), identity)
    for folder in config.test:
        res = run_protocol(bicubic_upscaler, folder, config.scale)
        results["baseline"][res.dataset] = {"psnr": res.mean_psnr, "ssim": res.mean_ssim}
    log("bicubic: " + ", ".join(f"{k} {v['psnr']:.2f} dB" for k, v in results["baseline"].items()))

    trained: dict[str, nn.Module] = {}
    run_config = json.dumps(_run_values(asdict(config)), sort_keys=True)
    for seed in config.seeds:
        dataset: list[PatchDataset] = []  # made once per seed, when the first network needs it
        for row in rows:
            spec: FamilySpec = row["spec"]
            weights = out / "models" / f"{spec.name}-seed{seed}.safetensors"
            record = earlier.get((row["budget"], spec.name, seed))
            reused = None if record is None else _reuse(weights, spec, seed, run_config, log)
            if record is not None and reused is not None:
                results["runs"].append(record)
                results["reused"].append(f"{spec.name} seed {seed}")
                log(f"{spec.name:<16} seed {seed}: reused {weights.name}: " + _scores_text(record["scores"]))
            else:
                if not dataset:
                    dataset.append(_patches(config, files, seed))
                reused, record = _train_one(config, row, seed, dataset[0], weights, run_config)
                results["runs"].append(record)
                log(
                    f"{spec.name:<16} seed {seed}: "
                    + _scores_text(record["scores"])
                    + f" (trained {record['train_seconds']:.0f} s)"
                )
                _write_bytes(out / "results.json", json.dumps(results, indent=1).encode())
            trained[f"{spec.name}/{seed}"] = reused
    if results["reused"]:
        log(f"reused {len(results['reused'])} of {len(results['runs'])} runs from the earlier results.json")
    _finish(config, rows, trained, results, log)
    return results


def _log_plan(config: StudyConfig, rows: list[dict[str, Any]], log: Callable[[str], None]) -> None:
    """Log the networks of the plan, their MACs and their deviation from the budgets."""
    log(
        f"scale ×{config.scale}; reference budget {config.budget}: {config.reference_macs():.1f} MACs per HR pixel"
    )
    log(f"{'budget':<14} {'network':<18} {'MACs/HR px':>11} {'vs budget':>9} {'params':>9}")
    for row in rows:
        log(
            f"{row['budget']:<14} {row['spec'].name:<18} {row['macs_per_pixel']:>11.1f} "
            f"{row['deviation']:>+9.2%} {row['params']:>9,}"
        )
    worst = max(abs(row["deviation"]) for row in rows)
    log(f"largest deviation from the budgets: {worst:.2%} (tolerance ±5%)")


def _new_results(config: StudyConfig, train_images: int, identity: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``results.json`` document before any run: configuration, environment, identity rows."""
    return {
        # paths relative to the working directory: the record is shipped, the machine's folders are not
        "config": portable_paths(asdict(config)),
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "threads": config.threads,
            "commit": _git_commit(),
        },
        "train_images": train_images,
        "reference_macs_per_pixel": config.reference_macs(),
        "identity": identity,
        "baseline": {},
        "runs": [],
        "reused": [],
        "complete": False,
    }


def _patches(config: StudyConfig, files: list[Path], seed: int) -> PatchDataset:
    """The training samples of one seed (the same for every network)."""
    return PatchDataset(
        [str(f) for f in files],
        config.scale,
        patch_size=config.patch_size,
        seed=seed,
        length=config.steps * config.batch_size,
        progress=config.progress,
    )


def _scores_text(scores: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{k} {v['psnr']:.2f} dB / {v['ssim']:.4f}" for k, v in scores.items())


def _train_one(
    config: StudyConfig,
    row: dict[str, Any],
    seed: int,
    dataset: PatchDataset,
    weights: Path,
    run_config: str,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train, deploy, store and score one (network, seed): ``(deployed network, run record)``."""
    spec: FamilySpec = row["spec"]
    torch.manual_seed(seed)
    training_form = build(spec)
    stats = train_model(
        training_form,
        dataset,
        steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        lr_min=config.lr_min,
        progress=config.progress,
        desc=f"{spec.name} seed {seed}",
    )
    model = deploy(training_form)  # a rep family's collapsed network; the others as trained
    save_state(model, weights, {"network": spec.name, "seed": str(seed), "run_config": run_config})
    scores = {}
    for folder in config.test:
        res = run_protocol(model_upscaler(model, channels="y"), folder, config.scale)
        scores[res.dataset] = {"psnr": res.mean_psnr, "ssim": res.mean_ssim}
    record = {
        "budget": row["budget"],
        "budget_macs": row["budget_macs"],
        "family": spec.family,
        "network": spec.name,
        "widths": list(spec.widths),
        "params": row["params"],
        "macs_per_pixel": row["macs_per_pixel"],
        "deviation": row["deviation"],
        "seed": seed,
        "weights": f"models/{weights.name}",
        "train_seconds": stats["seconds"],
        "final_loss": stats["final_loss"],
        "loss_curve": stats["loss"],
        "scores": scores,
    }
    return model, record


def _finish(
    config: StudyConfig,
    rows: list[dict[str, Any]],
    trained: dict[str, nn.Module],
    results: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Time every network of the first seed on a frame, then write ``results.json``, the table and the figures."""
    out = Path(config.out)
    lr_shape = (1, 1, config.frame[0] // config.scale, config.frame[1] // config.scale)
    timed = {row["spec"].name: trained[f"{row['spec'].name}/{config.seeds[0]}"] for row in rows}
    timing = time_frames(timed, lr_shape, config.timing_rounds, progress=config.progress)
    results["timing"] = {"frame": list(config.frame), "lr_input": list(lr_shape), "ms": timing}
    for name, t in timing.items():
        log(f"{name:<16} {t['median_ms']:9.1f} ms per {config.frame[0]}×{config.frame[1]} frame (median)")
    results["complete"] = True
    _write_bytes(out / "results.json", json.dumps(results, indent=1).encode())
    _write_bytes(out / "results.md", markdown_table(results).encode())
    plot(results, out)
    log(
        f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'psnr_vs_macs.png'}, {out / 'psnr_vs_time.png'}"
    )


def _aggregate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per network: scores averaged over seeds (with their standard deviation)."""
    by_net: dict[str, list[dict[str, Any]]] = {}
    for run in results["runs"]:
        by_net.setdefault(run["network"], []).append(run)
    timing = results.get("timing", {}).get("ms", {})
    rows = []
    for name, runs in by_net.items():
        first = runs[0]
        row = {
            k: first[k]
            for k in ("budget", "budget_macs", "family", "network", "params", "macs_per_pixel", "deviation")
        }
        row["seeds"] = len(runs)
        row["train_seconds"] = float(np.mean([r["train_seconds"] for r in runs]))
        for dataset in first["scores"]:
            psnrs = [r["scores"][dataset]["psnr"] for r in runs]
            ssims = [r["scores"][dataset]["ssim"] for r in runs]
            row[f"{dataset}_psnr"] = float(np.mean(psnrs))
            row[f"{dataset}_psnr_std"] = float(np.std(psnrs))
            row[f"{dataset}_ssim"] = float(np.mean(ssims))
        row["ms"] = timing.get(name, {}).get("median_ms", math.nan)
        rows.append(row)
    return rows


def markdown_table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (scores are means over seeds)."""
    rows = _aggregate(results)
    datasets = list(results["baseline"])
    frame = results.get("timing", {}).get("frame", list(FRAME_HR))
    head = ["budget", "network", "params", "MACs / HR px", "vs budget"]
    head += [f"{d} PSNR / SSIM" for d in datasets] + [f"ms / {frame[0]}p frame", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    cells = ["—", "bicubic", "0", "—", "—"]
    cells += [
        f"{results['baseline'][d]['psnr']:.2f} / {results['baseline'][d]['ssim']:.4f}" for d in datasets
    ]
    lines.append("| " + " | ".join([*cells, "—", "—"]) + " |")
    for row in rows:
        cells = [
            row["budget"],
            row["network"],
            f"{row['params']:,}",
            f"{row['macs_per_pixel']:,.0f}",
            f"{row['deviation']:+.1%}",
        ]
        for d in datasets:
            spread = f" ± {row[f'{d}_psnr_std']:.2f}" if row["seeds"] > 1 else ""
            cells.append(f"{row[f'{d}_psnr']:.2f}{spread} / {row[f'{d}_ssim']:.4f}")
        cells += [f"{row['ms']:,.0f}", f"{row['train_seconds']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: the deconv and lr families train to (almost) the same numbers: draw lr on top, thinner, so both stay visible
_STYLE: dict[str, dict[str, Any]] = {
    "hr": {"marker": "o", "color": "tab:blue", "lw": 2},
    "deconv": {"marker": "s", "color": "tab:orange", "lw": 4, "ms": 9, "alpha": 0.6},
    "lr": {"marker": "^", "color": "tab:green", "lw": 1.5, "ls": "--"},
    "rep": {"marker": "D", "color": "tab:red", "lw": 2},
    "hr-rep": {"marker": "v", "color": "tab:purple", "lw": 2, "ls": ":"},
}


def plot(results: dict[str, Any], out: Path) -> None:
    """Write ``psnr_vs_macs.png`` and ``psnr_vs_time.png`` (one line per family, one panel per test set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    rows = _aggregate(results)
    datasets = list(results["baseline"])
    frame = results.get("timing", {}).get("frame", list(FRAME_HR))
    for key, xlabel, fname in (
        ("macs_per_pixel", "MACs per HR output pixel", "psnr_vs_macs.png"),
        ("ms", f"ms per {frame[0]}×{frame[1]} frame (median, measured)", "psnr_vs_time.png"),
    ):
        fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4.0), squeeze=False)
        for ax, dataset in zip(axes[0], datasets, strict=True):
            for family, label in FAMILIES.items():
                pts = sorted((r[key], r[f"{dataset}_psnr"]) for r in rows if r["family"] == family)
                if pts:
                    ax.plot(*zip(*pts, strict=True), label=label, **_STYLE[family])
            ax.axhline(results["baseline"][dataset]["psnr"], color="gray", ls="--", lw=1, label="bicubic")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{dataset} Y-PSNR (dB)")
            ax.set_title(f"{dataset} ×{results['config']['scale']}")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].legend(fontsize=7, loc="best")
        fig.tight_layout()
        try:
            atomic_write(out / fname, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=110))
        finally:
            plt.close(fig)
