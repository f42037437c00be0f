"""Exact conversion between ``nn.ConvTranspose{1,2,3}d`` and :class:`~subpixel.layers.SubPixelConvNd`,
for single layers and whole models.

Weight norm, spectral norm and any ``torch.nn.utils.parametrize`` parametrization are kept (see
:mod:`subpixel.reparametrize`): the converted layer trains exactly as the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from subpixel.errors import SubpixelError
from subpixel.functional import conv_transpose_weight_to_lr, lr_weight_to_conv_transpose
from subpixel.layers import SubPixelConv1d, SubPixelConv2d, SubPixelConv3d, SubPixelConvNd
from subpixel.reparametrize import (
    ConvTransposeToLR,
    carry_to_conv_transpose,
    carry_to_lr,
    deepcopy_module,
    hold_conv_transpose_weight,
    is_reparametrized,
    layer_summary,
    warn_dropped_hooks,
)

__all__ = [
    "WEIGHT_LAYOUTS",
    "ConversionReport",
    "Replacement",
    "WeightLayout",
    "convert_model",
    "from_conv_transpose",
    "to_conv_transpose",
]

#: how a converted layer holds a plain (not reparametrized) weight; see :func:`from_conv_transpose`
WeightLayout = Literal["conv_transpose", "lr"]
WEIGHT_LAYOUTS: tuple[str, ...] = ("conv_transpose", "lr")

_CONV_T: dict[int, type[nn.Module]] = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_SUBPIXEL: dict[int, type[SubPixelConvNd]] = {1: SubPixelConv1d, 2: SubPixelConv2d, 3: SubPixelConv3d}


def _conv_transpose_ndim(module: nn.Module) -> int:
    for n, cls in _CONV_T.items():
        if isinstance(module, cls):
            return n
    raise TypeError(
        f"module must be an nn.ConvTranspose1d, nn.ConvTranspose2d or nn.ConvTranspose3d, "
        f"got {type(module).__name__}"
    )


def _weight_source(module: nn.Module) -> Tensor:
    """The tensor ``module.weight`` is computed from, read without evaluating any parametrization (which could
    advance spectral norm's power iteration): for its device and dtype."""
    if parametrize.is_parametrized(module, "weight"):
        plist = module.parametrizations["weight"]  # type: ignore[index]
        return plist.original if plist.is_tensor else plist.original0
    return module.weight  # type: ignore[return-value]  # a parameter, or a hook's last computed value


def _has_bias(module: nn.Module) -> bool:
    """Whether ``module`` has a bias (a reparametrized one included), without evaluating it: a
    ``parametrize`` parametrization, a hook-style one (its last computed tensor), or a parameter."""
    if parametrize.is_parametrized(module, "bias"):
        return True
    return getattr(module, "bias", None) is not None


def from_conv_transpose(
    module: nn.Module, *, weight_layout: WeightLayout = "conv_transpose"
) -> SubPixelConvNd:
    """The :class:`~subpixel.layers.SubPixelConvNd` that computes exactly what ``module`` computes.

    The new layer is on the same device, in the same dtype and training mode, with the same ``requires_grad``.
    Its tensors are copies: ``module`` is not modified.

    ``weight_layout`` says how a plain weight is held:

    * ``"conv_transpose"`` (default, the drop-in): the parameter is a copy of ``module.weight`` in its own layout
      (``parametrizations.weight.original``), mapped to the LR weight by the exact
      :class:`~subpixel.reparametrize.ConvTransposeToLR` (``layer.weight`` is the LR weight). The layer has exactly
      the original's parameters, so it trains as the original (an optimizer sees the same tensors), and
      :mod:`subpixel.dispatch` may run torch's own transposed convolution on the parameter as it is wherever that
      is timed faster, in training too. ``parametrize.remove_parametrizations(layer, "weight")`` makes it an
      LR-layout layer.
    * ``"lr"``: the parameter is the LR weight itself (the paper's layer). Where the kernel is not a multiple of
      the stride (or with dilation), its extra LR entries start at zero but are trained like any other, so the
      layer is then strictly more expressive than the original.

    A reparametrized weight stays reparametrized (see :mod:`subpixel.reparametrize`): with
    ``parametrizations.weight_norm``, ``spectral_norm`` or any ``parametrize`` module, the new layer has copies of
    the same original tensors under the same names and the same parametrizations, followed by the exact
    :class:`~subpixel.reparametrize.ConvTransposeToLR`; ``layer.weight`` is the LR weight, and
    ``parametrize.remove_parametrizations(layer, "weight")`` folds it. The hook-style ``torch.nn.utils.weight_norm``
    / ``spectral_norm`` are carried as hooks (``remove_weight_norm`` / ``remove_spectral_norm`` fold them). Other
    hooks are not carried (a warning names them).

    Args:
        module: an ``nn.ConvTranspose1d``, ``nn.ConvTranspose2d`` or ``nn.ConvTranspose3d``.

    Raises:
        TypeError: if ``module`` is not a ConvTranspose (lazy modules must be materialised first).
        ValueError: for a ``padding_mode`` other than ``'zeros'``.

    Examples:
        >>> deconv = nn.ConvTranspose2d(16, 8, kernel_size=4, stride=2, padding=1).double()
        >>> layer = from_conv_transpose(deconv)
        >>> x = torch.randn(1, 16, 7, 9, dtype=torch.float64)
        >>> bool((layer(x) - deconv(x)).abs().max() < 1e-12)
        True
    """
    _conv_transpose_ndim(module)
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        raise TypeError(
            f"module {type(module).__name__} has uninitialised (lazy) parameters; run it once first"
        )
    return _from_conv_transpose(module, "", _check_layout(weight_layout))


def _check_layout(weight_layout: object) -> WeightLayout:
    if weight_layout not in WEIGHT_LAYOUTS:
        raise SubpixelError(f"weight_layout must be one of {WEIGHT_LAYOUTS}, got {weight_layout!r}")
    return weight_layout  # type: ignore[return-value]


def _from_conv_transpose(module: nn.Module, name: str, weight_layout: WeightLayout) -> SubPixelConvNd:
    """:func:`from_conv_transpose` of a checked ``module``; ``name`` (its place in a model) labels warnings."""
    n = _conv_transpose_ndim(module)
    warn_dropped_hooks(module, name)
    weight = _weight_source(module)
    layer = _SUBPIXEL[n](
        module.in_channels,  # type: ignore[arg-type]
        module.out_channels,  # type: ignore[arg-type]
        module.kernel_size,  # type: ignore[arg-type]
        stride=module.stride,  # type: ignore[arg-type]
        padding=module.padding,  # type: ignore[arg-type]
        output_padding=module.output_padding,  # type: ignore[arg-type]
        groups=module.groups,  # type: ignore[arg-type]
        bias=_has_bias(module),
        dilation=module.dilation,  # type: ignore[arg-type]
        padding_mode=module.padding_mode,  # type: ignore[arg-type]
        device=weight.device,
        dtype=weight.dtype,
    )
    to_lr = ConvTransposeToLR(layer.kernel_size, layer.stride, layer.dilation, layer.groups, layer.order)
    if is_reparametrized(module):
        carry_to_lr(module, layer, to_lr)
    if "weight" in module._parameters and weight_layout == "conv_transpose":
        hold_conv_transpose_weight(layer, weight, to_lr)
    elif "weight" in module._parameters:  # a plain weight, held in LR layout
        with torch.no_grad():
            layer.weight.copy_(
                conv_transpose_weight_to_lr(weight, layer.stride, layer.dilation, layer.groups)
            )
        layer.weight.requires_grad_(weight.requires_grad)
    if module._parameters.get("bias") is not None and layer.bias is not None:
        bias: Tensor = module.bias  # type: ignore[assignment]
        with torch.no_grad():
            layer.bias.copy_(bias)
        layer.bias.requires_grad_(bias.requires_grad)
    return layer.train(module.training)


def to_conv_transpose(module: SubPixelConvNd, *, check: bool = True) -> nn.Module:
    """The ``nn.ConvTranspose{1,2,3}d`` that computes exactly what a :class:`SubPixelConvNd` computes.

    Args:
        module: a ``SubPixelConv1d``, ``SubPixelConv2d`` or ``SubPixelConv3d``.
        check: refuse (``ValueError``) an LR weight with non-zero entries where no ConvTranspose tap lands
            (possible once an LR layer with ``kernel_size`` not a multiple of ``stride`` has been trained: the LR
            layer is then strictly more expressive than the ConvTranspose).

    A layer converted from a reparametrized ConvTranspose goes back with the same reparametrization (its final
    :class:`~subpixel.reparametrize.ConvTransposeToLR` step dropped), the same tensor names and copies of them.

    Raises:
        TypeError: if ``module`` is not a SubPixelConvNd.
        ValueError: an LR weight no ConvTranspose holds (see ``check``), or a reparametrization of the LR weight
            itself (e.g. ``weight_norm`` applied to the SubPixelConvNd): fold it first.

    Examples:
        >>> layer = SubPixelConv1d(4, 2, kernel_size=5, stride=2, padding=2)
        >>> deconv = to_conv_transpose(layer)
        >>> type(deconv).__name__, tuple(deconv.weight.shape)
        ('ConvTranspose1d', (4, 2, 5))
    """
    if not isinstance(module, SubPixelConvNd):
        raise TypeError(f"module must be a SubPixelConv1d/2d/3d, got {type(module).__name__}")
    weight_ct: Tensor | None = None
    if "weight" in module._parameters:  # a plain weight (not reparametrized)
        weight_ct = lr_weight_to_conv_transpose(
            module.weight.detach(),
            module.kernel_size,
            module.stride,
            module.dilation,
            module.groups,
            order=module.order,
            check=check,
        )
    source = weight_ct if weight_ct is not None else _weight_source(module)
    deconv = _CONV_T[len(module.kernel_size)](
        module.in_channels,
        module.out_channels,
        module.kernel_size,  # type: ignore[arg-type]
        stride=module.stride,  # type: ignore[arg-type]
        padding=module.padding,  # type: ignore[arg-type]
        output_padding=module.output_padding,  # type: ignore[arg-type]
        groups=module.groups,
        bias=_has_bias(module),
        dilation=module.dilation,  # type: ignore[arg-type]
        device=source.device,
        dtype=source.dtype,
    )
    if is_reparametrized(module):
        carry_to_conv_transpose(module, deconv)
    if weight_ct is not None:
        with torch.no_grad():
            deconv.weight.copy_(weight_ct)
        deconv.weight.requires_grad_(module.weight.requires_grad)
    if module._parameters.get("bias") is not None and deconv.bias is not None:
        bias: Tensor = module.bias  # type: ignore[assignment]
        with torch.no_grad():
            deconv.bias.copy_(bias)
        deconv.bias.requires_grad_(bias.requires_grad)
    return deconv.train(module.training)


@dataclass
class Replacement:
    """One layer replaced by :func:`convert_model`: its name in the model, one-line descriptions of the original
    and the replacement (class, arguments, reparametrizations), and the measured deviation."""

    name: str
    original: str
    replacement: str
    max_abs_error: float | None


@dataclass
class ConversionReport:
    """What :func:`convert_model` replaced, and the deviations it measured.

    Attributes:
        replacements: one entry per replaced layer, with the max abs difference between the original and the
            replacement on a random input, both evaluated in float64 (``None`` when ``verify=False``).
        model_max_abs_error: max abs difference between the original and the converted model on
            ``example_input``, in the model's own dtype (``None`` without ``example_input``).
    """

    replacements: list[Replacement] = field(default_factory=list)
    model_max_abs_error: float | None = None

    def __str__(self) -> str:
        lines = [f"replaced {len(self.replacements)} ConvTranspose layer(s)"]
        for r in self.replacements:
            err = "not measured" if r.max_abs_error is None else f"max |Δ| = {r.max_abs_error:.3g} (float64)"
            lines.append(f"  {r.name or '<root>'}: {r.original} -> {r.replacement}: {err}")
        if self.model_max_abs_error is not None:
            lines.append(f"whole model on example_input: max |Δ| = {self.model_max_abs_error:.3g}")
        return "\n".join(lines)


def _layer_error(original: nn.Module, replacement: SubPixelConvNd, generator: torch.Generator) -> float:
    """Max abs difference of two layers on a random float64 input (batch 2, a few pixels per axis)."""
    n = len(replacement.kernel_size)
    size = {1: 11, 2: 7, 3: 4}[n]
    a = deepcopy_module(original).to(device="cpu", dtype=torch.float64)
    b = deepcopy_module(replacement).to(device="cpu", dtype=torch.float64)
    x = torch.randn(2, replacement.in_channels, *([size] * n), dtype=torch.float64, generator=generator)
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


def _run_on_copied_buffers(model: nn.Module, x: Tensor) -> Tensor:
    """``model(x)`` with copies of its buffers, so that the run changes no state of ``model`` (batch-norm
    statistics, spectral norm's power-iteration vectors): both models stay as they were, and in step."""
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return torch.func.functional_call(model, buffers, (x,), strict=False)


def convert_model(
    model: nn.Module,
    *,
    inplace: bool = False,
    verify: bool = True,
    example_input: Tensor | None = None,
    seed: int = 0,
    weight_layout: WeightLayout = "conv_transpose",
) -> tuple[nn.Module, ConversionReport]:
    """Replace every ``nn.ConvTranspose{1,2,3}d`` in ``model`` (nested modules included) by its exact
    :class:`SubPixelConvNd` equivalent.

    Args:
        model: any module; a ConvTranspose itself is converted too.
        inplace: modify ``model`` itself instead of a deep copy.
        verify: measure each replacement against the original on a random float64 input.
        example_input: if given, also run both whole models on it (in their own dtype, on copies of their
            buffers: neither model changes) and report the max abs difference.
        seed: seed of the random verification inputs.
        weight_layout: how plain weights are held (:func:`from_conv_transpose`): ``"conv_transpose"`` (default:
            the original's parameters, trained exactly as the original) or ``"lr"``.

    Returns:
        ``(converted_model, report)``.

    Examples:
        >>> net = nn.Sequential(nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(4, 1, 4, 2, 1))
        >>> new, report = convert_model(net)
        >>> [parametrize.type_before_parametrizations(m).__name__ for m in new], len(report.replacements)
        (['SubPixelConv2d', 'ReLU', 'SubPixelConv2d'], 2)
        >>> print(report.replacements[0].replacement)  # the ConvTranspose weight held, mapped to LR form
        SubPixelConv2d(8, 4, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), lr_kernel_size=(2, 2), order='crd') [weight: ConvTransposeToLR]
        >>> max(r.max_abs_error for r in report.replacements) < 1e-12
        True
    """
    weight_layout = _check_layout(weight_layout)
    original = model
    if not inplace:
        model = deepcopy_module(model)
    generator = torch.Generator().manual_seed(seed)
    report = ConversionReport()
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, tuple(_CONV_T.values())) and not isinstance(module, SubPixelConvNd)
    ]
    for name, module in targets:
        new = _from_conv_transpose(module, name, weight_layout)
        error = _layer_error(module, new, generator) if verify else None
        report.replacements.append(Replacement(name, layer_summary(module), layer_summary(new), error))
        if name == "":
            model = new
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, new)
    if example_input is not None:
        if inplace:
            raise SubpixelError(
                "example_input needs inplace=False (the original is compared with the converted copy)"
            )
        with torch.no_grad():
            reference = _run_on_copied_buffers(original, example_input)
            converted = _run_on_copied_buffers(model, example_input)
        report.model_max_abs_error = (reference - converted).abs().max().item()
    return model, report
