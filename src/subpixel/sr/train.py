"""Train SR networks (:func:`train`; from the shell ``subpixel train --scale 3 --data DIR [DIR ...] --out RUN_DIR``).

What a run does:

* samples random aligned LR/HR patches (:class:`~subpixel.sr.data.PatchDataset`; sample ``i`` depends only on
  ``(seed, i)``, so the stream is the same for any number of workers, on every rank and after a resume);
* minimises the L2 (MSE) or L1 loss with Adam; the learning rate follows a pure function of the step
  (``cosine`` from ``lr`` to ``lr_min``, ``step``: ×0.1 at 50 % and 75 % of the steps, or ``constant``);
* shows a progress bar with the loss and the throughput (patches/s), and every ``val_every`` steps the mean
  Y-PSNR (protocol: border crop = scale, 8-bit rounding) on a validation folder, logged to ``RUN_DIR/log.jsonl``;
* every ``checkpoint_every`` steps writes ``RUN_DIR/checkpoint.safetensors`` atomically: model, Adam state, step,
  RNG state, elapsed time and the config (JSON in the safetensors metadata; no pickle). ``--resume`` continues a
  killed run from it and ends with exactly the weights of an uninterrupted run (bit for bit on CPU);
* at the end writes ``RUN_DIR/model.safetensors`` + ``model.json`` (config, training summary) and a figure of
  the curves, ``RUN_DIR/curves.png``. A finished run is never overwritten unless ``--force``.

Data-parallel training: launch with ``torchrun --nproc-per-node N -m subpixel.cli train ...`` (or
``python -m torch.distributed.run``); each rank takes its own ``batch_size`` samples of every step (rank ``k``
takes samples ``(step·N + k)·batch_size ...``), gradients are averaged by DDP (gloo on CPU, NCCL on GPU), only
rank 0 writes files, and the run records a digest of every rank's final weights.
"""

from __future__ import annotations

import dataclasses
import errno
import gc
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler

from subpixel._atomic import atomic_write
from subpixel._paths import portable_paths
from subpixel._validation import check_positive_int, resolve_device
from subpixel.errors import SubpixelError
from subpixel.sr.data import PatchDataset
from subpixel.sr.models import ESPCN, FAMILIES, RepESPCN, config_path, read_tensors, save, write_tensors
from subpixel.sr.optim import optimization_step, scheduled_lr
from subpixel.sr.protocol import find_test_images, load_test_image, score_images

__all__ = ["TrainConfig", "learning_rate", "run_steps", "train"]

CHECKPOINT = "checkpoint.safetensors"
WEIGHTS = "model.safetensors"
LOG = "log.jsonl"
_CHECKPOINT_FORMAT = "subpixel.sr.checkpoint"


