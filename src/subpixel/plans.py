"""What a plan is, and where plans are kept.

A call of the route (:func:`subpixel.functional.lr_conv_shuffle`) is validated once per *key* (input shape,
strides, dtype and device; weight and bias shapes; the layer's arguments; which tensors autograd records; the
forced algorithm; the process state): the key's :class:`Entry` holds what is known before the weight's values are
looked at, and one immutable :class:`Plan` per answer of the weight's zero check. Timed choices are kept apart
(:data:`decisions`), reused for inputs of the same layer, batch, memory format and grad mode whose spatial size
rounds to the same power of two. Both caches keep the last ``config.plan_cache_size`` keys.

:func:`clear_caches` forgets every plan, timed choice and derived weight (:mod:`subpixel.derived`) and bumps
:data:`generation`, which makes every layer's kept plan (:class:`subpixel.dispatch.CallSite`) stale; every change
of :mod:`subpixel.config` calls it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from torch import Tensor

from subpixel import config, derived
from subpixel._validation import ChannelOrder
from subpixel.algorithms import AxisPhase, Prepared
from subpixel.config import Algorithm
from subpixel.geometry import AxisGeometry, Spec

__all__ = [
    "Entry", "Plan", "cached_plans", "clear_caches", "decisions", "entries", "generation", "remember",
]

@dataclass(frozen=True)
class Plan:
    """How one key runs (immutable; cached).

    Attributes:
        algorithm: the algorithm that runs (see :mod:`subpixel.algorithms`).
        candidates: the algorithms that were valid for the key.
        reason: how the algorithm was chosen (``"only valid"``, ``"forced"``, the timings, ...).
        lr_order: channel order of the LR weight the ``"lr_shuffle"`` form convolves with (``"dcr"`` for a
            channels-last input: its shuffle is then a block copy).
    """

    algorithm: Algorithm
    candidates: tuple[str, ...]
    reason: str
    lr_order: ChannelOrder
    spec: Spec = field(repr=False)
    geoms: tuple[AxisGeometry, ...] = field(repr=False)
    phases: tuple[tuple[AxisPhase, ...], ...] | None = field(repr=False)
    #: the prepared computation: ``call(x, weight, bias, per_call)`` on a batched input, the weight in the layout
    #: the plan was made for (``per_call``: derived weights are computed on this call instead of cached)
    call: Prepared = field(repr=False, compare=False)
    #: the plan depends on the weight's values (an LR weight checked for zeros where no tap lands): a
    #: :class:`~subpixel.dispatch.CallSite` does not reuse it without that check
    reads_values: bool = field(repr=False, default=False)


@dataclass(frozen=True)
class Entry:
    """What is known of a key before the weight's values are looked at."""

    spec: Spec
    geoms: tuple[AxisGeometry, ...]
    batched: bool
    mask: Tensor | None  # reachable LR entries (R, *K); None where every entry is reached
    phases: tuple[tuple[AxisPhase, ...], ...] | None  # None where the per-phase form saves no work
    plans: dict  # zero-outside flag -> Plan (filled once per flag)


#: key -> :class:`Entry`, least recently added first
entries: OrderedDict[tuple, Entry] = OrderedDict()
#: size class -> (algorithm, how it was timed): timed choices, reused for inputs of the same layer, batch, format
#: and grad mode whose spatial size is within a factor of about 2 (so that images of many sizes are not each
#: timed again)
decisions: OrderedDict[tuple, tuple[str, str]] = OrderedDict()
#: bumped by every change of :mod:`subpixel.config` and by :func:`clear_caches`: call sites drop their plan
generation = [0]
_lock = threading.Lock()


def remember(cache: OrderedDict, key: tuple, value: object) -> None:
    """Keep ``value`` under ``key`` in ``cache`` (:data:`entries` or :data:`decisions`), forgetting the oldest
    keys beyond ``config.plan_cache_size``."""
    with _lock:
        cache[key] = value
        while len(cache) > config.current.plan_cache_size:
            cache.popitem(last=False)


def cached_plans() -> list[Plan]:
    """Every plan chosen so far and still cached (for benchmarks and bug reports)."""
    with _lock:
        return [p for entry in entries.values() for p in entry.plans.values()]


def clear_caches() -> None:
    """Forget every plan and derived weight (after changing a weight through ``.data``, or to re-time)."""
    with _lock:
        entries.clear()
        decisions.clear()
        derived.clear()
        generation[0] += 1


config.on_change(clear_caches)
