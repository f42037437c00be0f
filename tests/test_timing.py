"""The timing loop's round orders (:mod:`subpixel.timing`): no candidate always follows the same neighbour."""

from __future__ import annotations

import itertools
from collections import Counter

from subpixel.timing import interleaved, round_order


def test_three_candidates_run_in_all_six_orders_and_follow_each_other_equally() -> None:
    orders = [tuple(round_order(3, r)) for r in range(6)]
    assert sorted(orders) == sorted(itertools.permutations(range(3)))
    follows = Counter((a, b) for order in orders for a, b in itertools.pairwise(order))
    assert set(follows.values()) == {2}  # every ordered pair (a before b) twice
    assert len(follows) == 6


def test_two_candidates_take_turns_first() -> None:
    orders = [round_order(2, r) for r in range(4)]
    assert orders.count([0, 1]) == orders.count([1, 0]) == 2
    assert orders[0] != orders[1]  # reversed within each pair of rounds


def test_interleaved_calls_in_round_order() -> None:
    calls: list[int] = []
    interleaved(
        [lambda i=i: calls.append(i) for i in range(3)], min_runs=6, max_runs=6, warmup=0, alternate=True
    )
    assert calls == [i for r in range(6) for i in round_order(3, r)]
    calls.clear()
    interleaved([lambda i=i: calls.append(i) for i in range(3)], min_runs=2, max_runs=2, warmup=0)
    assert calls == [0, 1, 2, 0, 1, 2]
