r"""Rewrite every ``ConvTranspose`` of an ONNX graph into ``Conv`` + ``DepthToSpace`` + ``Slice`` (the paper's identity).

:func:`conv_transpose_to_subpixel` replaces every ``ConvTranspose`` of the main graph by a stride-1 ``Conv`` in LR
space (weights transformed by :func:`subpixel.functional.conv_transpose_weight_to_lr`), periodic shuffling
(``DepthToSpace`` in CRD mode for 2-D equal strides, ``Reshape``/``Transpose``/``Reshape`` otherwise) and a
``Slice`` crop. The LR padding and crop come from :func:`subpixel.functional.lr_geometry`; they do not depend on
the input size, so graphs with dynamic spatial sizes are rewritten too (only ``output_shape`` needs a known
input size). The reverse rewrite is :mod:`subpixel.onnx.reverse`; the clean-up passes for exported graphs are
:mod:`subpixel.onnx.tidy`.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import torch

from subpixel.errors import SubpixelError
from subpixel.functional import (
    AxisGeometry,
    conv_transpose_weight_to_lr,
    lr_geometry,
)
from subpixel.onnx._graph import (
    FLOAT_TYPES,
    INT64_MAX,
    Emitter,
    GraphIndex,
    RewriteReport,
    Skip,
    check_model,
    copy_model,
    count_in_subgraphs,
    decode_attr,
    finish_model,
    node_attrs,
    node_label,
    used_names,
    value_shapes,
)

__all__ = [
    "ConvTransposeGeometry",
    "conv_transpose_to_subpixel",
    "resolve_conv_transpose",
]


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
        raise SubpixelError(
            f"weight shape {tuple(weight_shape)} does not fit an input with {len(in_spatial)} spatial dims"
        )
    attrs = {k: decode_attr(v) for k, v in node_attrs(node).items()}
    kernel, strides, dilations, output_padding, group, auto_pad = _axis_attributes(attrs, weight_shape)
    if "output_shape" not in attrs and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        pads = (0,) * (2 * n) if auto_pad == "VALID" else _per_axis(attrs, "pads", 0, 2 * n)
        if min(pads) < 0:
            raise SubpixelError(f"pads={list(pads)} must be non-negative")
        return ConvTransposeGeometry(kernel, strides, dilations, pads[:n], pads[n:], output_padding, group)
    totals = _total_padding(attrs, auto_pad, kernel, strides, dilations, output_padding, in_spatial)
    begin, end = _split_padding(totals, auto_pad)
    return ConvTransposeGeometry(kernel, strides, dilations, begin, end, output_padding, group)


def _per_axis(attrs: dict[str, object], name: str, default: int, length: int) -> tuple[int, ...]:
    """Attribute ``name`` as ``length`` ints (``default`` on every axis where it is absent)."""
    value = attrs.get(name)
    if value is None:
        return (default,) * length
    value = tuple(int(v) for v in value)  # type: ignore[attr-defined]
    if len(value) != length:
        raise SubpixelError(f"attribute {name}={list(value)} must have {length} entries")
    return value


def _axis_attributes(
    attrs: dict[str, object], weight_shape: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], int, str]:
    """The kernel (from the weight; ``kernel_shape`` must agree), strides, dilations, output padding, group and
    ``auto_pad`` of a ``ConvTranspose``, checked."""
    n = len(weight_shape) - 2
    kernel = tuple(int(k) for k in weight_shape[2:])
    if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != kernel:  # type: ignore[arg-type]
        raise SubpixelError(
            f"kernel_shape {list(attrs['kernel_shape'])} differs from the weight's {list(kernel)}"
        )  # type: ignore[call-overload]
    strides = _per_axis(attrs, "strides", 1, n)
    dilations = _per_axis(attrs, "dilations", 1, n)
    output_padding = _per_axis(attrs, "output_padding", 0, n)
    group = int(attrs.get("group", 1))  # type: ignore[call-overload]
    if min(strides) < 1 or min(dilations) < 1 or min(output_padding) < 0 or group < 1:
        raise SubpixelError(
            f"invalid attributes strides={list(strides)}, dilations={list(dilations)}, "
            f"output_padding={list(output_padding)}, group={group}"
        )
    auto_pad = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise SubpixelError(f"unknown auto_pad {auto_pad!r}")
    return kernel, strides, dilations, output_padding, group, auto_pad  # type: ignore[return-value]


def _total_padding(
    attrs: dict[str, object],
    auto_pad: str,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    output_padding: Sequence[int],
    in_spatial: Sequence[int | None],
) -> list[int]:
    """Per axis, the padding (both ends together) that gives ``output_shape``, or with ``SAME_*`` and no
    ``output_shape`` the output length ``L·s`` (negative: the output is longer than the natural one)."""
    n = len(kernel)
    natural = [d * (k - 1) + 1 + a for k, d, a in zip(kernel, dilations, output_padding)]  # + s (L - 1)
    if "output_shape" not in attrs:  # SAME_UPPER / SAME_LOWER
        if any(output_padding):
            raise SubpixelError(
                "auto_pad=SAME_* with a non-zero output_padding: ONNX shape inference and ONNX Runtime "
                "disagree on the output size"
            )
        return [nat - s for nat, s in zip(natural, strides)]  # s (L - 1) + nat - s L
    target = [int(v) for v in attrs["output_shape"]]  # type: ignore[attr-defined]
    if len(target) != n:
        raise SubpixelError(f"output_shape={target} must have {n} entries (the spatial sizes)")
    if any(size is None for size in in_spatial):
        raise SubpixelError("output_shape needs the input's spatial size, which shape inference could not resolve")
    return [
        s * (length - 1) + nat - t for s, length, nat, t in zip(strides, in_spatial, natural, target)
    ]  # type: ignore[operator]


def _split_padding(totals: Sequence[int], auto_pad: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split each axis' total padding into (begin, end): the larger half at the beginning (``SAME_UPPER``: at the
    end); a negative total extends the end (``auto_pad=NOTSET`` only)."""
    upper = auto_pad == "SAME_UPPER"
    begin, end = [], []
    for total in totals:
        if total < 0 and auto_pad != "NOTSET":
            raise SubpixelError(
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
    return tuple(begin), tuple(end)


def _slice_spatial(
    em: Emitter,
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
    em: Emitter,
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
    attrs = node_attrs(dq)
    if q is None or scale is None or (has_zp and zp is None) or int(attrs.get("block_size", 0)):  # type: ignore[call-overload]
        return None
    if q.dtype.kind not in "iu" or q.ndim == 0:
        return None
    return _Quantized(q, scale, zp, int(attrs.get("axis", 1)) % max(q.ndim, 1), dq)  # type: ignore[call-overload]


def _lr_quantized_weight(
    em: Emitter, qw: _Quantized, strides: Sequence[int], dilations: Sequence[int], group: int
) -> str:
    """``DequantizeLinear`` of the LR weight: the integer weight moved like the float one, zeros made zero points."""
    q, n = qw.q, qw.q.ndim - 2
    c_out_g = q.shape[1]
    r_total = math.prod(strides)
    per_axis = qw.scale.ndim == 1
    if per_axis and (qw.axis != 1 or qw.scale.shape != (c_out_g,)):
        raise Skip(
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


def _lr_quantized_bias(em: Emitter, qb: _Quantized, c_out: int, r_total: int) -> str:
    """``DequantizeLinear`` of the bias repeated once per phase (CRD)."""
    if qb.q.shape != (c_out,) or qb.scale.size not in (1, c_out):
        raise Skip(f"quantized bias shape {list(qb.q.shape)} / scale shape {list(qb.scale.shape)} do not fit")
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


@dataclass(frozen=True)
class _Operands:
    """The input name, weight and bias of a ``ConvTranspose``: constants, or constants dequantized in the graph."""

    x: str
    w: np.ndarray | None
    qw: _Quantized | None
    w_shape: tuple[int, ...]
    b: np.ndarray | None
    qb: _Quantized | None


def _rewrite_conv_transpose(
    idx: GraphIndex, node: onnx.NodeProto, shapes: dict[str, list[int | None] | None], prefix: str
) -> tuple[Emitter, str]:
    """One ``ConvTranspose`` as ``Conv`` + shuffle + crop: the new nodes (in an :class:`Emitter`) and a one-line
    description; :class:`Skip` with the reason where the node cannot be rewritten."""
    ops = _operands(idx, node)
    x_shape = shapes.get(ops.x)
    geo, in_spatial = _node_geometry(node, ops, x_shape)
    axes = _lr_axes(geo, in_spatial)
    n = len(axes)
    r_total = math.prod(geo.strides)
    c_out = ops.w_shape[1] * geo.group
    em = Emitter(idx, prefix)
    inputs, pads = _lr_input(em, ops.x, axes)
    if ops.w is not None:
        w_lr = conv_transpose_weight_to_lr(
            torch.from_numpy(np.array(ops.w, copy=True)), geo.strides, geo.dilations, geo.group
        )
        inputs.append(em.const("weight_lr", w_lr.numpy()))
    else:
        inputs.append(_lr_quantized_weight(em, ops.qw, geo.strides, geo.dilations, geo.group))  # type: ignore[arg-type]
    if ops.b is not None:
        inputs.append(em.const("bias_lr", np.repeat(ops.b, r_total)))
    elif ops.qb is not None:
        inputs.append(_lr_quantized_bias(em, ops.qb, c_out, r_total))
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


def _operands(idx: GraphIndex, node: onnx.NodeProto) -> _Operands:
    """The node's input, weight and bias; :class:`Skip` where the weight or bias is not a (dequantized) constant
    or the weight is not floating point."""
    if len(node.input) < 2 or not node.input[1]:
        raise Skip("no weight input")
    x_name, w_name = node.input[0], node.input[1]
    b_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    w = idx.constant(w_name)
    qw = _quantized(idx, w_name) if w is None else None
    if w is None and qw is None:
        raise Skip(
            f"weight {w_name!r} is not a constant initializer (computed by a node, or an initializer that is also a "
            "graph input and can be fed at run time: see --input-initializers-are-constant)"
        )
    if w is not None and w.dtype.type not in FLOAT_TYPES:
        raise Skip(f"weight type {w.dtype} is not float16/float32/float64")
    w_shape = w.shape if w is not None else qw.q.shape  # type: ignore[union-attr]
    b, qb = None, None
    if b_name is not None:
        b = idx.constant(b_name)
        qb = _quantized(idx, b_name) if b is None else None
        if b is None and qb is None:
            raise Skip(f"bias {b_name!r} is not a constant initializer")
    return _Operands(x_name, w, qw, tuple(w_shape), b, qb)


def _node_geometry(
    node: onnx.NodeProto, ops: _Operands, x_shape: list[int | None] | None
) -> tuple[ConvTransposeGeometry, list[int | None]]:
    """The node's resolved geometry and its input's spatial sizes (``None`` where unknown); :class:`Skip` where
    they do not fit the weight and bias."""
    w_shape = ops.w_shape
    n = len(w_shape) - 2
    if n not in (1, 2, 3):
        raise Skip(f"{n}-D ConvTranspose (weight shape {list(w_shape)}); only 1-D, 2-D and 3-D are rewritten")
    in_spatial: list[int | None] = [None] * n
    if x_shape is not None:
        if len(x_shape) != n + 2:
            raise Skip(f"input rank {len(x_shape)} does not fit the weight shape {list(w_shape)}")
        in_spatial = list(x_shape[2:])
    try:
        geo = resolve_conv_transpose(node, w_shape, in_spatial)
    except ValueError as exc:
        raise Skip(str(exc)) from None
    c_in, c_out = w_shape[0], w_shape[1] * geo.group
    if c_in % geo.group:
        raise Skip(f"weight.shape[0]={c_in} is not divisible by group={geo.group}")
    if ops.b is not None and ops.b.shape != (c_out,):
        raise Skip(f"bias shape {list(ops.b.shape)} is not ({c_out},)")
    return geo, in_spatial


def _lr_axes(geo: ConvTransposeGeometry, in_spatial: Sequence[int | None]) -> list[tuple[AxisGeometry, int]]:
    """Per axis, the LR geometry and where the HR output ends relative to the shuffled LR output (in ``(-s, 0]``).

    Pads and crop do not depend on the input length; a stand-in length gives them where it is unknown."""
    axes = []
    for i, length in enumerate(in_spatial):
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
            raise Skip(str(exc)) from None
        n_lr = probe + g.pad_before + g.pad_after - g.lr_kernel + 1
        end_offset = g.crop + g.out_size - n_lr * geo.strides[i]  # in (-s, 0]
        axes.append((g, end_offset))
    return axes


def _lr_input(em: Emitter, x_name: str, axes: Sequence[tuple[AxisGeometry, int]]) -> tuple[list[str], list[int]]:
    """The LR convolution's input (``x_name``, or ``x_name`` padded and cropped where the LR padding is negative)
    and the padding the ``Conv`` itself does (``[begin..., end...]``)."""
    n = len(axes)
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
    return inputs, pads


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
    model = copy_model(model)
    idx = GraphIndex(model.graph, input_initializers_are_constant=input_initializers_are_constant)
    shapes = value_shapes(model)
    report = RewriteReport()
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    replaced_inputs: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if node.op_type != "ConvTranspose" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        label = node_label(node, i)
        try:
            em, what = _rewrite_conv_transpose(idx, node, shapes, node.name or f"convtranspose{i}")
        except Skip as exc:
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
    model = finish_model(model, nodes, inits)
    if check:
        check_model(model, "the rewritten model")
    return model, report
