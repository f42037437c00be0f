"""Periodic shuffling (pixel shuffle) and its inverse, in 1, 2 and 3 spatial dimensions.

Periodic shuffling moves ``R = r_1·…·r_n`` channels of a low-resolution (LR) tensor into an ``r_1 × … × r_n``
block of pixels of a high-resolution (HR) tensor. Two channel orders are in use, and both are named here:

* ``"crd"`` (column-row-depth; PyTorch ``pixel_shuffle``, ONNX ``DepthToSpace(mode="CRD")``): LR channel
  ``c·R + φ`` goes to HR channel ``c`` at phase ``φ``;
* ``"dcr"`` (depth-column-row; TensorFlow ``depth_to_space``, ONNX's default ``DCR``): LR channel ``φ·C + c``.

The phase index ``φ`` is row-major over the axes: in 2-D, ``φ = i·r_w + j`` for the pixel at offset ``(i, j)``
inside its block.

Speed: the shuffles are computed as one copy of the input, viewed with its phases split out, into a preallocated
output viewed the same way. On the CPU the compiled copy kernel of :mod:`subpixel.native` does that copy (60-90 %
of a plain ``clone()``'s bandwidth); without it, and on other devices, ``Tensor.copy_`` does (7-90 %; both well
ahead of ``permute().reshape()``). The output keeps the input's memory format (``channels_last`` in,
``channels_last`` out, as ``torch.nn.functional.pixel_shuffle`` does). While tracing, scripting, compiling or
exporting to ONNX the plain ``reshape → permute → reshape`` formulation is used instead, so that exporters see
(and ONNX gets) a ``DepthToSpace`` / ``SpaceToDepth`` pattern; both give identical values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subpixel import native
from subpixel._validation import ChannelOrder, as_tuple, check_order, is_int
from subpixel.eager import is_eager_plain
from subpixel.errors import SubpixelError

__all__ = [
    "SPATIAL_DIMS",
    "PixelShuffle1d",
    "PixelShuffle2d",
    "PixelShuffle3d",
    "PixelUnshuffle1d",
    "PixelUnshuffle2d",
    "PixelUnshuffle3d",
    "as_factor",
    "convert_channel_order",
    "pixel_shuffle",
    "pixel_unshuffle",
]


#: the numbers of spatial axes the shuffles take (the copies below take any number of axes)
SPATIAL_DIMS = (1, 2, 3)


def _check_spatial_dims(ndim: object, name: str = "ndim") -> int:
    """``ndim`` as an int, one of :data:`SPATIAL_DIMS`."""
    if not is_int(ndim) or ndim not in SPATIAL_DIMS:
        allowed = ", ".join(map(str, SPATIAL_DIMS[:-1])) + f" or {SPATIAL_DIMS[-1]}"
        raise SubpixelError(f"{name} must be {allowed} spatial dimensions, got {ndim!r}")
    return int(ndim)  # type: ignore[call-overload]


def as_factor(
    factor: int | Sequence[int], ndim: int | None, tensor_dim: int, name: str = "factor"
) -> tuple[int, ...]:
    """Resolve a shuffle factor and the number of spatial axes it applies to (one of :data:`SPATIAL_DIMS`).

    The number of spatial axes is ``ndim`` if given, else ``len(factor)`` for a sequence, else
    ``tensor_dim - 2`` (a tensor of shape ``(N, C, *spatial)``).

    Examples:
        >>> as_factor(2, None, 4)
        (2, 2)
        >>> as_factor((2, 3), None, 5)
        (2, 3)
    """
    if ndim is None:
        if isinstance(factor, Sequence) and not isinstance(factor, str):
            ndim = len(factor)
        else:
            ndim = tensor_dim - 2
            if ndim not in SPATIAL_DIMS:
                raise SubpixelError(
                    f"cannot infer the number of spatial dimensions from an input with {tensor_dim} dims "
                    f"(expected (N, C, *spatial) with {SPATIAL_DIMS[0]} to {SPATIAL_DIMS[-1]} spatial dims); "
                    "pass ndim= or a factor per axis"
                )
    _check_spatial_dims(ndim)
    if not (is_int(factor) or (isinstance(factor, Sequence) and not isinstance(factor, str))):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {factor!r}")
    factors = as_tuple(factor, ndim, name)
    if any(f < 1 for f in factors):
        raise SubpixelError(f"{name} must be an integer >= 1 on every axis, got {factor!r}")
    if tensor_dim < ndim + 1:
        raise SubpixelError(
            f"input must have at least {ndim + 1} dims (C and {ndim} spatial) for a {ndim}-D shuffle, "
            f"got {tensor_dim} dims"
        )
    return factors


def _interleave(n_lead: int, ndim: int) -> list[int]:
    """Permutation from ``(*lead, C, r_1..r_n, D_1..D_n)`` to ``(*lead, C, D_1, r_1, .., D_n, r_n)``."""
    c = n_lead
    perm = [*list(range(n_lead)), c]
    for i in range(ndim):
        perm += [c + 1 + ndim + i, c + 1 + i]
    return perm


def memory_format_of(x: Tensor) -> torch.memory_format:
    """The memory format a shuffle of ``x`` produces: channels-last stays channels-last, all else contiguous."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    if x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


