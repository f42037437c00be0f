"""One route, one plan (subpixel.dispatch): the module equals the function, every algorithm is exact where it is
chosen, forcing works, and cached plans and derived weights follow the weight.

Equivalence is checked in float64 against torch's own ConvTranspose (values and gradients). Nothing here asserts
a time.
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys

import pytest
import torch
from torch import nn

import subpixel
from subpixel import algorithms, choice, config, derived, dispatch
from subpixel.errors import SubpixelError
from subpixel.functional import conv_transpose_weight_to_lr, lr_conv_shuffle, lr_weight_to_conv_transpose

CT = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
CL = {2: torch.channels_last, 3: torch.channels_last_3d}


@pytest.fixture
def settings():
    """``settings(**changes)``: :func:`subpixel.config.update` for this test (restored after it)."""
    with config.override():
        yield config.update


def _config(seed: int) -> dict:
    """A random geometry torch accepts: the padding is drawn so that every axis has an output sample."""
    rng = random.Random(seed)
    n = rng.choice([1, 2, 2, 3])
    s = [rng.randint(1, 3) for _ in range(n)]
    d = [rng.choice([1, 1, 2]) for _ in range(n)]
    k = [rng.randint(1, 5) for _ in range(n)]
    op = [rng.randint(0, max(s_, d_) - 1) for s_, d_ in zip(s, d)]
    g = rng.choice([1, 1, 2])
    size = [rng.randint(1, 5 if n < 3 else 3) for _ in range(n)]
    # output (L - 1)·s - 2p + d·(k - 1) + op + 1 >= 1
    p = [
        rng.randint(0, min(d_ * (k_ - 1), ((L - 1) * s_ + d_ * (k_ - 1) + op_) // 2))
        for L, s_, d_, k_, op_ in zip(size, s, d, k, op)
    ]
    return dict(
        n=n, s=s, d=d, k=k, p=p, op=op, g=g, bias=rng.random() < 0.7, size=size, cl=rng.random() < 0.4
    )


CONFIGS = [_config(seed) for seed in range(40)]
CONFIGS += [  # the benchmark's shapes, small: 3D U-Net k3 s2 p1 op1, DCGAN k4 s2 p1, U-Net k2 s2, HiFi-GAN k16 s8
    dict(n=3, s=[2] * 3, d=[1] * 3, k=[3] * 3, p=[1] * 3, op=[1] * 3, g=1, bias=True, size=[3] * 3, cl=True),
    dict(n=2, s=[2] * 2, d=[1] * 2, k=[4] * 2, p=[1] * 2, op=[0] * 2, g=1, bias=True, size=[3, 4], cl=True),
    dict(n=2, s=[2] * 2, d=[1] * 2, k=[2] * 2, p=[0] * 2, op=[0] * 2, g=1, bias=True, size=[3, 4], cl=False),
    dict(n=1, s=[8], d=[1], k=[16], p=[4], op=[0], g=1, bias=False, size=[5], cl=False),
]


def _pair(cfg: dict, layout: str = "lr") -> tuple[nn.Module, subpixel.SubPixelConvNd, torch.Tensor]:
    torch.manual_seed(0)
    ct = CT[cfg["n"]](
        2 * cfg["g"], 3 * cfg["g"], cfg["k"], cfg["s"], cfg["p"], cfg["op"], cfg["g"], cfg["bias"], cfg["d"]
    ).double()
    x = torch.randn(2, 2 * cfg["g"], *cfg["size"], dtype=torch.float64)
    if cfg["cl"] and cfg["n"] > 1:
        x = x.contiguous(memory_format=CL[cfg["n"]])
    return ct, subpixel.from_conv_transpose(ct, weight_layout=layout), x


def _args(m: subpixel.SubPixelConvNd) -> tuple:
    return (m.stride, m.padding, m.output_padding, m.groups, m.dilation, m.kernel_size)


@pytest.mark.parametrize("layout", ["lr", "conv_transpose"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_module_equals_function_same_plan(cfg: dict, layout: str) -> None:
    pair = _pair(cfg, layout)
    _, m, x = pair
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            y_module = m(x)
            if layout == "lr":
                weight_lr, weight_ct = m.weight, None
                y_function = lr_conv_shuffle(x, m.weight, m.bias, *_args(m), order=m.order)
            else:  # the held ConvTranspose-layout parameter
                weight_lr, weight_ct = None, m.parametrizations.weight.original
                y_function = lr_conv_shuffle(x, None, m.bias, *_args(m), order=m.order, weight_ct=weight_ct)
            plan_function = dispatch.plan(x, weight_lr, m.bias, *_args(m), order=m.order, weight_ct=weight_ct)
            assert m.plan(x) is plan_function  # one cached plan for both
        assert torch.equal(y_module, y_function)
        if layout == "conv_transpose":  # and the LR weight it stands for gives the same numbers
            with torch.no_grad():
                y_lr = lr_conv_shuffle(
                    x, m.weight, m.bias, *_args(m), order=m.order, algorithm=plan_function.algorithm
                )
            assert torch.equal(y_module.detach(), y_lr)


@pytest.mark.parametrize("layout", ["lr", "conv_transpose"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_every_algorithm_exact_where_chosen(cfg: dict, layout: str) -> None:
    pair = _pair(cfg, layout)
    ct, m, x = pair
    ref = ct(x)
    grad = torch.randn_like(ref)
    xr = x.detach().clone().requires_grad_(True)
    r_grads = torch.autograd.grad(ct(xr), [xr, ct.weight, *([ct.bias] if cfg["bias"] else [])], grad)
    weight = m.weight if layout == "lr" else m.parametrizations.weight.original
    for algorithm in dispatch.ALGORITHMS:
        with dispatch.force_algorithm(algorithm):
            with torch.no_grad():
                plan = m.plan(x)
                assert plan.algorithm == (algorithm if algorithm in plan.candidates else "lr_shuffle")
                y = m(x)
            assert y.shape == ref.shape and y.stride() == ref.stride()
            assert (y - ref).abs().max().item() <= 1e-10, (algorithm, plan)
            xg = x.detach().clone().requires_grad_(True)
            params = [weight, *([m.bias] if cfg["bias"] else [])]
            if layout == "conv_transpose":  # no LR entry without a tap: every algorithm is valid in training
                assert m.plan(xg).candidates == plan.candidates
            out = m(xg)
            g = torch.autograd.grad(out, [xg, *params], grad)
        assert (g[0] - r_grads[0]).abs().max().item() <= 1e-10
        w_taps = g[1]
        if layout == "lr":
            w_taps = lr_weight_to_conv_transpose(
                g[1], ct.kernel_size, ct.stride, ct.dilation, ct.groups, check=False
            )
        assert (w_taps - r_grads[1]).abs().max().item() <= 1e-10
        if cfg["bias"]:
            assert (g[2] - r_grads[2]).abs().max().item() <= 1e-10
        if layout == "lr":
            # the LR form's gradient of the entries no tap reaches: every algorithm that runs must give it
            with dispatch.force_algorithm("lr_shuffle"):
                g_lr = torch.autograd.grad(m(xg), [m.weight], grad)[0]
            assert (g[1] - g_lr).abs().max().item() <= 1e-10


def test_a_trained_lr_weight_never_runs_as_conv_transpose() -> None:
    """Kernel 3, stride 2: a quarter of each axis' LR entries are reached by no tap. Once they are non-zero, only
    the LR form computes the layer; while autograd records the weight, never another form (their gradients)."""
    ct = nn.ConvTranspose2d(4, 3, 3, 2, 1, 1).double()
    m = subpixel.from_conv_transpose(ct, weight_layout="lr")
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        assert set(m.plan(x).candidates) == {"lr_shuffle", "phases", "conv_transpose"}
    assert m.plan(x).candidates == ("lr_shuffle",)  # autograd records the weight
    m.weight.requires_grad_(False)
    assert "conv_transpose" in m.plan(x).candidates  # frozen weight: input gradients only
    with torch.no_grad():
        m.weight.add_(0.1)
        for algorithm in dispatch.ALGORITHMS:
            with dispatch.force_algorithm(algorithm):
                plan = m.plan(x)
                assert plan.algorithm == "lr_shuffle" and plan.candidates == ("lr_shuffle",)
                assert "not valid" in plan.reason or algorithm == "lr_shuffle"


def test_forcing_argument_context_environment(settings) -> None:
    m = subpixel.SubPixelConv2d(4, 3, 2, stride=2).double()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    with torch.no_grad():
        settings(algorithm="conv_transpose")
        assert m.plan(x).algorithm == "conv_transpose" and m.plan(x).reason == "forced"
        with dispatch.force_algorithm("phases"):  # the context manager wins over the environment
            assert m.plan(x).algorithm == "lr_shuffle"  # k == s, no crop: the per-phase form saves nothing
            with dispatch.force_algorithm("auto"):
                assert dispatch.forced_algorithm() is None
        m.algorithm = "lr_shuffle"  # the layer's own setting wins over both
        with dispatch.force_algorithm("conv_transpose"):
            assert m.plan(x).algorithm == "lr_shuffle"
        m.algorithm = None
        assert lr_conv_shuffle(x, m.weight, m.bias, 2, algorithm="lr_shuffle").shape == (1, 3, 6, 6)
        with pytest.raises(SubpixelError, match="algorithm must be one of"):
            settings(algorithm="fastest")
    with pytest.raises(ValueError, match="algorithm"):
        subpixel.SubPixelConv2d(4, 3, 2, stride=2, algorithm="gemm")
    with pytest.raises(ValueError, match="force_algorithm"):
        with dispatch.force_algorithm("gemm"):
            pass


@pytest.mark.parametrize("algorithm", dispatch.ALGORITHMS)
def test_derived_weights_follow_the_weight(algorithm: str) -> None:
    ref = nn.ConvTranspose2d(4, 3, 4, 2, 1).double()
    m = subpixel.from_conv_transpose(ref, weight_layout="lr")
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), dispatch.force_algorithm(algorithm):
        assert (m(x) - ref(x)).abs().max().item() <= 1e-10
        m.weight.mul_(-2.0)  # in place: _version changes
        ref.weight.mul_(-2.0)
        assert (m(x) - ref(x)).abs().max().item() <= 1e-10
        m.weight = nn.Parameter(conv_transpose_weight_to_lr(ref.weight * 3, 2))  # replaced
        ref.weight.mul_(3.0)
        assert (m(x) - ref(x)).abs().max().item() <= 1e-10
        for _ in range(
            30
        ):  # freed weights whose addresses (and ids) are reused: never a stale derived weight
            w = torch.randn(4, 3, 4, 4, dtype=torch.float64)
            lr = conv_transpose_weight_to_lr(w, 2)
            y = lr_conv_shuffle(x, lr, None, 2, 1, kernel_size=4)
            expected = torch.nn.functional.conv_transpose2d(x, w, None, 2, 1)
            assert (y - expected).abs().max().item() <= 1e-10
            del w, lr
            gc.collect()


def test_parametrized_weight_is_derived_on_every_call() -> None:
    """A weight recomputed on every access (weight_norm on the LR weight) is a new tensor each time: no cache
    holds a derived weight of an old value, and training reaches the parametrization's parameters."""
    ref = nn.ConvTranspose2d(4, 3, 2, 2).double()
    m = subpixel.from_conv_transpose(ref, weight_layout="lr")
    m = torch.nn.utils.parametrizations.weight_norm(m)
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for algorithm in dispatch.ALGORITHMS:
        with dispatch.force_algorithm(algorithm):
            with torch.no_grad():
                for _ in range(2):
                    expected = torch.nn.functional.conv_transpose2d(
                        x, lr_weight_to_conv_transpose(m.weight, 2, 2), m.bias, 2
                    )
                    assert (m(x) - expected).abs().max().item() <= 1e-10
                    m.parametrizations.weight.original0.mul_(2.0)  # the norm g, in place: the weight doubles
            loss = m(x).square().sum()
            (g,) = torch.autograd.grad(loss, [m.parametrizations.weight.original1])
            with dispatch.force_algorithm("lr_shuffle"):
                (g_lr,) = torch.autograd.grad(m(x).square().sum(), [m.parametrizations.weight.original1])
            assert (g - g_lr).abs().max().item() <= 1e-10


