"""Weight reparametrizations (weight norm, spectral norm, any ``torch.nn.utils.parametrize`` module) carried across
the exact ConvTranspose ↔ LR conversion, so that a converted model trains exactly as the original.

A ConvTranspose's weight may be computed from other tensors at every use:

* by ``torch.nn.utils.parametrize``: ``parametrizations.weight_norm``, ``parametrizations.spectral_norm``, or any
  custom parametrization, with the tensors it derives from under ``parametrizations.weight.original``
  (``original0``, ``original1``, … when there are several);
* by the older forward-pre-hook ``torch.nn.utils.weight_norm`` (``weight_g``, ``weight_v``) or
  ``torch.nn.utils.spectral_norm`` (``weight_orig``, buffers ``weight_u``, ``weight_v``).

The LR weight of the equivalent :class:`~subpixel.layers.SubPixelConvNd` is an exact re-indexing of that weight,
so the converted layer keeps the reparametrization, with copies of the same tensors under the same names (same
``state_dict`` keys, same parameter order), and adds one exact step at the end, :class:`ConvTransposeToLR`:

* parametrize: the original parametrizations, then ``ConvTransposeToLR``; ``layer.weight`` is the LR weight,
  ``parametrize.remove_parametrizations(layer, "weight")`` folds it into a plain LR weight, and assigning an LR
  weight to ``layer.weight`` goes back through every ``right_inverse``;
* hooks: a subclass of torch's hook whose ``compute_weight`` ends with ``ConvTransposeToLR``, so
  ``remove_weight_norm`` / ``remove_spectral_norm`` fold it into a plain LR weight too.

Gradients with respect to the original tensors are those of the original model (the last step only moves
entries), and so are the states of stateful parametrizations (spectral norm's power iteration runs once per
forward, on the ConvTranspose-layout weight, as in the original).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import (
    SpectralNorm,
    SpectralNormLoadStateDictPreHook,
    SpectralNormStateDictHook,
)
from torch.nn.utils.weight_norm import WeightNorm

from subpixel._validation import ChannelOrder, check_order
from subpixel.errors import SubpixelError
from subpixel.functional import conv_transpose_weight_to_lr, lr_weight_to_conv_transpose

__all__ = [
    "ConvTransposeToLR",
    "LRSpectralNorm",
    "LRWeightNorm",
    "carry_to_conv_transpose",
    "carry_to_lr",
    "deepcopy_module",
    "hold_conv_transpose_weight",
    "is_reparametrized",
    "layer_summary",
    "warn_dropped_hooks",
]


class ConvTransposeToLR(nn.Module):
    """The exact map from a ConvTranspose weight to the LR weight, as a ``parametrize`` step.

    ``forward`` is :func:`~subpixel.functional.conv_transpose_weight_to_lr`, ``right_inverse`` is
    :func:`~subpixel.functional.lr_weight_to_conv_transpose` (which refuses LR weights with entries no tap reaches).

    Shape:
        - forward input: ``(C_in, C_out/groups, *k)``; output: ``(C_out·∏s, C_in/groups, *K)``.

    Examples:
        >>> layer = nn.ConvTranspose1d(2, 3, kernel_size=5, stride=2)
        >>> ConvTransposeToLR(kernel_size=5, stride=2)(layer.weight).shape
        torch.Size([6, 2, 3])
    """

    #: the LR entries no tap reaches are zero by construction and their gradients go nowhere, so the dispatch
    #: (:func:`subpixel.functional.lr_conv_shuffle`) may run torch's own transposed convolution in training too
    subpixel_fixed_taps = True

    def __init__(
        self,
        kernel_size: Sequence[int] | int,
        stride: Sequence[int] | int,
        dilation: Sequence[int] | int = 1,
        groups: int = 1,
        order: ChannelOrder = "crd",
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride = stride if isinstance(stride, int) else tuple(stride)
        self.dilation = dilation if isinstance(dilation, int) else tuple(dilation)
        self.groups = groups
        self.order: ChannelOrder = check_order(order)
        self._matched: tuple | None = None  # the geometry matches() last accepted

    def forward(self, weight: Tensor) -> Tensor:
        return conv_transpose_weight_to_lr(weight, self.stride, self.dilation, self.groups, order=self.order)

    def matches(self, layer: nn.Module) -> bool:
        """Whether this is the map of ``layer``'s geometry (kernel size, stride, dilation, groups, channel order),
        so that the tensor it maps is ``layer``'s ConvTranspose-layout weight."""
        geometry = (layer.kernel_size, layer.stride, layer.dilation, layer.groups, layer.order)
        if self._matched == geometry:  # the last answer (asked on every forward)
            return True
        n = len(layer.kernel_size)  # type: ignore[arg-type]

        def norm(v: int | tuple[int, ...]) -> tuple[int, ...]:
            return (v,) * n if isinstance(v, int) else tuple(v)

        ok = (
            norm(self.kernel_size),
            norm(self.stride),
            norm(self.dilation),
            self.groups,
            self.order,
        ) == tuple(tuple(v) if isinstance(v, (tuple, list)) else v for v in geometry)
        if ok and not torch.compiler.is_compiling():  # no module state changes inside a compiled graph
            self._matched = geometry
        return ok

    def right_inverse(self, weight_lr: Tensor) -> Tensor:
        return lr_weight_to_conv_transpose(
            weight_lr, self.kernel_size, self.stride, self.dilation, self.groups, order=self.order
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}, "
            f"groups={self.groups}, order={self.order!r}"
        )