@dataclass
class TrainConfig:
    """Everything a training run needs (JSON-serialisable; stored in checkpoints and beside the weights).

    Args:
        data: folders (or files) of HR training images.
        out: the run folder.
        scale: upscaling factor.
        channels: ``"y"`` or ``"rgb"``.
        model: the family (:data:`~subpixel.sr.models.FAMILIES`): ``"rep"`` trains a
            :class:`~subpixel.sr.models.RepESPCN` (re-parameterized blocks, collapsed into a plain ESPCN with a
            nearest skip when saved), ``"espcn"`` the paper's plain network.
        widths, kernel_sizes, activation, skip: the deployed :class:`~subpixel.sr.models.ESPCN` architecture
            (``None``: the family's default).
        patch_size: LR patch size (HR patches are ``patch_size·scale``).
        skip_small: leave out training images smaller than one HR patch (reported) instead of failing.
        batch_size: patches per step *per rank*.
        steps: optimiser steps.
        lr, lr_min, schedule: Adam learning rate and its schedule (``"cosine"``, ``"step"``, ``"constant"``).
        loss: ``"l2"`` (MSE) or ``"l1"``.
        val: folder of validation images (e.g. Set5); ``None`` for none.
        val_every, checkpoint_every, log_every: periods in steps (0 = never; a checkpoint and a validation are
            always made at the end).
        seed: seeds the model initialisation and the sample stream.
        workers: DataLoader worker processes.
        threads: torch intra-op threads (``None``: leave torch's default).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``...
        init: weights (``.safetensors`` with its ``.json``) or a run's ``checkpoint.safetensors`` to start from
            instead of a fresh initialisation: fine-tuning, a second schedule, or another scale's model (the LR
            body does not depend on the scale; only the sub-pixel layer is then initialised afresh). A
            checkpoint carries a ``"rep"`` model's branches; finished weights are collapsed. Ignored when
            resuming.
        precision: ``"fp32"`` or ``"bf16"`` (autocast for the forward pass; weights, optimiser and loss stay
            float32).
        channels_last: run the network in channels-last memory format (much faster for oneDNN on CPU).
        compile: ``torch.compile`` the training forward pass.
        resume: continue from ``out/checkpoint.safetensors``.
        force: start over even if ``out`` holds a checkpoint or finished weights.
        progress: show progress bars.
    """

    data: list[str]
    out: str
    scale: int = 3
    channels: str = "y"
    model: str = "rep"
    widths: tuple[int, ...] | None = None
    kernel_sizes: tuple[int, ...] | None = None
    activation: str | None = None
    skip: str | None = None
    patch_size: int = 17
    skip_small: bool = False
    batch_size: int = 64
    steps: int = 100_000
    lr: float = 1e-3
    lr_min: float = 1e-5
    schedule: str = "cosine"
    loss: str = "l2"
    val: str | None = None
    val_every: int = 2000
    checkpoint_every: int = 1000
    log_every: int = 100
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    device: str = "auto"
    init: str | None = None
    precision: str = "fp32"
    channels_last: bool = True
    compile: bool = False
    resume: bool = False
    force: bool = False
    progress: bool = True
    command: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data = [str(d) for d in ([self.data] if isinstance(self.data, str | os.PathLike) else self.data)]
        self.out = str(self.out)
        if self.model not in FAMILIES:
            raise SubpixelError(f"model must be one of {sorted(FAMILIES)}, got {self.model!r}")
        for key, default in FAMILIES[self.model].items():
            if getattr(self, key) is None:
                setattr(self, key, default)
        self.widths = tuple(self.widths)  # type: ignore[arg-type]
        self.kernel_sizes = tuple(self.kernel_sizes)  # type: ignore[arg-type]
        if self.precision not in ("fp32", "bf16"):
            raise SubpixelError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        for name in ("patch_size", "batch_size", "steps"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.scale, "scale", minimum=2)  # a ×1 "super-resolution" model is not one
        for name in ("val_every", "checkpoint_every", "log_every", "workers"):
            check_positive_int(getattr(self, name), name, minimum=0)
        if not (self.lr > 0 and self.lr_min >= 0):
            raise SubpixelError(f"lr must be > 0 and lr_min >= 0, got lr={self.lr!r}, lr_min={self.lr_min!r}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise SubpixelError(f"schedule must be 'cosine', 'step' or 'constant', got {self.schedule!r}")
        if self.loss not in ("l1", "l2"):
            raise SubpixelError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if self.threads is not None:
            check_positive_int(self.threads, "threads")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def build_model(self) -> ESPCN | RepESPCN:
        """A freshly initialised model of this architecture (its training form)."""
        family = RepESPCN if self.model == "rep" else ESPCN
        return family(
            self.scale,
            channels=self.channels,  # type: ignore[arg-type]
            widths=self.widths,  # type: ignore[arg-type]
            kernel_sizes=self.kernel_sizes,  # type: ignore[arg-type]
            activation=self.activation,  # type: ignore[arg-type]
            skip=self.skip,  # type: ignore[arg-type]
        )


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate for optimiser step ``step`` (0-based): :func:`subpixel.sr.optim.scheduled_lr` of ``config``.

    Examples:
        >>> cfg = TrainConfig(data=["."], out=".", steps=100, lr=1e-3, lr_min=1e-5)
        >>> learning_rate(cfg, 0), round(learning_rate(cfg, 50), 6), round(learning_rate(cfg, 100), 8)
        (0.001, 0.000505, 1e-05)
    """
    return scheduled_lr(config.lr, config.lr_min, config.schedule, step, config.steps)


class _StepBatches(Sampler[list[int]]):
    """Batches of sample indices for steps ``start .. stop - 1`` of one rank."""

    def __init__(self, start: int, stop: int, batch: int, world: int, rank: int) -> None:
        self.start, self.stop, self.batch, self.world, self.rank = start, stop, batch, world, rank

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            first = (step * self.world + self.rank) * self.batch
            yield list(range(first, first + self.batch))


# ----------------------------------------------------------------------------------------------- checkpoints


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, entries in state["state"].items():
        plain_entries = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                plain_entries[key] = value
        plain["state"][str(index)] = plain_entries
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    path: Path,
    model: ESPCN,
    optimizer: torch.optim.Optimizer,
    step: int,
    elapsed: float,
    config: TrainConfig,
) -> None:
    """Write a checkpoint as one safetensors file (tensors + JSON metadata), atomically."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_plain = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "format": _CHECKPOINT_FORMAT,
        "step": step,
        "elapsed_s": elapsed,
        "optimizer": opt_plain,
        "config": config.to_dict(),
    }
    write_tensors(path, tensors, {"checkpoint": json.dumps(meta)})


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint: (tensors, metadata). :class:`SubpixelError` naming the file when it is not one."""
    tensors, metadata = read_tensors(path, "checkpoint")
    try:
        meta = json.loads(metadata["checkpoint"]) if "checkpoint" in metadata else None
    except ValueError as exc:
        raise SubpixelError(f"checkpoint {str(path)!r} is not readable: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != _CHECKPOINT_FORMAT:
        raise SubpixelError(f"checkpoint {str(path)!r} has no subpixel checkpoint metadata")
    return tensors, meta


# ------------------------------------------------------------------------------------------------ validation


def _prepare_validation(folder: str, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(hr, lr)`` per test image of ``folder`` (:func:`~subpixel.sr.protocol.load_test_image`), read once.

    The standard layout (``*_SRF_{r}_HR.png`` with MATLAB's ``_LR.png``) or a plain folder of HR images.
    """
    return [load_test_image(image, scale) for image in find_test_images(folder, scale)]