def test_plans_are_keyed_by_grad_mode_and_memory_format() -> None:
    m = subpixel.SubPixelConv2d(4, 3, 4, stride=2, padding=1).double()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        inference = m.plan(x)
        channels_last = m.plan(x.contiguous(memory_format=torch.channels_last))
    training = m.plan(x)
    assert len({id(inference), id(channels_last), id(training)}) == 3
    assert channels_last.lr_order == "dcr" and inference.lr_order == "crd"
    with torch.no_grad():
        assert m.plan(x) is inference  # cached, immutable
    with pytest.raises(AttributeError):
        inference.algorithm = "phases"  # type: ignore[misc]
    dispatch.clear_caches()
    with torch.no_grad():
        assert m.plan(x) is not inference


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("algorithm", dispatch.ALGORITHMS)
def test_output_size_with_large_output_padding_on_a_tiny_input(ndim: int, algorithm: str) -> None:
    """forward(x, output_size=...) once crashed where torch's layer works (large output padding, tiny input)."""
    torch.manual_seed(0)
    ct = CT[ndim](1, 2, kernel_size=2, stride=4, padding=1, dilation=2).double()
    layer = subpixel.from_conv_transpose(ct)
    x = torch.randn(2, 1, *[1] * ndim, dtype=torch.float64)
    size = [4] * ndim
    expected = ct(x, output_size=size)
    with dispatch.force_algorithm(algorithm):
        with torch.no_grad():
            y = layer(x, output_size=size)
        assert y.shape == expected.shape == (2, 2, *size)
        assert (y - expected).abs().max().item() <= 1e-10
        xg = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(layer(xg, output_size=size).sum(), [xg])
    (rx,) = torch.autograd.grad(ct(xg, output_size=size).sum(), [xg])
    assert (gx - rx).abs().max().item() <= 1e-10


