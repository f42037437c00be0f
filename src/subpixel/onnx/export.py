"""Export PyTorch modules (SubPixelConv layers, shuffles, whole networks) to ONNX, with ``DepthToSpace`` for 2-D.

``torch.onnx.export`` (the dynamo exporter, torch ≥ 2.5) turns the periodic shuffle of :mod:`subpixel.shuffle`
into ``Reshape`` → ``Transpose`` → ``Reshape``; :func:`export` then fuses each 2-D chain into one
``DepthToSpace`` (CRD for the ``"crd"`` order, DCR for ``"dcr"``), checks the model with the full ONNX checker,
and can compare ONNX Runtime's output with PyTorch's. 1-D and 3-D shuffles stay ``Reshape``/``Transpose``
(``DepthToSpace`` is 4-D only).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from subpixel.errors import SubpixelError
from subpixel.onnx._graph import check_model, save_model_atomic
from subpixel.onnx.tidy import fuse_depth_to_space, merge_slices

__all__ = ["MIN_EXPORT_OPSET", "export", "run_onnx"]

#: Oldest opset :func:`export` writes.
MIN_EXPORT_OPSET = 13


def export(
    module: nn.Module,
    example_inputs: Tensor | Sequence[Tensor],
    path: str | os.PathLike[str] | None = None,
    *,
    opset: int = 18,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    fuse: bool = True,
    dynamic: bool = False,
) -> onnx.ModelProto:
    """Export ``module`` to ONNX; 2-D periodic shuffles become ``DepthToSpace`` (with static shapes).

    Args:
        module: the module (put in eval mode by the caller if it has dropout or batch norm).
        example_inputs: one tensor or a sequence of tensors; they fix the input shapes.
        path: where to write the model (atomically); ``None`` only returns it.
        opset: ONNX opset of the default domain, at least :data:`MIN_EXPORT_OPSET`.
        input_names, output_names: names of the graph's inputs and outputs.
        fuse: fuse ``Reshape``/``Transpose``/``Reshape`` depth-to-space chains into ``DepthToSpace``, and the
            exporter's per-axis ``Slice`` nodes into one.
        dynamic: make the batch and spatial sizes of every input dynamic (``torch.export.Dim.AUTO``). The
            exporter then computes reshape targets in the graph, so 2-D shuffles stay ``Reshape``/``Transpose``.

    Returns:
        The model, checked with ``onnx.checker`` (full check).

    Raises:
        ValueError: if ``opset`` is below :data:`MIN_EXPORT_OPSET`, or if ``dynamic`` and the module fixed a size.

    Shape:
        - example_inputs: whatever ``module`` takes, ``(N, C, *spatial)`` each; the exported graph has exactly these
          shapes, or (``dynamic``) any ``N`` and spatial sizes.

    Examples:
        >>> import subpixel
        >>> layer = subpixel.SubPixelConv2d(4, 2, kernel_size=4, stride=2, padding=1)
        >>> model = export(layer, torch.randn(1, 4, 8, 8))
        >>> [n.op_type for n in model.graph.node]
        ['Conv', 'DepthToSpace', 'Slice']
    """
    if not isinstance(opset, int) or opset < MIN_EXPORT_OPSET:
        raise SubpixelError(f"opset must be an int >= {MIN_EXPORT_OPSET}, got {opset!r}")
    args = (example_inputs,) if isinstance(example_inputs, Tensor) else tuple(example_inputs)
    dynamic_shapes = _dynamic_shapes(module, args) if dynamic else None
    model = _torch_export(module, args, opset, input_names, output_names, dynamic_shapes)
    if dynamic:
        _check_nothing_fixed(model)
    if fuse:
        model, _ = fuse_depth_to_space(model)
        model, _ = merge_slices(model)
    check_model(model, "the exported model")
    if path is not None:
        save_model_atomic(model, path)
    return model


def _dynamic_shapes(module: nn.Module, args: tuple[Tensor, ...]) -> tuple:
    """``dynamic_shapes`` for :func:`torch.onnx.export`: every axis but the channels of every input is
    ``torch.export.Dim.AUTO`` (nested once more for ``forward(self, *inputs)``)."""
    auto = torch.export.Dim.AUTO
    specs = tuple({i: auto for i in range(x.dim()) if i != 1} for x in args)
    params = list(inspect.signature(module.forward).parameters.values())
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:  # forward(self, *inputs)
        return (specs,)
    return specs


def _torch_export(
    module: nn.Module,
    args: tuple[Tensor, ...],
    opset: int,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    dynamic_shapes: tuple | None,
) -> onnx.ModelProto:
    """Torch's ONNX exporter (``dynamo=True``) with its warnings, printing and notices silenced."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logger.setLevel(logging.ERROR)  # "torchvision is not installed" notices and the like
        try:
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                opset_version=opset,
                input_names=list(input_names) if input_names else None,
                output_names=list(output_names) if output_names else None,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
            )
        finally:
            logger.setLevel(level)
    return program.model_proto  # type: ignore[union-attr]


def _check_nothing_fixed(model: onnx.ModelProto) -> None:
    """:class:`SubpixelError` where the exporter fixed a batch or spatial axis of an input asked to be dynamic
    (the module's code depends on its size)."""
    fixed = {
        value.name: [
            i for i, d in enumerate(value.type.tensor_type.shape.dim) if i != 1 and d.HasField("dim_value")
        ]
        for value in model.graph.input
    }
    fixed = {name: axes for name, axes in fixed.items() if axes}
    if fixed:
        raise SubpixelError(
            f"dynamic=True, but the exporter fixed these axes of the inputs to their example sizes: {fixed} "
            "(the module's code depends on them); export with static shapes instead"
        )


def run_onnx(
    model: onnx.ModelProto | str | Path, *inputs: np.ndarray | Tensor, threads: int = 1
) -> list[np.ndarray]:
    """Run a model in ONNX Runtime (CPU) on positional inputs; returns every output as numpy.

    Examples:
        >>> from onnx import helper, TensorProto
        >>> g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
        ...                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        ...                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
        >>> run_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), np.array([-1.0, 2.0], np.float32))
        [array([0., 2.], dtype=float32)]
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise SubpixelError(f"the model takes {len(names)} inputs {names}, got {len(inputs)}")
    feeds = {
        name: (x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x))
        for name, x in zip(names, inputs)
    }
    return [np.asarray(y) for y in session.run(None, feeds)]
