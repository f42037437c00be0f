"""Timing several callables against each other: the one timing loop of the library and its benchmarks.

Interleaving (A B C A B C ...) exposes every candidate to the same machine state (other processes' load, CPU
frequency, the allocator's free lists), so that their ratios hold even where absolute times drift; varying the
order of the rounds as well keeps one candidate from always running after the same neighbour (whose freed buffers
it would reuse, or whose large frees returned memory to the kernel that it then faults in again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

__all__ = ["interleaved", "round_order"]


def round_order(n: int, round: int) -> list[int]:
    """The order of round ``round`` of :func:`interleaved` with ``alternate``: rotation ``round // 2`` of
    ``0 .. n-1``, reversed in odd rounds. Over ``2n`` rounds each index runs first, last and (for ``n <= 3``) after
    each other index equally often; ``n = 3`` goes through all six orders.

    Examples:
        >>> [round_order(3, r) for r in range(4)]
        [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1]]
    """
    shift = (round // 2) % n if n else 0
    order = list(range(shift, n)) + list(range(shift))
    return order[::-1] if round % 2 else order


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
        alternate: vary the order between rounds (:func:`round_order`): every rotation of the list, each also
            reversed, so that with two or three functions each one runs before and after each other one equally
            often.
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
    start = time.perf_counter()
    rounds = 0
    while rounds < min_runs or (
        time.perf_counter() - start < budget_s and (max_runs is None or rounds < max_runs)
    ):
        for i in round_order(len(fns), rounds) if alternate else range(len(fns)):
            t0 = time.perf_counter()
            fns[i]()
            if sync is not None:
                sync()
            times[i].append(time.perf_counter() - t0)
        rounds += 1
    return times
