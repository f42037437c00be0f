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

**Two weight layouts.** A call gives the LR weight (``weight_lr``: layers built in LR form, ESPCN, the functional
API) or the ConvTranspose weight it re-indexes (``weight_ct``: layers converted by :func:`subpixel.convert_model` /
:func:`subpixel.from_conv_transpose`, which hold the original's parameter under
:class:`~subpixel.reparametrize.ConvTransposeToLR`). With ``weight_ct``, ``"conv_transpose"`` is torch's own layer
on the parameter as it is (no copy), and the LR forms re-index it (cached in inference; on every call in training,
where the gradient has to reach the parameter).

**Validity.** An LR weight can hold entries where no ConvTranspose tap lands (kernel not divisible by the stride,
or dilation). ``"phases"`` and ``"conv_transpose"`` drop those entries, so they are valid only (a) when the weight
is zero there, checked on the weight's values (cached per weight identity and ``_version``), and (b) when autograd
records a gradient of an LR weight, only if there are no such entries at all: the LR layer's gradient for them is
not zero, and an optimiser step would make them non-zero. A ConvTranspose-layout weight (or a parametrization
marked ``subpixel_fixed_taps = True``) has no such entries: every algorithm is valid, in training too. Under
tracing, scripting, ``torch.compile``, ``torch.export`` or ONNX export, on meta tensors and under a
``TorchDispatchMode`` (``FlopCounterMode``) only ``"lr_shuffle"`` runs (the exportable conv + shuffle graph, the
layer's own arithmetic), unplanned.

**Choice.** With one valid algorithm, it runs. Under ``torch.use_deterministic_algorithms(True)`` nothing is timed
(the LR form runs). While autograd records (training) an LR-layout weight, the LR form runs (the layer's own
definition, bitwise reproducible between runs); a ConvTranspose-layout weight (the drop-in) is timed in training
too, as ``torch.backends.cudnn.benchmark`` would: it replaces torch's layer, which must never be faster.
``SUBPIXEL_TIMED_TRAINING=1`` times every layer in training, ``=0`` none (the LR form). Otherwise the first call
of a key times each valid algorithm (inference: the forward under ``no_grad``; training: forward and backward of
the tensors that require gradients, on detached copies): two warm-up calls each (oneDNN primitive creation, the
first page faults of a large output), then 3-15 interleaved rounds in alternating order, each algorithm scored by
the mean of its faster half (other processes' load only adds time). The fastest wins unless it is within 3 % of
the reference (the LR form; torch's own layer for a ConvTranspose-layout weight), which is then kept. The timings
are in :attr:`Plan.reason`. A timed choice is reused for inputs of the same layer, batch, memory format and grad
mode whose spatial size rounds to the same power of two (images of many sizes are not each timed).

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
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from subpixel import config, native
from subpixel._validation import ChannelOrder, as_tuple, check_order
from subpixel.algorithms import (
    AxisPhase,
    conv_transpose_core,
    lr_conv_core,
    phase_conv_core,
    phase_conv_count,
    phase_plan,
    reachable_mask,
    zero_outside,
)
from subpixel.config import ALGORITHMS, check_algorithm
from subpixel.eager import is_eager_plain
from subpixel.errors import SubpixelError
from subpixel.geometry import (
    CONV_TRANSPOSE,
    AxisGeometry,
    check_groups,
    check_input,
    conv_transpose_weight_to_lr,
    lr_geometry,
    lr_kernel_size,
    lr_weight_to_conv_transpose,
    spatial_dims,
)
from subpixel.shuffle import convert_channel_order, memory_format_of
from subpixel.timing import interleaved

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "CallSite",
    "Plan",
    "cached_plans",
    "clear_caches",
    "force_algorithm",
    "forced_algorithm",
    "run",
]

Algorithm = Literal["lr_shuffle", "phases", "conv_transpose"]
#: the layout of the weight a call gives: ``"lr"`` (``weight_lr``) or ``"ct"`` (ConvTranspose, ``weight_ct``)
WeightSource = Literal["lr", "ct"]


class Spec(NamedTuple):
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
    #: the prepared computation: ``call(x, weight, bias, per_call)`` on a batched input, the weight in the layout
    #: the plan was made for (``per_call``: derived weights are computed on this call instead of cached)
    call: Callable[[Tensor, Tensor, Tensor | None, bool], Tensor] = field(repr=False, compare=False)
    #: the plan depends on the weight's values (an LR weight checked for zeros where no tap lands): a
    #: :class:`CallSite` does not reuse it without that check
    reads_values: bool = field(repr=False, default=False)


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


class _Forced(threading.local):
    """The per-thread stack of :func:`force_algorithm`."""

    def __init__(self) -> None:
        self.stack: list[str | None] = []


_forced = _Forced()


# --- forcing -----------------------------------------------------------------------------------------------------


def forced_algorithm() -> str | None:
    """The algorithm forced by :func:`force_algorithm`, else by :data:`subpixel.config.current` (``algorithm``,
    from ``$SUBPIXEL_ALGORITHM``), or ``None`` (automatic)."""
    stack = _forced.stack
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
    stack = _forced.stack
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
        _generation[0] += 1


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
    weight: Tensor,
    source: WeightSource,
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
    batch dimension. ``weight`` is the LR weight (``source == "lr"``) or the ConvTranspose weight (``"ct"``)."""
    order = check_order(order)
    name = "weight_lr" if source == "lr" else "weight_ct"
    n = spatial_dims(weight, name)
    strides = as_tuple(stride, n, "stride", minimum=1)  # type: ignore[arg-type]
    pads = as_tuple(padding, n, "padding", minimum=0)  # type: ignore[arg-type]
    out_pads = as_tuple(output_padding, n, "output_padding", minimum=0)  # type: ignore[arg-type]
    dilations = as_tuple(dilation, n, "dilation", minimum=1)  # type: ignore[arg-type]
    r_total = math.prod(strides)
    if source == "ct":
        kernel = tuple(weight.shape[2:])
        if kernel_size is not None and as_tuple(kernel_size, n, "kernel_size", minimum=1) != kernel:  # type: ignore[arg-type]
            raise SubpixelError(f"weight_ct has kernel size {kernel}, but kernel_size={kernel_size!r}")
        check_groups(weight.shape[0], groups, "weight_ct.shape[0] (in_channels)")
        lr_shape = (weight.shape[1] * groups * r_total, weight.shape[0] // groups)
        k_lr = tuple(lr_kernel_size(kk, s, d) for kk, s, d in zip(kernel, strides, dilations, strict=True))
        in_channels = weight.shape[0]
    else:
        k_lr = tuple(weight.shape[2:])
        if kernel_size is None:
            kernel = tuple(((kk * s - 1) // d) + 1 for kk, s, d in zip(k_lr, strides, dilations, strict=True))
        else:
            kernel = as_tuple(kernel_size, n, "kernel_size", minimum=1)  # type: ignore[arg-type]
        lr_shape = tuple(weight.shape[:2])
        in_channels = weight.shape[1] * groups
    check_groups(lr_shape[0], groups * r_total, f"weight_lr.shape[0] (out_channels·{r_total})")
    if order == "dcr" and groups != 1:
        raise SubpixelError(f"order='dcr' needs groups == 1, got groups={groups}")
    x, batched = check_input(input, n, in_channels)
    geoms = tuple(
        lr_geometry(length, k, s, p, a, d)
        for length, k, s, p, a, d in zip(x.shape[2:], kernel, strides, pads, out_pads, dilations, strict=True)
    )
    if tuple(g.lr_kernel for g in geoms) != k_lr:
        raise SubpixelError(
            f"weight_lr has LR kernel size {k_lr}, but kernel_size={kernel}, stride={strides}, "
            f"dilation={dilations} need {tuple(g.lr_kernel for g in geoms)}"
        )
    c_out = lr_shape[0] // r_total
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise SubpixelError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")
    spec = Spec(n, strides, pads, out_pads, dilations, kernel, groups, order)
    return spec, geoms, batched


def _entry(spec: Spec, geoms: tuple[AxisGeometry, ...], batched: bool, spatial: tuple[int, ...]) -> _Entry:
    mask = reachable_mask(spec.kernel_size, spec.strides, spec.dilations)
    phases = None
    axes, fraction = phase_plan(spatial, spec.kernel_size, spec.strides, spec.dilations, geoms)
    if (
        fraction <= config.current.phase_max_work
        and math.prod(spec.strides) <= config.current.phase_max_convs
        and phase_conv_count(axes, spatial) > 0
    ):
        phases = tuple(tuple(a) for a in axes)
    return _Entry(spec, geoms, batched, None if bool(mask.all()) else mask, phases, {})


def _lr_order(spec: Spec, x: Tensor, weight_grad: bool) -> ChannelOrder:
    """The LR weight order to convolve with: DCR for a channels-last input (its shuffle is a block copy), except
    when autograd records an LR weight parameter and the compiled copy kernel shuffles CRD near bandwidth (no
    per-call reorder of the weight and its gradient)."""
    if spec.order == "dcr" or spec.groups != 1 or memory_format_of(x) == torch.contiguous_format:
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
    x: Tensor, weight: Tensor, source: WeightSource, bias: Tensor | None, per_call: bool,
) -> Tensor:  # fmt: skip
    """Run one algorithm on checked, batched arguments; ``weight`` in LR (``source == "lr"``) or ConvTranspose
    (``"ct"``) layout. A derived weight is computed on every call where ``per_call`` (autograd records ``weight``,
    so that its gradient flows, or ``weight`` is a new tensor on every call), else cached (:func:`_derive`)."""
    spec = plan_spec
    if algorithm == "conv_transpose":
        if source == "ct":
            w_ct = weight  # torch's own layer, exactly: the weight as it is
        else:
            fmt = memory_format_of(x)

            def make_ct() -> Tensor:
                w = lr_weight_to_conv_transpose(
                    weight, spec.kernel_size, spec.strides, spec.dilations, spec.groups, order=spec.order,
                    check=False,
                )  # fmt: skip
                return w.contiguous(memory_format=fmt)

            w_ct = make_ct() if per_call else _derive(weight, ("ct", spec, fmt), make_ct)  # type: ignore[assignment]
        return conv_transpose_core(
            x, w_ct, bias, spec.strides, spec.padding, spec.output_padding, spec.groups, spec.dilations
        )  # fmt: skip
    order = spec.order if algorithm == "phases" else lr_order
    fmt = memory_format_of(x)
    w = weight
    if source == "ct":

        def make_lr() -> Tensor:
            return conv_transpose_weight_to_lr(
                weight, spec.strides, spec.dilations, spec.groups, order=order, memory_format=fmt
            )

        w = make_lr() if per_call else _derive(weight, ("lr", spec, order, fmt), make_lr)  # type: ignore[assignment]
    elif order != spec.order:

        def make_dcr() -> Tensor:
            return convert_channel_order(weight, spec.strides, spec.order, order, dim=0).contiguous(
                memory_format=fmt
            )

        w = make_dcr() if per_call else _derive(weight, ("dcr", spec, fmt), make_dcr)  # type: ignore[assignment]
    if algorithm == "phases":
        return phase_conv_core(x, w, bias, phases, spec.groups, order)
    return lr_conv_core(x, w, bias, geoms, spec.strides, spec.groups, order)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    cands: list[str], entry: _Entry, lr_order: ChannelOrder, x: Tensor, weight: Tensor, source: WeightSource,
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
            y = _execute(
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


def _choose(
    entry: _Entry, zero_ok: bool, forced: str | None, x: Tensor, weight: Tensor, source: WeightSource,
    bias: Tensor | None, grads: tuple[bool, bool, bool], fixed_taps: bool, fresh_weight: bool,
) -> Plan:  # fmt: skip
    recording = torch.is_grad_enabled() and any(grads)
    weight_grad = torch.is_grad_enabled() and grads[1]
    lr_order = _lr_order(entry.spec, x, weight_grad and source == "lr")
    cands = _candidates(entry, zero_ok, weight_grad and not fixed_taps)
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
        decided = _decisions.get(size_class)
        if decided is None:
            decided = _time(cands, entry, lr_order, x, weight, source, bias, grads, fresh_weight)
            with _lock:
                _decisions[size_class] = decided
                while len(_decisions) > config.current.plan_cache_size:
                    _decisions.popitem(last=False)
        else:
            decided = (decided[0], f"as timed for an input of about this size: {decided[1]}")
        algorithm, reason = decided
    call = _prepare(algorithm, entry, lr_order, source)
    reads_values = entry.mask is not None and source == "lr" and not (weight_grad and not fixed_taps)
    return Plan(
        algorithm, tuple(cands), reason, lr_order, entry.spec, entry.geoms, entry.phases, call, reads_values,  # type: ignore[arg-type]
    )  # fmt: skip


def _prepare(
    algorithm: str, entry: _Entry, lr_order: ChannelOrder, source: WeightSource
) -> Callable[[Tensor, Tensor, Tensor | None, bool], Tensor]:
    """The plan's computation with everything but the tensors bound: torch's layer itself for a
    ConvTranspose-layout weight, else :func:`_execute`."""
    spec = entry.spec
    if algorithm == "conv_transpose" and source == "ct":
        conv_transpose = CONV_TRANSPOSE[spec.ndim]
        arguments = (spec.strides, spec.padding, spec.output_padding, spec.groups, spec.dilations)

        def call(x: Tensor, weight: Tensor, bias: Tensor | None, per_call: bool) -> Tensor:
            return conv_transpose(x, weight, bias, *arguments)

        return call
    geoms, phases = entry.geoms, entry.phases

    def execute(x: Tensor, weight: Tensor, bias: Tensor | None, per_call: bool) -> Tensor:
        return _execute(algorithm, spec, geoms, phases, lr_order, x, weight, source, bias, per_call)

    return execute


def _plan_and_inputs(
    input: Tensor, weight: Tensor, source: WeightSource, bias: Tensor | None, stride: object, padding: object,
    output_padding: object, groups: int, dilation: object, kernel_size: object, order: str, algorithm: str | None,
    fixed_taps: bool, fresh_weight: bool,
) -> tuple[Plan | None, bool, Spec, tuple[AxisGeometry, ...]]:  # fmt: skip
    """The plan for this call (``None`` off the eager plain path: the LR form, unplanned), whether ``input`` is
    batched, the spec and the geometry."""
    if not is_eager_plain(input, weight):
        spec, geoms, batched = _validate(
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
        entry = _plans.get(key)
    except TypeError:  # lists among the arguments
        key = tuple(_hashable(v) for v in key)
        entry = _plans.get(key)
    if entry is None:
        spec, geoms, batched = _validate(
            input, weight, source, bias, stride, padding, output_padding, groups, dilation, kernel_size, order
        )
        entry = _entry(spec, geoms, batched, tuple(input.shape[-spec.ndim :]))
        with _lock:
            _plans[key] = entry
            while len(_plans) > config.current.plan_cache_size:
                _plans.popitem(last=False)
    zero_ok = True
    if entry.mask is not None and source == "lr" and not (grad_on and grads[1] and not fixed_taps):
        zero_ok = bool(
            _derive(
                weight,
                ("zero_outside", entry.spec),
                lambda: zero_outside(weight, entry.mask, entry.spec.order),
            )
        )
    plan = entry.plans.get(zero_ok)
    if plan is None:
        x = input if entry.batched else input.unsqueeze(0)
        plan = _choose(entry, zero_ok, forced, x, weight, source, bias, grads, fixed_taps, fresh_weight)
        entry.plans[zero_ok] = plan
    return plan, entry.batched, entry.spec, entry.geoms


#: bumped by every change of :mod:`subpixel.config` and by :func:`clear_caches`: call sites drop their plan
_generation = [0]


def _state(input: Tensor) -> tuple:
    """The process state a plan depends on besides its arguments (read on every call of the full route)."""
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_autocast_enabled("cpu" if input.is_cpu else input.device.type),
        torch.get_num_threads(),
        native.available(),
        _generation[0],
    )


class CallSite:
    """The last plan of one caller (a layer), reused while its calls look the same: same input shape, strides,
    dtype and device; the same weight layout, shape and dtype; the same bias presence, grad mode and forced
    algorithm; the same process state (:func:`_state`). The steady state of a layer is then a comparison and the
    prepared call (:attr:`Plan.call`); anything else goes the full route (:func:`run`), which refreshes it."""

    __slots__ = ("batched", "check", "plan")

    def __init__(self) -> None:
        self.check: tuple | None = None
        self.plan: Plan | None = None
        self.batched = True

    def __reduce__(self) -> tuple:  # copies and pickles start empty (a plan holds prepared callables)
        return (CallSite, ())


def _source(weight_lr: Tensor | None, weight_ct: Tensor | None) -> tuple[Tensor, WeightSource]:
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
    """The :class:`Plan` that :func:`run` follows for these arguments in the current grad mode (choosing it now if
    this is the key's first call); ``None`` under tracing, scripting, compiling or export (the LR form runs)."""
    weight, source = _source(weight_lr, weight_ct)
    return _plan_and_inputs(
        input, weight, source, bias, stride, padding, output_padding, groups, dilation, kernel_size, order,
        algorithm, fixed_taps, fresh_weight,
    )[0]  # fmt: skip


def run(
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
    site: CallSite | None = None,
) -> Tensor:
    """Validate, plan (cached) and run: the body of :func:`~subpixel.functional.lr_conv_shuffle` (same arguments
    and result; see there).

    ``fixed_taps=True`` is the caller's guarantee that the LR entries no ConvTranspose tap reaches are zero by
    construction and that their gradients are discarded (the LR weight is computed from a ConvTranspose-layout
    parameter, e.g. by a parametrization marked ``subpixel_fixed_taps = True``): the other algorithms are then
    valid while autograd records the weight too.

    ``weight_ct`` (instead of ``weight_lr``, which is then ``None``) is the ConvTranspose-layout weight the LR
    weight is an exact re-indexing of (:func:`~subpixel.geometry.conv_transpose_weight_to_lr` with ``order``):
    ``"conv_transpose"`` then runs torch's layer on it as it is, and the other algorithms re-index it (on every
    call while autograd records it, so that its gradient flows; cached otherwise). Layers converted from a
    ConvTranspose hold their weight so (:class:`subpixel.reparametrize.ConvTransposeToLR`).

    ``fresh_weight=True`` says the weight is a new tensor on every call (computed by a parametrization such as
    weight norm): weights derived from it are then computed on every call rather than cached, and the timed
    choice counts that cost.

    ``site``: the caller's :class:`CallSite` (a layer's), where the last plan is kept for the next call.

    Shape:
        - input: ``(N, C_in, *L_in)`` or ``(C_in, *L_in)``; weight_lr: ``(C_out·R, C_in/groups, *K)``;
          weight_ct: ``(C_in, C_out/groups, *k)``.
        - output: ``(N, C_out, *L_out)`` (no ``N`` for an unbatched input).
    """
    weight, source = _source(weight_lr, weight_ct)
    check = None
    if site is not None and is_eager_plain(input, weight):
        # everything the site's plan was made for that can change between calls
        grad = torch.is_grad_enabled()
        forced = algorithm
        if forced is None:
            stack = _forced.stack
            forced = stack[-1] if stack else config.current.algorithm
        check = (
            input.shape, input.stride(), input.dtype, input.device, weight.shape, weight.dtype, source,
            bias is None, stride, padding, output_padding, groups, dilation, kernel_size, order,
            grad and (input.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad),
            forced, fixed_taps, fresh_weight, torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(),
            _generation[0],
        )  # fmt: skip
        if site.check == check:  # the steady state: the prepared call
            p = site.plan
            per_call = fresh_weight or (grad and weight.requires_grad)
            if site.batched:
                return p.call(input, weight, bias, per_call)  # type: ignore[union-attr]
            return p.call(input.unsqueeze(0), weight, bias, per_call).squeeze(0)  # type: ignore[union-attr]
    p, batched, spec, geoms = _plan_and_inputs(
        input, weight, source, bias, stride, padding, output_padding, groups, dilation, kernel_size, order,
        algorithm, fixed_taps, fresh_weight,
    )  # fmt: skip
    x = input if batched else input.unsqueeze(0)
    if p is None:  # traced, compiled, exported, transformed: the exportable conv + shuffle graph
        w = weight
        if source == "ct":
            w = conv_transpose_weight_to_lr(
                weight, spec.strides, spec.dilations, spec.groups, order=spec.order
            )
        y = lr_conv_core(x, w, bias, geoms, spec.strides, spec.groups, spec.order)
    else:
        if site is not None and check is not None:
            site.check, site.plan, site.batched = (None if p.reads_values else check), p, batched
        per_call = fresh_weight or (weight.requires_grad and torch.is_grad_enabled())
        y = p.call(x, weight, bias, per_call)
    return y if batched else y.squeeze(0)


config.on_change(clear_caches)
