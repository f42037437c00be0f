"""The eager weight re-indexing (:mod:`subpixel._reindex`) against the view formulation of the same map.

:func:`subpixel.geometry.conv_transpose_weight_to_lr` and :func:`~subpixel.geometry.lr_weight_to_conv_transpose`
run the two-copy eager path on plain tensors and the view chain (the definition) under tracing and export; both
must give the same bits, the same gradients and second derivatives, in every memory format. (The view chain itself
is checked against torch's ConvTranspose in ``test_core_equivalence.py``, which now runs the eager path too.)
"""

from __future__ import annotations

import random

import pytest
import torch

import subpixel.geometry as geometry
from subpixel import _reindex, native
from subpixel.geometry import conv_transpose_weight_to_lr, lr_weight_to_conv_transpose

F64 = torch.float64


@pytest.fixture
def views(monkeypatch: pytest.MonkeyPatch):
    """Call a geometry function with the eager path switched off (the view chain)."""

    def call(fn, *args, **kwargs):
        with monkeypatch.context() as m:
            m.setattr(geometry, "is_eager_plain", lambda *tensors: False)
            return fn(*args, **kwargs)

    return call


def _channels_last(n: int) -> torch.memory_format:
    return torch.channels_last if n == 2 else torch.channels_last_3d


def _config(rng: random.Random, large: bool) -> dict:
    n = rng.choice([1, 2, 3])
    groups = rng.choice([1, 1, 2, 3])
    channels = (70, 90) if large else (40, 40)
    return {
        "n": n,
        "groups": groups,
        "order": rng.choice(["crd", "dcr"]) if groups == 1 else "crd",
        "cin": groups * rng.randint(1, channels[0]),
        "cog": rng.randint(1, channels[1]),
        "k": tuple(rng.randint(1, 6 if n < 3 else 4) for _ in range(n)),
        "s": tuple(rng.randint(1, 4) for _ in range(n)),
        "d": tuple(rng.choice([1, 1, 2, 3]) for _ in range(n)),
        "weight_cl": n >= 2 and rng.random() < 0.5,
        "out_cl": n >= 2 and rng.random() < 0.5,
    }


@pytest.fixture(params=["native", "torch"])
def kernel(request: pytest.FixtureRequest):
    """Both eager implementations: the compiled tiled gather (where it builds) and the torch copies."""
    if request.param == "native" and not native.available():
        pytest.skip(f"the compiled kernel is unavailable: {native.info()['error']}")
    with native.enabled(request.param == "native"):
        yield request.param


@pytest.mark.parametrize("seed", range(120))
def test_eager_equals_views_both_ways(seed: int, views, kernel: str) -> None:
    rng = random.Random(seed)
    c = _config(rng, large=seed % 4 == 0)  # every 4th: large enough for the blocked copy
    torch.manual_seed(seed)
    w = torch.randn(c["cin"], c["cog"], *c["k"], dtype=F64)
    if c["weight_cl"]:
        w = w.contiguous(memory_format=_channels_last(c["n"]))
    w.requires_grad_(True)
    fmt = _channels_last(c["n"]) if c["out_cl"] else torch.contiguous_format
    args = (c["s"], c["d"], c["groups"])
    ref = views(conv_transpose_weight_to_lr, w, *args, order=c["order"], memory_format=fmt)
    got = conv_transpose_weight_to_lr(w, *args, order=c["order"], memory_format=fmt)
    assert torch.equal(got, ref), c
    assert got.is_contiguous(memory_format=fmt)
    grad = torch.randn_like(ref)
    assert torch.equal(torch.autograd.grad(got, w, grad)[0], torch.autograd.grad(ref, w, grad)[0])

    # back: an LR weight with entries no tap reaches (dropped with check=False), in either memory format
    lr = (ref.detach() + torch.randn_like(ref)).contiguous(memory_format=fmt).requires_grad_(True)
    back_ref = views(lr_weight_to_conv_transpose, lr, c["k"], *args, order=c["order"], check=False)
    back = lr_weight_to_conv_transpose(lr, c["k"], *args, order=c["order"], check=False)
    assert torch.equal(back, back_ref)
    grad = torch.randn_like(back_ref)
    assert torch.equal(torch.autograd.grad(back, lr, grad)[0], torch.autograd.grad(back_ref, lr, grad)[0])
    # round trip
    assert torch.equal(lr_weight_to_conv_transpose(got, c["k"], *args, order=c["order"], check=False), w)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_other_element_sizes_are_moved_bit_for_bit(dtype: torch.dtype, views, kernel: str) -> None:
    rng = random.Random(7)
    for _ in range(20):
        c = _config(rng, large=True)
        w = torch.randn(c["cin"], c["cog"], *c["k"]).to(dtype)
        args = (c["s"], c["d"], c["groups"])
        lr = conv_transpose_weight_to_lr(w, *args, order=c["order"])
        assert torch.equal(lr, views(conv_transpose_weight_to_lr, w, *args, order=c["order"]))
        back = lr_weight_to_conv_transpose(lr, c["k"], *args, order=c["order"], check=False)
        assert torch.equal(back, w)


