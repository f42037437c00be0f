"""ESPCN (Shi et al., arXiv 1609.05158): convolutions in LR space, then one efficient sub-pixel convolution.

The network is ``len(widths)`` LR convolutions with an activation after each, then a
:meth:`~subpixel.SubPixelConv2d.from_lr_kernel` layer (an LR convolution to ``C·r²`` channels followed by periodic
shuffling) initialised with :func:`~subpixel.icnr_`. The paper's model is the default: 5×5 to 64, 3×3 to 32,
3×3 to ``r²``, tanh, on the Y channel.

Weights are stored as safetensors with the model's config as JSON beside them (``model.safetensors`` +
``model.json``); :func:`save`, :func:`load` and :func:`pretrained` read and write that pair.

Examples:
    >>> model = ESPCN(3)
    >>> model(torch.rand(1, 1, 10, 12)).shape
    torch.Size([1, 1, 30, 36])
    >>> model.config.widths, model.lr_receptive_radius
    ((64, 32), 4)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subpixel._atomic import atomic_write
from subpixel._validation import check_positive_int
from subpixel.errors import SubpixelError
from subpixel.init import icnr_
from subpixel.layers import SubPixelConv2d
from subpixel.sr.rep_blocks import RepConv2d, applicable_branches

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_MODEL",
    "ESPCN",
    "FAMILIES",
    "FORMAT",
    "SKIPS",
    "ESPCNConfig",
    "RepESPCN",
    "config_path",
    "load",
    "load_state",
    "make_activation",
    "nearest_skip",
    "pretrained",
    "pretrained_models",
    "pretrained_scales",
    "read_config",
    "read_tensors",
    "save",
    "save_state",
    "write_tensors",
]

#: the ``format`` field of the JSON file written beside the weights
FORMAT = "subpixel.sr.espcn"
#: channel modes: ``"y"`` (the Y of BT.601 YCbCr, divided by 255) or ``"rgb"``
ChannelMode = Literal["y", "rgb"]
#: the activations of the hidden layers (:func:`make_activation`)
ACTIVATIONS = ("tanh", "relu", "prelu", "identity")
#: global skips: none, or the input upsampled by nearest neighbour added to the output
SKIPS = ("none", "nearest")
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

#: the model families: architecture defaults of the deployed :class:`ESPCN` (``"rep"`` trains as :class:`RepESPCN`)
FAMILIES: dict[str, dict[str, Any]] = {
    "espcn": {"widths": (64, 32), "kernel_sizes": (5, 3, 3), "activation": "tanh", "skip": "none"},
    "rep": {
        "widths": (27, 27, 27, 27),
        "kernel_sizes": (3, 3, 3, 3, 3),
        "activation": "prelu",
        "skip": "nearest",
    },
}


@dataclass(frozen=True)
class ESPCNConfig:
    """Everything needed to rebuild an :class:`ESPCN` (JSON-serialisable through :meth:`to_dict`).

    Args:
        scale: the upscaling factor ``r`` (an int ≥ 2; 1 is allowed for study).
        channels: ``"y"`` (one channel, ``Y/255`` with Y from BT.601 ``rgb2ycbcr``) or ``"rgb"`` (three).
        widths: output channels of the hidden LR convolutions.
        kernel_sizes: odd kernel sizes of the hidden convolutions and, last, of the sub-pixel layer's LR conv
            (``len(widths) + 1`` values).
        activation: ``"tanh"`` (the paper's), ``"relu"``, ``"prelu"`` or ``"identity"``.
        skip: ``"none"`` (the paper's) or ``"nearest"``: the input upsampled by nearest neighbour is added to
            the output (a global skip with no multiply; the network learns the residual).
    """

    scale: int
    channels: ChannelMode = "y"
    widths: tuple[int, ...] = (64, 32)
    kernel_sizes: tuple[int, ...] = (5, 3, 3)
    activation: str = "tanh"
    skip: str = "none"

    def __post_init__(self) -> None:
        check_positive_int(self.scale, "scale")
        if self.channels not in ("y", "rgb"):
            raise SubpixelError(f"channels must be 'y' or 'rgb', got {self.channels!r}")
        widths = tuple(self.widths)
        kernels = tuple(self.kernel_sizes)
        if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
            raise SubpixelError(f"widths must be a non-empty sequence of positive ints, got {self.widths!r}")
        if len(kernels) != len(widths) + 1:
            raise SubpixelError(
                f"kernel_sizes must have len(widths) + 1 = {len(widths) + 1} values (one per layer), "
                f"got {self.kernel_sizes!r}"
            )
        if any(not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0 for k in kernels):
            raise SubpixelError(f"kernel_sizes must be odd positive ints, got {self.kernel_sizes!r}")
        if self.activation not in ACTIVATIONS:
            raise SubpixelError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.skip not in SKIPS:
            raise SubpixelError(f"skip must be one of {SKIPS}, got {self.skip!r}")
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "kernel_sizes", kernels)

    @property
    def in_channels(self) -> int:
        """1 for ``"y"``, 3 for ``"rgb"``."""
        return 1 if self.channels == "y" else 3

    def multiply_adds_per_pixel(self) -> float:
        """Multiply-adds per HR output pixel of this architecture (weights only; activations, the shuffle and the
        nearest skip are free): every layer runs on the LR grid, so the per-LR-pixel count divided by ``r²``."""
        chans = [self.in_channels, *self.widths, self.in_channels * self.scale**2]
        per_lr = sum(k * k * a * b for k, a, b in zip(self.kernel_sizes, chans[:-1], chans[1:]))
        return per_lr / self.scale**2

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ESPCNConfig:
        """The inverse of :meth:`to_dict`; unknown keys are a ``ValueError``."""
        if not isinstance(data, Mapping):
            raise TypeError(f"config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SubpixelError(
                f"unknown ESPCN config keys {sorted(unknown)}; expected some of {sorted(known)}"
            )
        if "scale" not in data:
            raise SubpixelError("ESPCN config has no 'scale'")
        values = dict(data)
        for key in ("widths", "kernel_sizes"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def make_activation(name: str, width: int, factory: dict[str, Any] | None = None) -> nn.Module:
    """The activation module ``name`` (one of :data:`ACTIVATIONS`) after a layer of ``width`` channels.

    ``factory`` holds ``device``/``dtype`` for PReLU's per-channel parameter.

    Examples:
        >>> make_activation("prelu", 4).weight.shape
        torch.Size([4])
    """
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU(width, **(factory or {}))
    if name == "identity":
        return nn.Identity()
    raise SubpixelError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def _hidden_layers(
    config: ESPCNConfig, factory: dict[str, Any], conv: Callable[[int, int, int], nn.Module]
) -> nn.Sequential:
    """The hidden LR layers of ``config``: ``conv(c_in, width, k)`` then the activation, per width.

    Shape:
        - input: ``(N, C, h, w)``; output: ``(N, widths[-1], h, w)``.
    """
    layers: list[nn.Module] = []
    c_in = config.in_channels
    for width, k in zip(config.widths, config.kernel_sizes[:-1], strict=True):
        layers += [conv(c_in, width, k), make_activation(config.activation, width, factory)]
        c_in = width
    return nn.Sequential(*layers)


class _SRNetwork(nn.Module):
    """What :class:`ESPCN` and :class:`RepESPCN` share: an :class:`ESPCNConfig` and what it says."""

    config: ESPCNConfig

    @property
    def scale(self) -> int:
        """The upscaling factor ``r``."""
        return self.config.scale

    @property
    def channels(self) -> ChannelMode:
        """``"y"`` or ``"rgb"``."""
        return self.config.channels

    def multiply_adds_per_pixel(self) -> float:
        """Multiply-adds per HR output pixel of the deployed network (weights only; activations, the shuffle and
        the nearest skip are free): every layer runs on the LR grid, so the per-LR-pixel count divided by ``r²``.

        Examples:
            >>> round(ESPCN(3).multiply_adds_per_pixel())  # (25·64 + 9·64·32 + 9·32·9) / 9
            2514
        """
        return self.config.multiply_adds_per_pixel()


class ESPCN(_SRNetwork):
    """The efficient sub-pixel convolutional network.

    Args:
        scale: upscaling factor ``r``.
        channels: ``"y"`` (input ``Y/255``, Y in [16, 235] from BT.601 ``rgb2ycbcr``) or ``"rgb"`` in [0, 1].
        widths: channels of the hidden LR convolutions (the paper: ``(64, 32)``).
        kernel_sizes: odd kernel sizes, one per hidden layer then the sub-pixel layer (the paper: ``(5, 3, 3)``).
        activation: ``"tanh"`` (the paper), ``"relu"``, ``"prelu"`` or ``"identity"``.
        skip: ``"none"`` (the paper) or ``"nearest"`` (the input, nearest-upsampled, added to the output).
        device, dtype: factory arguments for the parameters.

    Shape:
        - input: ``(N, C, h, w)``, float, C = 1 for ``"y"`` and 3 for ``"rgb"``.
        - output: ``(N, C, h·r, w·r)``, not clamped.

    Examples:
        >>> model = ESPCN(2, channels="rgb", widths=(16,), kernel_sizes=(3, 3), activation="relu")
        >>> model(torch.rand(2, 3, 5, 7)).shape
        torch.Size([2, 3, 10, 14])
        >>> ESPCN.from_config(model.config.to_dict()).config == model.config
        True
    """

    def __init__(
        self,
        scale: int,
        *,
        channels: ChannelMode = "y",
        widths: Sequence[int] = (64, 32),
        kernel_sizes: Sequence[int] = (5, 3, 3),
        activation: str = "tanh",
        skip: str = "none",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = ESPCNConfig(scale, channels, tuple(widths), tuple(kernel_sizes), activation, skip)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.features = _hidden_layers(
            self.config, factory, lambda c_in, width, k: nn.Conv2d(c_in, width, k, padding=k // 2, **factory)
        )
        self.upsample = SubPixelConv2d.from_lr_kernel(
            self.config.widths[-1], self.config.in_channels, scale, self.config.kernel_sizes[-1], **factory
        )
        self.reset_parameters()

    @classmethod
    def from_config(
        cls,
        config: ESPCNConfig | Mapping[str, Any],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> ESPCN:
        """Build a model from an :class:`ESPCNConfig` or its dict."""
        cfg = config if isinstance(config, ESPCNConfig) else ESPCNConfig.from_dict(config)
        return cls(
            cfg.scale,
            channels=cfg.channels,
            widths=cfg.widths,
            kernel_sizes=cfg.kernel_sizes,
            activation=cfg.activation,
            skip=cfg.skip,
            device=device,
            dtype=dtype,
        )

    def reset_parameters(self) -> None:
        """PyTorch's default init for the hidden convolutions, ICNR for the sub-pixel layer, zero biases there."""
        for module in self.features:
            if isinstance(module, nn.Conv2d | nn.PReLU):
                module.reset_parameters()
        icnr_(self.upsample)
        if self.upsample.bias is not None:
            nn.init.zeros_(self.upsample.bias)

    @property
    def lr_receptive_radius(self) -> int:
        """LR pixels beyond its own on each side that an output pixel depends on (for tiling with overlap)."""
        return sum(k // 2 for k in self.config.kernel_sizes)

    def forward(self, input: Tensor) -> Tensor:
        """Upscale ``input`` by ``scale``.

        Shape:
            - input: ``(N, C, h, w)``.
            - output: ``(N, C, h·r, w·r)``.
        """
        if input.dim() != 4 or input.shape[1] != self.config.in_channels:
            raise SubpixelError(
                f"input must have shape (N, {self.config.in_channels}, h, w) for channels={self.channels!r}, "
                f"got {tuple(input.shape)}"
            )
        return _add_skip(self.upsample(self.features(input)), input, self.config)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, channels={self.channels!r}"


class RepESPCN(_SRNetwork):
    """The training form of an ESPCN whose convolutions are re-parameterizable blocks; :meth:`collapse` deploys it.

    Every convolution of an :class:`ESPCN` of the same config (hidden LR convolutions and the sub-pixel layer's
    LR convolution) is a :class:`~subpixel.sr.rep_blocks.RepConv2d` here: a sum of linear branches that
    :meth:`collapse` folds, exactly, into the one kernel of a plain :class:`ESPCN`. What is saved, loaded,
    exported, counted and used to upscale is that collapsed ESPCN; this class only exists while training.

    The default is the project's re-parameterized LR-space network: four 3×3 hidden convolutions of ``width``
    channels with PReLU, a 3×3 sub-pixel layer, and the nearest-neighbour global skip (zero multiplies).

    Args:
        scale: upscaling factor ``r``.
        channels: ``"y"`` or ``"rgb"``.
        widths, kernel_sizes, activation, skip: as :class:`ESPCN` (the deployed architecture).
        branches: the :data:`~subpixel.sr.rep_blocks.BRANCHES` of the hidden blocks (edge branches need 3×3
            kernels; ``"identity"`` is used only where a block keeps its channel count).
        tail_branches: the branches of the sub-pixel layer's LR convolution.
        device, dtype: factory arguments.

    Shape:
        - input: ``(N, C, h, w)``; output: ``(N, C, h·r, w·r)``.

    Examples:
        >>> model = RepESPCN(2, widths=(8, 8), kernel_sizes=(3, 3, 3)).double()
        >>> x = torch.rand(1, 1, 6, 7, dtype=torch.float64)
        >>> deployed = model.collapse()
        >>> type(deployed).__name__, deployed.config.skip
        ('ESPCN', 'nearest')
        >>> bool((deployed(x) - model(x)).abs().max() < 1e-12)
        True
    """

    def __init__(
        self,
        scale: int,
        *,
        channels: ChannelMode = "y",
        widths: Sequence[int] = (27, 27, 27, 27),
        kernel_sizes: Sequence[int] = (3, 3, 3, 3, 3),
        activation: str = "prelu",
        skip: str = "nearest",
        branches: Sequence[str] = ("conv", "expand", "sobel_x", "sobel_y", "laplacian", "identity"),
        tail_branches: Sequence[str] = ("conv", "expand"),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.config = ESPCNConfig(scale, channels, tuple(widths), tuple(kernel_sizes), activation, skip)
        self.branches, self.tail_branches = tuple(branches), tuple(tail_branches)
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        self.features = _hidden_layers(
            self.config,
            factory,
            lambda c_in, width, k: RepConv2d(
                c_in, width, k, branches=applicable_branches(self.branches, c_in, width, k), **factory
            ),
        )
        c_in = self.config.widths[-1]
        k, c_out = self.config.kernel_sizes[-1], self.config.in_channels * scale**2
        self.tail = RepConv2d(
            c_in,
            c_out,
            k,
            branches=applicable_branches(self.tail_branches, c_in, c_out, k),
            bias=False,
            **factory,
        )
        #: one bias per output channel, shared by its r² phases (the sub-pixel layer's bias)
        self.tail_bias = nn.Parameter(torch.zeros(self.config.in_channels, **factory))

    def forward(self, input: Tensor) -> Tensor:
        """Upscale ``input`` by ``scale`` (every block as its collapsed convolution, differentiably).

        Shape:
            - input: ``(N, C, h, w)``; output: ``(N, C, h·r, w·r)``.
        """
        r = self.config.scale
        weight, _ = self.tail.kernel()
        lr = F.conv2d(
            self.features(input),
            weight,
            self.tail_bias.repeat_interleave(r * r),
            padding=weight.shape[-1] // 2,
        )
        return _add_skip(F.pixel_shuffle(lr, r), input, self.config)

    def forward_branches(self, input: Tensor) -> Tensor:
        """The definition: every block computed branch by branch (:meth:`RepConv2d.forward_branches`).

        Shape:
            - input: ``(N, C, h, w)``; output: ``(N, C, h·r, w·r)``.
        """
        x = input
        for module in self.features:
            x = module.forward_branches(x) if isinstance(module, RepConv2d) else module(x)
        r = self.config.scale
        lr = self.tail.forward_branches(x) + self.tail_bias.repeat_interleave(r * r)[None, :, None, None]
        return _add_skip(F.pixel_shuffle(lr, r), input, self.config)

    @torch.no_grad()
    def collapse(self) -> ESPCN:
        """The plain :class:`ESPCN` computing the same function (same device and dtype; eval mode)."""
        ref = self.tail_bias
        model = ESPCN.from_config(self.config, device=ref.device, dtype=ref.dtype)
        for source, target in zip(self.features, model.features):
            if isinstance(source, RepConv2d):
                weight, bias = source.kernel()
                target.weight.copy_(weight)
                target.bias.copy_(bias)
            else:
                target.load_state_dict(source.state_dict())
        weight, _ = self.tail.kernel()
        model.upsample.weight.copy_(weight)
        model.upsample.bias.copy_(self.tail_bias)  # type: ignore[union-attr]
        return model.eval()

    @torch.no_grad()
    def load_collapsed(self, model: ESPCN) -> None:
        """Start from a deployed :class:`ESPCN`'s weights (:meth:`RepConv2d.set_kernel` per block).

        The hidden layers must have the same shapes; the sub-pixel layer is taken only when its shape fits
        (a model of another scale keeps this one's fresh sub-pixel layer).
        """
        if len(model.features) != len(self.features):
            raise SubpixelError(
                f"a model with {len(model.features)} feature modules cannot seed {len(self.features)}"
            )
        for source, target in zip(model.features, self.features):
            if isinstance(target, RepConv2d):
                target.set_kernel(source.weight, source.bias)
            else:
                target.load_state_dict(source.state_dict())
        weight = model.upsample.weight
        if tuple(weight.shape) == (
            self.tail.out_channels,
            self.tail.in_channels,
            *self.tail.conv_weight.shape[2:],
        ):
            self.tail.set_kernel(weight, None)
            self.tail_bias.copy_(model.upsample.bias)  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return f"scale={self.scale}, channels={self.channels!r}, skip={self.config.skip!r}"


def nearest_skip(input: Tensor, scale: int) -> Tensor:
    """The global skip: ``input`` upsampled by nearest neighbour (each LR pixel repeated ``r×r``; no multiply).

    Equal to repeating every channel into its ``r²`` consecutive phases and shuffling, so adding it after the
    shuffle is adding it to the LR convolution's output before.

    Shape:
        - input: ``(N, C, h, w)``; output: ``(N, C, h·r, w·r)``.

    Examples:
        >>> nearest_skip(torch.tensor([[[[1.0, 2.0]]]]), 2)
        tensor([[[[1., 1., 2., 2.],
                  [1., 1., 2., 2.]]]])
    """
    return F.interpolate(input, scale_factor=scale, mode="nearest")


def _add_skip(output: Tensor, input: Tensor, config: ESPCNConfig) -> Tensor:
    """``output`` plus the config's global skip of ``input`` (nothing for ``skip="none"``).

    Shape:
        - output: ``(N, C, h·r, w·r)``; input: ``(N, C, h, w)``.
    """
    return output + nearest_skip(input, config.scale) if config.skip == "nearest" else output


def write_tensors(
    path: str | os.PathLike[str], tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (and string ``metadata``) as one safetensors file, atomically, creating its folder.

    The project's one safetensors writer: weights (:func:`save`, :func:`save_state`) and training checkpoints.

    Shape:
        - every tensor is stored with its shape and dtype (moved to the CPU, made contiguous).
    """
    from safetensors.torch import save

    path = Path(path)
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    blob = save(data, metadata=dict(metadata) if metadata is not None else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_bytes(blob))


def read_tensors(
    path: str | os.PathLike[str], what: str = "weights file"
) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Read a safetensors file: ``(tensors, metadata)``; the project's one safetensors reader.

    Raises:
        SubpixelError: the file is missing or not a readable safetensors file (the message names ``what`` and the
            file).
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SubpixelError(f"{what} {str(path)!r} is not a readable safetensors file: {exc}") from exc
    return tensors, metadata


def save_state(
    module: nn.Module, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
) -> None:
    """Write any module's ``state_dict`` (parameters and buffers) to ``path`` as safetensors, atomically.

    Examples:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save_state(nn.Conv2d(1, 2, 3), Path(folder) / "net.safetensors", {"network": "conv"})
        ...     load_state(nn.Conv2d(1, 2, 3), Path(folder) / "net.safetensors")["network"]
        'conv'
    """
    write_tensors(path, module.state_dict(), metadata)


def load_state(module: nn.Module, path: str | os.PathLike[str]) -> dict[str, str]:
    """Load a :func:`save_state` file into ``module`` (every key and shape must match); returns its metadata.

    Raises:
        SubpixelError: the file is missing, not a readable safetensors file, or does not fit ``module`` (the
            message names the file).
    """
    tensors, metadata = read_tensors(path)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise SubpixelError(f"weights file {str(path)!r} does not fit the network: {exc}") from exc
    return metadata


def config_path(weights: str | os.PathLike[str]) -> Path:
    """The JSON config file that belongs to a weights file (same name, ``.json``).

    Examples:
        >>> config_path("runs/x3/model.safetensors").as_posix()
        'runs/x3/model.json'
    """
    return Path(weights).with_suffix(".json")


def save(
    model: ESPCN,
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights as safetensors and its config as JSON beside them, each atomically.

    Args:
        model: the model (a ``DistributedDataParallel`` wrapper is unwrapped).
        path: the ``.safetensors`` file; the config goes to the same name with ``.json``.
        metadata: extra JSON-serialisable information stored in the JSON (e.g. how it was trained).

    Returns:
        The weights path.

    Examples:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> path = save(ESPCN(2, widths=(8,), kernel_sizes=(3, 3)), folder / "tiny.safetensors")
        >>> sorted(p.name for p in folder.iterdir())
        ['tiny.json', 'tiny.safetensors']
        >>> load(path).config.widths
        (8,)
    """
    model = getattr(model, "module", model)
    if not isinstance(model, ESPCN):
        raise TypeError(f"model must be an ESPCN, got {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise SubpixelError(f"path must end with .safetensors, got {str(path)!r}")
    document = {"format": FORMAT, "config": model.config.to_dict(), **dict(metadata or {})}
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    write_tensors(path, model.state_dict(), {"format": FORMAT})
    atomic_write(config_path(path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON document beside a weights file (``format``, ``config`` and any training metadata)."""
    cfg_file = config_path(path)
    if not cfg_file.is_file():
        raise SubpixelError(
            f"weights {str(path)!r}: config file {str(cfg_file)!r} is missing "
            "(ESPCN weights are a .safetensors file with a .json config of the same name beside it)"
        )
    try:
        document = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SubpixelError(f"config file {str(cfg_file)!r} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT or "config" not in document:
        raise SubpixelError(
            f"config file {str(cfg_file)!r} is not an ESPCN config (expected a JSON object with "
            f"'format': {FORMAT!r} and 'config')"
        )
    return document


def load(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
) -> ESPCN:
    """Load weights written by :func:`save`.

    Args:
        path: the ``.safetensors`` file (its ``.json`` config must lie beside it).
        device: where to put the model (default CPU).

    Returns:
        The model in eval mode.

    Raises:
        ValueError: the file is missing, corrupt, or its tensors do not fit the config.
    """
    path = Path(path)
    if not path.is_file():
        raise SubpixelError(f"weights file {str(path)!r} does not exist")
    document = read_config(path)
    try:
        model = ESPCN.from_config(document["config"])
    except (TypeError, ValueError) as exc:
        raise SubpixelError(f"config file {str(config_path(path))!r} is invalid: {exc}") from exc
    tensors, _ = read_tensors(path)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = sorted(
            f"{k}: {found[k]} (expected {expected[k]})"
            for k in set(expected) & set(found)
            if found[k] != expected[k]
        )
        raise SubpixelError(
            f"weights file {str(path)!r} does not fit its config {document['config']}: "
            f"missing {missing}, unexpected {extra}, wrong shapes {wrong}"
        )
    model.load_state_dict(tensors)
    return model.to(device).eval()


#: the model family that :func:`pretrained`, ``subpixel upscale`` and ``subpixel demo`` use unless told otherwise
DEFAULT_MODEL = "rep"


def pretrained_models(scale: int | None = None) -> tuple[str, ...]:
    """The model families with bundled weights (for ``scale``, or for any scale), default family first.

    Examples:
        >>> pretrained_models(3)
        ('rep', 'espcn')
    """
    names = set()
    for file in _WEIGHTS_DIR.glob("*_x*.safetensors"):
        name, _, suffix = file.stem.rpartition("_x")
        if name in FAMILIES and suffix.isdigit() and (scale is None or int(suffix) == scale):
            names.add(name)
    return tuple(sorted(names, key=lambda n: (n != DEFAULT_MODEL, n)))


def pretrained_scales(model: str = DEFAULT_MODEL) -> tuple[int, ...]:
    """The scales with bundled weights of ``model``.

    Examples:
        >>> pretrained_scales(), pretrained_scales("espcn")
        ((2, 3, 4), (2, 3, 4))
    """
    scales = []
    for file in _WEIGHTS_DIR.glob(f"{model}_x*.safetensors"):
        suffix = file.stem.removeprefix(f"{model}_x")
        if suffix.isdigit():
            scales.append(int(suffix))
    return tuple(sorted(scales))


def pretrained(scale: int, *, model: str = DEFAULT_MODEL, device: torch.device | str | None = None) -> ESPCN:
    """Bundled weights for ``scale`` (Y channel, trained with ``subpixel train`` on T91 + BSDS200).

    Nothing is downloaded: the files ship inside the package (``subpixel/sr/weights``).

    Args:
        scale: 2, 3 or 4.
        model: ``"rep"`` (default: the re-parameterized LR-space network with a nearest skip, collapsed; at most
            the paper's ESPCN's multiply-adds) or ``"espcn"`` (the paper's network: 5×5 → 64, 3×3 → 32, tanh).
        device: where to put the model.

    Returns:
        The model (an :class:`ESPCN`) in eval mode.

    Raises:
        ValueError: no weights for ``model`` at ``scale``.

    Examples:
        >>> model = pretrained(3)
        >>> model.scale, model.channels, model.config.skip
        (3, 'y', 'nearest')
        >>> pretrained(3, model="espcn").config.activation
        'tanh'
    """
    if model not in FAMILIES:
        raise SubpixelError(f"model must be one of {sorted(FAMILIES)}, got {model!r}")
    supported = pretrained_scales(model)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in supported:
        raise SubpixelError(
            f"no bundled {model!r} weights for scale={scale!r}; supported scales are {list(supported)}"
        )
    return load(_WEIGHTS_DIR / f"{model}_x{scale}.safetensors", device=device)