def test_training_runs_the_lr_form_unless_timing_is_asked_for(settings) -> None:
    """Reproducible training: no timed choice while autograd records (nor under deterministic algorithms)."""
    m = subpixel.SubPixelConv2d(4, 3, 4, stride=2, padding=1).double()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    plan = m.plan(x)
    assert len(plan.candidates) > 1 and plan.algorithm == "lr_shuffle" and plan.reason.startswith("training")
    with torch.no_grad():
        torch.use_deterministic_algorithms(True)
        try:
            assert m.plan(x).algorithm == "lr_shuffle" and "deterministic" in m.plan(x).reason
        finally:
            torch.use_deterministic_algorithms(False)
        assert m.plan(x).reason.startswith(("timed", "as timed"))
    settings(timed_training=True)
    assert m.plan(x).reason.startswith(("timed", "as timed"))


def test_a_held_conv_transpose_weight_is_timed_in_training_too(settings) -> None:
    """The drop-in (ConvTranspose-layout parameter) replaces torch's layer: timed while training too, unless
    ``SUBPIXEL_TIMED_TRAINING=0`` or deterministic algorithms ask for the LR form."""
    m = subpixel.from_conv_transpose(nn.ConvTranspose2d(4, 3, 4, 2, 1).double())
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    assert m.plan(x).reason.startswith(("timed", "as timed"))
    settings(timed_training=False)
    plan = m.plan(x)
    assert plan.algorithm == "lr_shuffle" and plan.reason.startswith("training")
    torch.use_deterministic_algorithms(True)
    try:
        settings(timed_training=None)
        assert "deterministic" in m.plan(x).reason
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("layout", ["lr", "conv_transpose"])
def test_timing_does_not_touch_gradients_or_graph(settings, layout: str) -> None:
    settings(timed_training=True)
    ref = nn.ConvTranspose2d(4, 3, 4, 2, 1).double()
    m = subpixel.from_conv_transpose(ref, weight_layout=layout)
    weight = m.weight if layout == "lr" else m.parametrizations.weight.original
    dispatch.clear_caches()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    y = m(x)  # first call of the key: the candidates are timed on detached copies
    assert m.plan(x).reason.startswith("timed")
    assert weight.grad is None and x.grad is None and m.bias.grad is None
    y.sum().backward()
    xr = x.detach().clone().requires_grad_(True)
    ref(xr).sum().backward()
    assert (x.grad - xr.grad).abs().max().item() <= 1e-10
    assert (m.bias.grad - ref.bias.grad).abs().max().item() <= 1e-10