class _LRHook:
    """Mixin for torch's hook-style reparametrizations: the computed weight, then :class:`ConvTransposeToLR`."""

    to_lr: ConvTransposeToLR

    def compute_weight(self, module: nn.Module, *args: object, **kwargs: object) -> Tensor:
        return self.to_lr(super().compute_weight(module, *args, **kwargs))  # type: ignore[misc]


class LRWeightNorm(_LRHook, WeightNorm):
    """``torch.nn.utils.weight_norm``'s hook, ending in the LR layout (``remove_weight_norm`` folds it)."""


class LRSpectralNorm(_LRHook, SpectralNorm):
    """``torch.nn.utils.spectral_norm``'s hook, ending in the LR layout (``remove_spectral_norm`` folds it)."""


#: hook class -> (its LR subclass, suffixes of the tensors it owns, in the order torch registers them)
_HOOKS: dict[type, tuple[type, tuple[str, ...]]] = {
    WeightNorm: (LRWeightNorm, ("_g", "_v")),
    SpectralNorm: (LRSpectralNorm, ("_orig", "_u", "_v")),
}


class _Originals(nn.Module):
    """First step while registering copied parametrizations; replaced by the real first step right away.

    Its ``right_inverse`` hands back the copied original tensors, so no parametrization's ``right_inverse`` runs on
    a made-up weight (and none of their ``forward`` runs, which would advance spectral norm's power iteration).
    """

    def __init__(self, originals: tuple[Tensor, ...] | None) -> None:
        super().__init__()
        self.originals = originals

    def forward(self, *tensors: Tensor) -> Tensor:  # pragma: no cover - replaced before any use
        raise RuntimeError("placeholder parametrization evaluated")

    def right_inverse(self, value: Tensor) -> Tensor | tuple[Tensor, ...]:
        return value if self.originals is None else self.originals


