"""Timing several callables against each other: the one timing loop of the library and its benchmarks.

Interleaving (A B C A B C ...) exposes every candidate to the same machine state (other processes' load, CPU
frequency, the allocator's free lists), so that their ratios hold even where absolute times drift; alternating the
order of each round as well keeps one candidate from always running after the same neighbour (whose freed buffers
it would reuse).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

__all__ = ["interleaved"]


def interleaved(
    fns: Sequence[Callable[[], object]],
    *,
    budget_s: float = 0.0,
    min_runs: int = 5,
    max_runs: int | None = None,
    warmup: int = 2,
    alternate: bool = False,
    sync: Callable[[], object] | None = None,
) -> list[list[float]]:
    """Call every function in turn, round after round, and return each one's times in seconds.

    Args:
        fns: the callables (no arguments) to compare.
        budget_s: keep going while the rounds so far took less than this (after ``min_runs`` rounds).
        min_runs: at least this many rounds.
        max_runs: at most this many rounds (``None``: no limit but the budget).
        warmup: untimed calls of each function first (oneDNN primitive creation, first page faults of a large
            output, compilation).
        alternate: reverse the order of every other round.
        sync: called after each timed call, inside the timing (``torch.cuda.synchronize`` on a GPU).

    Returns:
        ``times[i]``: the seconds of each timed call of ``fns[i]``, one per round.

    Examples:
        >>> a, b = interleaved([lambda: sum(range(100)), lambda: sum(range(1000))], min_runs=3, warmup=0)
        >>> len(a) == len(b) == 3
        True
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    start = time.perf_counter()
    rounds = 0
    while rounds < min_runs or (
        time.perf_counter() - start < budget_s and (max_runs is None or rounds < max_runs)
    ):
        for i in order if not (alternate and rounds % 2) else reversed(order):
            t0 = time.perf_counter()
            fns[i]()
            if sync is not None:
                sync()
            times[i].append(time.perf_counter() - t0)
        rounds += 1
    return times