@dataclass(frozen=True)
class _ShuffleSpec:
    """Geometry of a (cropping) shuffle: LR ``(B, C·R, *lr_sizes)`` <-> HR ``(B, C, *out_sizes)``.

    HR sample ``m`` of an axis is sample ``m + crop`` of the uncropped shuffle of the LR tensor. Every
    ``out_size`` is a multiple of its factor and ``lr_size == (crop + out_size) / factor`` rounded up.
    """

    factors: tuple[int, ...]
    order: str
    crops: tuple[int, ...]
    out_sizes: tuple[int, ...]
    lr_sizes: tuple[int, ...]
    memory_format: torch.memory_format = torch.contiguous_format


def _lr_split(z: Tensor, spec: _ShuffleSpec) -> Tensor:
    """View ``(B, C·R, *D)`` as ``(B, C, D_1, r_1, .., D_n, r_n)`` (no copy; strided)."""
    n = len(spec.factors)
    b, cr = z.shape[0], z.shape[1]
    c = cr // math.prod(spec.factors)
    if spec.order == "crd":
        x = z.view(b, c, *spec.factors, *spec.lr_sizes)
        perm = [0, 1]
        for i in range(n):
            perm += [2 + n + i, 2 + i]
    else:
        x = z.view(b, *spec.factors, c, *spec.lr_sizes)
        perm = [0, n + 1]
        for i in range(n):
            perm += [n + 2 + i, 1 + i]
    return x.permute(perm)


