"""Clean-up passes for exported graphs: ``Reshape``/``Transpose``/``Reshape`` shuffles into ``DepthToSpace``, and
successive per-axis ``Slice`` nodes into one."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from subpixel.onnx._graph import (
    Emitter,
    GraphIndex,
    copy_model,
    default_opset,
    finish_model,
    node_attrs,
    value_shapes,
)

__all__ = ["fuse_depth_to_space", "merge_slices"]


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
    model = copy_model(model)
    if default_opset(model) < 11:
        return model, 0
    idx = GraphIndex(model.graph)
    shapes = value_shapes(model)
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
        perm = [int(p) for p in node_attrs(t).get("perm", [])]  # type: ignore[attr-defined]
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
    return finish_model(model, nodes, []), len(replace)


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
    model = copy_model(model)
    if default_opset(model) < 10:
        return model, 0
    shapes = value_shapes(model)
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
            em = Emitter(idx, first.name or "slice")
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
    return finish_model(model, list(model.graph.node), []), removed
