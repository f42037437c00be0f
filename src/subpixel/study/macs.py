"""Exact multiply-add (MAC) and parameter counts of a network, layer by layer.

One MAC is one multiplication followed by one addition; FLOPs in the convention of
``torch.utils.flop_counter`` are ``2·MACs``. Counts are of the work the layer *actually does*:

* ``nn.Conv{1,2,3}d``: ``N · C_out · ∏L_out · (C_in/groups) · ∏k`` (bias additions are not counted).
* ``nn.ConvTranspose{1,2,3}d``: ``N · C_in · ∏L_in · (C_out/groups) · ∏k`` (every input sample is scattered
  through the whole kernel, as PyTorch computes it, including the taps that land in the cropped padding).
* :class:`subpixel.SubPixelConvNd`: the LR convolution it runs, ``N · C_out·∏s · ∏L_lr · (C_in/groups) · ∏K``,
  where ``L_lr = ⌈(crop + L_out)/s⌉`` is the number of LR outputs it computes (see
  :func:`subpixel.functional.lr_geometry`); the shuffle and crop are free. This is the LR form's cost, which
  training always pays; in inference without autograd, a layer whose kernel is not a multiple of its stride may
  take the per-phase-group path, which multiplies only the real taps and costs less than counted here.
* pixel (un)shuffles, padding, cropping, pointwise activations: 0.
* ``nn.Upsample``: ``nearest`` 0; ``linear``/``bilinear``/``trilinear``/``bicubic``: one MAC per tap of the
  direct (not separated) interpolation kernel per output element: 2, 4, 8 and 16 taps.
* :class:`subpixel.study.BicubicUpsample2d`: the transposed convolution it runs (as ``nn.ConvTranspose2d``),
  on the replication-padded input when ``edge="replicate"``.
* ``nn.Linear``: ``in_features`` per output element.
* a layer under ``torch.nn.utils.parametrize`` (weight norm, spectral norm, the LR step of a converted layer):
  as the plain layer, with the parameters it derives its weight from; computing the weight is not counted.

Leaf modules are counted through forward hooks during one forward pass (on the ``meta`` device when possible,
so even 1080p shapes cost nothing). A leaf module with parameters that is not in the list above raises
``TypeError`` rather than being silently counted as free.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from subpixel.errors import SubpixelError
from subpixel.functional import lr_geometry
from subpixel.layers import SubPixelConvNd
from subpixel.study.blocks import POINTWISE_ACTIVATIONS, BicubicUpsample2d

__all__ = ["LayerCount", "MacReport", "count_macs"]

_ZERO_COST = (
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.Identity,
    nn.Dropout,
    nn.Flatten,
    nn.Unflatten,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.ReplicationPad3d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReflectionPad3d,
    # pointwise activations (their cost is not multiply-adds)
    *POINTWISE_ACTIVATIONS,
    nn.PReLU,
)

_INTERP_TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4}


@dataclass(frozen=True)
class LayerCount:
    """The count of one leaf module.

    Attributes:
        name: qualified module name in the model (``""`` for the model itself).
        kind: the module's class name.
        input_shape: shape of its (first) input.
        output_shape: shape of its output.
        macs: multiply-adds it performs for the whole batch.
        params: number of its parameters (buffers excluded).
        nonzero_macs: MACs whose weight is not exactly zero (equal to ``macs`` for layers without weights).
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    params: int
    nonzero_macs: int


