"""The timed choice: which of the valid algorithms runs a key.

With one valid algorithm, it runs. Under ``torch.use_deterministic_algorithms(True)`` nothing is timed (the LR form
runs). While autograd records (training) an LR-layout weight, the LR form runs (the layer's own definition,
bitwise reproducible between runs); a ConvTranspose-layout weight (the drop-in) is timed in training too, as
``torch.backends.cudnn.benchmark`` would: it replaces torch's layer, which must never be faster.
``SUBPIXEL_TIMED_TRAINING=1`` times every layer in training, ``=0`` none (the LR form). Otherwise the first call
of a key times each valid algorithm (inference: the forward under ``no_grad``; training: forward and backward of
the tensors that require gradients, on detached copies): two warm-up calls each (oneDNN primitive creation, the
first page faults of a large output), then 3-15 interleaved rounds in alternating order, each algorithm scored by
the mean of its faster half (other processes' load only adds time). The fastest wins unless it is within 3 % of
the reference (the LR form; torch's own layer for a ConvTranspose-layout weight), which is then kept. The timings
are in :attr:`~subpixel.plans.Plan.reason`. A timed choice is reused for inputs of the same layer, batch, memory
format and grad mode whose spatial size rounds to the same power of two (:data:`subpixel.plans.decisions`).

A forced algorithm (:func:`subpixel.dispatch.force_algorithm`) runs wherever it is valid and ``"lr_shuffle"``
elsewhere (never a wrong result).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from subpixel import config, native
from subpixel._validation import ChannelOrder
from subpixel.algorithms import candidates, execute, lr_order_for, prepare
from subpixel.geometry import WeightSource
from subpixel.plans import Entry, Plan, decisions, remember
from subpixel.shuffle import memory_format_of
from subpixel.timing import interleaved

__all__ = ["choose", "measure"]


def measure(
    names: Sequence[str], call: Callable[[str], object]
) -> tuple[dict[str, float], dict[str, str], int]:
    """Time ``call(name)`` for every candidate ``name`` (the timer of the timed choice; see the module docstring).

    Returns each candidate's score in seconds (the mean of its faster half of the timed rounds), the candidates
    that failed (first line of their error; ``"lr_shuffle"`` failing raises), and the number of rounds."""
    times: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    for algorithm in names:  # warm-up (oneDNN primitive creation); an algorithm that fails is dropped
        t0 = time.perf_counter()
        try:
            call(algorithm)
        except RuntimeError as exc:
            if algorithm == "lr_shuffle":
                raise
            errors[algorithm] = str(exc).splitlines()[0][:80]
            continue
        times[algorithm] = [time.perf_counter() - t0]
    # a second, timed warm-up where the first was cheap: the first calls of a large output also pay fresh page
    # faults, and the first call of all may have paid one-time costs (oneDNN primitives, a kernel build)
    timed = list(times)
    calls = [lambda a=a: call(a) for a in timed]
    first = max(ts[0] for ts in times.values())
    if first < 1.0:
        first = max(t for (t,) in interleaved(calls, min_runs=1, warmup=0))
    rounds = (
        3 if first > 0.1 else min(15, max(5, int(0.08 / max(first, 1e-6))))
    )  # ~80 ms of timing: 3-15 rounds
    times = dict(zip(timed, interleaved(calls, min_runs=rounds, warmup=0, alternate=True), strict=True))
    # the lower half's mean: robust to other processes' load (which only adds time) without trusting one call
    fastest = {a: sum(sorted(ts)[: max(1, len(ts) // 2)]) / max(1, len(ts) // 2) for a, ts in times.items()}
    return fastest, errors, rounds


def _time(
    cands: list[str], entry: Entry, lr_order: ChannelOrder, x: Tensor, weight: Tensor, source: WeightSource,
    bias: Tensor | None, grads: tuple[bool, bool, bool], fresh_weight: bool,
) -> tuple[str, str]:  # fmt: skip
    """Time the candidates on this call's tensors (module docstring); the fastest and a summary."""
    training = torch.is_grad_enabled() and any(grads)
    if training:  # detached copies: nothing reaches the caller's graph or .grad
        xs = x.detach().requires_grad_(grads[0])
        ws = weight.detach().requires_grad_(grads[1])
        bs = None if bias is None else bias.detach().requires_grad_(grads[2])
        leaves = [t for t, g in zip((xs, ws, bs), grads, strict=True) if g and t is not None]
    else:
        xs, ws, bs, leaves = x, weight, bias, []

    def call(algorithm: str) -> None:
        with torch.set_grad_enabled(training):
            y = execute(
                algorithm, entry.spec, entry.geoms, entry.phases, lr_order, xs, ws, source, bs,
                (grads[1] and training) or fresh_weight,
            )  # fmt: skip
            if training and y.requires_grad:
                torch.autograd.grad(y, leaves, torch.ones_like(y), allow_unused=True)
        _sync(x.device)

    fastest, errors, rounds = measure(cands, call)
    best = min(fastest, key=fastest.__getitem__)
    reference = "conv_transpose" if source == "ct" and "conv_transpose" in fastest else "lr_shuffle"
    if fastest[best] > config.current.keep * fastest[reference]:  # within noise of the reference: keep it
        best = reference
    summary = ", ".join(f"{a} {1e3 * t:.3g} ms" for a, t in fastest.items())
    summary += "".join(f", {a} failed ({e})" for a, e in errors.items())
    return best, f"timed ({rounds} rounds): {summary}"


