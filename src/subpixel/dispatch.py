"""The plan for a call: forcing, the key, the cached plan, and a layer's kept plan.

:func:`subpixel.functional.lr_conv_shuffle` is the route every transposed convolution in LR form takes
(:class:`subpixel.SubPixelConvNd` calls it too): validate → plan → run. This module makes the plan. A call is
validated once per *key* (:mod:`subpixel.plans`); the key's plan names the algorithm, chosen among the exactly
equivalent ones (:mod:`subpixel.algorithms`, which also says where each is valid) by :mod:`subpixel.choice` (the
timed choice). Under tracing, scripting, ``torch.compile``, ``torch.export`` or ONNX export, on meta tensors and
under a ``TorchDispatchMode`` (``FlopCounterMode``) there is no plan: only ``"lr_shuffle"`` runs (the exportable
conv + shuffle graph, the layer's own arithmetic).

**Two weight layouts.** A call gives the LR weight (``weight_lr``: layers built in LR form, ESPCN, the functional
API) or the ConvTranspose weight it re-indexes (``weight_ct``: layers converted by :func:`subpixel.convert_model` /
:func:`subpixel.from_conv_transpose`, which hold the original's parameter under
:class:`~subpixel.reparametrize.ConvTransposeToLR`). With ``weight_ct``, ``"conv_transpose"`` is torch's own layer
on the parameter as it is (no copy), and the LR forms re-index it (cached in inference, :mod:`subpixel.derived`;
on every call in training, where the gradient has to reach the parameter).

**Forcing.** ``algorithm=`` of :func:`~subpixel.functional.lr_conv_shuffle` or of the layer (attribute
``layer.algorithm``), else :func:`force_algorithm` (a context manager), else the environment variable
``SUBPIXEL_ALGORITHM``; ``"auto"`` (or unset) is the automatic choice. A forced algorithm runs wherever it is
valid and ``"lr_shuffle"`` elsewhere (never a wrong result).

**Caches.** Plans, timed choices and derived weights are kept (:mod:`subpixel.plans`, :mod:`subpixel.derived`).
Changing a weight in place through ``.data`` (``w.data.mul_(2)``) bypasses ``_version``: call
:func:`clear_caches` after that.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from subpixel import config, derived, native
from subpixel.algorithms import phase_axes, reachable_mask, zero_outside
from subpixel.choice import choose
from subpixel.config import ALGORITHMS, Algorithm, check_algorithm
from subpixel.eager import is_eager_plain
from subpixel.errors import SubpixelError
from subpixel.geometry import AxisGeometry, Spec, WeightSource, validate
from subpixel.plans import Entry, Plan, cached_plans, clear_caches, entries, generation, remember

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "CallSite",
    "Plan",
    "cached_plans",
    "clear_caches",
    "force_algorithm",
    "forced_algorithm",
    "forcing",
    "plan",
    "plan_call",
    "weight_source",
]


class _Forced(threading.local):
    """The per-thread stack of :func:`force_algorithm`."""

    def __init__(self) -> None:
        self.stack: list[str | None] = []


#: the per-thread stack of :func:`force_algorithm` (``forcing.stack``; read by the steady state of the route)
forcing = _Forced()




def forced_algorithm() -> str | None:
    """The algorithm forced by :func:`force_algorithm`, else by :data:`subpixel.config.current` (``algorithm``,
    from ``$SUBPIXEL_ALGORITHM``), or ``None`` (automatic)."""
    stack = forcing.stack
    if stack:
        return stack[-1]
    if config.environment_error is not None:
        raise SubpixelError(config.environment_error)
    return config.current.algorithm


@contextmanager
def force_algorithm(name: str | None) -> Iterator[None]:
    """Run every transposed convolution in LR form inside the block with ``name`` where it is valid
    (``"lr_shuffle"`` elsewhere); ``"auto"`` or ``None`` restores the automatic choice. Thread-local.

    Examples:
        >>> import torch, subpixel
        >>> layer = subpixel.SubPixelConv2d(4, 2, 4, stride=2, padding=1)
        >>> with force_algorithm("lr_shuffle"):
        ...     layer.plan(torch.randn(1, 4, 5, 5)).algorithm
        'lr_shuffle'
    """
    value = check_algorithm(name, "force_algorithm(name)")
    stack = forcing.stack
    stack.append(value)
    try:
        yield
    finally:
        stack.pop()


# --- the plan of a call ------------------------------------------------------------------------------------------


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _entry(spec: Spec, geoms: tuple[AxisGeometry, ...], batched: bool, spatial: tuple[int, ...]) -> Entry:
    """A key's entry: which LR entries a tap reaches (``None``: all) and the per-phase form's phases."""
    mask = reachable_mask(spec.kernel_size, spec.strides, spec.dilations)
    phases = phase_axes(spec, geoms, spatial)
    return Entry(spec, geoms, batched, None if bool(mask.all()) else mask, phases, {})


def plan_call(
    input: Tensor, weight: Tensor, source: WeightSource, bias: Tensor | None, stride: object, padding: object,
    output_padding: object, groups: int, dilation: object, kernel_size: object, order: str, algorithm: str | None,
    fixed_taps: bool, fresh_weight: bool,
) -> tuple[Plan | None, bool, Spec, tuple[AxisGeometry, ...]]:  # fmt: skip
    """The plan for this call (``None`` off the eager plain path: the LR form, unplanned), whether ``input`` is
    batched, the spec and the geometry: the body of :func:`plan`, and the full route of
    :func:`~subpixel.functional.lr_conv_shuffle`. ``weight`` is in the layout ``source`` says."""
    if not is_eager_plain(input, weight):
        spec, geoms, batched = validate(
            input, weight, source, bias, stride, padding, output_padding, groups, dilation, kernel_size, order
        )
        return None, batched, spec, geoms
    forced = check_algorithm(algorithm, "algorithm") if algorithm is not None else forced_algorithm()
    fixed_taps = fixed_taps or source == "ct"
    grad_on = torch.is_grad_enabled()
    grads = (input.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad)
    recording = grad_on and (grads[0] or grads[1] or grads[2])
    key = (
        input.shape, input.stride(), input.dtype, input.device, weight.shape, weight.stride(), weight.dtype, source,
        None if bias is None else (bias.shape, bias.dtype), stride, padding, output_padding, groups, dilation,
        kernel_size, order, recording and grads, forced, fixed_taps, fresh_weight, _state(input),
    )  # fmt: skip
    try:
        entry = entries.get(key)
    except TypeError:  # lists among the arguments
        key = tuple(_hashable(v) for v in key)
        entry = entries.get(key)
    if entry is None:
        spec, geoms, batched = validate(
            input, weight, source, bias, stride, padding, output_padding, groups, dilation, kernel_size, order
        )
        entry = _entry(spec, geoms, batched, tuple(input.shape[-spec.ndim :]))
        remember(entries, key, entry)
    zero_ok = True
    if entry.mask is not None and source == "lr" and not (grad_on and grads[1] and not fixed_taps):
        zero_ok = bool(
            derived.cached(
                weight,
                ("zero_outside", entry.spec),
                lambda: zero_outside(weight, entry.mask, entry.spec.order),
            )
        )
    plan = entry.plans.get(zero_ok)
    if plan is None:
        x = input if entry.batched else input.unsqueeze(0)
        plan = choose(entry, zero_ok, forced, x, weight, source, bias, grads, fixed_taps, fresh_weight)
        entry.plans[zero_ok] = plan
    return plan, entry.batched, entry.spec, entry.geoms


def _state(input: Tensor) -> tuple:
    """The process state a plan depends on besides its arguments (read on every call of the full route)."""
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_autocast_enabled("cpu" if input.is_cpu else input.device.type),
        torch.get_num_threads(),
        native.available(),
        generation[0],
    )


class CallSite:
    """The last plan of one caller (a layer), reused while its calls look the same: same input shape, strides,
    dtype and device; the same weight layout, shape and dtype; the same bias presence, grad mode and forced
    algorithm; the same process state (:func:`_state`). The steady state of a layer is then a comparison and the
    prepared call (:attr:`Plan.call`); anything else goes the full route (:func:`plan_call`), which refreshes it
    (both in :func:`subpixel.functional.lr_conv_shuffle`)."""

    __slots__ = ("batched", "check", "plan")

    def __init__(self) -> None:
        self.check: tuple | None = None
        self.plan: Plan | None = None
        self.batched = True

    def __reduce__(self) -> tuple:  # copies and pickles start empty (a plan holds prepared callables)
        return (CallSite, ())


def weight_source(weight_lr: Tensor | None, weight_ct: Tensor | None) -> tuple[Tensor, WeightSource]:
    """The one weight given and its layout (``"lr"`` or ``"ct"``)."""
    if (weight_lr is None) == (weight_ct is None):
        raise SubpixelError("give exactly one of weight_lr and weight_ct")
    return (weight_lr, "lr") if weight_ct is None else (weight_ct, "ct")  # type: ignore[return-value]


def plan(
    input: Tensor,
    weight_lr: Tensor | None,
    bias: Tensor | None = None,
    stride: object = 1,
    padding: object = 0,
    output_padding: object = 0,
    groups: int = 1,
    dilation: object = 1,
    kernel_size: object = None,
    *,
    order: str = "crd",
    algorithm: str | None = None,
    fixed_taps: bool = False,
    weight_ct: Tensor | None = None,
    fresh_weight: bool = False,
) -> Plan | None:
    """The :class:`Plan` that :func:`~subpixel.functional.lr_conv_shuffle` follows for these arguments in the current grad mode (choosing it now if
    this is the key's first call); ``None`` under tracing, scripting, compiling or export (the LR form runs)."""
    weight, source = weight_source(weight_lr, weight_ct)
    return plan_call(
        input, weight, source, bias, stride, padding, output_padding, groups, dilation, kernel_size, order,
        algorithm, fixed_taps, fresh_weight,
    )[0]  # fmt: skip