def _hr_split(y: Tensor, spec: _ShuffleSpec) -> Tensor:
    """View ``(B, C, *O)`` as ``(B, C, O_1/r_1, r_1, .., O_n/r_n, r_n)`` (no copy)."""
    split: list[int] = []
    for o, r in zip(spec.out_sizes, spec.factors, strict=True):
        split += [o // r, r]
    return y.view(y.shape[0], y.shape[1], *split)


@lru_cache(maxsize=256)
def _segments(spec: _ShuffleSpec) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """Index pairs ``(hr_index, lr_index)`` into the split views; together they cover the HR tensor once.

    Along an axis with crop ``c``, HR phases ``[0, r−c)`` come from LR phases ``[c, r)`` at the same block,
    HR phases ``[r−c, r)`` from LR phases ``[0, c)`` of the next block.
    """
    per_axis = []
    for r, c, o in zip(spec.factors, spec.crops, spec.out_sizes, strict=True):
        v = o // r
        segs = [((slice(None), slice(0, r - c)), (slice(0, v), slice(c, r)))]
        if c:
            segs.append(((slice(None), slice(r - c, r)), (slice(1, v + 1), slice(0, c))))
        per_axis.append(segs)
    result = []
    for combo in product(*per_axis):
        hr: tuple[slice, ...] = (slice(None), slice(None))
        lr: tuple[slice, ...] = (slice(None), slice(None))
        for h, low in combo:
            hr += h
            lr += low
        result.append((hr, lr))
    return result


def _shuffle_copy(z: Tensor, spec: _ShuffleSpec) -> Tensor:
    """Forward of the cropping shuffle: ``(B, C·R, *lr_sizes) -> (B, C, *out_sizes)``, one copy of the data."""
    fast_copy = _native_applies(z)
    if _torch_kernel_ok(spec) and (not fast_copy or z.shape[1] >= 8 * math.prod(spec.factors)):
        # torch's channels-last kernel copies runs of C channels: at 8 or more it beats the compiled kernel
        return F.pixel_shuffle(z, spec.factors[0])
    c = z.shape[1] // math.prod(spec.factors)
    y = torch.empty(
        (z.shape[0], c, *spec.out_sizes), dtype=z.dtype, device=z.device, memory_format=spec.memory_format
    )
    if fast_copy:  # the split views are only needed to plan the copies, once per geometry
        _native_copies(
            spec,
            y,
            z,
            lambda: [(_hr_split(y, spec)[hr], _lr_split(z, spec)[lr]) for hr, lr in _segments(spec)],
        )
        return y
    src, dst = _lr_split(z, spec), _hr_split(y, spec)
    if _pairs_ok(y, spec):
        # innermost factor 2 in a contiguous output: write HR sample pairs as complex numbers, so that the copy
        # loops over the long LR rows instead of over the pair (2-4x faster; exact: no arithmetic happens)
        pairs = torch.view_as_complex(dst)
        for hr, real, imag in _pair_segments(spec):
            torch.complex(src[real], src[imag], out=pairs[hr])
        return y
    for hr, lr in _segments(spec):
        dst[hr].copy_(src[lr])
    return y


_PAIR_DTYPES = (torch.float32, torch.float64)


_PROGRAMS: dict[tuple, native.CopyProgram] = {}


def _native_copies(
    spec: _ShuffleSpec, dst: Tensor, src: Tensor, pairs: Callable[[], list[tuple[Tensor, Tensor]]]
) -> None:
    """Do the copies ``pairs()`` (views of ``dst`` and ``src``) with the compiled kernel: planned once per
    geometry, layout, dtype and thread count, then replayed (the Python cost of a shuffle is then one call per
    segment)."""
    key = (
        spec,
        tuple(dst.shape),
        dst.stride(),
        tuple(src.shape),
        src.stride(),
        src.dtype,
        torch.get_num_threads(),
    )
    program = _PROGRAMS.get(key)
    if program is None:
        views = pairs()
        program = native.CopyProgram.build(views, dst, src)
        if program is None:  # a layout the kernel does not take
            for d, s in views:
                d.copy_(s)
            return
        if len(_PROGRAMS) >= 256:
            _PROGRAMS.clear()
        _PROGRAMS[key] = program
    program.run(dst, src)


def _native_applies(x: Tensor) -> bool:
    """Whether the compiled copy kernel (:mod:`subpixel.native`) does this shuffle's copies: CPU tensors without a
    pending conjugation or negation (a raw copy would drop it), where the kernel is built. Otherwise the copies are
    ``Tensor.copy_`` calls, with the tricks below."""
    return x.device.type == "cpu" and not x.is_conj() and not x.is_neg() and native.available()


def _torch_kernel_ok(spec: _ShuffleSpec) -> bool:
    """Torch's own 2-D kernels are the faster ones for channels-last tensors in CRD order (no crop)."""
    return (
        spec.memory_format == torch.channels_last
        and spec.order == "crd"
        and len(set(spec.factors)) == 1
        and not any(spec.crops)
        and all(o == d * r for o, d, r in zip(spec.out_sizes, spec.lr_sizes, spec.factors, strict=True))
    )


def _pairs_ok(y: Tensor, spec: _ShuffleSpec) -> bool:
    """Whether the HR side can be handled as pairs of samples (complex numbers) along its last axis."""
    return (
        spec.factors[-1] == 2
        and y.dtype in _PAIR_DTYPES
        and spec.memory_format == torch.contiguous_format
        and y.is_contiguous()
        and y.numel() > 0
    )


@lru_cache(maxsize=256)
def _pair_segments(spec: _ShuffleSpec) -> list[tuple[tuple[slice, ...], tuple, tuple]]:
    """``(hr, real, imag)`` indices of the pairs path: HR pair slots and the LR phases of their two samples
    (cached per geometry: building them is most of the Python time of a small layer)."""
    return [
        (hr, (*lr, *_phase(spec, 0)), (*lr, *_phase(spec, 1))) for hr, lr in _segments(_drop_last_axis(spec))
    ]


def _drop_last_axis(spec: _ShuffleSpec) -> _ShuffleSpec:
    """The spec of the leading axes only (the last axis is handled as pairs)."""
    return _ShuffleSpec(
        spec.factors[:-1], spec.order, spec.crops[:-1], spec.out_sizes[:-1], spec.lr_sizes[:-1]
    )


def _phase(spec: _ShuffleSpec, psi: int) -> tuple[slice | int, slice]:
    """Index ``(block range, LR phase)`` on the last axis of the LR split view for HR phase ``psi`` (factor 2)."""
    q = psi + spec.crops[-1]  # uncropped position inside the block
    v = spec.out_sizes[-1] // 2
    return slice(q // 2, q // 2 + v), q % 2  # type: ignore[return-value]


def _unshuffle_copy(y: Tensor, spec: _ShuffleSpec) -> Tensor:
    """The adjoint of :func:`_shuffle_copy`: ``(B, C, *out_sizes) -> (B, C·R, *lr_sizes)``, cropped samples 0."""
    fast_copy = _native_applies(y)
    if not fast_copy and _torch_kernel_ok(spec):
        return F.pixel_unshuffle(y, spec.factors[0])
    cr = y.shape[1] * math.prod(spec.factors)
    z = torch.empty(
        (y.shape[0], cr, *spec.lr_sizes), dtype=y.dtype, device=y.device, memory_format=spec.memory_format
    )
    dst = _lr_split(z, spec)
    n = len(spec.factors)
    for i, (r, c, o) in enumerate(zip(spec.factors, spec.crops, spec.out_sizes, strict=True)):
        if c:  # LR samples no HR sample comes from: block 0 at phases < c, the last block at phases >= c
            v = o // r
            for block, phases in ((0, slice(0, c)), (v, slice(c, r))):
                index: list[Any] = [slice(None)] * (2 + 2 * n)
                index[2 + 2 * i], index[3 + 2 * i] = block, phases
                dst[tuple(index)] = 0
    if fast_copy:
        _native_copies(spec, z, y, lambda: [(dst[lr], _hr_split(y, spec)[hr]) for hr, lr in _segments(spec)])
        return z
    src = _hr_split(y, spec)
    for hr, lr in _segments(spec):
        dst[lr].copy_(src[hr])
    return z


class _ShuffleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, spec: _ShuffleSpec) -> Tensor:
        ctx.spec = spec
        return _shuffle_copy(z, spec)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _UnshuffleFn.apply(grad, ctx.spec), None


class _UnshuffleFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, y: Tensor, spec: _ShuffleSpec) -> Tensor:
        ctx.spec = spec
        return _unshuffle_copy(y, spec)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return _ShuffleFn.apply(grad, ctx.spec), None