def _clone(t: Tensor) -> Tensor:
    """A detached copy, a Parameter with the same ``requires_grad`` when ``t`` is one."""
    c = t.detach().clone()
    return nn.Parameter(c, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else c


def _set_tensor(module: nn.Module, name: str, value: Tensor) -> None:
    """Make ``value`` the parameter (a ``Parameter``) or buffer (a plain tensor) ``name`` of ``module``, in the
    place of one of the same kind and name (so the order of ``parameters()`` and ``state_dict`` is kept)."""
    if isinstance(value, nn.Parameter) and name in module._parameters:
        module._parameters[name] = value
        return
    if not isinstance(value, nn.Parameter) and name in module._buffers:
        module._buffers[name] = value
        return
    module._parameters.pop(name, None)
    module._buffers.pop(name, None)
    module.__dict__.pop(name, None)
    if isinstance(value, nn.Parameter):
        module.register_parameter(name, value)
    else:
        module.register_buffer(name, value)


def _copy_parametrizations(
    source: parametrize.ParametrizationList,
    target: nn.Module,
    name: str,
    steps: Sequence[nn.Module],
    then: nn.Module | None,
) -> None:
    """Register on ``target.<name>`` copies of ``source``'s original tensors and of ``steps``, then ``then``."""
    n = 1 if source.is_tensor else source.ntensors
    originals = [source.original] if source.is_tensor else [getattr(source, f"original{i}") for i in range(n)]
    clones = [_clone(t) for t in originals]
    if not steps:  # a ConvTransposeToLR alone, going back: a plain tensor
        _set_tensor(target, name, clones[0])
        return
    if source.is_tensor:
        _set_tensor(target, name, clones[0])
        placeholder = _Originals(None)
    else:
        _set_tensor(target, name, _clone(originals[0]))  # only its kind (parameter / buffer) matters
        placeholder = _Originals(tuple(clones))
    parametrize.register_parametrization(target, name, placeholder, unsafe=True)
    plist = target.parametrizations[name]  # type: ignore[index]
    plist[0] = copy.deepcopy(steps[0])
    for step in steps[1:]:
        parametrize.register_parametrization(target, name, copy.deepcopy(step), unsafe=True)
    if then is not None:
        parametrize.register_parametrization(target, name, then, unsafe=True)
    if not source.is_tensor:
        for i, c in enumerate(clones):
            getattr(plist, f"original{i}").requires_grad_(c.requires_grad)
    plist.unsafe = source.unsafe or then is not None


def _hooks(module: nn.Module) -> list[tuple[int, WeightNorm | SpectralNorm]]:
    """The hook-style reparametrizations of ``module``: ``(hook id, hook)``."""
    return [(k, h) for k, h in module._forward_pre_hooks.items() if isinstance(h, tuple(_HOOKS))]


def _base_hook_class(hook: object) -> type:
    for cls in _HOOKS:
        if isinstance(hook, cls):
            return cls
    raise AssertionError(type(hook))  # pragma: no cover


def _copy_hook(source: nn.Module, target: nn.Module, hook: WeightNorm | SpectralNorm, cls: type) -> object:
    """Register on ``target`` copies of ``hook``'s tensors (same names, same order) and a ``cls`` copy of it."""
    new = cls.__new__(cls)
    new.__dict__.update({k: v for k, v in vars(hook).items() if k != "to_lr"})
    for suffix in _HOOKS[_base_hook_class(hook)][1]:
        key = hook.name + suffix
        tensor = source._parameters.get(key)
        if tensor is None:
            tensor = source._buffers.get(key)
        if tensor is None:
            raise SubpixelError(
                f"{type(source).__name__} has a {type(hook).__name__} hook but no tensor {key!r}"
            )
        _set_tensor(target, key, _clone(tensor))
    target._parameters.pop(hook.name, None)
    target._buffers.pop(hook.name, None)
    target.register_forward_pre_hook(new)
    for h in source._state_dict_hooks.values():
        if isinstance(h, SpectralNormStateDictHook) and h.fn is hook:
            target._register_state_dict_hook(SpectralNormStateDictHook(new))
    for h in source._load_state_dict_pre_hooks.values():
        inner = getattr(h, "hook", h)  # torch wraps load_state_dict pre-hooks
        if isinstance(inner, SpectralNormLoadStateDictPreHook) and inner.fn is hook:
            target._register_load_state_dict_pre_hook(SpectralNormLoadStateDictPreHook(new))
    return new


def _current_value(hook: object, module: nn.Module) -> Tensor:
    """The tensor ``hook`` computes for ``module`` (detached, no power iteration): what torch's ``apply`` leaves
    in the attribute until the first forward recomputes it."""
    with torch.no_grad():
        if isinstance(hook, SpectralNorm):
            return hook.compute_weight(module, do_power_iteration=False)
        return hook.compute_weight(module)  # type: ignore[attr-defined]


def is_reparametrized(module: nn.Module) -> bool:
    """Whether ``module`` has a ``parametrize`` parametrization or a hook-style weight / spectral norm."""
    return parametrize.is_parametrized(module) or bool(_hooks(module))


def layer_summary(module: nn.Module) -> str:
    """One line: the layer's class and arguments, then its reparametrizations, e.g.
    ``ConvTranspose1d(4, 2, kernel_size=(4,), stride=(2,)) [weight: _WeightNorm]``."""
    text = f"{parametrize.type_before_parametrizations(module).__name__}({module.extra_repr()})"
    steps = []
    if parametrize.is_parametrized(module):
        for name, plist in module.parametrizations.items():  # type: ignore[union-attr]
            steps.append(f"{name}: " + " -> ".join(type(step).__name__ for step in plist))
    steps += [f"{hook.name}: {type(hook).__name__} hook" for _, hook in _hooks(module)]
    return text + (f" [{'; '.join(steps)}]" if steps else "")


def warn_dropped_hooks(module: nn.Module, name: str) -> None:
    """Warn that ``module``'s hooks other than hook-style weight / spectral norm are not carried by a conversion."""
    kinds = {
        "forward pre-hooks": [
            h for h in module._forward_pre_hooks.values() if not isinstance(h, tuple(_HOOKS))
        ],
        "forward hooks": list(module._forward_hooks.values()),
        "backward hooks": [*module._backward_hooks.values(), *module._backward_pre_hooks.values()],
    }
    dropped = {k: v for k, v in kinds.items() if v}
    if dropped:
        what = ", ".join(f"{len(v)} {k}" for k, v in dropped.items())
        warnings.warn(
            f"{name or type(module).__name__}: {what} not carried to the converted layer "
            "(register them on the new layer)",
            stacklevel=4,
        )


def carry_to_lr(deconv: nn.Module, layer: nn.Module, to_lr: ConvTransposeToLR) -> None:
    """Give ``layer`` (the SubPixelConvNd made from ``deconv``) ``deconv``'s reparametrizations.

    ``weight`` gets them followed by ``to_lr``; other tensors (``bias``) get them unchanged. Tensors that are not
    reparametrized are left as they are in ``layer``. ``deconv`` is not modified and nothing is evaluated.
    """
    if parametrize.is_parametrized(deconv):
        for tensor_name, plist in deconv.parametrizations.items():  # type: ignore[union-attr]
            then = copy.deepcopy(to_lr) if tensor_name == "weight" else None
            _copy_parametrizations(plist, layer, tensor_name, list(plist), then)
    for _, hook in _hooks(deconv):
        lr_cls = _HOOKS[_base_hook_class(hook)][0] if hook.name == "weight" else type(hook)
        new = _copy_hook(deconv, layer, hook, lr_cls)
        if hook.name == "weight":
            new.to_lr = copy.deepcopy(to_lr)  # type: ignore[attr-defined]
        setattr(layer, hook.name, _current_value(new, layer))


def hold_conv_transpose_weight(layer: nn.Module, weight_ct: Tensor, to_lr: ConvTransposeToLR) -> None:
    """Make ``layer.weight`` the LR weight ``to_lr(original)`` of a parameter ``original`` holding a copy of the
    ConvTranspose weight ``weight_ct`` (same ``requires_grad``), under ``layer.parametrizations.weight.original``.

    Shape:
        - weight_ct: ``(C_in, C_out/groups, *k)``; ``layer.weight``: ``(C_out·∏s, C_in/groups, *K)``.
    """
    _set_tensor(
        layer, "weight", nn.Parameter(weight_ct.detach().clone(), requires_grad=weight_ct.requires_grad)
    )
    parametrize.register_parametrization(layer, "weight", _Originals(None), unsafe=True)
    layer.parametrizations["weight"][0] = to_lr  # type: ignore[index]
    layer._register_load_state_dict_pre_hook(_load_conv_transpose_weight)


def _load_conv_transpose_weight(state_dict: dict, prefix: str, *args: object) -> None:
    """``load_state_dict`` of a layer holding a ConvTranspose weight accepts the original ConvTranspose's
    ``state_dict`` too: its ``weight`` is the held parameter (``parametrizations.weight.original``)."""
    held = prefix + "parametrizations.weight.original"
    if prefix + "weight" in state_dict and held not in state_dict:
        state_dict[held] = state_dict.pop(prefix + "weight")


def carry_to_conv_transpose(layer: nn.Module, deconv: nn.Module) -> None:
    """Give ``deconv`` (the ConvTranspose made from ``layer``) ``layer``'s reparametrizations, without the final
    :class:`ConvTransposeToLR` step of ``weight``.

    Raises:
        ValueError: if ``layer.weight`` has a reparametrization of the LR weight itself (one that does not end in
            ``ConvTransposeToLR``): a ConvTranspose cannot hold it.
    """
    if parametrize.is_parametrized(layer):
        for tensor_name, plist in layer.parametrizations.items():  # type: ignore[union-attr]
            steps = list(plist)
            if tensor_name == "weight":
                if not isinstance(steps[-1], ConvTransposeToLR):
                    raise SubpixelError(
                        f"module.weight has parametrizations {[type(s).__name__ for s in steps]} of the LR weight, "
                        "which a ConvTranspose cannot hold; fold them first with "
                        "torch.nn.utils.parametrize.remove_parametrizations(module, 'weight')"
                    )
                steps = steps[:-1]
            _copy_parametrizations(plist, deconv, tensor_name, steps, None)
    for _, hook in _hooks(layer):
        if hook.name == "weight" and not isinstance(hook, _LRHook):
            raise SubpixelError(
                f"module.weight has a {type(hook).__name__} hook on the LR weight, which a ConvTranspose cannot "
                "hold; fold it first (torch.nn.utils.remove_weight_norm / remove_spectral_norm)"
            )
        new = _copy_hook(layer, deconv, hook, _base_hook_class(hook))
        setattr(deconv, hook.name, _current_value(new, deconv))


def deepcopy_module(module: nn.Module) -> nn.Module:
    """``copy.deepcopy(module)``, also for modules with hook-style weight norm (whose computed ``weight`` attribute
    is not a graph leaf, which ``copy.deepcopy`` refuses): the computed tensors are copied detached, and are
    recomputed at the next forward anyway."""
    memo: dict[int, object] = {}
    for m in module.modules():
        for _, hook in _hooks(m):
            derived = m.__dict__.get(hook.name)
            if isinstance(derived, Tensor) and not derived.is_leaf:
                memo[id(derived)] = derived.detach().clone()
    return copy.deepcopy(module, memo)