class _ConvTransposeLayout(nn.Module):
    """The LR weight computed from a ConvTranspose-layout parameter (entries no tap reaches: zero by construction)."""

    subpixel_fixed_taps = True

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, weight_ct: torch.Tensor) -> torch.Tensor:
        return conv_transpose_weight_to_lr(weight_ct, self.stride)

    def right_inverse(self, weight_lr: torch.Tensor) -> torch.Tensor:
        return lr_weight_to_conv_transpose(weight_lr, self.kernel_size, self.stride)


@pytest.mark.parametrize("algorithm", dispatch.ALGORITHMS)
def test_fixed_taps_parametrization_allows_every_algorithm_in_training(algorithm: str) -> None:
    ct = nn.ConvTranspose2d(4, 3, 3, 2, 1, 1).double()
    m = subpixel.from_conv_transpose(ct, weight_layout="lr")
    torch.nn.utils.parametrize.register_parametrization(m, "weight", _ConvTransposeLayout(3, 2))
    original = m.parametrizations.weight.original
    assert torch.equal(original, ct.weight)
    x = torch.randn(2, 4, 5, 4, dtype=torch.float64, requires_grad=True)
    with dispatch.force_algorithm(algorithm):
        assert m.plan(x).algorithm == algorithm
        grad = torch.randn_like(ct(x))
        ours = torch.autograd.grad(m(x), [x, original, m.bias], grad)
    ref = torch.autograd.grad(ct(x), [x, ct.weight, ct.bias], grad)
    for a, b in zip(ours, ref, strict=True):
        assert (a - b).abs().max().item() <= 1e-10


