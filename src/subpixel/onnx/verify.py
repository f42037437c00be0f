"""Run two ONNX graphs in ONNX Runtime on the same random inputs: per-output max abs error and timings."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx

from subpixel.errors import SubpixelError

__all__ = ["Comparison", "compare_models", "input_specs", "random_inputs"]

#: Size used for a dynamic dimension when none is given: 1 for the first (batch) axis, this for the others.
DEFAULT_DYNAMIC_SIZE = 32


def input_specs(
    model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None = None
) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Concrete shape and dtype of every graph input that is not an initializer.

    Args:
        model: the model.
        shapes: shapes for some inputs by name; other dynamic dims become 1 (axis 0) or
            :data:`DEFAULT_DYNAMIC_SIZE`.

    Raises:
        ValueError: if a given shape names an unknown input or has the wrong rank.

    Examples:
        >>> from onnx import helper, TensorProto
        >>> g = helper.make_graph([], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", 8])], [])
        >>> input_specs(helper.make_model(g), {})["x"][0], input_specs(helper.make_model(g), {"x": (2, 3, 5, 8)})["x"][0]
        ((1, 3, 32, 8), (2, 3, 5, 8))
    """
    shapes = dict(shapes or {})
    inits = {t.name for t in model.graph.initializer}
    specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        tt = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        dims = list(tt.shape.dim)
        if value.name in shapes:
            shape = tuple(int(d) for d in shapes.pop(value.name))
            if len(shape) != len(dims):
                raise SubpixelError(f"input {value.name!r} has rank {len(dims)}, got the shape {shape}")
        else:
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (1 if i == 0 else DEFAULT_DYNAMIC_SIZE)
                for i, d in enumerate(dims)
            )
        specs[value.name] = (shape, dtype)
    if shapes:
        raise SubpixelError(
            f"shapes given for unknown inputs {sorted(shapes)}; the inputs are {sorted(specs)}"
        )
    return specs


