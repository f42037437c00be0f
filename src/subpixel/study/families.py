"""The families of the fixed-budget study, and widths that give them equal MACs per HR output pixel.

All map a one-channel LR image (the Y channel) to an ``r``-times larger one. The first three have three
convolutions and the same activation (tanh) after the first two:

* ``"hr"`` (SRCNN-like, upsample first): :class:`~subpixel.study.BicubicUpsample2d` (fixed, MATLAB's
  ``a = −0.5``, edge replication), then HR convolutions 9×9 → ``w1``, 1×1 → ``w2``, 5×5 → 1 (SRCNN's 9-1-5).
* ``"deconv"`` (FSRCNN-like, deconvolution last): LR convolutions 5×5 → ``w1``, 3×3 → ``w2``, then
  ``nn.ConvTranspose2d(w2, 1, kernel_size=3r, stride=r, padding=r)``.
* ``"lr"`` (ESPCN-like, efficient sub-pixel layer last): LR convolutions 5×5 → ``w1``, 3×3 → ``w2``, then
  :meth:`subpixel.SubPixelConv2d.from_lr_kernel` (a 3×3 LR convolution to ``r²`` channels and a shuffle).

By the paper's identity a ConvTranspose with kernel ``3r``, stride ``r`` and padding ``r`` *is* a 3×3 LR
convolution followed by a shuffle, so ``"deconv"`` and ``"lr"`` compute the same family of functions with the
same MACs; their initial weights are drawn from the same distribution (both initialise as ``nn.ConvTranspose2d``
does). They differ in how the last layer is computed, i.e. in speed. ``"hr"`` is the family the note argues
is weaker at equal cost.

Two more families compare the two spaces on the network the project ships (``subpixel.sr``'s ``"rep"`` model).
Both have five 3×3 convolutions with hidden widths ``(w1, w1, w2, w2)`` and PReLU, every convolution trained as
a re-parameterizable block (:class:`~subpixel.sr.rep_blocks.RepConv2d`: parallel linear branches) and
collapsed, exactly, into a plain convolution after training (:func:`deploy`); MACs, parameters, scores and
timings are those of the collapsed network:

* ``"rep"`` (LR space): :class:`~subpixel.sr.models.RepESPCN` with those widths; its last 3×3 convolution
  outputs ``r²`` channels that are shuffled, and the input upsampled by nearest neighbour is added (a global
  skip without multiplies). ``rep-27-27`` is the bundled ``rep`` model's architecture.
* ``"hr-rep"`` (HR space): :class:`UpsampleFirst`: the fixed bicubic upsampler, then the five 3×3 blocks at HR
  (the last to one channel), and the bicubic image added (the same global skip, with the upsampler that the
  network has anyway).

Widths: :func:`solve_widths` picks ``(w1, w2)`` with ``w2 ≈ w1/2`` so that the MACs per HR output pixel (counted
by :func:`~subpixel.study.count_macs` on a 1080p frame) are within ±5% of the budget.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from subpixel.errors import SubpixelError
from subpixel.layers import SubPixelConv2d
from subpixel.sr.models import ACTIVATIONS, RepESPCN, make_activation
from subpixel.sr.rep_blocks import RepConv2d, applicable_branches
from subpixel.study.blocks import BicubicUpsample2d
from subpixel.study.macs import count_macs

__all__ = [
    "BUDGETS",
    "FAMILIES",
    "REP_FAMILIES",
    "FamilySpec",
    "UpsampleFirst",
    "build",
    "deploy",
    "espcn_macs_per_pixel",
    "macs_per_hr_pixel",
    "solve_widths",
]

#: family name -> one-line description
FAMILIES: dict[str, str] = {
    "hr": "HR space: bicubic up first, then 9-1-5 convs (SRCNN-like)",
    "deconv": "LR 5-3 convs, then ConvTranspose2d k=3r (FSRCNN-like)",
    "lr": "LR 5-3 convs, then the efficient sub-pixel layer (ESPCN-like)",
    "rep": "LR 3x3 rep blocks, sub-pixel layer, nearest skip (the shipped network)",
    "hr-rep": "HR space: bicubic up first, then 3x3 rep blocks, bicubic skip",
}

#: the families trained as re-parameterizable blocks and deployed collapsed (:func:`deploy`)
REP_FAMILIES: tuple[str, ...] = ("rep", "hr-rep")

#: the branches of the hidden rep blocks and of the last one (those of :class:`~subpixel.sr.models.RepESPCN`)
_HIDDEN_BRANCHES = ("conv", "expand", "sobel_x", "sobel_y", "laplacian", "identity")
_LAST_BRANCHES = ("conv", "expand")

#: w2 / w1 that :func:`solve_widths` aims at, per family
_WIDTH_RATIO: dict[str, float] = {"hr": 0.5, "deconv": 0.5, "lr": 0.5, "rep": 1.0, "hr-rep": 1.0}

#: named budgets, as multiples of ESPCN's MACs per HR pixel (widths 64, 32)
BUDGETS: dict[str, float] = {"ESPCN/4": 0.25, "ESPCN": 1.0, "4xESPCN": 4.0}

#: LR size of a 1080p frame at scale r is (1080/r, 1920/r); MACs are counted there
FRAME_HR = (1080, 1920)


@dataclass(frozen=True)
class FamilySpec:
    """One network of the study: family, scale and the two hidden widths."""

    family: str
    scale: int
    w1: int
    w2: int
    activation: str | None = None

    @property
    def name(self) -> str:
        """A short label, e.g. ``lr-64-32``."""
        return f"{self.family}-{self.w1}-{self.w2}"

    @property
    def widths(self) -> tuple[int, ...]:
        """The hidden widths: ``(w1, w2)``, or ``(w1, w1, w2, w2)`` for the rep families."""
        if self.family in REP_FAMILIES:
            return (self.w1, self.w1, self.w2, self.w2)
        return (self.w1, self.w2)

    @property
    def act(self) -> str:
        """The activation: the given one, else PReLU for the rep families and tanh for the others."""
        if self.activation is not None:
            return self.activation
        return "prelu" if self.family in REP_FAMILIES else "tanh"


class UpsampleFirst(nn.Module):
    """An HR-space network with a global skip: ``body(up(x)) + up(x)``.

    Args:
        up: the fixed upsampler (``(N, 1, h, w) -> (N, 1, r·h, r·w)``).
        body: the HR network (``(N, 1, H, W) -> (N, 1, H, W)``).

    Shape:
        - input: ``(N, 1, h, w)``; output: ``(N, 1, r·h, r·w)``.
    """

    def __init__(self, up: nn.Module, body: nn.Sequential) -> None:
        super().__init__()
        self.up, self.body = up, body

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``body(up(input)) + up(input)``."""
        hr = self.up(input)
        return self.body(hr) + hr

    @torch.no_grad()
    def collapse(self) -> UpsampleFirst:
        """The same function with every :class:`~subpixel.sr.rep_blocks.RepConv2d` collapsed (eval mode)."""
        layers = [m.collapse() if isinstance(m, RepConv2d) else copy.deepcopy(m) for m in self.body]
        return UpsampleFirst(copy.deepcopy(self.up), nn.Sequential(*layers)).eval()


