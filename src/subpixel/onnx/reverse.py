r"""Rewrite ``Conv`` → periodic shuffle [→ ``Slice``] chains back into one ``ConvTranspose`` where provably equal.

The shuffle is matched as ``DepthToSpace`` (2-D, CRD or DCR) or as a ``Reshape``/``Transpose``/``Reshape`` chain
whose constant shapes and permutation are provably a CRD or DCR shuffle (1-D to 3-D), and the ``Slice`` crops that
follow are absorbed into the ``ConvTranspose``'s pads. The weights go through
:func:`subpixel.functional.lr_weight_to_conv_transpose`, with the smallest kernel whose taps cover every non-zero LR
weight, so that a rewrite by :func:`subpixel.onnx.conv_transpose_to_subpixel` is undone exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import onnx
import torch

from subpixel.functional import (
    lr_kernel_size,
    lr_weight_to_conv_transpose,
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
    decode_attr,
    finish_model,
    node_attrs,
    node_label,
    value_shapes,
)

__all__ = ["subpixel_to_conv_transpose"]


def _conv_pads(attrs: dict[str, object], kernel: Sequence[int]) -> tuple[list[int], list[int]]:
    n = len(kernel)
    auto_pad = decode_attr(attrs.get("auto_pad", "NOTSET")) or "NOTSET"
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
            raise Skip("DepthToSpace after a Conv that is not 2-D")
        attrs = {k: decode_attr(v) for k, v in node_attrs(first).items()}
        s = int(attrs["blocksize"])  # type: ignore[call-overload]
        return [first], first.output[0], [s, s], "crd" if attrs.get("mode", "DCR") == "CRD" else "dcr"
    t = idx.only_consumer(first.output[0]) if first is not None and first.op_type == "Reshape" else None
    r2 = idx.only_consumer(t.output[0]) if t is not None and t.op_type == "Transpose" else None
    if first is None or t is None or r2 is None or r2.op_type != "Reshape":
        raise Skip("not followed by DepthToSpace, or by Reshape → Transpose → Reshape, only")
    s1, s2 = idx.constant(first.input[1]), idx.constant(r2.input[1])
    perm = [int(p) for p in node_attrs(t).get("perm", [])]  # type: ignore[attr-defined]
    if s1 is None or s2 is None:
        raise Skip("the shuffle's Reshape shapes are not constants")
    s1l, s2l = [int(v) for v in s1.ravel()], [int(v) for v in s2.ravel()]
    zero1 = bool(node_attrs(first).get("allowzero", 0))
    zero2 = bool(node_attrs(r2).get("allowzero", 0))
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
    raise Skip("Reshape → Transpose → Reshape is not provably a periodic shuffle of the Conv's output")


def _reverse_one(
    idx: GraphIndex, conv: onnx.NodeProto, shapes: dict[str, list[int | None] | None], prefix: str
) -> tuple[list[onnx.NodeProto], onnx.NodeProto, list[onnx.TensorProto], str]:
    """One ``Conv`` → shuffle [→ ``Slice``...] chain as a ``ConvTranspose``: the nodes it replaces, the new node,
    its initializers and a one-line description; :class:`Skip` with the reason where it is not provably equal."""
    attrs = node_attrs(conv)
    w = _conv_weight(idx, conv, attrs)
    n = w.ndim - 2
    kernel = list(w.shape[2:])
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
        raise Skip(f"{w.shape[0]} output channels are not divisible by {r_total} phases · group {group}")
    if order == "dcr" and group != 1:
        raise Skip("a DCR shuffle after a grouped Conv has no ConvTranspose equivalent")
    b = _phase_bias(idx, conv, w.shape[0] // r_total, r_total, order)
    hr_spatial: list[int | None] = [None] * n
    if z_shape is not None:
        hr_spatial = [None if d is None else d * s for d, s in zip(z_shape[2:], strides)]
    slices, final, crop_begin, crop_end = _absorbed_crops(idx, final, hr_spatial)
    removed = [conv, *shuffle, *slices]
    wt = torch.from_numpy(np.array(w, copy=True))
    ks = _smallest_kernel(wt, kernel, strides, group, order)
    weight = lr_weight_to_conv_transpose(wt, ks, strides, 1, group, order=order, check=True).numpy()
    pads_begin, pads_end, out_pad = _conv_transpose_pads(kernel, strides, ks, pb, pe, crop_begin, crop_end)
    em = Emitter(idx, prefix)
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


def _conv_weight(idx: GraphIndex, conv: onnx.NodeProto, attrs: dict[str, object]) -> np.ndarray:
    """The ``Conv``'s weight: a floating-point constant of a 1-D to 3-D convolution with stride and dilation 1.

    Shape:
        - output: ``(C_out·R, C_in/group, *K)``.
    """
    w = idx.constant(conv.input[1])
    if w is None or w.ndim not in (3, 4, 5):
        raise Skip("weight is not a constant 1-D, 2-D or 3-D initializer")
    if w.dtype.type not in FLOAT_TYPES:
        raise Skip(f"weight type {w.dtype} is not float16/float32/float64")
    n = w.ndim - 2
    strides_attr = [int(v) for v in attrs.get("strides", [1] * n)]  # type: ignore[attr-defined]
    dilations_attr = [int(v) for v in attrs.get("dilations", [1] * n)]  # type: ignore[attr-defined]
    if any(v != 1 for v in strides_attr + dilations_attr):
        raise Skip("Conv with stride or dilation > 1")
    return w


def _phase_bias(
    idx: GraphIndex, conv: onnx.NodeProto, c_out: int, r_total: int, order: str
) -> np.ndarray | None:
    """The ConvTranspose bias ``(C_out,)`` of the ``Conv``'s bias ``(C_out·R,)`` (``None`` without one), which must
    be the same on every phase of an output channel."""
    if len(conv.input) <= 2 or not conv.input[2]:
        return None
    b_lr = idx.constant(conv.input[2])
    if b_lr is None:
        raise Skip("bias is not a constant initializer")
    phases = b_lr.reshape(c_out, r_total) if order == "crd" else b_lr.reshape(r_total, c_out).T
    if not np.array_equal(phases, np.repeat(phases[:, :1], r_total, axis=1)):
        raise Skip("the Conv bias differs between the phases of an output channel (not a ConvTranspose bias)")
    return phases[:, 0].copy()


def _absorbed_crops(
    idx: GraphIndex, final: str, hr_spatial: list[int | None]
) -> tuple[list[onnx.NodeProto], str, list[int], list[int]]:
    """The constant ``Slice`` crops that follow the shuffle (PyTorch's exporter emits one per axis), each axis
    cropped once: the nodes, the last output, and per axis the samples cropped at the start and the end offset
    (``≤ 0``)."""
    n = len(hr_spatial)
    slices = []
    crop_begin, crop_end = [0] * n, [0] * n
    cropped: set[int] = set()
    sl = idx.only_consumer(final)
    while sl is not None and sl.op_type == "Slice":
        params = _slice_params(idx, sl, hr_spatial)
        if params is None:
            break
        axes = {i for i in range(n) if params[0][i] or params[1][i]}
        if axes & cropped:
            break
        for i in axes:
            crop_begin[i], crop_end[i] = params[0][i], params[1][i]
        cropped |= axes
        slices.append(sl)
        final = sl.output[0]
        sl = idx.only_consumer(final)
    return slices, final, crop_begin, crop_end


def _smallest_kernel(
    wt: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], group: int, order: str
) -> list[int]:
    """Per axis, the smallest ConvTranspose kernel whose taps cover every non-zero entry of the LR weight ``wt``
    (``K·s`` where nothing smaller does), so that a rewrite to the LR form is undone exactly."""
    n = len(kernel)
    ks = [kk * s for kk, s in zip(kernel, strides)]
    for i in range(n):
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
    return ks


def _conv_transpose_pads(
    kernel: Sequence[int],
    strides: Sequence[int],
    ks: Sequence[int],
    pb: Sequence[int],
    pe: Sequence[int],
    crop_begin: Sequence[int],
    crop_end: Sequence[int],
) -> tuple[list[int], list[int], list[int]]:
    """The ConvTranspose's pads (begin, end) and output padding that give the ``Conv``'s padding (``pb``, ``pe``)
    and the absorbed crops, for the LR kernel ``kernel`` and the ConvTranspose kernel ``ks``."""
    pads_begin, pads_end, out_pad = [], [], []
    for i, s in enumerate(strides):
        begin = (kernel[i] - 1 - pb[i]) * s + crop_begin[i]
        end = s * (kernel[i] - 1 - pe[i]) - crop_end[i] - (kernel[i] * s - ks[i])
        if begin < 0:
            raise Skip(
                f"the Conv's padding {pb[i]} exceeds kernel − 1 = {kernel[i] - 1}: no ConvTranspose pads fit"
            )
        a = 0
        if end < 0:
            a, end = -end, 0
            if a >= s:
                raise Skip(
                    f"the output extends {a} samples past a ConvTranspose's reach (output_padding must be < {s})"
                )
        pads_begin.append(begin)
        pads_end.append(end)
        out_pad.append(a)
    return pads_begin, pads_end, out_pad


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
    model = copy_model(model)
    idx = GraphIndex(model.graph, input_initializers_are_constant=input_initializers_are_constant)
    shapes = value_shapes(model)
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
        label = node_label(node, i)
        try:
            removed, new, new_inits, what = _reverse_one(idx, node, shapes, node.name or f"conv{i}")
        except Skip as exc:
            report.skipped.append((label, str(exc)))
            continue
        last = max(position[id(nd)] for nd in removed)
        replace[last] = new
        drop |= {position[id(nd)] for nd in removed} - {last}
        inits.extend(new_inits)
        report.rewritten.append((label, what))
    nodes = [replace.get(i, nd) for i, nd in enumerate(model.graph.node) if i not in drop]
    model = finish_model(model, nodes, inits)
    if check:
        check_model(model, "the rewritten model")
    return model, report