def _apply(fn: type[torch.autograd.Function], x: Tensor, spec: _ShuffleSpec) -> Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return fn.apply(x, spec)
    return _shuffle_copy(x, spec) if fn is _ShuffleFn else _unshuffle_copy(x, spec)


def shuffle_crop(
    input: Tensor,
    factors: Sequence[int],
    order: ChannelOrder,
    crops: Sequence[int],
    out_sizes: Sequence[int],
    *,
    memory_format: torch.memory_format | None = None,
) -> Tensor:
    """Periodic shuffling then a crop, in one copy: ``pixel_shuffle(input)[..., c_i : c_i + O_i, ..]``.

    The last step of :func:`subpixel.functional.lr_conv_shuffle`. Where an ``O_i`` is not a multiple of its
    factor, or on the plain path (see the module docstring), it shuffles and then crops (two copies).

    Args:
        input: the LR tensor (batched).
        factors: the factor of every spatial axis.
        order: channel order of ``input``.
        crops: HR samples dropped at the start of every axis.
        out_sizes: HR samples kept on every axis.
        memory_format: of the output; by default that of ``input`` (channels-last or contiguous).

    Returns:
        The HR tensor, contiguous in ``memory_format``.

    Shape:
        - input: ``(N, C·R, D_1, .., D_n)``.
        - output: ``(N, C, O_1, .., O_n)`` with ``c_i + O_i ≤ D_i·r_i``.

    Examples:
        >>> x = torch.randn(2, 8, 5, 5)
        >>> y = shuffle_crop(x, (2, 2), "crd", (1, 1), (8, 8))
        >>> bool(torch.equal(y, torch.nn.functional.pixel_shuffle(x, 2)[:, :, 1:9, 1:9]))
        True
    """
    factors = tuple(factors)
    n = len(factors)
    lr_sizes = tuple(input.shape[2:])
    for d, r, c, o in zip(lr_sizes, factors, crops, out_sizes, strict=True):
        if c < 0 or o < 1 or c + o > d * r:
            raise SubpixelError(
                f"crops {tuple(crops)} and out_sizes {tuple(out_sizes)} do not fit in the shuffle of an input "
                f"of shape {tuple(input.shape)} by {factors}"
            )
    if (
        input.dim() != n + 2
        or not is_eager_plain(input)
        or any(o % r for o, r in zip(out_sizes, factors, strict=True))
    ):
        y = pixel_shuffle(input, factors, order=order)
        if any(c or o != y.shape[2 + i] for i, (c, o) in enumerate(zip(crops, out_sizes, strict=True))):
            index = (
                slice(None),
                slice(None),
                *(slice(c, c + o) for c, o in zip(crops, out_sizes, strict=True)),
            )
            y = y[index]
        return y.contiguous(memory_format=memory_format_of(input) if memory_format is None else memory_format)
    fmt = memory_format_of(input) if memory_format is None else memory_format
    needed = tuple(-(-(c + o) // r) for c, o, r in zip(crops, out_sizes, factors, strict=True))
    if needed != lr_sizes:  # LR samples beyond those the output needs: drop them (a view)
        input = input[(slice(None), slice(None), *(slice(0, m) for m in needed))]
    spec = _ShuffleSpec(factors, order, tuple(crops), tuple(out_sizes), needed, fmt)
    return _apply(_ShuffleFn, input, spec)


def pixel_shuffle(
    input: Tensor, factor: int | Sequence[int], *, order: ChannelOrder = "crd", ndim: int | None = None
) -> Tensor:
    """Periodic shuffling: rearrange channels into blocks of pixels (depth-to-space).

    Args:
        input: the LR tensor.
        factor: upscaling factor ``r``, one int for every axis or one per axis ``(r_1, .., r_n)``.
        order: channel order of ``input``: ``"crd"`` (PyTorch, ONNX CRD) or ``"dcr"`` (TensorFlow, ONNX DCR).
        ndim: number of spatial axes ``n``; by default ``len(factor)`` or ``input.dim() - 2``.

    Returns:
        The HR tensor.

    Shape:
        - input: ``(*, C·R, D_1, .., D_n)`` with ``R = r_1·…·r_n`` and any number of leading dims ``*``.
        - output: ``(*, C, D_1·r_1, .., D_n·r_n)``.

    Raises:
        ValueError: if the channels are not divisible by ``R``, a factor is below 1, or the dims do not fit.

    Examples:
        >>> x = torch.arange(8.0).reshape(1, 8, 1, 1)
        >>> pixel_shuffle(x, 2).shape
        torch.Size([1, 2, 2, 2])
        >>> bool(torch.equal(pixel_shuffle(x, 2), torch.nn.functional.pixel_shuffle(x, 2)))
        True
        >>> pixel_shuffle(torch.zeros(5, 6, 10), 3).shape          # 1-D: (N, C·r, L) -> (N, C, L·r)
        torch.Size([5, 2, 30])
        >>> pixel_shuffle(torch.zeros(2, 12, 4, 5, 6), (1, 2, 3)).shape   # 3-D, a factor per axis
        torch.Size([2, 2, 4, 10, 18])
        >>> pixel_shuffle(torch.arange(4.0).reshape(4, 1), 2, order="dcr", ndim=1)   # (C·r, L), no batch
        tensor([[0., 2.],
                [1., 3.]])
    """
    order = check_order(order)
    factors = as_factor(factor, ndim, input.dim())
    n = len(factors)
    r_total = math.prod(factors)
    channels = input.shape[-n - 1]
    if channels % r_total != 0:
        raise SubpixelError(
            f"input channels must be divisible by the product of the factors {factors} = {r_total}, "
            f"got {channels} channels (input shape {tuple(input.shape)})"
        )
    lead = tuple(input.shape[: -n - 1])
    spatial = tuple(input.shape[-n:])
    c_out = channels // r_total
    if is_eager_plain(input) and input.numel() > 0:
        z = input.reshape(-1, channels, *spatial) if len(lead) != 1 else input
        out_sizes = tuple(d * f for d, f in zip(spatial, factors, strict=True))
        spec = _ShuffleSpec(factors, order, (0,) * n, out_sizes, spatial, memory_format_of(z))
        return _apply(_ShuffleFn, z, spec).reshape(*lead, c_out, *out_sizes)
    if order == "crd" and n == 2 and len(lead) == 1 and factors[0] == factors[1]:
        return F.pixel_shuffle(input, factors[0])  # exporters emit DepthToSpace(CRD)
    if order == "crd":
        x = input.reshape(*lead, c_out, *factors, *spatial)
        perm = _interleave(len(lead), n)
    else:
        x = input.reshape(*lead, *factors, c_out, *spatial)
        # (*lead, r_1..r_n, C, D_1..D_n) -> (*lead, C, D_1, r_1, .., D_n, r_n)
        k = len(lead)
        perm = [*range(k), k + n]
        for i in range(n):
            perm += [k + n + 1 + i, k + i]
    out_spatial = [d * f for d, f in zip(spatial, factors, strict=True)]
    return x.permute(perm).reshape(*lead, c_out, *out_spatial)


def pixel_unshuffle(
    input: Tensor, factor: int | Sequence[int], *, order: ChannelOrder = "crd", ndim: int | None = None
) -> Tensor:
    """Inverse periodic shuffling: fold blocks of pixels into channels (space-to-depth).

    Args:
        input: the HR tensor.
        factor: downscaling factor ``r``, one int for every axis or one per axis.
        order: channel order of the output: ``"crd"`` or ``"dcr"`` (see the module docstring).
        ndim: number of spatial axes ``n``; by default ``len(factor)`` or ``input.dim() - 2``.

    Returns:
        The LR tensor; ``pixel_shuffle(pixel_unshuffle(x, r), r)`` equals ``x``.

    Shape:
        - input: ``(*, C, D_1·r_1, .., D_n·r_n)``.
        - output: ``(*, C·R, D_1, .., D_n)`` with ``R = r_1·…·r_n``.

    Raises:
        ValueError: if a spatial size is not divisible by its factor, or the dims do not fit.

    Examples:
        >>> x = torch.randn(3, 2, 8, 6)
        >>> pixel_unshuffle(x, 2).shape
        torch.Size([3, 8, 4, 3])
        >>> bool(torch.equal(pixel_unshuffle(x, 2), torch.nn.functional.pixel_unshuffle(x, 2)))
        True
        >>> bool(torch.equal(pixel_shuffle(pixel_unshuffle(x, 2, order="dcr"), 2, order="dcr"), x))
        True
    """
    order = check_order(order)
    factors = as_factor(factor, ndim, input.dim())
    n = len(factors)
    lead = tuple(input.shape[: -n - 1])
    channels = input.shape[-n - 1]
    spatial = tuple(input.shape[-n:])
    for axis, (size, f) in enumerate(zip(spatial, factors, strict=True)):
        if size % f != 0:
            raise SubpixelError(
                f"spatial size {size} of axis {axis} must be divisible by its factor {f} "
                f"(input shape {tuple(input.shape)}, factor {factor!r})"
            )
    lr_spatial = [d // f for d, f in zip(spatial, factors, strict=True)]
    if is_eager_plain(input) and input.numel() > 0:
        y = input.reshape(-1, channels, *spatial) if len(lead) != 1 else input
        spec = _ShuffleSpec(factors, order, (0,) * n, spatial, tuple(lr_spatial), memory_format_of(y))
        return _apply(_UnshuffleFn, y, spec).reshape(*lead, channels * math.prod(factors), *lr_spatial)
    split: list[int] = []
    for d, f in zip(lr_spatial, factors, strict=True):
        split += [d, f]
    x = input.reshape(*lead, channels, *split)
    k = len(lead)
    phases = [k + 2 + 2 * i for i in range(n)]
    positions = [k + 1 + 2 * i for i in range(n)]
    if order == "crd":
        perm = [*range(k), k, *phases, *positions]
    else:
        perm = [*range(k), *phases, k, *positions]
    return x.permute(perm).reshape(*lead, channels * math.prod(factors), *lr_spatial)


def convert_channel_order(
    input: Tensor,
    factor: int | Sequence[int],
    src: ChannelOrder,
    dst: ChannelOrder,
    *,
    dim: int = 1,
    ndim: int | None = None,
) -> Tensor:
    """Reorder the channels of an LR tensor or an LR weight between the ``"crd"`` and ``"dcr"`` orders.

    ``pixel_shuffle(x, r, order="crd")`` equals
    ``pixel_shuffle(convert_channel_order(x, r, "crd", "dcr"), r, order="dcr")``.

    Args:
        input: a tensor with ``C·R`` channels along ``dim``: activations ``(N, C·R, *spatial)`` with ``dim=1``,
            or the weight of an LR convolution ``(C·R, C_in/groups, *k)`` with ``dim=0``.
        factor: the shuffle factor, an int or one per axis.
        src: the order ``input`` is in.
        dst: the order wanted.
        dim: the channel dimension.
        ndim: number of spatial axes; by default ``len(factor)`` or ``input.dim() - 2``.

    Returns:
        A tensor of the same shape with its channels permuted (``input`` itself when ``src == dst``).

    Shape:
        - input: ``(.., C·R, ..)`` with the ``C·R`` axis at ``dim``.
        - output: same as input.

    Examples:
        >>> x = torch.randn(2, 12, 5, 5)
        >>> y = convert_channel_order(x, 2, "crd", "dcr")
        >>> bool(torch.equal(pixel_shuffle(y, 2, order="dcr"), pixel_shuffle(x, 2)))
        True
        >>> bool(torch.equal(convert_channel_order(y, 2, "dcr", "crd"), x))
        True
    """
    src = check_order(src, "src")
    dst = check_order(dst, "dst")
    factors = as_factor(factor, ndim, input.dim())
    r_total = math.prod(factors)
    dim = dim % input.dim()
    size = input.shape[dim]
    if size % r_total != 0:
        raise SubpixelError(
            f"dimension {dim} of input must be divisible by the product of the factors {factors} = {r_total}, "
            f"got {size} (input shape {tuple(input.shape)})"
        )
    if src == dst:
        return input
    c = size // r_total
    split = (c, r_total) if src == "crd" else (r_total, c)
    shape = list(input.shape)
    x = input.reshape(*shape[:dim], *split, *shape[dim + 1 :])
    return x.transpose(dim, dim + 1).reshape(shape)


class _PixelShuffleNd(nn.Module):
    _ndim: int = 0
    _unshuffle: bool = False

    def __init__(self, factor: int | Sequence[int], order: ChannelOrder = "crd") -> None:
        super().__init__()
        _check_spatial_dims(self._ndim)
        self.order: ChannelOrder = check_order(order)
        self.factor = as_factor(factor, self._ndim, self._ndim + 2)

    def forward(self, input: Tensor) -> Tensor:
        fn = pixel_unshuffle if self._unshuffle else pixel_shuffle
        return fn(input, self.factor, order=self.order, ndim=self._ndim)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, order={self.order!r}"


class PixelShuffle1d(_PixelShuffleNd):
    """Periodic shuffling along one axis: ``(*, C·r, L) -> (*, C, L·r)``. See :func:`pixel_shuffle`.

    Examples:
        >>> PixelShuffle1d(4)(torch.zeros(2, 8, 16)).shape
        torch.Size([2, 2, 64])
    """

    _ndim = 1


class PixelShuffle2d(_PixelShuffleNd):
    """Periodic shuffling on two axes: ``(*, C·r_h·r_w, H, W) -> (*, C, H·r_h, W·r_w)``. See :func:`pixel_shuffle`.

    Examples:
        >>> PixelShuffle2d((2, 3), order="dcr")(torch.zeros(1, 12, 4, 4)).shape
        torch.Size([1, 2, 8, 12])
    """

    _ndim = 2


class PixelShuffle3d(_PixelShuffleNd):
    """Periodic shuffling on three axes: ``(*, C·R, D, H, W) -> (*, C, D·r_d, H·r_h, W·r_w)``.

    Examples:
        >>> PixelShuffle3d(2)(torch.zeros(1, 16, 3, 4, 5)).shape
        torch.Size([1, 2, 6, 8, 10])
    """

    _ndim = 3


class PixelUnshuffle1d(_PixelShuffleNd):
    """Inverse periodic shuffling along one axis: ``(*, C, L·r) -> (*, C·r, L)``. See :func:`pixel_unshuffle`.

    Examples:
        >>> PixelUnshuffle1d(4)(torch.zeros(2, 2, 64)).shape
        torch.Size([2, 8, 16])
    """

    _ndim = 1
    _unshuffle = True


class PixelUnshuffle2d(_PixelShuffleNd):
    """Inverse periodic shuffling on two axes: ``(*, C, H·r_h, W·r_w) -> (*, C·R, H, W)``.

    Examples:
        >>> PixelUnshuffle2d(2)(torch.zeros(1, 3, 8, 8)).shape
        torch.Size([1, 12, 4, 4])
    """

    _ndim = 2
    _unshuffle = True


class PixelUnshuffle3d(_PixelShuffleNd):
    """Inverse periodic shuffling on three axes: ``(*, C, D·r_d, H·r_h, W·r_w) -> (*, C·R, D, H, W)``.

    Examples:
        >>> PixelUnshuffle3d((1, 2, 2))(torch.zeros(1, 1, 3, 4, 4)).shape
        torch.Size([1, 4, 3, 2, 2])
    """

    _ndim = 3
    _unshuffle = True