def choose(
    entry: Entry, zero_ok: bool, forced: str | None, x: Tensor, weight: Tensor, source: WeightSource,
    bias: Tensor | None, grads: tuple[bool, bool, bool], fixed_taps: bool, fresh_weight: bool,
) -> Plan:  # fmt: skip
    """The plan for a key's first call with this answer of the zero check (``zero_ok``): the valid algorithms
    (:func:`~subpixel.algorithms.candidates`), then the forced one, the only one, the LR form, or the timed
    choice (module docstring). ``x`` is batched; ``grads``: whether input, weight and bias require gradients."""
    recording = torch.is_grad_enabled() and any(grads)
    weight_grad = torch.is_grad_enabled() and grads[1]
    lr_order = lr_order_for(entry.spec, x, weight_grad and source == "lr")
    cands = candidates(entry.spec, entry.mask, entry.phases, zero_ok, weight_grad and not fixed_taps)
    timed_training = config.current.timed_training
    if timed_training is None:
        timed_training = source == "ct"
    if forced is not None:
        algorithm = forced if forced in cands else "lr_shuffle"
        reason = "forced" if algorithm == forced else f"{forced} forced but not valid here; lr_shuffle runs"
    elif len(cands) == 1:
        algorithm, reason = cands[0], "the only valid algorithm"
    elif torch.are_deterministic_algorithms_enabled():
        algorithm, reason = "lr_shuffle", "torch.use_deterministic_algorithms(True): no timed choice"
    elif recording and not timed_training:
        algorithm = "lr_shuffle"
        reason = (
            "training an LR-layout weight: the LR form (a timed choice could differ between runs; "
            "SUBPIXEL_TIMED_TRAINING=1 times it)"
        )
    else:
        size_class = (
            entry.spec, tuple(cands), lr_order, source, x.shape[0], x.shape[1],
            round(math.log2(max(math.prod(x.shape[2:]), 1))), memory_format_of(x), x.dtype, x.device,
            tuple(weight.shape), weight.stride(), bias is None, recording and grads, fresh_weight,
            torch.is_autocast_enabled(x.device.type), native.available(), torch.get_num_threads(),
        )  # fmt: skip
        decided = decisions.get(size_class)
        if decided is None:
            decided = _time(cands, entry, lr_order, x, weight, source, bias, grads, fresh_weight)
            remember(decisions, size_class, decided)
        else:
            decided = (decided[0], f"as timed for an input of about this size: {decided[1]}")
        algorithm, reason = decided
    call = prepare(algorithm, entry.spec, entry.geoms, entry.phases, lr_order, source)
    reads_values = entry.mask is not None and source == "lr" and not (weight_grad and not fixed_taps)
    return Plan(
        algorithm, tuple(cands), reason, lr_order, entry.spec, entry.geoms, entry.phases, call, reads_values,  # type: ignore[arg-type]
    )  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
