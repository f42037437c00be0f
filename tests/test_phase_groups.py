"""The per-phase-group form of SubPixelConvNd (one stride-1 conv per output phase, real taps only).

Compared in float64 with torch's own ConvTranspose (outputs and input/weight/bias gradients), with gradcheck,
and with the plain LR conv + shuffle when the LR weight has entries where no real tap lands (fallback).
"""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

import subpixel
from subpixel import algorithms, dispatch
from subpixel.algorithms import lr_conv_core, phase_conv_core, phase_plan, reachable_mask, zero_outside
from subpixel.functional import lr_geometry

# every test runs with the compiled copy kernel and with its copy_ fallback (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("copy_kernel")

CT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}


def _random_config(rng: random.Random) -> dict:
    n = rng.choice([1, 1, 2, 2, 3])
    s = [rng.randint(1, 3) for _ in range(n)]
    d = [rng.choice([1, 1, 2]) for _ in range(n)]
    k = [rng.randint(1, 5) for _ in range(n)]
    op = [rng.randint(0, max(s_, d_) - 1) for s_, d_ in zip(s, d)]
    g = rng.choice([1, 2])
    size = [rng.randint(1, 6 if n < 3 else 4) for _ in range(n)]
    # a geometry torch accepts: every axis keeps an output sample, (L - 1)·s - 2p + d·(k - 1) + op + 1 >= 1
    p = [
        rng.randint(0, min(d_ * (k_ - 1), ((L - 1) * s_ + d_ * (k_ - 1) + op_) // 2))
        for L, s_, d_, k_, op_ in zip(size, s, d, k, op)
    ]
    return dict(n=n, s=s, d=d, k=k, p=p, op=op, g=g, bias=rng.random() < 0.7, size=size)


def _pair(cfg: dict) -> tuple[nn.Module, subpixel.SubPixelConvNd]:
    ct = CT[cfg["n"]](
        2 * cfg["g"], 3 * cfg["g"], cfg["k"], cfg["s"], cfg["p"], cfg["op"], cfg["g"], cfg["bias"], cfg["d"]
    ).double()
    return ct, subpixel.from_conv_transpose(ct)


def _geoms(m: subpixel.SubPixelConvNd, x: torch.Tensor) -> list:
    return [
        lr_geometry(n, k, s, p, a, d)
        for n, k, s, p, a, d in zip(
            x.shape[2:], m.kernel_size, m.stride, m.padding, m.output_padding, m.dilation
        )
    ]


def _axes(m: subpixel.SubPixelConvNd, x: torch.Tensor) -> list | None:
    """The per-phase plan if the layer may run ``x`` per phase without autograd (None: it may not)."""
    with torch.no_grad():
        plan = m.plan(x)
    return list(plan.phases) if "phases" in plan.candidates else None


def _takes_phase_path(m: subpixel.SubPixelConvNd, x: torch.Tensor) -> bool:
    return _axes(m, x) is not None


def _plan(m: subpixel.SubPixelConvNd, x: torch.Tensor) -> list:
    """The per-phase plan whatever the work it saves (to test the form on every geometry)."""
    return phase_plan(tuple(x.shape[2:]), m.kernel_size, m.stride, m.dilation, _geoms(m, x))[0]


def _valid(m: subpixel.SubPixelConvNd) -> bool:
    return zero_outside(m.weight, reachable_mask(m.kernel_size, m.stride, m.dilation), m.order)


CONFIGS = [_random_config(random.Random(seed)) for seed in range(60)]
CONFIGS += [  # the benchmark's targets: 3D U-Net k3 s2 p1 op1, DCGAN k4 s2 p1, HiFi-GAN k16 s8 p4
    dict(n=3, s=[2] * 3, d=[1] * 3, k=[3] * 3, p=[1] * 3, op=[1] * 3, g=1, bias=True, size=[4] * 3),
    dict(n=2, s=[2] * 2, d=[1] * 2, k=[4] * 2, p=[1] * 2, op=[0] * 2, g=1, bias=True, size=[2, 3]),
    dict(n=1, s=[8], d=[1], k=[16], p=[4], op=[0], g=1, bias=False, size=[5]),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_matches_conv_transpose_with_grads(cfg: dict) -> None:
    torch.manual_seed(0)
    ct, m = _pair(cfg)
    x = torch.randn(2, 2 * cfg["g"], *cfg["size"], dtype=torch.float64)
    axes = _plan(m, x)
    assert _valid(m)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    w = m.weight.detach().clone().requires_grad_(True)
    b = None if m.bias is None else m.bias.detach().clone().requires_grad_(True)
    ref = ct(x1)
    out = phase_conv_core(x2, w, b, axes, m.groups, m.order)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-10
    with torch.no_grad():  # the layer itself (per-phase form where it saves work)
        assert (m(x) - ref).abs().max().item() <= 1e-10
    grad = torch.randn_like(ref)
    ref.backward(grad)
    out.backward(grad)
    assert (x1.grad - x2.grad).abs().max().item() <= 1e-10
    w_grad = subpixel.functional.lr_weight_to_conv_transpose(
        w.grad, ct.kernel_size, ct.stride, ct.dilation, ct.groups, check=False
    )
    assert (w_grad - ct.weight.grad).abs().max().item() <= 1e-10
    if cfg["bias"]:
        assert (b.grad - ct.bias.grad).abs().max().item() <= 1e-10


def test_phase_path_is_taken_where_it_saves_work() -> None:
    taken = []
    for cfg in CONFIGS:
        ct, m = _pair(cfg)
        x = torch.randn(1, 2 * cfg["g"], *cfg["size"], dtype=torch.float64)
        try:
            ct(x)
        except RuntimeError:
            continue
        taken.append(_takes_phase_path(m, x))
    assert sum(taken) >= 20, taken
    assert taken[-3] and taken[-2]  # 3D U-Net k3, DCGAN k4 at 2x3 (HiFi-GAN k16 s8 at 5 frames: kept LR)
    # kernel a multiple of the stride and no crop: nothing to save, the LR form is kept
    ct, m = _pair(dict(n=2, s=[2, 2], d=[1, 1], k=[2, 2], p=[0, 0], op=[0, 0], g=1, bias=True, size=[4, 4]))
    assert not _takes_phase_path(m, torch.randn(1, 2, 4, 4, dtype=torch.float64))


def test_phase_path_is_used_in_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return phase_conv_core(*args, **kwargs)

    monkeypatch.setattr(algorithms, "phase_conv_core", spy)
    ct = nn.ConvTranspose3d(2, 3, 3, 2, 1, 1).double()
    m = subpixel.from_conv_transpose(ct, weight_layout="lr")
    x = torch.randn(1, 2, 3, 4, 5, dtype=torch.float64)
    with torch.no_grad(), dispatch.force_algorithm("phases"):
        assert (m(x) - ct(x)).abs().max().item() <= 1e-10
    assert calls == [1]
    with dispatch.force_algorithm("phases"):
        # autograd records an LR weight with entries no tap reaches: only the LR form is exact
        assert m.plan(x).algorithm == "lr_shuffle"
        m(x).sum().backward()
    assert calls == [1]
    # held in ConvTranspose layout (the default), the weight has no such entries: phases train too
    held = subpixel.from_conv_transpose(ct)
    xg = x.clone().requires_grad_(True)
    with dispatch.force_algorithm("phases"):
        assert held.plan(xg).algorithm == "phases"
        grad = torch.randn_like(ct(x))
        ours = torch.autograd.grad(held(xg), [xg, held.parametrizations.weight.original, held.bias], grad)
    assert calls == [1, 1]
    ref = torch.autograd.grad(ct(xg), [xg, ct.weight, ct.bias], grad)
    for a, b in zip(ours, ref, strict=True):
        assert (a - b).abs().max().item() <= 1e-10


def test_gradcheck() -> None:
    ct = nn.ConvTranspose2d(2, 2, (3, 5), (2, 3), (1, 2), (1, 0), dilation=(1, 1)).double()
    m = subpixel.from_conv_transpose(ct)
    x = torch.randn(1, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert _takes_phase_path(m, x)
    w = m.weight.detach().clone().requires_grad_(True)
    b = m.bias.detach().clone().requires_grad_(True)
    axes = _axes(m, x)
    assert torch.autograd.gradcheck(lambda x_, w_, b_: phase_conv_core(x_, w_, b_, axes, 1, "crd"), (x, w, b))


@pytest.mark.parametrize("order", ["crd", "dcr"])
def test_unreachable_weight_entries_fall_back(order: str) -> None:
    torch.manual_seed(1)
    ct = nn.ConvTranspose2d(2, 3, 3, 2, 1, 1).double()
    m = subpixel.from_conv_transpose(ct, weight_layout="lr")
    if order == "dcr":
        m = subpixel.SubPixelConv2d(2, 3, 3, 2, 1, 1, order="dcr", dtype=torch.float64)
        with torch.no_grad():
            m.weight.copy_(
                subpixel.convert_channel_order(
                    subpixel.functional.conv_transpose_weight_to_lr(ct.weight, 2), 2, "crd", "dcr", dim=0
                )
            )
            m.bias.copy_(ct.bias)
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64)
    assert _takes_phase_path(m, x)
    with torch.no_grad():
        assert (m(x) - ct(x)).abs().max().item() <= 1e-10
        m.weight.add_(torch.randn_like(m.weight))  # now non-zero where no tap lands (as after free training)
    assert not _takes_phase_path(m, x)
    plain = lr_conv_core(x, m.weight, m.bias, _geoms(m, x), m.stride, m.groups, order)
    with torch.no_grad():
        assert (m(x) - plain).abs().max().item() <= 1e-10
        assert (m(x) - ct(x)).abs().max().item() > 1e-3  # the weight really changed the result