def test_derived_weights_follow_data_swaps() -> None:
    """``Module.double()`` / ``.float()`` and ``p.data = ...`` replace a parameter's data without a version bump."""
    ref = nn.ConvTranspose2d(4, 3, 2, 2)
    m = subpixel.from_conv_transpose(ref, weight_layout="lr")
    x = torch.randn(1, 4, 3, 3)
    with torch.no_grad(), dispatch.force_algorithm("conv_transpose"):
        m(x)
        m.double(), ref.double()
        assert (m(x.double()) - ref(x.double())).abs().max().item() <= 1e-10
        m.float(), ref.float()
        assert (m(x) - ref(x)).abs().max().item() <= 1e-5
        ref.weight.data = torch.randn_like(ref.weight)
        m.weight.data = conv_transpose_weight_to_lr(ref.weight, 2)
        assert (m(x) - ref(x)).abs().max().item() <= 1e-5


def test_inference_mode_then_input_gradients() -> None:
    """A derived weight made under inference_mode is not reused where autograd saves it for backward."""
    ref = nn.ConvTranspose2d(4, 3, 2, 2).double()
    m = subpixel.from_conv_transpose(ref).requires_grad_(False)
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for algorithm in dispatch.ALGORITHMS:
        with dispatch.force_algorithm(algorithm):
            with torch.inference_mode():
                m(x)
            xg = x.clone().requires_grad_(True)
            (gx,) = torch.autograd.grad(m(xg).sum(), [xg])
            (rx,) = torch.autograd.grad(ref(xg).sum(), [xg])
            assert (gx - rx).abs().max().item() <= 1e-10


def _scripted_timer(monkeypatch: pytest.MonkeyPatch, scores: dict[str, float]) -> list[tuple[str, ...]]:
    """Replace the timer of the timed choice by fixed scores (seconds); returns the list of timed candidate sets."""
    calls: list[tuple[str, ...]] = []

    def measure(names, call):
        calls.append(tuple(names))
        return {a: scores[a] for a in names}, {}, 5

    monkeypatch.setattr(choice, "measure", measure)
    return calls