def deploy(model: nn.Module) -> nn.Module:
    """The network that is counted, timed, scored and stored: ``model.collapse()`` for a rep family, else
    ``model`` itself.

    Examples:
        >>> spec = FamilySpec("hr-rep", 2, 3, 3)
        >>> net = build(spec, dtype=torch.float64)
        >>> x = torch.rand(1, 1, 5, 6, dtype=torch.float64)
        >>> bool((deploy(net)(x) - net(x)).abs().max() < 1e-12)
        True
    """
    collapse = getattr(model, "collapse", None)
    return collapse() if callable(collapse) else model


def build(
    spec: FamilySpec, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """Build the network of ``spec`` in its training form (fresh random weights from the current torch RNG).

    Args:
        spec: the family, scale and widths.

    Returns:
        A module mapping ``(N, 1, H, W)`` to ``(N, 1, r·H, r·W)``: an ``nn.Sequential`` for ``"hr"``,
        ``"deconv"`` and ``"lr"``; a :class:`~subpixel.sr.models.RepESPCN` (``"rep"``) or an
        :class:`UpsampleFirst` of rep blocks (``"hr-rep"``), to be collapsed by :func:`deploy`.

    Shape:
        - input: ``(N, 1, H, W)``; output: ``(N, 1, r·H, r·W)``.

    Examples:
        >>> {tuple(build(FamilySpec(f, 3, 8, 4))(torch.rand(1, 1, 6, 7)).shape) for f in FAMILIES}
        {(1, 1, 18, 21)}
    """
    if spec.family not in FAMILIES:
        raise SubpixelError(f"family must be one of {sorted(FAMILIES)}, got {spec.family!r}")
    r, w1, w2 = spec.scale, spec.w1, spec.w2
    if not isinstance(r, int) or r < 2:
        raise SubpixelError(f"scale must be an int >= 2, got {r!r}")
    if w1 < 1 or w2 < 1:
        raise SubpixelError(f"widths must be positive, got w1={w1}, w2={w2}")
    if spec.act not in ACTIVATIONS:
        raise SubpixelError(f"activation must be one of {ACTIVATIONS}, got {spec.act!r}")
    f = {"device": device, "dtype": dtype}
    if spec.family == "rep":
        return RepESPCN(r, widths=spec.widths, activation=spec.act, **f)
    if spec.family == "hr-rep":
        return _hr_rep(spec, f)
    if spec.family == "hr":
        return nn.Sequential(
            BicubicUpsample2d(r, 1, **f),
            nn.Conv2d(1, w1, 9, padding=4, **f),
            make_activation(spec.act, w1, f),
            nn.Conv2d(w1, w2, 1, **f),
            make_activation(spec.act, w2, f),
            nn.Conv2d(w2, 1, 5, padding=2, **f),
        )
    body: list[nn.Module] = [
        nn.Conv2d(1, w1, 5, padding=2, **f),
        make_activation(spec.act, w1, f),
        nn.Conv2d(w1, w2, 3, padding=1, **f),
        make_activation(spec.act, w2, f),
    ]
    if spec.family == "deconv":
        return nn.Sequential(*body, nn.ConvTranspose2d(w2, 1, 3 * r, stride=r, padding=r, **f))
    return nn.Sequential(*body, SubPixelConv2d.from_lr_kernel(w2, 1, scale=r, lr_kernel_size=3, **f))


def _hr_rep(spec: FamilySpec, factory: dict[str, Any]) -> UpsampleFirst:
    """The ``"hr-rep"`` network of ``spec``: bicubic up, 3×3 rep blocks with PReLU at HR, bicubic skip."""
    layers: list[nn.Module] = []
    c_in = 1
    for width in spec.widths:
        branches = applicable_branches(_HIDDEN_BRANCHES, c_in, width, 3)
        layers += [
            RepConv2d(c_in, width, 3, branches=branches, **factory),
            make_activation(spec.act, width, factory),
        ]
        c_in = width
    layers.append(RepConv2d(c_in, 1, 3, branches=applicable_branches(_LAST_BRANCHES, c_in, 1, 3), **factory))
    return UpsampleFirst(BicubicUpsample2d(spec.scale, 1, **factory), nn.Sequential(*layers))


def macs_per_hr_pixel(spec: FamilySpec) -> float:
    """MACs per HR output pixel of ``spec`` on a 1080p frame (LR input ``1080/r × 1920/r``, rounded down).

    Examples:
        >>> round(macs_per_hr_pixel(FamilySpec("lr", 3, 64, 32)), 1)   # ESPCN: (64·25 + 32·64·9 + 9·32·9)/9
        2513.8
    """
    model = deploy(build(spec))
    h, w = FRAME_HR[0] // spec.scale, FRAME_HR[1] // spec.scale
    return count_macs(model, (1, 1, h, w)).per_output_pixel


def espcn_macs_per_pixel(scale: int) -> float:
    """The reference budget: ESPCN (widths 64, 32, kernels 5-3-3) at ``scale``, MACs per HR pixel."""
    return macs_per_hr_pixel(FamilySpec("lr", scale, 64, 32))


def solve_widths(
    family: str, scale: int, budget: float, *, tolerance: float = 0.05
) -> tuple[FamilySpec, float]:
    """The widths ``(w1, w2)`` of ``family`` whose MACs per HR pixel are closest to ``budget``.

    Among all ``w1`` and ``w2 ∈ [⌈ρ·w1⌉ − 3, ⌈ρ·w1⌉ + 3]`` it takes the pair nearest to the budget, preferring
    ``w2`` closest to ``ρ·w1`` among pairs within the tolerance (``ρ = 1/2``; 1 for the rep families).

    Args:
        family: one of :data:`FAMILIES`.
        scale: ``r``.
        budget: MACs per HR output pixel.
        tolerance: largest allowed relative deviation.

    Returns:
        ``(spec, macs_per_hr_pixel)``.

    Raises:
        SubpixelError: if no pair is within the tolerance.

    Examples:
        >>> spec, macs = solve_widths("lr", 3, espcn_macs_per_pixel(3))
        >>> spec.name, round(macs, 1)
        ('lr-64-32', 2513.8)
    """
    if family not in FAMILIES:
        raise SubpixelError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    if not budget > 0:
        raise SubpixelError(f"budget must be positive (MACs per HR pixel), got {budget!r}")
    # MACs are a quadratic polynomial in (w1, w2): fit it exactly to count_macs at 9 points, then search.
    grid = [(a, b) for a in (1, 2, 3) for b in (1, 2, 3)]
    design = np.array([[1, a, b, a * b, a * a, b * b] for a, b in grid], dtype=np.float64)
    counted = np.array([macs_per_hr_pixel(FamilySpec(family, scale, a, b)) for a, b in grid])
    coef = np.linalg.lstsq(design, counted, rcond=None)[0]

    def cost(a: int, b: int) -> float:
        return float(coef @ np.array([1, a, b, a * b, a * a, b * b], dtype=np.float64))

    ratio = _WIDTH_RATIO[family]
    best: tuple[float, float, int, int] | None = None
    for a in range(1, 2049):
        half = math.ceil(ratio * a)
        for b in range(max(1, half - 3), half + 4):
            dev = abs(cost(a, b) / budget - 1)
            key = (0.0 if dev <= tolerance else dev, abs(b - ratio * a) + dev, a, b)
            if best is None or key < best:
                best = key
        if cost(a, max(1, half - 3)) > budget * (1 + tolerance) * 1.5:
            break
    assert best is not None
    spec = FamilySpec(family, scale, best[2], best[3])
    macs = macs_per_hr_pixel(spec)
    if abs(macs / budget - 1) > tolerance:
        raise SubpixelError(
            f"no widths of family {family!r} at scale {scale} reach {budget:.1f} MACs/pixel within "
            f"±{tolerance:.0%} (closest: {spec.name}, {macs:.1f})"
        )
    return spec, macs
