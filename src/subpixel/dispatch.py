"""One route for every transposed convolution in LR form: validate → plan → run.

:func:`subpixel.functional.lr_conv_shuffle` and :class:`subpixel.SubPixelConvNd` both call :func:`run`. A call is
validated once per *key* (input shape, strides, dtype and device; weight and bias shapes; the layer's arguments;
which tensors autograd records; the forced algorithm), then a :class:`Plan` is made for the key and cached. A plan
is immutable; it names the algorithm, chosen among the exactly equivalent ones (:mod:`subpixel.algorithms`):

``"lr_shuffle"``
    the LR convolution, periodic shuffling and the crop. Always valid: it is the layer's definition.
``"phases"``
    one stride-1 convolution per output phase with only the LR taps where ConvTranspose taps land, and only the
    outputs the crop keeps (saves work when the kernel is not a multiple of the stride, or when ``p mod s ≠ 0``).
``"conv_transpose"``
    torch's transposed convolution with the exactly re-indexed weight
    (:func:`~subpixel.functional.lr_weight_to_conv_transpose`); for ``k == s`` without padding this is oneDNN's
    deconvolution primitive, one GEMM writing the shuffled output directly.

**Validity.** An LR weight can hold entries where no ConvTranspose tap lands (kernel not divisible by the stride,
or dilation). ``"phases"`` and ``"conv_transpose"`` drop those entries, so they are valid only (a) when the weight
is zero there, checked on the weight's values (cached per weight identity and ``_version``), and (b) when autograd
records a gradient of the weight, only if there are no such entries at all: the LR layer's gradient for them is not
zero, and an optimiser step would make them non-zero. Under tracing, scripting, ``torch.compile``, ``torch.export``
or ONNX export, on meta tensors and under a ``TorchDispatchMode`` (``FlopCounterMode``) only ``"lr_shuffle"`` runs
(the exportable conv + shuffle graph, the layer's own arithmetic), unplanned.

**Choice.** With one valid algorithm, it runs. While autograd records (training), the LR form runs: a timed
choice can differ from run to run, and with it the float rounding, which would break bitwise-reproducible training
and resuming; ``SUBPIXEL_TIMED_TRAINING=1`` times in training too. Under ``torch.use_deterministic_algorithms(True)``
nothing is timed (the LR form runs). Otherwise (inference, several valid algorithms) the first call of a key times each (as
``torch.backends.cudnn.benchmark`` does): one warm-up call each, then interleaved calls (inference: the forward
under ``no_grad``; training: forward and backward of the tensors that require gradients, on detached copies), and
the fastest (minimum over 2-10 rounds: other processes' load only adds time) wins, unless it is within 3 % of the LR
form, which is then kept. The timings are in :attr:`Plan.reason`. A timed choice is reused for inputs of the same
layer, batch, memory format and grad mode whose spatial size rounds to the same power of two (images of many
sizes are not each timed).

**Forcing.** ``algorithm=`` of :func:`~subpixel.functional.lr_conv_shuffle` or of the layer (attribute
``layer.algorithm``), else :func:`force_algorithm` (a context manager), else the environment variable
``SUBPIXEL_ALGORITHM``; ``"auto"`` (or unset) is the automatic choice. A forced algorithm runs wherever it is
valid and ``"lr_shuffle"`` elsewhere (never a wrong result).

**Derived weights** (the re-indexed ConvTranspose weight, the DCR-ordered LR weight for channels-last inputs, the
zero check) are cached per weight *tensor identity* (a weak reference, so a freed address reused by another tensor
never matches), ``_version`` (in-place updates) and storage, dtype and layout (``weight.data = ...``, as
``Module.to`` does), only while autograd does not record the weight. A weight
recomputed on every access (``torch.nn.utils.parametrize``, ``weight_norm``) is a new tensor each time and is
derived again. Changing a weight in place through ``.data`` (``w.data.mul_(2)``) bypasses ``_version``: call
:func:`clear_caches` after that.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from subpixel import native
from subpixel._validation import ChannelOrder, as_tuple, check_order
from subpixel.algorithms import (
    AxisPhase,
    conv_transpose_core,
    lr_conv_core,
    phase_conv_core,
    phase_plan,
    reachable_mask,
    zero_outside,
)
from subpixel.geometry import (
    AxisGeometry,
    _check_groups,
    _check_input,
    _spatial_dims,
    lr_geometry,
    lr_weight_to_conv_transpose,
)
from subpixel.shuffle import _memory_format, _use_plain_path, convert_channel_order

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Plan",
    "cached_plans",
    "clear_caches",
    "force_algorithm",
    "forced_algorithm",
    "run",
]

Algorithm = Literal["lr_shuffle", "phases", "conv_transpose"]
ALGORITHMS: tuple[str, ...] = ("lr_shuffle", "phases", "conv_transpose")
_ENV = "SUBPIXEL_ALGORITHM"
_ENV_TRAINING = "SUBPIXEL_TIMED_TRAINING"
_PLAN_CACHE_SIZE = 512
_KEEP_LR = 0.97  # another algorithm replaces the LR form only when timed at least 3 % faster
#: "phases" is a candidate only where it saves at least 5 % of the LR form's multiply-adds
_PHASE_MAX_WORK = 0.95
#: ... and needs at most this many convolutions (FCN-32s, stride 32²: 1 024 small convs, never faster)
_PHASE_MAX_CONVS = 64


@dataclass(frozen=True)
class Spec:
    """The validated arguments of one transposed convolution in LR form (everything but the tensors)."""

    ndim: int
    strides: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    dilations: tuple[int, ...]
    kernel_size: tuple[int, ...]
    groups: int
    order: ChannelOrder


@dataclass(frozen=True)
class Plan:
    """How one key runs (immutable; cached).

    Attributes:
        algorithm: the algorithm that runs (see the module docstring).
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