def validate(model: nn.Module, data: list[tuple[np.ndarray, np.ndarray]], scale: int) -> float:
    """Mean Y-PSNR (dB) by the protocol, the model run as ``subpixel evaluate`` runs it.

    (:func:`~subpixel.sr.evaluate.model_upscaler` through :func:`~subpixel.sr.protocol.score_images`: clamp, 8-bit
    rounding, Y, border crop = scale.)
    """
    from subpixel.sr.evaluate import model_upscaler

    module = getattr(model, "module", model)
    was_training = module.training
    psnrs = [s.score.psnr for s in score_images(model_upscaler(module), data, scale)]
    module.train(was_training)
    return float(np.mean(psnrs))


# ----------------------------------------------------------------------------------------------- distributed


def _setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = torch.cuda.is_available() if device_name == "auto" else device_name.startswith("cuda")
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        else:
            device = torch.device("cpu")
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return rank, world, device
    return 0, 1, resolve_device(device_name)


def _init_from(model: ESPCN | RepESPCN, config: TrainConfig) -> None:
    """Copy the weights of ``config.init`` into ``model``.

    ``config.init`` is finished weights (an ESPCN, collapsed) or a run's checkpoint (the training form). Every
    tensor of the hidden layers must fit; the sub-pixel layer is copied when it fits and otherwise keeps its
    fresh initialisation (a model of another scale: only that layer depends on the scale).
    """
    from subpixel.sr.models import load

    path = str(config.init)
    try:
        tensors, _ = load_checkpoint(Path(path))
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    except ValueError:
        source = load(path)
        if isinstance(model, RepESPCN):
            if (
                source.config.widths != model.config.widths
                or source.config.kernel_sizes != model.config.kernel_sizes
            ):
                raise SubpixelError(
                    f"init weights {path!r} have widths={source.config.widths}, kernel_sizes="
                    f"{source.config.kernel_sizes}; the run asks for {model.config.widths}, {model.config.kernel_sizes}"
                ) from None
            model.load_collapsed(source)
            return
        state = source.state_dict()
    own = model.state_dict()
    body = {k for k in own if k.startswith("features.")}
    unfit = sorted(k for k in body if k not in state or state[k].shape != own[k].shape)
    if unfit:
        raise SubpixelError(
            f"init weights {path!r} do not fit the model's hidden layers (model={config.model!r}, "
            f"widths={config.widths}, kernel_sizes={config.kernel_sizes}): {unfit[:4]} missing or of another shape"
        )
    fitting = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict({**own, **fitting})


