"""The optimisation shared by ``subpixel train`` and the study: the learning-rate schedule and one step.

:func:`scheduled_lr` is the schedule as a pure function of plain numbers (``subpixel.sr.train.learning_rate`` reads
it off a ``TrainConfig``; the study calls it directly), and :func:`optimization_step` is one step of either
training loop: set the rate, forward (optionally under bf16 autocast), loss, backward, optimiser step.

Examples:
    >>> scheduled_lr(1e-3, 1e-5, "cosine", 0, 100), round(scheduled_lr(1e-3, 1e-5, "cosine", 50, 100), 6)
    (0.001, 0.000505)
    >>> model = torch.nn.Linear(3, 2)
    >>> optimizer = torch.optim.Adam(model.parameters())
    >>> loss = optimization_step(model, optimizer, torch.nn.functional.mse_loss, torch.ones(4, 3),
    ...                          torch.zeros(4, 2), lr=1e-2)
    >>> loss.shape, optimizer.param_groups[0]["lr"]
    (torch.Size([]), 0.01)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from subpixel.errors import SubpixelError

__all__ = ["SCHEDULES", "optimization_step", "scheduled_lr"]

#: The learning-rate schedules: cosine decay from ``lr`` to ``lr_min``; ``lr`` divided by 10 at 50 % and
#: again at 75 % of the steps; or constant.
SCHEDULES: tuple[str, ...] = ("cosine", "step", "constant")


def scheduled_lr(lr: float, lr_min: float, schedule: str, step: int, steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) of ``steps``, a pure function of its arguments.

    Args:
        lr: the initial (peak) rate.
        lr_min: where ``"cosine"`` ends at ``step == steps`` (unused by the other schedules).
        schedule: one of :data:`SCHEDULES`.
        step: the step; clamped to ``[0, steps]``.
        steps: the run's length, ≥ 1.

    Returns:
        The rate.

    Raises:
        ValueError: an unknown ``schedule`` or ``steps < 1``.

    Examples:
        >>> scheduled_lr(1e-3, 0.0, "step", 60, 100), scheduled_lr(1e-3, 0.0, "constant", 99, 100)
        (0.0001, 0.001)
    """
    if schedule not in SCHEDULES:
        raise SubpixelError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {schedule!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SubpixelError(f"steps must be an integer >= 1, got {steps!r}")
    t = min(max(step / steps, 0.0), 1.0)
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * (0.1 ** (int(t >= 0.5) + int(t >= 0.75)))
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * t))


def optimization_step(
    forward: Callable[[Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    *,
    lr: float,
    bf16: bool = False,
) -> Tensor:
    """One optimisation step: set every group's rate to ``lr``, forward, loss, backward, step.

    The forward pass runs under bf16 autocast when ``bf16`` is true; a half-precision prediction is cast to
    float32 before the loss (a float32 or float64 one is used as it is).

    Args:
        forward: the model (or its compiled form) ``inputs -> prediction``.
        optimizer: the optimiser over the model's parameters.
        loss_fn: ``(prediction, targets) -> scalar loss``.
        inputs: the batch, e.g. LR patches ``(N, C, h, w)``, on the model's device.
        targets: what the prediction should be, e.g. HR patches ``(N, C, h·r, w·r)``.
        lr: the learning rate of this step (:func:`scheduled_lr`).
        bf16: run the forward pass under ``torch.autocast(dtype=torch.bfloat16)``.

    Returns:
        The loss, detached (a 0-dim tensor; ``float()`` it to log, which waits for the device).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
        prediction = forward(inputs)
    if prediction.dtype in (torch.bfloat16, torch.float16):
        prediction = prediction.float()
    loss = loss_fn(prediction, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()