def random_inputs(
    specs: Mapping[str, tuple[tuple[int, ...], np.dtype]], seed: int = 0
) -> dict[str, np.ndarray]:
    """Standard-normal floats, small non-negative ints, random booleans, one array per input.

    Examples:
        >>> x = random_inputs({"x": ((2, 3), np.dtype(np.float32))})["x"]
        >>> x.shape, x.dtype
        ((2, 3), dtype('float32'))
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, dtype) in specs.items():
        if dtype.kind == "f":
            out[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[name] = rng.integers(0, 2, shape).astype(bool)
        else:
            out[name] = rng.integers(0, 4, shape).astype(dtype)
    return out


@dataclass
class Comparison:
    """Result of :func:`compare_models`.

    Attributes:
        max_abs_error: per output name, ``max |rewritten − original|``.
        max_abs_value: per output name, ``max |original|`` (the scale of the error).
        ms_original, ms_rewritten: median time of one run of each graph, milliseconds (same process, interleaved).
        input_shapes: the input shapes used.
        iqr_original, iqr_rewritten: the 25th and 75th percentiles of the run times, milliseconds.
        cpu_ms_original, cpu_ms_rewritten: with one thread, the median CPU time of the calling thread (ONNX Runtime
            then computes in it), milliseconds; it is much less disturbed by other work on the machine than the
            wall-clock time. ``None`` with more threads.
    """

    max_abs_error: dict[str, float]
    max_abs_value: dict[str, float]
    ms_original: float
    ms_rewritten: float
    input_shapes: dict[str, tuple[int, ...]]
    iqr_original: tuple[float, float] = (float("nan"), float("nan"))
    iqr_rewritten: tuple[float, float] = (float("nan"), float("nan"))
    cpu_ms_original: float | None = None
    cpu_ms_rewritten: float | None = None

    def __str__(self) -> str:
        shapes = ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in self.input_shapes.items())
        lines = [f"verified in ONNX Runtime on random inputs ({shapes}):"]
        for name, err in self.max_abs_error.items():
            lines.append(
                f"  output {name}: max abs error {err:.3g} (max |value| {self.max_abs_value[name]:.3g})"
            )
        ratio = self.ms_original / self.ms_rewritten if self.ms_rewritten > 0 else float("nan")
        lines.append(
            f"  time per run (median): original {self.ms_original:.3f} ms, rewritten {self.ms_rewritten:.3f} ms "
            f"(original / rewritten = {ratio:.2f}x; interquartile ranges {self.iqr_original[0]:.3f}-"
            f"{self.iqr_original[1]:.3f} and {self.iqr_rewritten[0]:.3f}-{self.iqr_rewritten[1]:.3f} ms)"
        )
        if self.cpu_ms_original is not None and self.cpu_ms_rewritten:
            lines.append(
                f"  CPU time per run (median, 1 thread): original {self.cpu_ms_original:.3f} ms, rewritten "
                f"{self.cpu_ms_rewritten:.3f} ms (original / rewritten = "
                f"{self.cpu_ms_original / self.cpu_ms_rewritten:.2f}x)"
            )
        return "\n".join(lines)


def _session(model: onnx.ModelProto, threads: int):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def compare_models(
    original: onnx.ModelProto,
    rewritten: onnx.ModelProto,
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    repeats: int = 10,
    threads: int = 1,
    seed: int = 0,
) -> Comparison:
    """Run both models in ONNX Runtime (CPU) on the same random inputs; compare outputs and time them.

    The two graphs are timed in the same process, alternating, after one warm-up run each; the median of
    ``repeats`` runs is reported, in wall-clock time and (with one thread) in CPU time of the calling thread.

    Args:
        original, rewritten: models with the same inputs and outputs.
        shapes: shapes for inputs with dynamic dims (see :func:`input_specs`).
        repeats: timed runs of each graph.
        threads: ONNX Runtime intra-op threads.
        seed: seed of the random inputs.

    Returns:
        A :class:`Comparison`.

    Raises:
        ValueError: if the outputs differ in names or shapes.
    """
    specs = input_specs(original, shapes)
    feeds = random_inputs(specs, seed)
    a, b = _session(original, threads), _session(rewritten, threads)
    names = [o.name for o in a.get_outputs()]
    if names != [o.name for o in b.get_outputs()]:
        raise SubpixelError(
            f"the models have different outputs: {names} vs {[o.name for o in b.get_outputs()]}"
        )
    ya, yb = a.run(None, feeds), b.run(None, feeds)
    errors, scales = {}, {}
    for name, u, v in zip(names, ya, yb):
        u, v = np.asarray(u), np.asarray(v)
        if u.shape != v.shape:
            raise SubpixelError(
                f"output {name!r} has shape {u.shape} in the original and {v.shape} after rewriting"
            )
        diff = np.abs(u.astype(np.float64) - v.astype(np.float64))
        errors[name] = float(diff.max()) if diff.size else 0.0
        scales[name] = float(np.abs(u.astype(np.float64)).max()) if u.size else 0.0
    ta, tb, ca, cb = [], [], [], []
    for _ in range(max(1, repeats)):
        for sess, acc, cpu in ((a, ta, ca), (b, tb, cb)):
            start, start_cpu = time.perf_counter(), time.thread_time()
            sess.run(None, feeds)
            cpu.append(time.thread_time() - start_cpu)
            acc.append(time.perf_counter() - start)

    def iqr(times: list[float]) -> tuple[float, float]:
        q = np.percentile(np.asarray(times) * 1e3, [25, 75])
        return float(q[0]), float(q[1])

    return Comparison(
        errors,
        scales,
        statistics.median(ta) * 1e3,
        statistics.median(tb) * 1e3,
        {k: v[0] for k, v in specs.items()},
        iqr(ta),
        iqr(tb),
        statistics.median(ca) * 1e3 if threads == 1 else None,
        statistics.median(cb) * 1e3 if threads == 1 else None,
    )
