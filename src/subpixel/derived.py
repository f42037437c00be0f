"""The derived-weight cache: what is computed from a weight once and reused while the weight does not change.

Derived weights (the re-indexed ConvTranspose weight, the DCR-ordered LR weight for channels-last inputs, the
check that an LR weight is zero where no tap lands) are cached per weight *tensor identity* (a weak reference, so
a freed address reused by another tensor never matches), ``_version`` (in-place updates) and storage, dtype and
layout (``weight.data = ...``, as ``Module.to`` does). Callers use the cache only while autograd does not record
the weight. A weight recomputed on every access (``torch.nn.utils.parametrize``, ``weight_norm``) is a new tensor
each time and is derived again. Changing a weight in place through ``.data`` (``w.data.mul_(2)``) bypasses
``_version``: :func:`subpixel.dispatch.clear_caches` (which calls :func:`clear`) after that.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["cached", "clear", "held"]

#: ``id(weight)`` -> (weak reference to the weight, its stamp, {kind: derived value})
_derived: dict[int, tuple[weakref.ref, tuple, dict]] = {}


def _forget(key: int) -> Callable[[weakref.ref], None]:
    def callback(ref: weakref.ref) -> None:
        entry = _derived.get(key)
        if entry is not None and entry[0] is ref:
            _derived.pop(key, None)

    return callback


def cached(weight: Tensor, kind: tuple, make: Callable[[], object]) -> object:
    """``make()`` (computed without autograd), cached per ``weight`` identity, ``_version`` and storage under
    ``kind``.

    Only for weights autograd does not record; a weight recomputed on every access is a new tensor each time.
    """
    key = id(weight)
    # _version counts in-place updates; the storage, dtype and layout catch ``weight.data = ...`` (``Module.to``,
    # ``.double()``), which swaps the data without a version bump
    stamp = (
        weight._version,
        weight.data_ptr(),
        weight.dtype,
        weight.device,
        tuple(weight.shape),
        weight.stride(),
    )
    entry = _derived.get(key)
    if entry is None or entry[0]() is not weight or entry[1] != stamp:
        entry = (weakref.ref(weight, _forget(key)), stamp, {})
        _derived[key] = entry
    values = entry[2]
    kind = (
        *kind,
        torch.is_inference_mode_enabled(),
    )  # inference tensors cannot be saved for a later backward
    if kind not in values:
        with torch.no_grad():
            values[kind] = make()
    return values[kind]


def held(weight: Tensor) -> list[object]:
    """The values cached for ``weight`` now (empty where none; for tests and bug reports)."""
    entry = _derived.get(id(weight))
    if entry is None or entry[0]() is not weight:
        return []
    return list(entry[2].values())


def clear() -> None:
    """Forget every derived weight."""
    _derived.clear()
