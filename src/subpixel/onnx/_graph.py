"""Small helpers on ONNX protos: loading with clear errors, atomic saving, constants, names, consumers."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from subpixel._atomic import atomic_write
from subpixel.errors import SubpixelError

__all__ = [
    "MIN_OPSET",
    "GraphIndex",
    "OnnxInputError",
    "RewriteReport",
    "check_model",
    "default_opset",
    "load_model",
    "save_model_atomic",
]

#: Oldest default-domain opset the rewrite accepts: ``DepthToSpace`` has its ``mode`` attribute (CRD) from 11 on,
#: and ``Slice`` takes its starts/ends as inputs from 10 on.
MIN_OPSET = 11


class OnnxInputError(SubpixelError):
    """The input model cannot be used (not ONNX, fails the checker, opset too old); the message says why."""


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default (``""`` / ``ai.onnx``) domain the model imports, or 0 if none.

    Examples:
        >>> m = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []),
        ...                            opset_imports=[onnx.helper.make_opsetid("", 17)])
        >>> default_opset(m)
        17
    """
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 0


def check_model(model: onnx.ModelProto, what: str) -> None:
    """``onnx.checker`` with full checking (strict shape inference); raises :class:`OnnxInputError`."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxInputError(f"{what} fails onnx.checker (full check): {exc}") from exc


def load_model(path: str | os.PathLike[str], *, min_opset: int = MIN_OPSET) -> onnx.ModelProto:
    """Read an ONNX model and check it; the file is only read.

    Raises:
        OnnxInputError: if the file is missing, is not an ONNX model, fails the full checker, or imports an
            opset older than ``min_opset``.
    """
    path = Path(path)
    if not path.is_file():
        raise OnnxInputError(f"input model {str(path)!r} does not exist or is not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise OnnxInputError(
            f"input {str(path)!r} is not an ONNX model (cannot parse it as a ModelProto: {exc})"
        ) from exc
    if not model.graph.node and not model.graph.output:
        raise OnnxInputError(f"input {str(path)!r} is not an ONNX model (it parses to an empty ModelProto)")
    try:
        onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError, onnx.checker.ValidationError) as exc:
        raise OnnxInputError(f"input {str(path)!r}: cannot read its external data ({exc})") from exc
    opset = default_opset(model)
    if opset < min_opset:
        raise OnnxInputError(
            f"input {str(path)!r} imports opset {opset} of the default domain; at least {min_opset} is needed. "
            f"Upgrade it first, e.g. onnx.version_converter.convert_version(model, {max(min_opset, 13)})"
        )
    check_model(model, f"input {str(path)!r}")
    return model


def save_model_atomic(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` to a temporary file beside ``path`` and rename it into place when complete."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OnnxInputError(f"output folder {str(folder)!r} does not exist")
    if model.ByteSize() >= 2**31:
        raise OnnxInputError(
            f"the model is {model.ByteSize() / 2**30:.1f} GiB, over protobuf's 2 GiB limit for one file; save it "
            "with onnx.save_model(..., save_as_external_data=True) instead"
        )
    return atomic_write(path, lambda tmp: tmp.write_bytes(model.SerializeToString()))


class GraphIndex:
    """Lookup tables over one graph: constants (initializers and ``Constant`` nodes), producers, consumers."""

    def __init__(self, graph: onnx.GraphProto, *, input_initializers_are_constant: bool = False) -> None:
        self.graph = graph
        self.input_initializers_are_constant = input_initializers_are_constant
        self.initializers = {t.name: t for t in graph.initializer}
        self.graph_inputs = {i.name for i in graph.input}
        self.graph_outputs = {o.name for o in graph.output}
        self.constant_nodes: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        for node in graph.node:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
            for name in node.output:
                self.producer[name] = node
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                self.constant_nodes[node.output[0]] = node
        self.names: set[str] = set(self.initializers) | self.graph_inputs | self.graph_outputs
        self.names |= {n.name for n in graph.node} | set(self.producer)
        self.names |= {v.name for v in graph.value_info}

    def fresh(self, base: str) -> str:
        """A name not yet used in the graph (and reserve it)."""
        base = base or "subpixel"
        name, i = base, 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` if it is a constant that cannot be overridden at run time, else ``None``.

        Initializers that are also graph inputs (old-style exports) can be fed at run time, so they are not
        constants, unless the index was built with ``input_initializers_are_constant``.
        """
        if name in self.initializers and (
            self.input_initializers_are_constant or name not in self.graph_inputs
        ):
            return numpy_helper.to_array(self.initializers[name])
        node = self.constant_nodes.get(name)
        if node is not None and len(node.attribute) == 1 and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The single node that reads ``name``, if exactly one does and ``name`` is not a graph output."""
        users = self.consumers.get(name, [])
        if len(users) == 1 and name not in self.graph_outputs:
            return users[0]
        return None


def used_names(nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """Every value name the nodes read, including names read inside their subgraphs (If / Loop / Scan bodies)."""
    used: set[str] = set()
    for node in nodes:
        used.update(node.input)
        for attr in node.attribute:
            for sub in _subgraphs(attr):
                used |= used_names(sub.node) | {o.name for o in sub.output}
    return used


def remove_unused(graph: onnx.GraphProto) -> None:
    """Drop initializers and ``Constant`` nodes that nothing reads any more (subgraphs included)."""
    used = used_names(graph.node) | {o.name for o in graph.output}
    graph_inputs = {i.name for i in graph.input}
    keep = [t for t in graph.initializer if t.name in used or t.name in graph_inputs]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
    nodes = [
        n
        for n in graph.node
        if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx") and n.output[0] not in used)
    ]
    if len(nodes) != len(graph.node):
        del graph.node[:]
        graph.node.extend(nodes)


def _subgraphs(attr: onnx.AttributeProto) -> Iterable[onnx.GraphProto]:
    if attr.type == onnx.AttributeProto.GRAPH:
        yield attr.g
    elif attr.type == onnx.AttributeProto.GRAPHS:
        yield from attr.graphs


def count_in_subgraphs(graph: onnx.GraphProto, op_type: str) -> int:
    """How many ``op_type`` nodes live inside subgraphs (If / Loop / Scan bodies) of ``graph``."""
    total = 0
    for node in graph.node:
        for attr in node.attribute:
            for sub in _subgraphs(attr):
                total += sum(n.op_type == op_type for n in sub.node) + count_in_subgraphs(sub, op_type)
    return total


def static_shape(value_info: onnx.ValueInfoProto | None) -> list[int | None] | None:
    """The shape of a tensor value as ints (``None`` for unknown dims), or ``None`` if the rank is unknown."""
    if value_info is None or not value_info.type.HasField("tensor_type"):
        return None
    tt = value_info.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]


# --------------------------------------------------------------------------- shared by the rewrite passes
INT64_MAX = np.iinfo(np.int64).max

FLOAT_TYPES = (np.float16, np.float32, np.float64)


class Skip(Exception):
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


def node_attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def decode_attr(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def value_shapes(model: onnx.ModelProto) -> dict[str, list[int | None] | None]:
    """Shapes of every value of the main graph, from ONNX shape inference with data propagation."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # shape inference is best effort here; the checker already ran
        inferred = model
    g = inferred.graph
    infos = [*g.input, *g.value_info, *g.output]
    return {v.name: static_shape(v) for v in infos}


class Emitter:
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


def node_label(node: onnx.NodeProto, i: int) -> str:
    return node.name or f"#{i} {node.op_type} -> {node.output[0] if node.output else '?'}"


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def finish_model(
    model: onnx.ModelProto, graph_nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]
) -> onnx.ModelProto:
    """Install the new node list and initializers; drop what nothing reads and stale value_info entries."""
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
