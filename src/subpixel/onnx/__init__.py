"""ONNX: export SubPixelConv networks, and rewrite ``ConvTranspose`` <-> ``Conv`` + ``DepthToSpace`` in any graph.

* :func:`export`: a PyTorch module to ONNX; 2-D periodic shuffles become ``DepthToSpace``.
* :func:`conv_transpose_to_subpixel`: every ``ConvTranspose`` of a graph to ``Conv`` + shuffle + ``Slice``.
* :func:`subpixel_to_conv_transpose`: ``Conv`` → ``DepthToSpace`` [→ ``Slice``] back to ``ConvTranspose``.
* :func:`compare_models`: run two graphs in ONNX Runtime on the same random inputs; errors and timings.

The command line is ``subpixel onnx rewrite`` / ``subpixel onnx export`` (:mod:`subpixel.cli.onnx`).
Needs the ``onnx`` extra: ``pip install '.[onnx]'`` in a clone of subpixel.
"""

from subpixel.onnx._graph import MIN_OPSET, OnnxInputError, RewriteReport, load_model, save_model_atomic
from subpixel.onnx.export import MIN_EXPORT_OPSET, export, run_onnx
from subpixel.onnx.reverse import subpixel_to_conv_transpose
from subpixel.onnx.rewrite import ConvTransposeGeometry, conv_transpose_to_subpixel, resolve_conv_transpose
from subpixel.onnx.tidy import fuse_depth_to_space, merge_slices
from subpixel.onnx.verify import Comparison, compare_models

__all__ = [
    "MIN_EXPORT_OPSET",
    "MIN_OPSET",
    "Comparison",
    "ConvTransposeGeometry",
    "OnnxInputError",
    "RewriteReport",
    "compare_models",
    "conv_transpose_to_subpixel",
    "export",
    "fuse_depth_to_space",
    "load_model",
    "merge_slices",
    "resolve_conv_transpose",
    "run_onnx",
    "save_model_atomic",
    "subpixel_to_conv_transpose",
]