def _digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, value in sorted(getattr(model, "module", model).state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------- training


def _read_log(path: Path, until_step: int) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [e for e in entries if e.get("step", 0) <= until_step]


def _write_log(path: Path, entries: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(e) + "\n" for e in entries)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _plot(path: Path, entries: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(e["step"], e["loss"]) for e in entries if "loss" in e]
    vals = [(e["step"], e["val_psnr"]) for e in entries if "val_psnr" in e]
    fig, ax = plt.subplots(1, 2 if vals else 1, figsize=(10 if vals else 5, 3.6), squeeze=False)
    if losses:
        ax[0, 0].semilogy(*zip(*losses))
    ax[0, 0].set(xlabel="step", ylabel="training loss", title=title)
    if vals:
        ax[0, 1].plot(*zip(*vals), marker="o")
        ax[0, 1].set(xlabel="step", ylabel="validation Y-PSNR (dB)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def run_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[Tensor, Tensor]],
    *,
    rate: Callable[[int], float],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    start: int = 0,
    device: torch.device | None = None,
    channels_last: bool = False,
    bf16: bool = False,
    forward: nn.Module | None = None,
) -> Iterator[tuple[int, float, float]]:
    """The training loop: one :func:`~subpixel.sr.optim.optimization_step` per batch (``subpixel train`` and the
    study both run it).

    Args:
        model: the model (put in training mode here); its parameters are ``optimizer``'s.
        optimizer: the optimiser.
        batches: ``(lr, hr)`` batches, one per step from ``start`` on.
        rate: the learning rate of a 0-based step.
        loss_fn: ``loss_fn(prediction, target)``.
        start: the step of the first batch (a resumed run's).
        device: where to move each batch (default: leave it).
        channels_last: give the model channels-last input.
        bf16: bf16 autocast for the forward pass.
        forward: what to call for the prediction (a compiled ``model``); default ``model``.

    Yields:
        ``(step, loss, rate)`` after every optimiser step, ``step`` counting the steps done (1-based).

    Shape:
        - batches: lr ``(N, C, h, w)``, hr ``(N, C, h·r, w·r)``.
    """
    model.train()
    step = start
    for lr_batch, hr_batch in batches:
        lr_now = rate(step)
        if device is not None:
            lr_batch = lr_batch.to(device, non_blocking=True)
            hr_batch = hr_batch.to(device, non_blocking=True)
        if channels_last:
            lr_batch = lr_batch.contiguous(memory_format=torch.channels_last)
        loss = optimization_step(
            forward or model, optimizer, loss_fn, lr_batch, hr_batch, lr=lr_now, bf16=bf16
        )
        step += 1
        yield step, float(loss), lr_now


def _finished_run(config: TrainConfig, weights: Path, ckpt_path: Path) -> tuple[bool, int | None]:
    """What to do with a run folder before training: ``(finished, checkpoint step)``.

    ``finished`` is true when the run holds final weights for ``config.steps`` and nothing is left to do.
    A checkpoint of another architecture, or one past ``config.steps``, is refused; resuming a finished run with
    more ``steps`` extends it (its finished weights are kept as ``model_step{N}.safetensors``).

    Raises:
        FileExistsError: finished weights or a checkpoint, and neither ``resume`` nor ``force``.
        SubpixelError: a checkpoint that does not match ``config``.
    """
    if config.force:
        return False, None
    if weights.exists() and not config.resume:
        raise FileExistsError(
            f"{weights} exists (a finished run); use another --out, --resume with more --steps to train it "
            "further, or --force to train again and overwrite it"
        )
    if ckpt_path.exists() and not config.resume:
        raise FileExistsError(
            f"{ckpt_path} exists (an unfinished run); pass --resume to continue it or --force to start over"
        )
    if not config.resume:
        return False, None
    if not ckpt_path.exists():
        if weights.exists():
            print(
                f"{weights} exists and the run has no checkpoint: nothing to resume (to train these weights "
                f"further, start a new run with --init {weights} --out NEW_DIR)",
                file=sys.stderr,
            )
            return True, None
        return False, None
    _, meta = load_checkpoint(ckpt_path)
    saved = TrainConfig(**{**meta["config"], "out": config.out})
    for key in ("model", "scale", "channels", "widths", "kernel_sizes", "activation", "skip"):
        if getattr(saved, key) != getattr(config, key):
            raise SubpixelError(
                f"checkpoint {str(ckpt_path)!r} has {key}={getattr(saved, key)!r}, the run asks for "
                f"{getattr(config, key)!r} (resume with the run's own options, or use --force or another --out)"
            )
    step = int(meta["step"])
    if step > config.steps:
        raise SubpixelError(
            f"checkpoint {str(ckpt_path)!r} is at step {step}; --steps {config.steps} is fewer (pass --steps "
            f"{step} or more to resume it)"
        )
    if weights.exists():
        if step == config.steps:
            print(
                f"{weights} exists: the run finished at {step} steps, nothing to resume (pass --steps larger "
                f"than {step} with --resume to train it further)",
                file=sys.stderr,
            )
            return True, step
        kept = weights.with_name(f"model_step{step}{weights.suffix}")
        if kept.exists() or config_path(kept).exists():
            raise FileExistsError(f"{kept} exists; move it away to extend the run in {weights.parent}")
        os.replace(config_path(weights), config_path(kept))
        os.replace(weights, kept)
        print(
            f"extending the run from {step} to {config.steps} steps; its weights at step {step} are kept as {kept}",
            file=sys.stderr,
        )
    return False, step


def _check_creatable(folder: Path) -> None:
    """Fail now, before any work, when ``folder`` cannot be created (a file stands in its path); it is created
    only once the data is known to be usable.

    Raises:
        NotADirectoryError: an existing part of the path is not a folder.
    """
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, ckpt_path: Path) -> tuple[int, float]:
    """Load a checkpoint's model, optimiser and RNG state; returns ``(step, elapsed seconds)``."""
    tensors, meta = load_checkpoint(ckpt_path)
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), float(meta["elapsed_s"])