@dataclass(frozen=True)
class _Entry:
    """What is known of a key before the weight's values are looked at."""

    spec: Spec
    geoms: tuple[AxisGeometry, ...]
    batched: bool
    mask: Tensor | None  # reachable LR entries (R, *K); None where every entry is reached
    phases: tuple[tuple[AxisPhase, ...], ...] | None  # None where the per-phase form saves no work
    plans: dict  # zero-outside flag -> Plan (filled once per flag)


_plans: OrderedDict[tuple, _Entry] = OrderedDict()
#: timed choices, reused for inputs of the same layer, batch, format and grad mode whose spatial size is within a
#: factor of about 2 (so that images of many sizes are not each timed again)
_decisions: OrderedDict[tuple, tuple[str, str]] = OrderedDict()
_lock = threading.Lock()
_forced = threading.local()


# --- forcing -----------------------------------------------------------------------------------------------------


def _check_algorithm(name: str | None, origin: str) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or name.strip().lower() not in (*ALGORITHMS, "auto"):
        raise ValueError(f"{origin} must be one of {(*ALGORITHMS, 'auto')}, got {name!r}")
    name = name.strip().lower()
    return None if name == "auto" else name


def _timed_training() -> bool:
    """Whether ``$SUBPIXEL_TIMED_TRAINING`` asks for the timed choice while autograd records too."""
    return os.environ.get(_ENV_TRAINING, "").strip().lower() in ("1", "true", "yes", "on")


def forced_algorithm() -> str | None:
    """The algorithm forced by :func:`force_algorithm` or ``$SUBPIXEL_ALGORITHM``, or ``None`` (automatic)."""
    stack = getattr(_forced, "stack", None)
    if stack:
        return stack[-1]
    return _check_algorithm(os.environ.get(_ENV) or None, f"${_ENV}")


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
    value = _check_algorithm(name, "force_algorithm(name)")
    stack = getattr(_forced, "stack", None)
    if stack is None:
        stack = _forced.stack = []
    stack.append(value)
    try:
        yield
    finally:
        stack.pop()


# --- derived weights ---------------------------------------------------------------------------------------------

_derived: dict[int, tuple[weakref.ref, tuple, dict]] = {}