@dataclass(frozen=True)
class MacReport:
    """MACs and parameters of a model for one input shape.

    Attributes:
        input_shape: the input shape counted.
        output_shape: the model's output shape.
        layers: one :class:`LayerCount` per leaf module call, in execution order.
        params: parameters of the model (each counted once, trainable or not).
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    layers: list[LayerCount] = field(default_factory=list)
    params: int = 0

    @property
    def total(self) -> int:
        """All MACs of the forward pass."""
        return sum(layer.macs for layer in self.layers)

    @property
    def nonzero_total(self) -> int:
        """MACs with a weight that is not exactly zero."""
        return sum(layer.nonzero_macs for layer in self.layers)

    @property
    def output_pixels(self) -> int:
        """Output pixels ``N·∏L_out`` (channels not counted)."""
        return self.output_shape[0] * math.prod(self.output_shape[2:])

    @property
    def per_output_pixel(self) -> float:
        """MACs per output pixel: ``total / (N·∏L_out)``."""
        return self.total / self.output_pixels

    def table(self) -> str:
        """A plain-text table of the layers and totals."""
        rows = [f"{'layer':<24} {'kind':<20} {'output':<22} {'MACs':>16} {'params':>10}"]
        for layer in self.layers:
            rows.append(
                f"{layer.name or '.':<24.24} {layer.kind:<20.20} {'x'.join(map(str, layer.output_shape)):<22} "
                f"{layer.macs:>16,} {layer.params:>10,}"
            )
        rows.append(
            f"{'total':<24} {'':<20} {'x'.join(map(str, self.output_shape)):<22} {self.total:>16,} "
            f"{self.params:>10,}"
        )
        rows.append(f"MACs per output pixel: {self.per_output_pixel:,.1f}")
        return "\n".join(rows)


def _nnz(weight: Tensor) -> int:
    return int(torch.count_nonzero(weight)) if weight.device.type != "meta" else weight.numel()


def _count_leaf(module: nn.Module, weight: Tensor | None, x: Tensor, y: Tensor) -> tuple[int, int]:
    """(MACs, non-zero-weight MACs) of one call of a leaf module."""
    n = x.shape[0] if x.dim() > 1 else 1
    if isinstance(module, SubPixelConvNd):
        nd = module._ndim
        n = x.shape[0] if x.dim() == nd + 2 else 1
        lr_out = 1
        for length, out_len, k, s, p, d in zip(
            x.shape[-nd:],
            y.shape[-nd:],
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            strict=True,
        ):
            crop = lr_geometry(length, k, s, p, 0, d).crop
            lr_out *= -(-(crop + out_len) // s)
        per_weight = n * lr_out
        return per_weight * weight.numel(), per_weight * _nnz(weight)
    if isinstance(module, nn.modules.conv._ConvTransposeNd) or isinstance(module, BicubicUpsample2d):
        nd = len(module.kernel_size)
        n = x.shape[0] if x.dim() == nd + 2 else 1
        w = weight
        # weight (C_in, C_out/g, *k): each input sample of channel i meets the C_out/g·∏k taps of its row
        grow = 2 * module.half if isinstance(module, BicubicUpsample2d) and module.edge == "replicate" else 0
        per_weight = n * math.prod(length + grow for length in x.shape[-nd:])  # incl. replicate padding
        return per_weight * w.numel(), per_weight * _nnz(w)
    if isinstance(module, nn.modules.conv._ConvNd):
        nd = len(module.kernel_size)
        n = y.shape[0] if y.dim() == nd + 2 else 1
        per_weight = n * math.prod(y.shape[-nd:])
        return per_weight * weight.numel(), per_weight * _nnz(weight)
    if isinstance(module, nn.Linear):
        per_weight = y.numel() // module.out_features
        return per_weight * weight.numel(), per_weight * _nnz(weight)
    if isinstance(module, nn.Upsample):
        taps = _INTERP_TAPS.get(module.mode)
        if taps is None:
            raise TypeError(f"count_macs: nn.Upsample mode {module.mode!r} is not supported")
        nd = y.dim() - 2
        macs = 0 if taps == 1 else y.numel() * taps**nd
        return macs, macs
    if isinstance(module, _ZERO_COST) or not any(True for _ in module.parameters(recurse=False)):
        return 0, 0
    raise TypeError(
        f"count_macs: cannot count {type(module).__name__}, a layer with parameters whose multiply-adds are "
        "not known; supported: Conv*, ConvTranspose*, SubPixelConv*, Linear, Upsample, shuffles, activations"
    )


def count_macs(
    model: nn.Module, input_shape: Sequence[int], *, dtype: torch.dtype | None = None
) -> MacReport:
    """Count the multiply-adds and parameters of ``model`` on an input of shape ``input_shape``.

    Args:
        model: any module built from the layers listed in :mod:`subpixel.study.macs`.
        input_shape: the full input shape, batch included, e.g. ``(1, 1, 1080 // 3, 1920 // 3)``.
        dtype: dtype of the probe input; by default the dtype of the model's first parameter or buffer.

    Returns:
        A :class:`MacReport` (per layer, total, per output pixel, parameters).

    Raises:
        TypeError: if a leaf module has parameters but an unknown cost.
        ValueError: if ``input_shape`` is not a sequence of positive ints.

    Shape:
        - input_shape: ``(N, C, *L)``; the report's ``output_shape`` is the model's output shape.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
        ...                           torch.nn.Conv2d(8, 4, 3, padding=1), torch.nn.PixelShuffle(2))
        >>> report = count_macs(net, (1, 1, 10, 10))
        >>> report.total, report.params, report.per_output_pixel   # (8·9 + 4·8·9)·100, 80 + 292, /400
        (36000, 372, 90.0)
    """
    if (
        isinstance(input_shape, str | bytes)
        or not isinstance(input_shape, Sequence)
        or not input_shape
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape)
    ):
        raise SubpixelError(f"input_shape must be a sequence of positive ints, got {input_shape!r}")
    params = sum(p.numel() for p in model.parameters())
    for name, m in _layers(model):
        if not _is_leaf(m) and any(True for _ in m.parameters(recurse=False)):
            raise TypeError(
                f"count_macs: module {name or '.'} ({type(m).__name__}) has its own parameters and children; "
                "its direct computation cannot be counted"
            )
    originals = dict(model.named_modules())
    if dtype is None:
        dtype = next((t.dtype for t in (*model.parameters(), *model.buffers())), torch.float32)
    try:  # shapes only: run on the meta device (free even for 1080p); weights are read from the original
        probe, device = copy.deepcopy(model).to("meta"), torch.device("meta")
        return _run(probe, originals, tuple(input_shape), dtype, device, params)
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: count on the real device
        return _run(model, originals, tuple(input_shape), dtype, _device_of(model), params)


def _is_leaf(m: nn.Module) -> bool:
    """Whether ``m`` is counted as one layer: no children, a SubPixelConvNd, or a layer whose only child holds its
    parametrizations (``torch.nn.utils.parametrize``: weight norm, spectral norm, a converted layer's LR step)."""
    children = list(m.children())
    if isinstance(m, SubPixelConvNd) or not children:
        return True
    return parametrize.is_parametrized(m) and all(c is m.parametrizations for c in children)


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model.named_modules()`` without the modules inside a layer's parametrizations (they compute its
    weight, not its output: the layer is counted as a whole)."""
    inside = {
        id(sub)
        for m in model.modules()
        if parametrize.is_parametrized(m)
        for sub in m.parametrizations.modules()  # type: ignore[union-attr]
    }
    return [(name, m) for name, m in model.named_modules() if id(m) not in inside]


def _weight_of(module: nn.Module) -> Tensor | None:
    """``module.weight`` for counting non-zero taps; a parametrized weight is computed on a copy of its
    parametrizations, so counting steps no state (spectral norm's power iteration)."""
    if parametrize.is_parametrized(module, "weight"):
        with torch.no_grad():
            return copy.deepcopy(module.parametrizations["weight"])()  # type: ignore[index, operator]
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, Tensor) else None


def _run(
    model: nn.Module,
    originals: dict[str, nn.Module],
    input_shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    params: int,
) -> MacReport:
    layers: list[LayerCount] = []
    names = {m: name for name, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        x = inputs[0] if inputs else None
        if not isinstance(x, Tensor) or not isinstance(output, Tensor):
            raise TypeError(f"count_macs: {type(module).__name__} must take and return a tensor")
        name = names.get(module, "")
        macs, nonzero = _count_leaf(module, _weight_of(originals.get(name, module)), x, output)
        layers.append(
            LayerCount(
                name,
                parametrize.type_before_parametrizations(module).__name__,
                tuple(x.shape),
                tuple(output.shape),
                int(macs),
                sum(p.numel() for p in module.parameters()),  # a leaf: its own and its parametrizations'
                int(nonzero),
            )
        )

    handles = [m.register_forward_hook(hook) for _, m in _layers(model) if _is_leaf(m)]
    try:
        with torch.no_grad():
            y = model(torch.zeros(input_shape, dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
    return MacReport(input_shape, tuple(y.shape), layers, params)


def _device_of(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")