def test_complex_weights_keep_their_lazy_conjugation(views, kernel: str) -> None:
    w = torch.randn(64, 32, 3, 3, dtype=torch.complex64).conj()  # a lazily conjugated view (8-byte elements)
    lr = conv_transpose_weight_to_lr(w, 2)
    assert torch.equal(lr, views(conv_transpose_weight_to_lr, w.resolve_conj(), 2))
    assert torch.equal(lr_weight_to_conv_transpose(lr, 3, 2, check=False), w.resolve_conj())


def test_large_weights_take_the_eager_path_and_small_ones_the_views(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    real = _reindex.conv_transpose_to_lr
    monkeypatch.setattr(_reindex, "conv_transpose_to_lr", lambda *a, **k: calls.append(a) or real(*a, **k))
    conv_transpose_weight_to_lr(torch.randn(4, 4, 4, 4), 2)
    conv_transpose_weight_to_lr(torch.randn(128, 64, 2, 2), 2)  # k = s, one LR tap: the views are cheap
    assert not calls
    conv_transpose_weight_to_lr(torch.randn(64, 32, 4, 4), 2)
    conv_transpose_weight_to_lr(torch.randn(512, 256, 2, 2), 2)
    assert len(calls) == 2


def test_blocked_copy_is_used_for_a_large_transpose(monkeypatch: pytest.MonkeyPatch, views) -> None:
    monkeypatch.setattr(native, "available", lambda: False)
    narrowed: list[int] = []
    real = torch.Tensor.narrow

    def spy(self, dim, start, length):
        narrowed.append(length)
        return real(self, dim, start, length)

    w = torch.randn(512, 128, 2, 2, dtype=F64, requires_grad=True)
    ref = views(conv_transpose_weight_to_lr, w, 2)
    monkeypatch.setattr(torch.Tensor, "narrow", spy)
    got = conv_transpose_weight_to_lr(w, 2)
    assert narrowed, "a 512 x 512 transpose should be copied in blocks"
    assert torch.equal(got, ref)


def test_native_kernel_is_used_where_available(monkeypatch: pytest.MonkeyPatch) -> None:
    if not native.available():
        pytest.skip(f"the compiled kernel is unavailable: {native.info()['error']}")
    calls: list[bool] = []
    real = native.gather_tiles

    def spy(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(native, "gather_tiles", spy)
    w = torch.randn(64, 32, 3, 3, requires_grad=True)
    conv_transpose_weight_to_lr(w, 2).sum().backward()
    assert calls == [True, True]  # the forward and its backward


def test_a_memory_format_that_does_not_fit_the_weight_is_refused() -> None:
    with pytest.raises(ValueError, match=r"memory_format.*4-D weight"):
        conv_transpose_weight_to_lr(torch.randn(64, 32, 8), 2, memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="5-D weight"):
        conv_transpose_weight_to_lr(torch.randn(64, 32, 4, 4), 2, memory_format=torch.channels_last_3d)


def test_second_derivatives(kernel: str) -> None:
    w = torch.randn(72, 32, 3, 5, dtype=F64, requires_grad=True)
    assert _reindex.faster_than_views(_reindex.Reindex((3, 5), (2, 3), (1, 2), (2, 3), 1, "dcr"), w.numel())

    def f(w: torch.Tensor) -> torch.Tensor:
        return conv_transpose_weight_to_lr(w, (2, 3), (1, 2), order="dcr") ** 2

    assert torch.autograd.gradgradcheck(f, (w,), fast_mode=True)

    lr = conv_transpose_weight_to_lr(w.detach(), (2, 3), (1, 2)).requires_grad_(True)

    def b(lr: torch.Tensor) -> torch.Tensor:
        return lr_weight_to_conv_transpose(lr, (3, 5), (2, 3), (1, 2), check=False) ** 2

    assert torch.autograd.gradgradcheck(b, (lr,), fast_mode=True)


def test_tap_maps_follow_the_definition() -> None:
    """Along one axis, tap t of a dilated kernel sits at p = d·t: phase p mod s, flipped LR tap K-1-⌊p/s⌋."""
    g = _reindex.Reindex((5,), (2,), (1,), (3,), 1, "crd")
    lr_from_ct, ct_to_lr = _reindex._tap_maps(g)
    # phase 0 holds taps 4, 2, 0; phase 1 holds (none), 3, 1 (the docstring example of conv_transpose_weight_to_lr)
    assert lr_from_ct == (4, 2, 0, -1, 3, 1)
    assert ct_to_lr == (2, 5, 1, 4, 0)


def test_traced_and_compiled_use_the_views() -> None:
    w = torch.randn(64, 32, 3, 3)
    traced = torch.jit.trace(lambda w: conv_transpose_weight_to_lr(w, 2), (w,))
    assert "index_select" not in str(traced.graph)
    assert torch.equal(traced(w), conv_transpose_weight_to_lr(w, 2))
    meta = conv_transpose_weight_to_lr(w.to("meta"), 2)
    assert meta.shape == conv_transpose_weight_to_lr(w, 2).shape