def cached_plans() -> list[Plan]:
    """Every plan chosen so far and still cached (for benchmarks and bug reports)."""
    with _lock:
        return [p for entry in _plans.values() for p in entry.plans.values()]


def clear_caches() -> None:
    """Forget every plan and derived weight (after changing a weight through ``.data``, or to re-time)."""
    with _lock:
        _plans.clear()
        _decisions.clear()
        _derived.clear()


def _forget(key: int) -> Callable[[weakref.ref], None]:
    def callback(ref: weakref.ref) -> None:
        entry = _derived.get(key)
        if entry is not None and entry[0] is ref:
            _derived.pop(key, None)

    return callback


def _derive(weight: Tensor, kind: tuple, make: Callable[[], object]) -> object:
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


# --- validate and plan -------------------------------------------------------------------------------------------


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _validate(
    input: Tensor,
    weight_lr: Tensor,
    bias: Tensor | None,
    stride: object,
    padding: object,
    output_padding: object,
    groups: int,
    dilation: object,
    kernel_size: object,
    order: str,
) -> tuple[Spec, tuple[AxisGeometry, ...], bool]:
    """The checks of :func:`~subpixel.functional.lr_conv_shuffle`; the spec, geometry and whether ``input`` has a
    batch dimension."""
    order = check_order(order)
    n = _spatial_dims(weight_lr, "weight_lr")
    strides = as_tuple(stride, n, "stride", minimum=1)  # type: ignore[arg-type]
    pads = as_tuple(padding, n, "padding", minimum=0)  # type: ignore[arg-type]
    out_pads = as_tuple(output_padding, n, "output_padding", minimum=0)  # type: ignore[arg-type]
    dilations = as_tuple(dilation, n, "dilation", minimum=1)  # type: ignore[arg-type]
    k_lr = tuple(weight_lr.shape[2:])
    if kernel_size is None:
        kernel = tuple(((kk * s - 1) // d) + 1 for kk, s, d in zip(k_lr, strides, dilations, strict=True))
    else:
        kernel = as_tuple(kernel_size, n, "kernel_size", minimum=1)  # type: ignore[arg-type]
    r_total = math.prod(strides)
    _check_groups(weight_lr.shape[0], groups * r_total, f"weight_lr.shape[0] (out_channels·{r_total})")
    if order == "dcr" and groups != 1:
        raise ValueError(f"order='dcr' needs groups == 1, got groups={groups}")
    x, batched = _check_input(input, n, weight_lr.shape[1] * groups)
    geoms = tuple(
        lr_geometry(length, k, s, p, a, d)
        for length, k, s, p, a, d in zip(x.shape[2:], kernel, strides, pads, out_pads, dilations, strict=True)
    )
    if tuple(g.lr_kernel for g in geoms) != k_lr:
        raise ValueError(
            f"weight_lr has LR kernel size {k_lr}, but kernel_size={kernel}, stride={strides}, "
            f"dilation={dilations} need {tuple(g.lr_kernel for g in geoms)}"
        )
    c_out = weight_lr.shape[0] // r_total
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")
    spec = Spec(n, strides, pads, out_pads, dilations, kernel, groups, order)
    return spec, geoms, batched


def _entry(spec: Spec, geoms: tuple[AxisGeometry, ...], batched: bool, spatial: tuple[int, ...]) -> _Entry:
    mask = reachable_mask(spec.kernel_size, spec.strides, spec.dilations)
    phases = None
    axes, fraction = phase_plan(spatial, spec.kernel_size, spec.strides, spec.dilations, geoms)
    if fraction <= _PHASE_MAX_WORK and math.prod(spec.strides) <= _PHASE_MAX_CONVS:
        phases = tuple(tuple(a) for a in axes)
    return _Entry(spec, geoms, batched, None if bool(mask.all()) else mask, phases, {})


def _lr_order(spec: Spec, x: Tensor, weight_grad: bool) -> ChannelOrder:
    """The LR weight order to convolve with: DCR for a channels-last input (its shuffle is a block copy), except
    when autograd records the weight and the compiled copy kernel shuffles CRD near bandwidth (no per-call reorder
    of the weight and its gradient)."""
    if spec.order == "dcr" or spec.groups != 1 or _memory_format(x) == torch.contiguous_format:
        return spec.order
    if weight_grad and x.device.type == "cpu" and native.available():
        return spec.order
    return "dcr"


def _candidates(entry: _Entry, zero_outside_taps: bool, weight_grad: bool) -> list[str]:
    """The valid algorithms (module docstring): ``"lr_shuffle"`` always; the others where the weight's extra LR
    entries are zero and, when autograd records the weight, where it has none."""
    cands = ["lr_shuffle"]
    spec = entry.spec
    if entry.mask is None or (zero_outside_taps and not weight_grad):
        if entry.phases is not None:
            cands.append("phases")
        if all(
            a < max(s, d) for a, s, d in zip(spec.output_padding, spec.strides, spec.dilations, strict=True)
        ):
            cands.append("conv_transpose")  # torch's own limit on output_padding
    return cands


# --- run ---------------------------------------------------------------------------------------------------------


def _execute(
    algorithm: str, plan_spec: Spec, geoms: Sequence[AxisGeometry], phases, lr_order: ChannelOrder,
    x: Tensor, weight: Tensor, bias: Tensor | None, weight_grad: bool,
) -> Tensor:  # fmt: skip
    """Run one algorithm on checked, batched arguments."""
    spec = plan_spec
    fmt = _memory_format(x)
    if algorithm == "conv_transpose":

        def make_ct() -> Tensor:
            w = lr_weight_to_conv_transpose(
                weight,
                spec.kernel_size,
                spec.strides,
                spec.dilations,
                spec.groups,
                order=spec.order,
                check=False,
            )
            return w.contiguous(memory_format=fmt)

        w_ct = make_ct() if weight_grad else _derive(weight, ("ct", spec, fmt), make_ct)
        return conv_transpose_core(
            x,
            w_ct,
            bias,
            spec.strides,
            spec.padding,
            spec.output_padding,
            spec.groups,
            spec.dilations,  # type: ignore[arg-type]
        )
    if algorithm == "phases":
        return phase_conv_core(x, weight, bias, phases, spec.groups, spec.order)
    w = weight
    if lr_order != spec.order:

        def make_dcr() -> Tensor:
            return convert_channel_order(weight, spec.strides, spec.order, lr_order, dim=0).contiguous(
                memory_format=fmt
            )

        w = make_dcr() if weight_grad else _derive(weight, ("dcr", spec, fmt), make_dcr)  # type: ignore[assignment]
    return lr_conv_core(x, w, bias, geoms, spec.strides, spec.groups, lr_order)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(
    cands: list[str], entry: _Entry, lr_order: ChannelOrder, x: Tensor, weight: Tensor, bias: Tensor | None,
    grads: tuple[bool, bool, bool],
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
            y = _execute(
                algorithm, entry.spec, entry.geoms, entry.phases, lr_order, xs, ws, bs, grads[1] and training
            )
            if training and y.requires_grad:
                torch.autograd.grad(y, leaves, torch.ones_like(y), allow_unused=True)
        _sync(x.device)

    times: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    for (
        algorithm
    ) in cands:  # warm-up (oneDNN primitive creation, allocator); an algorithm that fails is dropped
        t0 = time.perf_counter()
        try:
            call(algorithm)
        except RuntimeError as exc:
            if algorithm == "lr_shuffle":
                raise
            errors[algorithm] = str(exc).splitlines()[0][:80]
            continue
        times[algorithm] = [time.perf_counter() - t0]
    first = max(ts[0] for ts in times.values())
    rounds = (
        2 if first > 0.1 else min(10, max(3, int(0.05 / max(first, 1e-6))))
    )  # ~50 ms of timing, 2-10 rounds
    for algorithm in times:
        times[algorithm] = []
    for _ in range(rounds):
        for algorithm in times:
            t0 = time.perf_counter()
            call(algorithm)
            times[algorithm].append(time.perf_counter() - t0)
    fastest = {a: min(ts) for a, ts in times.items()}  # the minimum: load from other processes only adds time
    best = min(fastest, key=fastest.__getitem__)
    if (
        fastest[best] > _KEEP_LR * fastest["lr_shuffle"]
    ):  # within noise of the LR form: keep the layer's own form
        best = "lr_shuffle"
    summary = ", ".join(f"{a} {1e3 * t:.3g} ms" for a, t in fastest.items())
    summary += "".join(f", {a} failed ({e})" for a, e in errors.items())
    return best, f"timed (fastest of {rounds}): {summary}"


def _choose(
    entry: _Entry, zero_ok: bool, forced: str | None, x: Tensor, weight: Tensor, bias: Tensor | None,
    grads: tuple[bool, bool, bool], fixed_taps: bool,
) -> Plan:  # fmt: skip
    weight_grad = torch.is_grad_enabled() and grads[1]
    lr_order = _lr_order(entry.spec, x, weight_grad)
    cands = _candidates(entry, zero_ok, weight_grad and not fixed_taps)
    if forced is not None:
        algorithm = forced if forced in cands else "lr_shuffle"
        reason = "forced" if algorithm == forced else f"{forced} forced but not valid here; lr_shuffle runs"
    elif len(cands) == 1:
        algorithm, reason = cands[0], "the only valid algorithm"
    elif torch.are_deterministic_algorithms_enabled():
        algorithm, reason = "lr_shuffle", "torch.use_deterministic_algorithms(True): no timed choice"
    elif torch.is_grad_enabled() and any(grads) and not _timed_training():
        algorithm = "lr_shuffle"
        reason = (
            f"training: the LR form (a timed choice could differ between runs; {_ENV_TRAINING}=1 times it)"
        )
    else:
        size_class = (
            entry.spec, tuple(cands), lr_order, x.shape[0], x.shape[1], round(math.log2(max(math.prod(x.shape[2:]), 1))),
            _memory_format(x), x.dtype, x.device, tuple(weight.shape), weight.stride(), bias is None,
            torch.is_grad_enabled() and grads, torch.is_autocast_enabled(x.device.type), native.available(),
            torch.get_num_threads(),
        )  # fmt: skip
        decided = _decisions.get(size_class)
        if decided is None:
            decided = _time(cands, entry, lr_order, x, weight, bias, grads)
            with _lock:
                _decisions[size_class] = decided
                while len(_decisions) > _PLAN_CACHE_SIZE:
                    _decisions.popitem(last=False)
        else:
            decided = (decided[0], f"as timed for an input of about this size: {decided[1]}")
        algorithm, reason = decided
    return Plan(algorithm, tuple(cands), reason, lr_order, entry.spec, entry.geoms, entry.phases)  # type: ignore[arg-type]


def _unplanned(input: Tensor, weight_lr: Tensor) -> bool:
    """Whether the LR form runs unplanned: under tracing, scripting, compiling or export, for tensor subclasses,
    symbolic sizes and meta tensors, and under a ``TorchDispatchMode`` (``FlopCounterMode`` and other observers of
    the ops, which count the layer's own LR arithmetic; no candidate is timed inside them)."""
    return (
        _use_plain_path(input)
        or _use_plain_path(weight_lr)
        or not all(type(v) is int for v in input.shape)
        or input.device.type == "meta"
        or is_in_torch_dispatch_mode()
    )


def _plan_and_inputs(
    input: Tensor, weight_lr: Tensor, bias: Tensor | None, stride: object, padding: object, output_padding: object,
    groups: int, dilation: object, kernel_size: object, order: str, algorithm: str | None, fixed_taps: bool,
) -> tuple[Plan | None, Tensor, bool, Spec | None, tuple[AxisGeometry, ...] | None]:  # fmt: skip
    """The plan for this call (``None`` under tracing/compiling/export: the LR form, unplanned), and the batched
    input."""
    if _unplanned(input, weight_lr):
        spec, geoms, batched = _validate(
            input, weight_lr, bias, stride, padding, output_padding, groups, dilation, kernel_size, order
        )
        return None, (input if batched else input.unsqueeze(0)), batched, spec, geoms
    forced = _check_algorithm(algorithm, "algorithm") if algorithm is not None else forced_algorithm()
    grads = (input.requires_grad, weight_lr.requires_grad, bias is not None and bias.requires_grad)
    recording = torch.is_grad_enabled() and any(grads)
    key = (
        tuple(input.shape), input.stride(), input.dtype, input.device,
        tuple(weight_lr.shape), weight_lr.stride(), weight_lr.dtype,
        None if bias is None else (tuple(bias.shape), bias.dtype),
        _hashable(stride), _hashable(padding), _hashable(output_padding), groups, _hashable(dilation),
        _hashable(kernel_size), order, recording and grads, forced, fixed_taps,
        recording and _timed_training(), torch.are_deterministic_algorithms_enabled(),
        torch.is_autocast_enabled(input.device.type), native.available(), torch.get_num_threads(),
    )  # fmt: skip
    entry = _plans.get(key)
    if entry is None:
        spec, geoms, batched = _validate(
            input, weight_lr, bias, stride, padding, output_padding, groups, dilation, kernel_size, order
        )
        spatial = tuple(input.shape[-spec.ndim :])
        entry = _entry(spec, geoms, batched, spatial)
        with _lock:
            _plans[key] = entry
            while len(_plans) > _PLAN_CACHE_SIZE:
                _plans.popitem(last=False)
    x = input if entry.batched else input.unsqueeze(0)
    free_grad = torch.is_grad_enabled() and grads[1] and not fixed_taps
    zero_ok = True
    if entry.mask is not None and not free_grad:
        zero_ok = bool(
            _derive(
                weight_lr,
                ("zero_outside", entry.spec),
                lambda: zero_outside(weight_lr, entry.mask, entry.spec.order),
            )
        )
    plan = entry.plans.get(zero_ok)
    if plan is None:
        plan = _choose(entry, zero_ok, forced, x, weight_lr, bias, grads, fixed_taps)
        entry.plans[zero_ok] = plan
    return plan, x, entry.batched, entry.spec, entry.geoms


def plan(
    input: Tensor,
    weight_lr: Tensor,
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
) -> Plan | None:
    """The :class:`Plan` that :func:`run` follows for these arguments in the current grad mode (choosing it now if
    this is the key's first call); ``None`` under tracing, scripting, compiling or export (the LR form runs)."""
    return _plan_and_inputs(
        input,
        weight_lr,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        kernel_size,
        order,
        algorithm,
        fixed_taps,
    )[0]


def run(
    input: Tensor,
    weight_lr: Tensor,
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
) -> Tensor:
    """Validate, plan (cached) and run: the body of :func:`~subpixel.functional.lr_conv_shuffle` (same arguments
    and result; see there).

    ``fixed_taps=True`` is the caller's guarantee that the LR entries no ConvTranspose tap reaches are zero by
    construction and that their gradients are discarded (the LR weight is computed from a ConvTranspose-layout
    parameter, e.g. by a parametrization marked ``subpixel_fixed_taps = True``): the other algorithms are then
    valid while autograd records the weight too.

    Shape:
        - input: ``(N, C_in, *L_in)`` or ``(C_in, *L_in)``; weight_lr: ``(C_out·R, C_in/groups, *K)``.
        - output: ``(N, C_out, *L_out)`` (no ``N`` for an unbatched input).
    """
    p, x, batched, spec, geoms = _plan_and_inputs(
        input,
        weight_lr,
        bias,
        stride,
        padding,
        output_padding,
        groups,
        dilation,
        kernel_size,
        order,
        algorithm,
        fixed_taps,
    )
    if p is None:  # traced, compiled, exported: the exportable conv + shuffle graph
        assert spec is not None and geoms is not None
        y = lr_conv_core(x, weight_lr, bias, geoms, spec.strides, spec.groups, spec.order)
    else:
        weight_grad = torch.is_grad_enabled() and weight_lr.requires_grad
        y = _execute(p.algorithm, p.spec, p.geoms, p.phases, p.lr_order, x, weight_lr, bias, weight_grad)
    return y if batched else y.squeeze(0)