@pytest.mark.parametrize("winner", dispatch.ALGORITHMS)
def test_the_timed_choice_takes_the_fastest(winner: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever candidate the timer finds fastest (by more than the margin) runs, for either weight layout."""
    scores = {a: (1.0 if a == winner else 3.0) for a in dispatch.ALGORITHMS}
    calls = _scripted_timer(monkeypatch, scores)
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    for layout in ("lr", "conv_transpose"):
        deconv = nn.ConvTranspose2d(
            4, 3, 3, stride=2, padding=2, dtype=torch.float64
        )  # k 3, s 2: phases valid
        m = subpixel.from_conv_transpose(deconv, weight_layout=layout)
        dispatch.clear_caches()
        with torch.no_grad():
            plan = m.plan(x)
            assert set(plan.candidates) == set(dispatch.ALGORITHMS) and calls[-1] == plan.candidates
            assert plan.algorithm == winner and plan.reason.startswith("timed")
            assert (m(x) - deconv(x)).abs().max().item() <= 1e-10


@pytest.mark.parametrize("layout", ["lr", "conv_transpose"])
def test_the_reference_is_kept_within_the_margin(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another algorithm replaces the reference (the LR form; torch's layer for a ConvTranspose-layout weight) only
    when at least 3 % faster."""
    reference = "lr_shuffle" if layout == "lr" else "conv_transpose"
    other = "phases"
    deconv = nn.ConvTranspose2d(4, 3, 3, stride=2, padding=2, dtype=torch.float64)
    m = subpixel.from_conv_transpose(deconv, weight_layout=layout)
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    for ratio, expected in ((0.98, reference), (0.96, other)):
        scores = {a: 1.0 for a in dispatch.ALGORITHMS}
        scores[other] = ratio
        _scripted_timer(monkeypatch, scores)
        dispatch.clear_caches()
        with torch.no_grad():
            assert m.plan(x).algorithm == expected, ratio


def test_a_timed_choice_is_reused_per_size_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """One timing per layer, batch and size class (spatial size rounded to a power of two); another class is
    timed again and may choose differently."""
    m = subpixel.SubPixelConv2d(4, 3, 4, stride=2, padding=1).double()
    calls = _scripted_timer(monkeypatch, {"lr_shuffle": 2.0, "phases": 3.0, "conv_transpose": 1.0})
    dispatch.clear_caches()
    with torch.no_grad():
        first = m.plan(torch.randn(1, 4, 16, 16, dtype=torch.float64))
        similar = m.plan(torch.randn(1, 4, 16, 17, dtype=torch.float64))
        assert len(calls) == 1 and first.algorithm == similar.algorithm == "conv_transpose"
        _scripted_timer(monkeypatch, {"lr_shuffle": 1.0, "phases": 3.0, "conv_transpose": 2.0})
        again = m.plan(torch.randn(1, 4, 17, 16, dtype=torch.float64))  # same class: not timed again
        other = m.plan(torch.randn(1, 4, 64, 64, dtype=torch.float64))
        batch = m.plan(torch.randn(2, 4, 16, 16, dtype=torch.float64))
    assert again.algorithm == "conv_transpose" and again.reason.startswith("as timed")
    assert other.algorithm == batch.algorithm == "lr_shuffle"
    assert other.reason.startswith("timed") and batch.reason.startswith("timed")


def test_timed_choice_is_reused_for_similar_sizes() -> None:
    m = subpixel.SubPixelConv2d(4, 3, 4, stride=2, padding=1).double()
    dispatch.clear_caches()
    with torch.no_grad():
        first = m.plan(torch.randn(1, 4, 16, 16, dtype=torch.float64))
        similar = m.plan(torch.randn(1, 4, 16, 17, dtype=torch.float64))
        other = m.plan(torch.randn(1, 4, 64, 64, dtype=torch.float64))
    assert len(first.candidates) > 1 and first.reason.startswith("timed")
    assert similar is not first and similar.algorithm == first.algorithm
    assert similar.reason.startswith("as timed for an input of about this size")
    assert other.reason.startswith("timed")


@pytest.mark.parametrize("algorithm", dispatch.ALGORITHMS)
def test_a_weight_computed_on_every_call_is_not_cached(
    algorithm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weight norm on a converted layer: the ConvTranspose weight is a new tensor on every forward, so whatever is
    derived from it is computed on the call (and counted by the timing), never looked up in the cache."""
    cached = []
    derive = derived.cached

    def spy(weight, kind, make):
        cached.append(kind[0])
        return derive(weight, kind, make)

    monkeypatch.setattr(derived, "cached", spy)
    ct = torch.nn.utils.parametrizations.weight_norm(nn.ConvTranspose1d(4, 3, 16, 8, 4).double())
    m = subpixel.from_conv_transpose(ct)
    _, weight_ct, fixed, fresh = m._weights()
    assert weight_ct is not None and fixed and fresh
    x = torch.randn(2, 4, 9, dtype=torch.float64)
    dispatch.clear_caches()
    with torch.no_grad(), dispatch.force_algorithm(algorithm):
        for _ in range(3):
            assert (m(x) - ct(x)).abs().max().item() <= 1e-10
            assert cached == []
            m.parametrizations.weight.original0.mul_(1.5)
            ct.parametrizations.weight.original0.mul_(1.5)


def test_the_environment_is_read_once_into_the_settings(settings) -> None:
    """``$SUBPIXEL_ALGORITHM`` / ``$SUBPIXEL_TIMED_TRAINING`` become :data:`subpixel.config.current` (read at
    import; :func:`subpixel.config.reload` reads them again); unset means automatic."""
    assert config.from_environ({"SUBPIXEL_ALGORITHM": "phases"}).algorithm == "phases"
    assert config.from_environ({"SUBPIXEL_ALGORITHM": " Auto "}).algorithm is None
    assert config.from_environ({}).algorithm is None
    for value, expected in (("on", True), ("0", False), ("", None)):
        assert config.from_environ({"SUBPIXEL_TIMED_TRAINING": value}).timed_training is expected
    config.reload({"SUBPIXEL_ALGORITHM": "phases"})
    assert dispatch.forced_algorithm() == "phases"
    with pytest.raises(SubpixelError, match="SUBPIXEL_ALGORITHM"):
        config.reload({"SUBPIXEL_ALGORITHM": "fastest"})
    assert dispatch.forced_algorithm() == "phases", "a refused reload changes nothing"
    with config.override(algorithm=None):
        assert dispatch.forced_algorithm() is None
    assert dispatch.forced_algorithm() == "phases"
    with pytest.raises(SubpixelError, match="unknown setting"):
        config.update(algorithms="phases")
    with pytest.raises(SubpixelError, match="keep must be"):
        config.update(keep=1.5)


def test_a_setting_change_replans_a_layer(settings) -> None:
    """A layer's kept plan (its call site) is dropped when a setting changes."""
    m = subpixel.from_conv_transpose(nn.ConvTranspose2d(4, 3, 4, 2, 1).double())
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64)
    with torch.no_grad():
        m(x)
        settings(algorithm="phases")
        m(x)
        assert m._site.plan.algorithm == "phases"
        settings(algorithm="lr_shuffle")
        m(x)
        assert m._site.plan.algorithm == "lr_shuffle"


def test_a_bad_environment_is_reported_by_the_first_layer_call() -> None:
    """A bad ``$SUBPIXEL_ALGORITHM`` does not break ``import subpixel``; the first transposed convolution says it."""
    code = (
        "import torch, subpixel\n"
        "try:\n"
        "    subpixel.SubPixelConv1d(2, 2, 2, stride=2)(torch.zeros(1, 2, 3))\n"
        "except subpixel.SubpixelError as e:\n"
        "    print('refused:', e)\n"
    )
    env = {**os.environ, "SUBPIXEL_ALGORITHM": "fastest"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: $SUBPIXEL_ALGORITHM must be one of" in done.stdout


def test_a_layer_reuses_its_plan_only_while_the_call_is_the_same() -> None:
    """The steady state (a layer's kept plan) follows what the plan was made for: grad mode, forcing,
    deterministic mode, dtype, and the LR weight's values where they decide which algorithms are valid."""
    deconv = nn.ConvTranspose2d(
        4, 3, 3, stride=2, padding=1, dtype=torch.float64
    )  # k 3, s 2: LR entries unreached
    m = subpixel.from_conv_transpose(deconv, weight_layout="lr")
    x = torch.randn(1, 4, 6, 5, dtype=torch.float64)
    with dispatch.force_algorithm("conv_transpose"):
        with torch.no_grad():
            assert (m(x) - deconv(x)).abs().max().item() <= 1e-12
            assert m._site.plan.algorithm == "conv_transpose"
        y = m(x)  # autograd records the LR weight: only the LR form is valid
        assert m._site.plan.algorithm == "lr_shuffle"
        y.sum().backward()
        assert m.weight.grad is not None
        torch.use_deterministic_algorithms(True)
        try:
            with torch.no_grad():
                m(x)
            assert m._site.plan.algorithm == "conv_transpose"  # forcing wins over determinism
        finally:
            torch.use_deterministic_algorithms(False)
        with torch.no_grad():
            with dispatch.force_algorithm("phases"):
                m(x)
                assert m._site.plan.algorithm == "phases"
            m(x)
            assert m._site.plan.algorithm == "conv_transpose"
            # a non-zero LR entry that no tap reaches: only the LR form computes the layer now
            unreached = ~algorithms.reachable_mask((3, 3), (2, 2), (1, 1))  # (R, K, K)
            phase, i, j = (int(v) for v in unreached.nonzero()[0])
            m.weight[phase, :, i, j] = 1.0  # in place (a version bump): output channel 0, that phase (CRD)
            reference = lr_conv_shuffle(x, m.weight, m.bias, 2, 1, 0, 1, 1, 3, algorithm="lr_shuffle")
            assert torch.equal(m(x), reference)
            m.weight[phase, :, i, j] = 0.0
            m.double()
            m.float()
            assert m(x.float()).dtype == torch.float32