def _progress_bar(config: TrainConfig, start: int) -> Any:
    from tqdm.auto import tqdm  # the 'sr' extra

    return tqdm(
        total=config.steps,
        initial=start,
        desc=f"train x{config.scale}",
        unit="step",
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )


def _save_final(
    trained: ESPCN | RepESPCN,
    weights: Path,
    config: TrainConfig,
    log: list[dict[str, Any]],
    summary: dict[str, Any],
) -> None:
    """Write the deployed (collapsed) model, its training summary and the curves."""
    deployed = trained.collapse() if isinstance(trained, RepESPCN) else trained
    deployed = deployed.to(memory_format=torch.contiguous_format)
    summary = {
        **summary,
        "multiply_adds_per_pixel": deployed.multiply_adds_per_pixel(),
        "torch": torch.__version__,
    }
    save(deployed, weights, metadata={"training": portable_paths({**config.to_dict(), **summary})})
    if log:
        _plot(weights.parent / "curves.png", log, f"{config.model} x{config.scale}")


def train(config: TrainConfig) -> Path:
    """Run (or resume, or extend) a training run; returns the path of the final weights.

    Raises:
        FileExistsError: ``out`` holds finished weights or a checkpoint and neither ``resume`` nor ``force``
            was given.
        SubpixelError: bad data (none, unreadable or too-small images), a corrupt checkpoint, or a checkpoint of
            a different architecture or past ``steps``.
    """
    out = Path(config.out)
    weights, ckpt_path, log_path = out / WEIGHTS, out / CHECKPOINT, out / LOG
    rank, world, device = _setup_distributed(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    main = rank == 0
    try:
        finished, resume_step = _finished_run(config, weights, ckpt_path)
        if finished:
            return weights
        if main:
            _check_creatable(out)
        torch.manual_seed(config.seed)
        model = config.build_model().to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if config.init is not None:
            _init_from(model, config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        start, elapsed_before = _restore(model, optimizer, ckpt_path) if resume_step is not None else (0, 0.0)
        if world > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        dataset = PatchDataset(
            config.data,
            config.scale,
            patch_size=config.patch_size,
            channels=config.channels,
            seed=config.seed,
            length=config.steps * config.batch_size * world,
            progress=config.progress and main,
            skip_small=config.skip_small,
        )
        if main and dataset.skipped:
            names = ", ".join(p.name for p in dataset.skipped)
            print(
                f"left out {len(dataset.skipped)} images smaller than one HR patch: {names}", file=sys.stderr
            )
        val_data = _prepare_validation(config.val, config.scale) if config.val and main else None
        if main:  # only once the data is known to be usable: a bad --data leaves no run folder behind
            out.mkdir(parents=True, exist_ok=True)
        log = _read_log(log_path, start) if start else []
        loader = DataLoader(
            dataset,
            batch_sampler=_StepBatches(start, config.steps, config.batch_size, world, rank),
            num_workers=config.workers,
            pin_memory=device.type == "cuda",
        )
        bar = _progress_bar(config, start) if main and config.progress else None
        t0 = time.perf_counter()
        last_t, last_step, running, running_n = t0, start, 0.0, 0
        step = start
        steps = run_steps(
            model,
            optimizer,
            loader,
            rate=lambda s: learning_rate(config, s),
            loss_fn=nn.MSELoss() if config.loss == "l2" else nn.L1Loss(),
            start=start,
            device=device,
            channels_last=config.channels_last,
            bf16=config.precision == "bf16",
            forward=torch.compile(model) if config.compile else None,
        )
        for step, loss, rate in steps:
            running += loss
            running_n += 1
            if not main:
                continue
            entry: dict[str, Any] = {}
            if (config.log_every and step % config.log_every == 0) or step == config.steps:
                now = time.perf_counter()
                throughput = (step - last_step) * config.batch_size * world / max(now - last_t, 1e-9)
                entry.update(loss=running / running_n, lr=rate, patches_per_s=throughput)
                last_t, last_step, running, running_n = now, step, 0.0, 0
            if val_data is not None and (
                (config.val_every and step % config.val_every == 0) or step == config.steps
            ):
                entry["val_psnr"] = validate(model, val_data, config.scale)
            if entry:
                entry = {"step": step, "elapsed_s": elapsed_before + time.perf_counter() - t0, **entry}
                log.append(entry)
                if bar is not None:
                    shown = ("loss", "val_psnr", "patches_per_s")
                    bar.set_postfix({k: f"{v:.4g}" for k, v in entry.items() if k in shown}, refresh=False)
            if bar is not None:
                bar.update(1)
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps:
                _write_log(log_path, log)
                save_checkpoint(
                    ckpt_path,
                    getattr(model, "module", model),
                    optimizer,
                    step,
                    elapsed_before + time.perf_counter() - t0,
                    config,
                )
        if bar is not None:
            bar.close()
        digests = [_digest(model)]
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, digests[0])
            digests = gathered
        if main:
            summary = {
                "steps": step,
                "world_size": world,
                "wall_time_s": elapsed_before + time.perf_counter() - t0,
                "final_val_psnr": next((e["val_psnr"] for e in reversed(log) if "val_psnr" in e), None),
                "rank_weight_digests": digests,
            }
            _save_final(getattr(model, "module", model), weights, config, log, summary)
        if world > 1:
            dist.barrier()
            # release DDP (its reducer holds the process group) before the group is destroyed below
            del model, optimizer, loader
            gc.collect()
        return weights
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
