r"""Rewrite ONNX graphs between ``ConvTranspose`` and ``Conv`` + ``DepthToSpace`` (the paper's identity).

:func:`conv_transpose_to_subpixel` replaces every ``ConvTranspose`` of the main graph by a stride-1 ``Conv`` in LR
space (weights transformed by :func:`subpixel.functional.conv_transpose_weight_to_lr`), periodic shuffling
(``DepthToSpace`` in CRD mode for 2-D equal strides, ``Reshape``/``Transpose``/``Reshape`` otherwise) and a
``Slice`` crop. The LR padding and crop come from :func:`subpixel.functional.lr_geometry`; they do not depend on
the input size, so graphs with dynamic spatial sizes are rewritten too (only ``output_shape`` needs a known
input size). :func:`subpixel_to_conv_transpose` goes the other way for ``Conv`` → ``DepthToSpace`` [→ ``Slice``]
chains it can prove equal. :func:`fuse_depth_to_space` turns the ``Reshape``/``Transpose``/``Reshape`` chains
that PyTorch's exporter emits for a 2-D periodic shuffle into one ``DepthToSpace``.

How the attributes of ``ConvTranspose`` are read (ONNX operator spec, opset 11 to 22): ``pads`` are
``[x1_begin, .., x1_end, ..]`` and may be asymmetric; ``output_padding`` adds samples at the end; with
``output_shape`` the pads are ignored and ``total = s (L − 1) + a + d (k − 1) + 1 − output_shape`` is split with
the larger half at the beginning (``SAME_UPPER``: at the end); ``SAME_UPPER`` / ``SAME_LOWER`` without
``output_shape`` target ``L·s``; ``VALID`` means no padding. A negative total (an output longer than the natural
one) with ``auto_pad=NOTSET`` pads nothing at the beginning and extends the end, as ONNX Runtime and the reference
evaluator both do; with ``SAME_*`` they disagree (ONNX Runtime 1.32 clamps the total at 0, the reference evaluator
splits it), so such nodes are left as they are. So are ``SAME_*`` nodes with a non-zero ``output_padding``, whose
output size ONNX shape inference and ONNX Runtime disagree on. Asymmetric pads map to the core's geometry through
``padding = pad_begin, output_padding = a + pad_begin − pad_end``.

:func:`subpixel_to_conv_transpose` matches the shuffle as ``DepthToSpace`` (2-D) or as a
``Reshape``/``Transpose``/``Reshape`` chain proven to be a CRD or DCR shuffle (1-D to 3-D), and absorbs the
``Slice`` crops that follow. :func:`merge_slices` merges the exporter's per-axis ``Slice`` nodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from subpixel.functional import (
    conv_transpose_weight_to_lr,
    lr_geometry,
    lr_kernel_size,
    lr_weight_to_conv_transpose,
)
from subpixel.onnx._graph import (
    GraphIndex,
    check_model,
    count_in_subgraphs,
    default_opset,
    remove_unused,
    static_shape,
    used_names,
)

__all__ = [
    "ConvTransposeGeometry",
    "RewriteReport",
    "conv_transpose_to_subpixel",
    "fuse_depth_to_space",
    "merge_slices",
    "resolve_conv_transpose",
    "subpixel_to_conv_transpose",
]

INT64_MAX = np.iinfo(np.int64).max
_FLOAT_TYPES = (np.float16, np.float32, np.float64)


class _Skip(Exception):
    """A node the rewrite leaves as it is; the message says why."""


@dataclass
class RewriteReport:
    """What a rewrite did.

    Attributes:
        rewritten: ``(node name, description)`` of every node replaced.
        skipped: ``(node name, reason)`` of every candidate left as it is.
    """

    rewritten: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"rewrote {len(self.rewritten)} node(s), left {len(self.skipped)} as they were"]
        lines += [f"  rewrote {name}: {what}" for name, what in self.rewritten]
        lines += [f"  left    {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class ConvTransposeGeometry:
    """A ``ConvTranspose`` node's attributes resolved to explicit per-axis values.

    Attributes:
        kernel, strides, dilations, output_padding: one int per spatial axis.
        pads_begin, pads_end: explicit padding per axis (``pads_end`` may be negative: the output is extended).
        group: the number of groups.
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    output_padding: tuple[int, ...]
    group: int


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decode(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def resolve_conv_transpose(
    node: onnx.NodeProto, weight_shape: Sequence[int], in_spatial: Sequence[int | None]
) -> ConvTransposeGeometry:
    """Resolve strides, dilations, group, kernel_shape, pads, auto_pad, output_padding and output_shape.

    Args:
        node: the ``ConvTranspose`` node.
        weight_shape: shape of its weight.
        in_spatial: spatial sizes of its input (``None`` where unknown; only ``output_shape`` needs them).

    Returns:
        The :class:`ConvTransposeGeometry`.

    Raises:
        ValueError: with the reason, for attributes that are invalid or that the rewrite cannot resolve.

    Shape:
        - weight_shape: ``(C_in, C_out/group, k_1, .., k_n)``; in_spatial: ``n`` entries.

    Examples:
        >>> node = onnx.helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], auto_pad="SAME_UPPER")
        >>> g = resolve_conv_transpose(node, (8, 4, 3, 3), [None, None])
        >>> g.pads_begin, g.pads_end                  # total padding 3 - 2 = 1: the extra one at the end
        ((0, 0), (1, 1))
    """
    n = len(weight_shape) - 2
    if n < 1 or len(in_spatial) != n:
        raise ValueError(
            f"weight shape {tuple(weight_shape)} does not fit an input with {len(in_spatial)} spatial dims"
        )
    attrs = {k: _decode(v) for k, v in _attrs(node).items()}
    kernel = tuple(int(k) for k in weight_shape[2:])
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != kernel:  # type: ignore[arg-type]
        raise ValueError(
            f"kernel_shape {list(attrs['kernel_shape'])} differs from the weight's {list(kernel)}"
        )  # type: ignore[call-overload]

    def per_axis(name: str, default: int, length: int = n) -> tuple[int, ...]:
        value = attrs.get(name)
        if value is None:
            return (default,) * length
        value = tuple(int(v) for v in value)  # type: ignore[attr-defined]
        if len(value) != length:
            raise ValueError(f"attribute {name}={list(value)} must have {length} entries")
        return value

    strides = per_axis("strides", 1)
    dilations = per_axis("dilations", 1)
    output_padding = per_axis("output_padding", 0)
    group = int(attrs.get("group", 1))  # type: ignore[call-overload]
    if min(strides) < 1 or min(dilations) < 1 or min(output_padding) < 0 or group < 1:
        raise ValueError(
            f"invalid attributes strides={list(strides)}, dilations={list(dilations)}, "
            f"output_padding={list(output_padding)}, group={group}"
        )
    auto_pad = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ValueError(f"unknown auto_pad {auto_pad!r}")
    natural = [d * (k - 1) + 1 + a for k, d, a in zip(kernel, dilations, output_padding)]  # + s (L - 1)
    if "output_shape" in attrs:
        target = [int(v) for v in attrs["output_shape"]]  # type: ignore[attr-defined]
        if len(target) != n:
            raise ValueError(f"output_shape={target} must have {n} entries (the spatial sizes)")
        if any(size is None for size in in_spatial):
            raise ValueError(
                "output_shape needs the input's spatial size, which shape inference could not resolve"
            )
        totals = [
            s * (length - 1) + nat - t for s, length, nat, t in zip(strides, in_spatial, natural, target)
        ]  # type: ignore[operator]
        upper = auto_pad == "SAME_UPPER"
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if any(output_padding):
            raise ValueError(
                "auto_pad=SAME_* with a non-zero output_padding: ONNX shape inference and ONNX Runtime "
                "disagree on the output size"
            )
        totals = [nat - s for nat, s in zip(natural, strides)]  # s (L - 1) + nat - s L
        upper = auto_pad == "SAME_UPPER"
    else:
        if auto_pad == "VALID":
            pads = (0,) * (2 * n)
        else:
            pads = per_axis("pads", 0, 2 * n)
        if min(pads) < 0:
            raise ValueError(f"pads={list(pads)} must be non-negative")
        return ConvTransposeGeometry(kernel, strides, dilations, pads[:n], pads[n:], output_padding, group)
    begin, end = [], []
    for total in totals:
        if total < 0 and auto_pad != "NOTSET":
            raise ValueError(
                f"auto_pad={auto_pad} with a negative total padding ({total}): ONNX Runtime and the ONNX "
                "reference evaluator disagree on this case (size, or where the extra samples go)"
            )
        if total < 0:  # a longer output than the natural one: ONNX Runtime and the reference extend the end
            begin.append(0)
            end.append(total)
        else:
            small, big = total // 2, total - total // 2
            begin.append(small if upper else big)
            end.append(big if upper else small)
    return ConvTransposeGeometry(kernel, strides, dilations, tuple(begin), tuple(end), output_padding, group)


def _value_shapes(model: onnx.ModelProto) -> dict[str, list[int | None] | None]:
    """Shapes of every value of the main graph, from ONNX shape inference with data propagation."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # shape inference is best effort here; the checker already ran
        inferred = model
    g = inferred.graph
    infos = [*g.input, *g.value_info, *g.output]
    return {v.name: static_shape(v) for v in infos}


def _int64(name: str, values: Sequence[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


class _Emitter:
    """Collects new nodes and initializers with fresh names."""

    def __init__(self, idx: GraphIndex, prefix: str) -> None:
        self.idx = idx
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, suffix: str, array: np.ndarray) -> str:
        name = self.idx.fresh(f"{self.prefix}_{suffix}")
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, suffix: str, values: Sequence[int]) -> str:
        return self.const(suffix, np.asarray(values, dtype=np.int64))

    def node(self, op: str, inputs: Sequence[str], output: str | None = None, **attrs: object) -> str:
        out = output or self.idx.fresh(f"{self.prefix}_{op.lower()}")
        name = self.idx.fresh(f"{self.prefix}/{op}")
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name, **attrs))
        return out


def _slice_spatial(
    em: _Emitter,
    x: str,
    n: int,
    starts: Sequence[int],
    ends: Sequence[int],
    what: str,
    out: str | None = None,
) -> str:
    axes = list(range(2, 2 + n))
    return em.node(
        "Slice",
        [x, em.ints(f"{what}_starts", starts), em.ints(f"{what}_ends", ends), em.ints(f"{what}_axes", axes)],
        out,
    )


def _shuffle(
    em: _Emitter,
    z: str,
    c_out: int,
    strides: Sequence[int],
    z_shape: list[int | None] | None,
    out: str | None,
) -> str:
    """Periodic shuffling (CRD order) of ``z``: ``(N, C·R, D_1..D_n) -> (N, C, D_1·s_1, .., D_n·s_n)``."""
    n = len(strides)
    if n == 2 and strides[0] == strides[1]:
        return em.node("DepthToSpace", [z], out, blocksize=int(strides[0]), mode="CRD")
    perm = [0, 1]
    for i in range(n):
        perm += [2 + n + i, 2 + i]
    if n == 1:  # one unknown dim: -1 does it, whatever the sizes
        r = em.node("Reshape", [z, em.ints("split_shape", [0, c_out, strides[0], -1])])
        t = em.node("Transpose", [r], perm=perm)
        return em.node("Reshape", [t, em.ints("hr_shape", [0, c_out, -1])], out)
    spatial = None if z_shape is None else z_shape[2:]
    if spatial is not None and len(spatial) == n and all(d is not None for d in spatial):
        split = em.ints("split_shape", [0, c_out, *strides, *spatial])  # type: ignore[list-item]
        hr = em.ints("hr_shape", [0, c_out, *[d * s for d, s in zip(spatial, strides)]])  # type: ignore[operator]
    else:  # dynamic spatial sizes: compute the shapes in the graph
        shape = em.node("Shape", [z])
        sp = em.node(
            "Slice", [shape, em.ints("sp_start", [2]), em.ints("sp_end", [2 + n]), em.ints("sp_axes", [0])]
        )
        split = em.node("Concat", [em.ints("split_head", [0, c_out, *strides]), sp], axis=0)
        hr_sp = em.node("Mul", [sp, em.ints("factors", list(strides))])
        hr = em.node("Concat", [em.ints("hr_head", [0, c_out]), hr_sp], axis=0)
    r = em.node("Reshape", [z, split])
    t = em.node("Transpose", [r], perm=perm)
    return em.node("Reshape", [t, hr], out)


@dataclass
class _Quantized:
    """A weight or bias computed as ``DequantizeLinear(q, scale, zero_point, axis)`` from constants."""

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    axis: int
    node: onnx.NodeProto


def _quantized(idx: GraphIndex, name: str) -> _Quantized | None:
    dq = idx.producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.domain not in ("", "ai.onnx"):
        return None
    q, scale = idx.constant(dq.input[0]), idx.constant(dq.input[1])
    has_zp = len(dq.input) > 2 and bool(dq.input[2])
    zp = idx.constant(dq.input[2]) if has_zp else None
    attrs = _attrs(dq)
    if q is None or scale is None or (has_zp and zp is None) or int(attrs.get("block_size", 0)):  # type: ignore[call-overload]
        return None
    if q.dtype.kind not in "iu" or q.ndim == 0:
        return None
    return _Quantized(q, scale, zp, int(attrs.get("axis", 1)) % max(q.ndim, 1), dq)  # type: ignore[call-overload]


def _lr_quantized_weight(
    em: _Emitter, qw: _Quantized, strides: Sequence[int], dilations: Sequence[int], group: int
) -> str:
    """``DequantizeLinear`` of the LR weight: the integer weight moved like the float one, zeros made zero points."""
    q, n = qw.q, qw.q.ndim - 2
    c_out_g = q.shape[1]
    r_total = math.prod(strides)
    per_axis = qw.scale.ndim == 1
    if per_axis and (qw.axis != 1 or qw.scale.shape != (c_out_g,)):
        raise _Skip(
            f"per-channel quantized weight along axis {qw.axis} (scale shape {list(qw.scale.shape)}); only "
            "per-tensor or per-output-channel (axis 1) quantization is rewritten"
        )
    zp = qw.zero_point if qw.zero_point is not None else np.zeros(qw.scale.shape, q.dtype)
    zp_b = zp.reshape(1, -1, *[1] * n) if per_axis else zp
    centered = q.astype(np.int64) - zp_b.astype(np.int64)  # zeros of the transform are zero points
    lr = conv_transpose_weight_to_lr(torch.from_numpy(centered), strides, dilations, group).numpy()
    if per_axis:  # LR channel j = (g·C_out/g + o)·R + φ carries the scale of output channel o
        o = (np.arange(lr.shape[0]) // r_total) % c_out_g
        scale, zp = qw.scale[o], zp[o]
        lr = lr + zp.astype(np.int64).reshape(-1, *[1] * (n + 1))
    else:
        scale = qw.scale
        lr = lr + zp.astype(np.int64)
    inputs = [em.const("weight_lr_q", lr.astype(q.dtype)), em.const("weight_lr_scale", scale)]
    if qw.zero_point is not None:
        inputs.append(em.const("weight_lr_zero_point", zp.astype(q.dtype)))
    return em.node("DequantizeLinear", inputs, axis=0)


def _lr_quantized_bias(em: _Emitter, qb: _Quantized, c_out: int, r_total: int) -> str:
    """``DequantizeLinear`` of the bias repeated once per phase (CRD)."""
    if qb.q.shape != (c_out,) or qb.scale.size not in (1, c_out):
        raise _Skip(
            f"quantized bias shape {list(qb.q.shape)} / scale shape {list(qb.scale.shape)} do not fit"
        )
    per_axis = qb.scale.ndim == 1 and qb.scale.size == c_out
    inputs = [
        em.const("bias_lr_q", np.repeat(qb.q, r_total)),
        em.const("bias_lr_scale", np.repeat(qb.scale, r_total) if per_axis else qb.scale),
    ]
    if qb.zero_point is not None:
        inputs.append(
            em.const("bias_lr_zero_point", np.repeat(qb.zero_point, r_total) if per_axis else qb.zero_point)
        )
    return em.node("DequantizeLinear", inputs, axis=0)


def _rewrite_conv_transpose(
    idx: GraphIndex, node: onnx.NodeProto, shapes: dict[str, list[int | None] | None], prefix: str
) -> tuple[_Emitter, str]:
    if len(node.input) < 2 or not node.input[1]:
        raise _Skip("no weight input")
    x_name, w_name = node.input[0], node.input[1]
    b_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    w = idx.constant(w_name)
    qw = _quantized(idx, w_name) if w is None else None
    if w is None and qw is None:
        raise _Skip(
            f"weight {w_name!r} is not a constant initializer (computed by a node, or an initializer that is also a "
            "graph input and can be fed at run time: see --input-initializers-are-constant)"
        )
    if w is not None and w.dtype.type not in _FLOAT_TYPES:
        raise _Skip(f"weight type {w.dtype} is not float16/float32/float64")
    w_shape = w.shape if w is not None else qw.q.shape  # type: ignore[union-attr]
    b, qb = None, None
    if b_name is not None:
        b = idx.constant(b_name)
        qb = _quantized(idx, b_name) if b is None else None
        if b is None and qb is None:
            raise _Skip(f"bias {b_name!r} is not a constant initializer")
    n = len(w_shape) - 2
    if n not in (1, 2, 3):
        raise _Skip(
            f"{n}-D ConvTranspose (weight shape {list(w_shape)}); only 1-D, 2-D and 3-D are rewritten"
        )
    x_shape = shapes.get(x_name)
    in_spatial: list[int | None] = [None] * n
    if x_shape is not None:
        if len(x_shape) != n + 2:
            raise _Skip(f"input rank {len(x_shape)} does not fit the weight shape {list(w_shape)}")
        in_spatial = list(x_shape[2:])
    try:
        geo = resolve_conv_transpose(node, w_shape, in_spatial)
    except ValueError as exc:
        raise _Skip(str(exc)) from None
    c_in, c_out = w_shape[0], w_shape[1] * geo.group
    if c_in % geo.group:
        raise _Skip(f"weight.shape[0]={c_in} is not divisible by group={geo.group}")
    if b is not None and b.shape != (c_out,):
        raise _Skip(f"bias shape {list(b.shape)} is not ({c_out},)")
    axes = []
    for i in range(n):
        length = in_spatial[i]
        # pads and crop do not depend on the input length; a stand-in length gives them when it is unknown
        probe = length
        if probe is None:  # long enough for a non-empty output whatever the pads
            probe = abs(geo.pads_begin[i]) + abs(geo.pads_end[i]) + geo.dilations[i] * geo.kernel[i] + 8
        try:
            g = lr_geometry(
                probe,
                geo.kernel[i],
                geo.strides[i],
                geo.pads_begin[i],
                geo.output_padding[i] + geo.pads_begin[i] - geo.pads_end[i],
                geo.dilations[i],
            )
        except ValueError as exc:
            raise _Skip(str(exc)) from None
        n_lr = probe + g.pad_before + g.pad_after - g.lr_kernel + 1
        end_offset = g.crop + g.out_size - n_lr * geo.strides[i]  # in (-s, 0]
        axes.append((g, end_offset))

    r_total = math.prod(geo.strides)
    em = _Emitter(idx, prefix)
    inputs = [x_name]
    starts = [max(0, -g.pad_before) for g, _ in axes]
    ends = [g.pad_after if g.pad_after < 0 else INT64_MAX for g, _ in axes]
    pads = [max(0, g.pad_before) for g, _ in axes] + [max(0, g.pad_after) for g, _ in axes]
    if any(starts) or any(e != INT64_MAX for e in ends):  # negative LR padding: drop input samples
        source = x_name
        if any(pads):
            # padding on one side, cropping on the other: pad first, so that a crop longer than a (short) input
            # still leaves the right length (Slice would clamp, Conv would pad the empty result)
            full = [0, 0, *pads[:n], 0, 0, *pads[n:]]
            source = em.node("Pad", [x_name, em.ints("in_pads", full)], mode="constant")
            pads = [0] * (2 * n)
        inputs = [_slice_spatial(em, source, n, starts, ends, "in_crop")]
    if w is not None:
        w_lr = conv_transpose_weight_to_lr(
            torch.from_numpy(np.array(w, copy=True)), geo.strides, geo.dilations, geo.group
        )
        inputs.append(em.const("weight_lr", w_lr.numpy()))
    else:
        inputs.append(_lr_quantized_weight(em, qw, geo.strides, geo.dilations, geo.group))  # type: ignore[arg-type]
    if b is not None:
        inputs.append(em.const("bias_lr", np.repeat(b, r_total)))
    elif qb is not None:
        inputs.append(_lr_quantized_bias(em, qb, c_out, r_total))
    need_crop = any(g.crop or e < 0 for g, e in axes)
    final = node.output[0]
    conv_out = final if r_total == 1 and not need_crop else None
    z = em.node(
        "Conv",
        inputs,
        conv_out,
        kernel_shape=[g.lr_kernel for g, _ in axes],
        pads=pads,
        strides=[1] * n,
        dilations=[1] * n,
        group=geo.group,
    )
    y = z
    if r_total > 1:
        z_shape = None
        if x_shape is not None and all(d is not None for d in in_spatial):
            z_shape = [x_shape[0], c_out * r_total] + [
                length + g.pad_before + g.pad_after - g.lr_kernel + 1
                for length, (g, _) in zip(in_spatial, axes)  # type: ignore[operator]
            ]
        y = _shuffle(em, z, c_out, geo.strides, z_shape, None if need_crop else final)
    if need_crop:
        _slice_spatial(
            em, y, n, [g.crop for g, _ in axes], [e if e < 0 else INT64_MAX for _, e in axes], "crop", final
        )
    what = (
        f"{n}-D ConvTranspose k={list(geo.kernel)} s={list(geo.strides)} d={list(geo.dilations)} "
        f"pads={list(geo.pads_begin) + list(geo.pads_end)} output_padding={list(geo.output_padding)} "
        f"group={geo.group} -> " + " + ".join(nd.op_type for nd in em.nodes)
    )
    return em, what


def _node_label(node: onnx.NodeProto, i: int) -> str:
    return node.name or f"#{i} {node.op_type} -> {node.output[0] if node.output else '?'}"


def _finish(
    model: onnx.ModelProto, graph_nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]
) -> onnx.ModelProto:
    graph = model.graph
    del graph.node[:]
    graph.node.extend(graph_nodes)
    graph.initializer.extend(inits)
    remove_unused(graph)
    produced = {o for nd in graph.node for o in nd.output}
    keep = [v for v in graph.value_info if v.name in produced]  # drop stale entries of removed values
    del graph.value_info[:]
    graph.value_info.extend(keep)
    return model


def conv_transpose_to_subpixel(
    model: onnx.ModelProto, *, check: bool = True, input_initializers_are_constant: bool = False
) -> tuple[onnx.ModelProto, RewriteReport]:
    """Replace every ``ConvTranspose`` of the main graph by ``Conv`` + shuffle + ``Slice`` (exact).

    Args:
        model: the model; it is not modified.
        check: run ``onnx.checker`` with full checking on the result.
        input_initializers_are_constant: treat initializers that are also graph inputs (old exports, e.g.
            ``keep_initializers_as_inputs=True``) as constants. ONNX lets such inputs be fed at run time, which
            would bypass the rewritten weights, so by default those nodes are left as they are.

    Returns:
        The rewritten copy and a :class:`RewriteReport` listing what was rewritten and what was left (weights
        that are not constants, sizes that cannot be resolved, ConvTranspose inside subgraphs).

    Shape:
        - every rewritten node keeps its input ``(N, C_in, *L_in)`` and output ``(N, C_out, *L_out)``; its weight
          ``(C_in, C_out/group, *k)`` becomes the LR weight ``(C_out·∏s, C_in/group, *K)``,
          ``K = ⌊d (k − 1) / s⌋ + 1``, and its bias ``(C_out,)`` becomes ``(C_out·∏s,)``.

    Examples:
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> w = numpy_helper.from_array(np.ones((4, 2, 4, 4), np.float32), "w")
        >>> node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
        >>> graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        ...                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 16, 16])], [w])
        >>> out, report = conv_transpose_to_subpixel(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
        >>> [nd.op_type for nd in out.graph.node]
        ['Conv', 'DepthToSpace', 'Slice']
    """
    model = _copy(model)
    idx = GraphIndex(model.graph, input_initializers_are_constant=input_initializers_are_constant)
    shapes = _value_shapes(model)
    report = RewriteReport()
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    replaced_inputs: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if node.op_type != "ConvTranspose" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        label = _node_label(node, i)
        try:
            em, what = _rewrite_conv_transpose(idx, node, shapes, node.name or f"convtranspose{i}")
        except _Skip as exc:
            report.skipped.append((label, str(exc)))
            nodes.append(node)
            continue
        nodes.extend(em.nodes)
        inits.extend(em.inits)
        replaced_inputs.update(node.input[1:])
        report.rewritten.append((label, what))
    if replaced_inputs:  # DequantizeLinear nodes that fed only rewritten weights and biases are dead now
        used = used_names(nodes) | {o.name for o in model.graph.output}
        nodes = [
            nd
            for nd in nodes
            if not (
                nd.op_type == "DequantizeLinear"
                and nd.output[0] in replaced_inputs
                and nd.output[0] not in used
            )
        ]
    inside = count_in_subgraphs(model.graph, "ConvTranspose")
    if inside:
        report.skipped.append(
            (f"{inside} node(s)", "ConvTranspose inside If/Loop/Scan subgraphs are not rewritten")
        )
    model = _finish(model, nodes, inits)
    if check:
        check_model(model, "the rewritten model")
    return model, report


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _conv_pads(attrs: dict[str, object], kernel: Sequence[int]) -> tuple[list[int], list[int]]:
    n = len(kernel)
    auto_pad = _decode(attrs.get("auto_pad", "NOTSET")) or "NOTSET"
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):  # stride 1: total padding k - 1
        small = [(k - 1) // 2 for k in kernel]
        big = [k - 1 - s for k, s in zip(kernel, small)]
        return (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    pads = [int(p) for p in attrs.get("pads", [0] * (2 * n))]  # type: ignore[attr-defined]
    return pads[:n], pads[n:]


def _slice_params(
    idx: GraphIndex, node: onnx.NodeProto, hr_spatial: list[int | None]
) -> tuple[list[int], list[int]] | None:
    """(start, end offset ≤ 0) per spatial axis of a constant ``Slice`` over a 4-D tensor, or None."""
    n = len(hr_spatial)
    vals = [idx.constant(name) if name else None for name in node.input[1:]]
    if len(vals) < 2 or vals[0] is None or vals[1] is None:
        return None
    starts, ends = vals[0].tolist(), vals[1].tolist()
    axes = vals[2].tolist() if len(vals) > 2 and vals[2] is not None else list(range(len(starts)))
    if len(node.input) > 3 and node.input[3] and vals[2] is None:
        return None
    if (
        len(vals) > 3
        and node.input[4:5]
        and node.input[4]
        and (vals[3] is None or any(s != 1 for s in vals[3].tolist()))
    ):
        return None
    begin, end = [0] * n, [0] * n
    for a, s, e in zip(axes, starts, ends):
        a = a + n + 2 if a < 0 else a
        if a < 2 or a >= n + 2:
            return None
        size = hr_spatial[a - 2]
        if s < 0 or (e >= 0 and e < INT64_MAX // 2):
            if size is None:
                return None
            s = s + size if s < 0 else s
            e = (e + size if e < 0 else min(e, size)) - size
        elif e >= INT64_MAX // 2:
            e = 0
        if s < 0 or e > 0:
            return None
        begin[a - 2], end[a - 2] = s, e
    return begin, end


def _shuffle_perm(n: int, order: str) -> list[int]:
    """Transpose perm of a periodic shuffle from ``(N, C, r_1..r_n, D_1..D_n)`` (CRD) or ``(N, r_1..r_n, C, D_1..D_n)``
    (DCR) to ``(N, C, D_1, r_1, .., D_n, r_n)``."""
    if order == "crd":
        perm = [0, 1]
        for i in range(n):
            perm += [2 + n + i, 2 + i]
    else:
        perm = [0, n + 1]
        for i in range(n):
            perm += [n + 2 + i, 1 + i]
    return perm


def _reshape_is(
    target: Sequence[int], expected: Sequence[int | None], source: Sequence[int | None], allowzero: bool
) -> bool:
    """Whether ``Reshape(x, target)`` of an ``x`` of shape ``source`` provably gives the shape ``expected``
    (``None``: unknown size). ``0`` copies the source dim (unless ``allowzero``), one ``-1`` takes the rest."""
    if len(target) != len(expected) or sum(t == -1 for t in target) > 1:
        return False
    for i, (t, e) in enumerate(zip(target, expected)):
        if t == -1:
            continue
        if t == 0 and not allowzero:
            t = source[i] if i < len(source) else None  # type: ignore[assignment]
            if i == 0 and e is None and source and source[0] is None:
                continue  # the batch dim copied through: equal, whatever its size
        if t is None or e is None or t != e:
            return False
    return True


def _match_shuffle(
    idx: GraphIndex, z: str, n: int, channels: int, z_shape: list[int | None] | None
) -> tuple[list[onnx.NodeProto], str, list[int], str]:
    """The periodic shuffle reading ``z``: (nodes, output name, factors, order)."""
    first = idx.only_consumer(z)
    if first is not None and first.op_type == "DepthToSpace":
        if n != 2:
            raise _Skip("DepthToSpace after a Conv that is not 2-D")
        attrs = {k: _decode(v) for k, v in _attrs(first).items()}
        s = int(attrs["blocksize"])  # type: ignore[call-overload]
        return [first], first.output[0], [s, s], "crd" if attrs.get("mode", "DCR") == "CRD" else "dcr"
    t = idx.only_consumer(first.output[0]) if first is not None and first.op_type == "Reshape" else None
    r2 = idx.only_consumer(t.output[0]) if t is not None and t.op_type == "Transpose" else None
    if first is None or t is None or r2 is None or r2.op_type != "Reshape":
        raise _Skip("not followed by DepthToSpace, or by Reshape → Transpose → Reshape, only")
    s1, s2 = idx.constant(first.input[1]), idx.constant(r2.input[1])
    perm = [int(p) for p in _attrs(t).get("perm", [])]  # type: ignore[attr-defined]
    if s1 is None or s2 is None:
        raise _Skip("the shuffle's Reshape shapes are not constants")
    s1l, s2l = [int(v) for v in s1.ravel()], [int(v) for v in s2.ravel()]
    zero1 = bool(_attrs(first).get("allowzero", 0))
    zero2 = bool(_attrs(r2).get("allowzero", 0))
    src = list(z_shape) if z_shape is not None else [None] * (n + 2)
    batch, spatial = src[0], src[2:]
    for order in ("crd", "dcr"):
        if perm != _shuffle_perm(n, order) or len(s1l) != 2 * n + 2:
            continue
        c, factors = (s1l[1], s1l[2 : 2 + n]) if order == "crd" else (s1l[1 + n], s1l[1 : 1 + n])
        if c < 1 or min(factors) < 1 or c * math.prod(factors) != channels:
            continue
        want1 = [batch, c, *factors, *spatial] if order == "crd" else [batch, *factors, c, *spatial]
        mid = [batch, c]
        for d, f in zip(spatial, factors):
            mid += [d, f]
        want2 = [batch, c, *[None if d is None else d * f for d, f in zip(spatial, factors)]]
        if _reshape_is(s1l, want1, src, zero1) and _reshape_is(s2l, want2, mid, zero2):
            return [first, t, r2], r2.output[0], factors, order
    raise _Skip("Reshape → Transpose → Reshape is not provably a periodic shuffle of the Conv's output")


def _reverse_one(
    idx: GraphIndex, conv: onnx.NodeProto, shapes: dict[str, list[int | None] | None], prefix: str
) -> tuple[list[onnx.NodeProto], onnx.NodeProto, list[onnx.TensorProto], str]:
    attrs = _attrs(conv)
    w = idx.constant(conv.input[1])
    if w is None or w.ndim not in (3, 4, 5):
        raise _Skip("weight is not a constant 1-D, 2-D or 3-D initializer")
    if w.dtype.type not in _FLOAT_TYPES:
        raise _Skip(f"weight type {w.dtype} is not float16/float32/float64")
    n = w.ndim - 2
    kernel = list(w.shape[2:])
    strides_attr = [int(v) for v in attrs.get("strides", [1] * n)]  # type: ignore[attr-defined]
    dilations_attr = [int(v) for v in attrs.get("dilations", [1] * n)]  # type: ignore[attr-defined]
    if any(v != 1 for v in strides_attr + dilations_attr):
        raise _Skip("Conv with stride or dilation > 1")
    group = int(attrs.get("group", 1))  # type: ignore[call-overload]
    pb, pe = _conv_pads(attrs, kernel)
    x_shape = shapes.get(conv.input[0])
    z_shape = None
    if x_shape is not None and len(x_shape) == n + 2:
        z_shape = [x_shape[0], w.shape[0]] + [
            None if length is None else length + a + c - k + 1
            for length, a, c, k in zip(x_shape[2:], pb, pe, kernel)
        ]
    shuffle, final, strides, order = _match_shuffle(idx, conv.output[0], n, w.shape[0], z_shape)
    r_total = math.prod(strides)
    if w.shape[0] % (r_total * group):
        raise _Skip(f"{w.shape[0]} output channels are not divisible by {r_total} phases · group {group}")
    if order == "dcr" and group != 1:
        raise _Skip("a DCR shuffle after a grouped Conv has no ConvTranspose equivalent")
    c_out = w.shape[0] // r_total
    b = None
    if len(conv.input) > 2 and conv.input[2]:
        b_lr = idx.constant(conv.input[2])
        if b_lr is None:
            raise _Skip("bias is not a constant initializer")
        phases = b_lr.reshape(c_out, r_total) if order == "crd" else b_lr.reshape(r_total, c_out).T
        if not np.array_equal(phases, np.repeat(phases[:, :1], r_total, axis=1)):
            raise _Skip(
                "the Conv bias differs between the phases of an output channel (not a ConvTranspose bias)"
            )
        b = phases[:, 0].copy()
    hr_spatial: list[int | None] = [None] * n
    if z_shape is not None:
        hr_spatial = [None if d is None else d * s for d, s in zip(z_shape[2:], strides)]
    removed = [conv, *shuffle]
    crop_begin, crop_end = [0] * n, [0] * n
    cropped: set[int] = set()
    sl = idx.only_consumer(final)
    while sl is not None and sl.op_type == "Slice":  # PyTorch's exporter emits one Slice per axis
        params = _slice_params(idx, sl, hr_spatial)
        if params is None:
            break
        axes = {i for i in range(n) if params[0][i] or params[1][i]}
        if axes & cropped:
            break
        for i in axes:
            crop_begin[i], crop_end[i] = params[0][i], params[1][i]
        cropped |= axes
        removed.append(sl)
        final = sl.output[0]
        sl = idx.only_consumer(final)
    wt = torch.from_numpy(np.array(w, copy=True))
    ks = [kk * s for kk, s in zip(kernel, strides)]
    for i in range(n):  # the smallest kernel whose taps cover every non-zero LR entry, axis by axis
        for k in range((kernel[i] - 1) * strides[i] + 1, kernel[i] * strides[i]):
            trial = [*ks[:i], k, *ks[i + 1 :]]
            if lr_kernel_size(k, strides[i]) != kernel[i]:
                continue
            try:
                lr_weight_to_conv_transpose(wt, trial, strides, 1, group, order=order, check=True)
            except ValueError:
                continue
            ks[i] = k
            break
    weight = lr_weight_to_conv_transpose(wt, ks, strides, 1, group, order=order, check=True).numpy()
    pads_begin, pads_end, out_pad = [], [], []
    for i in range(n):
        s = strides[i]
        begin = (kernel[i] - 1 - pb[i]) * s + crop_begin[i]
        end = s * (kernel[i] - 1 - pe[i]) - crop_end[i] - (kernel[i] * s - ks[i])
        if begin < 0:
            raise _Skip(
                f"the Conv's padding {pb[i]} exceeds kernel − 1 = {kernel[i] - 1}: no ConvTranspose pads fit"
            )
        a = 0
        if end < 0:
            a, end = -end, 0
            if a >= s:
                raise _Skip(
                    f"the output extends {a} samples past a ConvTranspose's reach (output_padding must be < {s})"
                )
        pads_begin.append(begin)
        pads_end.append(end)
        out_pad.append(a)
    em = _Emitter(idx, prefix)
    inputs = [conv.input[0], em.const("weight", weight)]
    if b is not None:
        inputs.append(em.const("bias", b))
    extra = {"output_padding": out_pad} if any(out_pad) else {}
    em.node(
        "ConvTranspose",
        inputs,
        final,
        kernel_shape=ks,
        strides=strides,
        pads=pads_begin + pads_end,
        dilations=[1] * n,
        group=group,
        **extra,
    )
    what = (
        " + ".join(nd.op_type for nd in removed)
        + f" -> ConvTranspose k={ks} s={strides} pads={pads_begin + pads_end} output_padding={out_pad} group={group}"
    )
    return removed, em.nodes[0], em.inits, what


def _reverse_candidate(idx: GraphIndex, conv: onnx.NodeProto) -> bool:
    """A Conv whose only reader is a DepthToSpace or a Reshape → Transpose → Reshape chain."""
    first = idx.only_consumer(conv.output[0])
    if first is None:
        return False
    if first.op_type == "DepthToSpace":
        return True
    t = idx.only_consumer(first.output[0]) if first.op_type == "Reshape" else None
    r2 = idx.only_consumer(t.output[0]) if t is not None and t.op_type == "Transpose" else None
    return r2 is not None and r2.op_type == "Reshape"


def subpixel_to_conv_transpose(
    model: onnx.ModelProto, *, check: bool = True, input_initializers_are_constant: bool = False
) -> tuple[onnx.ModelProto, RewriteReport]:
    """Replace ``Conv`` → shuffle [→ ``Slice``] chains by one ``ConvTranspose`` where provably equal.

    The shuffle is a ``DepthToSpace`` (CRD or DCR) after a 2-D ``Conv``, or, in 1-D, 2-D or 3-D, a
    ``Reshape`` → ``Transpose`` → ``Reshape`` chain whose constant shapes and permutation are provably a periodic
    shuffle in CRD or DCR order (as :func:`conv_transpose_to_subpixel` and PyTorch's exporter emit them). A chain
    qualifies when the ``Conv`` has stride 1 and dilation 1, constant weights (and a bias equal across the phases
    of each output channel), each intermediate result feeds only the next node, and the padding fits a
    ``ConvTranspose`` (LR padding at most kernel − 1, or absorbed by a constant ``Slice`` on the spatial axes).
    The kernel chosen is the smallest whose taps cover every non-zero LR weight, so a rewrite by
    :func:`conv_transpose_to_subpixel` is undone exactly.

    Args:
        model: the model; it is not modified.
        check: run ``onnx.checker`` with full checking on the result.
        input_initializers_are_constant: as for :func:`conv_transpose_to_subpixel`.

    Returns:
        The rewritten copy and a :class:`RewriteReport`.

    Shape:
        - the LR weight ``(C_out·∏s, C_in/group, *K)`` becomes the ConvTranspose weight ``(C_in, C_out/group, *k)``
          with ``(K − 1)·s < k ≤ K·s``; the chain's input and output shapes are kept.

    Examples:
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> w = numpy_helper.from_array(np.ones((8, 4, 3, 3), np.float32), "w")
        >>> conv = helper.make_node("Conv", ["x", "w"], ["z"], pads=[1, 1, 1, 1])
        >>> d2s = helper.make_node("DepthToSpace", ["z"], ["y"], blocksize=2, mode="CRD")
        >>> graph = helper.make_graph([conv, d2s], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        ...                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 16, 16])], [w])
        >>> out, report = subpixel_to_conv_transpose(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
        >>> node = out.graph.node[0]
        >>> node.op_type, [(a.name, list(a.ints)) for a in node.attribute if a.name in ("kernel_shape", "pads")]
        ('ConvTranspose', [('kernel_shape', [6, 6]), ('pads', [2, 2, 2, 2])])
    """
    model = _copy(model)
    idx = GraphIndex(model.graph, input_initializers_are_constant=input_initializers_are_constant)
    shapes = _value_shapes(model)
    report = RewriteReport()
    replace: dict[int, onnx.NodeProto] = {}
    drop: set[int] = set()
    inits: list[onnx.TensorProto] = []
    position = {id(nd): i for i, nd in enumerate(model.graph.node)}
    for i, node in enumerate(model.graph.node):
        if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
            continue
        if not _reverse_candidate(idx, node):
            continue
        label = _node_label(node, i)
        try:
            removed, new, new_inits, what = _reverse_one(idx, node, shapes, node.name or f"conv{i}")
        except _Skip as exc:
            report.skipped.append((label, str(exc)))
            continue
        last = max(position[id(nd)] for nd in removed)
        replace[last] = new
        drop |= {position[id(nd)] for nd in removed} - {last}
        inits.extend(new_inits)
        report.rewritten.append((label, what))
    nodes = [replace.get(i, nd) for i, nd in enumerate(model.graph.node) if i not in drop]
    model = _finish(model, nodes, inits)
    if check:
        check_model(model, "the rewritten model")
    return model, report


def fuse_depth_to_space(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Replace ``Reshape`` → ``Transpose`` → ``Reshape`` chains that are a 2-D periodic shuffle by ``DepthToSpace``.

    PyTorch's exporters emit such chains for reshape/permute code (and for :func:`subpixel.pixel_shuffle`).
    A chain is fused only when the input's shape is known and both reshapes and the permutation are exactly
    those of CRD (``(N, C, r, r, H, W)``, perm ``[0, 1, 4, 2, 5, 3]``) or DCR (``(N, r, r, C, H, W)``, perm
    ``[0, 3, 4, 1, 5, 2]``) depth-to-space.

    Args:
        model: the model; it is not modified.

    Returns:
        The rewritten copy and the number of chains fused.

    Examples:
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in
        ...          (("s1", [1, 2, 3, 3, 4, 4]), ("s2", [1, 2, 12, 12]))]
        >>> nodes = [helper.make_node("Reshape", ["x", "s1"], ["a"]),
        ...          helper.make_node("Transpose", ["a"], ["b"], perm=[0, 1, 4, 2, 5, 3]),
        ...          helper.make_node("Reshape", ["b", "s2"], ["y"])]
        >>> graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 18, 4, 4])],
        ...                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 12, 12])], inits)
        >>> out, count = fuse_depth_to_space(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
        >>> count, [(nd.op_type, nd.attribute[1].s) for nd in out.graph.node]
        (1, [('DepthToSpace', b'CRD')])
    """
    model = _copy(model)
    if default_opset(model) < 11:
        return model, 0
    idx = GraphIndex(model.graph)
    shapes = _value_shapes(model)
    position = {id(nd): i for i, nd in enumerate(model.graph.node)}
    replace: dict[int, onnx.NodeProto] = {}
    drop: set[int] = set()
    patterns = {"CRD": [0, 1, 4, 2, 5, 3], "DCR": [0, 3, 4, 1, 5, 2]}
    for r1 in model.graph.node:
        if r1.op_type != "Reshape" or r1.domain not in ("", "ai.onnx"):
            continue
        x_shape = shapes.get(r1.input[0])
        t = idx.only_consumer(r1.output[0])
        r2 = idx.only_consumer(t.output[0]) if t is not None and t.op_type == "Transpose" else None
        if r2 is None or r2.op_type != "Reshape" or x_shape is None or len(x_shape) != 4 or None in x_shape:
            continue
        s1, s2 = idx.constant(r1.input[1]), idx.constant(r2.input[1])
        perm = [int(p) for p in _attrs(t).get("perm", [])]  # type: ignore[attr-defined]
        if s1 is None or s2 is None or s1.size != 6:
            continue
        nb, cr, h, w = x_shape  # type: ignore[misc]
        for mode, pattern in patterns.items():
            if perm != pattern:
                continue
            r = int(s1[2]) if mode == "CRD" else int(s1[1])
            if r < 1 or cr % (r * r):  # type: ignore[operator]
                continue
            c = cr // (r * r)  # type: ignore[operator]
            want1 = [nb, c, r, r, h, w] if mode == "CRD" else [nb, r, r, c, h, w]
            if s1.tolist() == want1 and s2.tolist() == [nb, c, h * r, w * r]:  # type: ignore[operator]
                name = idx.fresh(f"{r1.name or 'pixel_shuffle'}/DepthToSpace")
                replace[position[id(r2)]] = helper.make_node(
                    "DepthToSpace", [r1.input[0]], [r2.output[0]], name=name, blocksize=r, mode=mode
                )
                drop |= {position[id(r1)], position[id(t)]}
    nodes = [replace.get(i, nd) for i, nd in enumerate(model.graph.node) if i not in drop]
    return _finish(model, nodes, []), len(replace)


def _const_slice(idx: GraphIndex, node: onnx.NodeProto, rank: int | None) -> tuple[list[int], ...] | None:
    """(starts, ends, axes) of a ``Slice`` with constant inputs and unit steps (axes made non-negative)."""
    vals = [idx.constant(name) if name else None for name in node.input[1:]]
    if len(vals) < 2 or vals[0] is None or vals[1] is None:
        return None
    if len(node.input) > 3 and node.input[3] and vals[2] is None:
        return None
    if len(node.input) > 4 and node.input[4] and (vals[3] is None or np.any(vals[3] != 1)):
        return None
    starts, ends = [int(v) for v in vals[0].ravel()], [int(v) for v in vals[1].ravel()]
    axes = (
        [int(v) for v in vals[2].ravel()]
        if len(vals) > 2 and vals[2] is not None
        else list(range(len(starts)))
    )
    if any(a < 0 for a in axes):
        if rank is None:
            return None
        axes = [a + rank if a < 0 else a for a in axes]
    return starts, ends, axes


def merge_slices(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Merge a ``Slice`` that feeds only another ``Slice`` on different axes into one (PyTorch's exporter emits one
    per axis).

    Args:
        model: the model; it is not modified.

    Returns:
        The rewritten copy and the number of ``Slice`` nodes removed.

    Examples:
        >>> from onnx import helper, numpy_helper, TensorProto
        >>> c = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
        >>> nodes = [helper.make_node("Slice", ["x", "s", "e", "a2"], ["t"]),
        ...          helper.make_node("Slice", ["t", "s", "e", "a3"], ["y"])]
        >>> graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        ...                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])],
        ...                           [c("s", [1]), c("e", [3]), c("a2", [2]), c("a3", [3])])
        >>> out, removed = merge_slices(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
        >>> removed, [nd.op_type for nd in out.graph.node]
        (1, ['Slice'])
    """
    model = _copy(model)
    if default_opset(model) < 10:
        return model, 0
    shapes = _value_shapes(model)
    removed = 0
    changed = True
    while changed:  # merge pairs until none is left (a chain of three merges in two passes)
        changed = False
        idx = GraphIndex(model.graph)
        nodes = list(model.graph.node)
        for first in nodes:
            if first.op_type != "Slice" or first.domain not in ("", "ai.onnx"):
                continue
            second = idx.only_consumer(first.output[0])
            if second is None or second.op_type != "Slice" or second.input[0] != first.output[0]:
                continue
            shape = shapes.get(first.input[0])
            rank = None if shape is None else len(shape)
            a, b = _const_slice(idx, first, rank), _const_slice(idx, second, rank)
            if a is None or b is None or set(a[2]) & set(b[2]):
                continue
            em = _Emitter(idx, first.name or "slice")
            merged = helper.make_node(
                "Slice",
                [
                    first.input[0],
                    em.ints("starts", a[0] + b[0]),
                    em.ints("ends", a[1] + b[1]),
                    em.ints("axes", a[2] + b[2]),
                ],
                [second.output[0]],
                name=idx.fresh(f"{first.name or 'slice'}/merged"),
            )
            nodes = [merged if nd is second else nd for nd in nodes if nd is not first]
            removed += 1
            changed = True
            del model.graph.node[:]
            model.graph.node.extend(nodes)
            model.graph.initializer.extend(em.inits)
            break
    return _finish(model, list(model.graph.node), []), removed
