"""Whether a call runs eagerly on plain tensors: the one predicate that sends every core function either to its
fast eager paths (preallocated outputs, the compiled copy kernel, cached plans and weights, the timed choice) or to
its plain formulation (views, ``reshape → permute → reshape``, the LR convolution), which tracers, exporters,
compilers, ``torch.func`` transforms and dispatch modes see as ordinary torch operations. Both give identical
values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["PLAIN_TENSOR_TYPES", "is_eager_plain"]

#: tensor types whose storage and ``copy_`` semantics the fast paths rely on
PLAIN_TENSOR_TYPES = (Tensor, nn.Parameter)


def _onnx_export_check() -> Callable[[], bool]:
    """``torch.onnx.is_in_onnx_export`` without its two imports per call, reading the same two flags; the public
    function where torch's private modules moved."""
    try:
        from torch.onnx._internal.exporter import _flags
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS

        def check() -> bool:
            return GLOBALS.in_onnx_export or _flags._is_onnx_exporting

        check()
        return check
    except (ImportError, AttributeError):  # pragma: no cover - another torch version
        return torch.onnx.is_in_onnx_export


_in_onnx_export = _onnx_export_check()
Parameter = nn.Parameter
_tracing_state = torch._C._get_tracing_state
_functorch_active = torch._C._are_functorch_transforms_active
_dispatch_modes = torch._C._len_torch_dispatch_stack
_is_compiling = torch.compiler.is_compiling
_is_exporting = torch.compiler.is_exporting


def is_eager_plain(*tensors: Tensor | None) -> bool:
    """``True`` where the fast eager paths may run on ``tensors`` (``None`` entries are skipped); ``False`` under
    tracing, scripting, ``torch.compile``, ``torch.export``, ONNX export, inside ``torch.func`` transforms
    (``vmap``, ``grad``, ``jvp``), under a ``TorchDispatchMode`` (``FlopCounterMode``; fake tensors), and for
    meta tensors and tensor subclasses. Runs on every forward: each check is a flag read.

    Examples:
        >>> is_eager_plain(torch.zeros(2))
        True
        >>> is_eager_plain(torch.zeros(2, device="meta"))
        False
    """
    if _is_compiling() or _is_exporting():  # first: Dynamo answers these as constants and traces no further
        return False
    for t in tensors:
        if t is not None and ((type(t) is not Tensor and type(t) is not Parameter) or t.is_meta):
            return False
    return not (
        _tracing_state()
        or _functorch_active()
        or _dispatch_modes()
        or torch.jit.is_scripting()
        or _in_onnx_export()
    )
