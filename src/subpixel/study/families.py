"""The three families of the fixed-budget study, and widths that give them equal MACs per HR output pixel.

All three map a one-channel LR image (the Y channel) to an ``r``-times larger one with three convolutions and
the same activation after the first two:

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

Widths: :func:`solve_widths` picks ``(w1, w2)`` with ``w2 ≈ w1/2`` so that the MACs per HR output pixel (counted
by :func:`~subpixel.study.count_macs` on a 1080p frame) are within ±5% of the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from subpixel.errors import SubpixelError
from subpixel.layers import SubPixelConv2d
from subpixel.study.blocks import BicubicUpsample2d
from subpixel.study.macs import count_macs

__all__ = [
    "BUDGETS",
    "FAMILIES",
    "FamilySpec",
    "build",
    "espcn_macs_per_pixel",
    "macs_per_hr_pixel",
    "solve_widths",
]

#: family name -> one-line description
FAMILIES: dict[str, str] = {
    "hr": "HR space: bicubic up first, then 9-1-5 convs (SRCNN-like)",
    "deconv": "LR 5-3 convs, then ConvTranspose2d k=3r (FSRCNN-like)",
    "lr": "LR 5-3 convs, then the efficient sub-pixel layer (ESPCN-like)",
}

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
    activation: str = "tanh"

    @property
    def name(self) -> str:
        """A short label, e.g. ``lr-64-32``."""
        return f"{self.family}-{self.w1}-{self.w2}"


def _act(name: str) -> nn.Module:
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    raise SubpixelError(f"activation must be 'tanh' or 'relu', got {name!r}")


def build(
    spec: FamilySpec, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> nn.Sequential:
    """Build the network of ``spec`` (fresh random weights from the current torch RNG).

    Args:
        spec: the family, scale and widths.

    Returns:
        ``nn.Sequential`` mapping ``(N, 1, H, W)`` to ``(N, 1, r·H, r·W)``.

    Shape:
        - input: ``(N, 1, H, W)``; output: ``(N, 1, r·H, r·W)``.

    Examples:
        >>> [build(FamilySpec(f, 3, 8, 4))(torch.rand(1, 1, 6, 7)).shape[-2:] for f in FAMILIES]
        [torch.Size([18, 21]), torch.Size([18, 21]), torch.Size([18, 21])]
    """
    if spec.family not in FAMILIES:
        raise SubpixelError(f"family must be one of {sorted(FAMILIES)}, got {spec.family!r}")
    r, w1, w2 = spec.scale, spec.w1, spec.w2
    if not isinstance(r, int) or r < 2:
        raise SubpixelError(f"scale must be an int >= 2, got {r!r}")
    if w1 < 1 or w2 < 1:
        raise SubpixelError(f"widths must be positive, got w1={w1}, w2={w2}")
    f = {"device": device, "dtype": dtype}
    if spec.family == "hr":
        return nn.Sequential(
            BicubicUpsample2d(r, 1, **f),
            nn.Conv2d(1, w1, 9, padding=4, **f),
            _act(spec.activation),
            nn.Conv2d(w1, w2, 1, **f),
            _act(spec.activation),
            nn.Conv2d(w2, 1, 5, padding=2, **f),
        )
    body: list[nn.Module] = [
        nn.Conv2d(1, w1, 5, padding=2, **f),
        _act(spec.activation),
        nn.Conv2d(w1, w2, 3, padding=1, **f),
        _act(spec.activation),
    ]
    if spec.family == "deconv":
        return nn.Sequential(*body, nn.ConvTranspose2d(w2, 1, 3 * r, stride=r, padding=r, **f))
    return nn.Sequential(*body, SubPixelConv2d.from_lr_kernel(w2, 1, scale=r, lr_kernel_size=3, **f))


def macs_per_hr_pixel(spec: FamilySpec) -> float:
    """MACs per HR output pixel of ``spec`` on a 1080p frame (LR input ``1080/r × 1920/r``, rounded down).

    Examples:
        >>> round(macs_per_hr_pixel(FamilySpec("lr", 3, 64, 32)), 1)   # ESPCN: (64·25 + 32·64·9 + 9·32·9)/9
        2513.8
    """
    model = build(spec)
    h, w = FRAME_HR[0] // spec.scale, FRAME_HR[1] // spec.scale
    return count_macs(model, (1, 1, h, w)).per_output_pixel


def espcn_macs_per_pixel(scale: int) -> float:
    """The reference budget: ESPCN (widths 64, 32, kernels 5-3-3) at ``scale``, MACs per HR pixel."""
    return macs_per_hr_pixel(FamilySpec("lr", scale, 64, 32))


def solve_widths(
    family: str, scale: int, budget: float, *, tolerance: float = 0.05
) -> tuple[FamilySpec, float]:
    """The widths ``(w1, w2)`` of ``family`` whose MACs per HR pixel are closest to ``budget``.

    Among all ``w1`` and ``w2 ∈ [⌈w1/2⌉ − 3, ⌈w1/2⌉ + 3]`` it takes the pair nearest to the budget, preferring
    ``w2`` closest to ``w1/2`` among pairs within the tolerance.

    Args:
        family: ``"hr"``, ``"deconv"`` or ``"lr"``.
        scale: ``r``.
        budget: MACs per HR output pixel.
        tolerance: largest allowed relative deviation.

    Returns:
        ``(spec, macs_per_hr_pixel)``.

    Raises:
        ValueError: if no pair is within the tolerance.

    Examples:
        >>> spec, macs = solve_widths("lr", 3, espcn_macs_per_pixel(3))
        >>> spec.name, round(macs, 1)
        ('lr-64-32', 2513.8)
    """
    if family not in FAMILIES:
        raise SubpixelError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    if not budget > 0:
        raise SubpixelError(f"budget must be positive (MACs per HR pixel), got {budget!r}")
    # MACs are a quadratic polynomial in (w1, w2): get its coefficients once from count_macs, then search.
    base = {(a, b): macs_per_hr_pixel(FamilySpec(family, scale, a, b)) for a in (1, 2, 3) for b in (1, 2, 3)}

    def cost(a: int, b: int) -> float:
        # f(a, b) = c0 + c1 a + c2 b + c3 a b, exact for these families (no a² or b² terms)
        c3 = base[2, 2] - base[1, 2] - base[2, 1] + base[1, 1]
        c1 = base[2, 1] - base[1, 1] - c3
        c2 = base[1, 2] - base[1, 1] - c3
        c0 = base[1, 1] - c1 - c2 - c3
        return c0 + c1 * a + c2 * b + c3 * a * b

    best: tuple[float, float, int, int] | None = None
    for a in range(1, 2049):
        half = -(-a // 2)
        for b in range(max(1, half - 3), half + 4):
            dev = abs(cost(a, b) / budget - 1)
            key = (0.0 if dev <= tolerance else dev, abs(b - a / 2) + dev, a, b)
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
