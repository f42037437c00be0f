"""The optional compiled copy kernel: bitwise equal to ``Tensor.copy_`` on every layout, and a clean fallback."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from subpixel import native

needs_kernel = pytest.mark.skipif(
    not native.available(), reason=f"compiled copy kernel unavailable: {native.info()['error']}"
)

DTYPES = [torch.uint8, torch.bool, torch.float16, torch.float32, torch.float64, torch.complex128]


def _random_views(seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """A source and a destination with the same shape and unrelated strided layouts: permuted, sliced, offset."""
    g = torch.Generator().manual_seed(seed)
    ndim = int(torch.randint(1, 7, (1,), generator=g))
    shape = [int(v) for v in torch.randint(1, 7, (ndim,), generator=g)]

    def layout() -> torch.Tensor:
        perm = torch.randperm(ndim, generator=g).tolist()
        pad = [int(v) for v in torch.randint(0, 2, (ndim,), generator=g)]
        base_shape = [shape[p] + pad[i] for i, p in enumerate(perm)]
        base = torch.zeros(base_shape, dtype=torch.float64).to(dtype)
        view = base[tuple(slice(pad[i], None) for i in range(ndim))]  # an offset start and gaps
        return view.permute(torch.argsort(torch.tensor(perm)).tolist())

    src, dst = layout(), layout()
    values = torch.randn(shape, generator=g, dtype=torch.float64) * 50
    src.copy_(values.to(dtype) if dtype != torch.complex128 else torch.complex(values, -values))
    return src, dst


@needs_kernel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(40))
def test_random_layouts_equal_copy(seed, dtype):
    src, dst = _random_views(seed, dtype)
    expected = dst.clone()
    expected.copy_(src)
    before = dst._base.clone() if dst._base is not None else None
    assert native.strided_copy(dst, src)
    assert torch.equal(dst, expected)
    if before is not None:  # nothing outside the view was written
        outside = torch.ones_like(before, dtype=torch.bool)
        outside.as_strided(dst.shape, dst.stride(), dst.storage_offset()).fill_(False)
        assert torch.equal(dst._base[outside], before[outside])


@needs_kernel
@pytest.mark.parametrize(
    ("shape", "factor", "memory_format"),
    [
        ((2, 64, 17, 19), 2, torch.channels_last),  # table gather (a channels-last pixel)
        ((2, 48, 33, 31), 4, torch.contiguous_format),  # unrolled interleave
        ((1, 27, 40, 40), 3, torch.channels_last),
        ((3, 8, 300, 301), 2, torch.contiguous_format),  # large enough for several threads
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_shuffles_through_every_kernel_mode_and_thread_count(shape, factor, memory_format, threads):
    x = torch.randn(shape).contiguous(memory_format=memory_format)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        c = shape[1] // factor**2
        split = x.view(shape[0], c, factor, factor, *shape[2:]).permute(0, 1, 4, 2, 5, 3)
        out = torch.empty(shape[0], c, shape[2] * factor, shape[3] * factor).contiguous(
            memory_format=memory_format
        )
        assert native.strided_copy(out.view(shape[0], c, shape[2], factor, shape[3], factor), split)
        assert torch.equal(out, torch.nn.functional.pixel_shuffle(x, factor))
        back = torch.empty_like(x)
        split_back = back.view(shape[0], c, factor, factor, *shape[2:]).permute(0, 1, 4, 2, 5, 3)
        assert native.strided_copy(split_back, out.view(shape[0], c, shape[2], factor, shape[3], factor))
        assert torch.equal(back, x)
    finally:
        torch.set_num_threads(before)


def test_declines_what_it_does_not_handle():
    a = torch.randn(3, 4)
    assert not native.strided_copy(torch.empty(3, 4, dtype=torch.float64), a)  # dtypes differ
    assert not native.strided_copy(torch.empty(4, 3), a)  # shapes differ
    assert not native.strided_copy(torch.empty(1, 4).expand(3, 4), a)  # dst elements alias each other
    b = torch.empty(3, 4)
    assert native.strided_copy(b, a[:1].expand(3, 4)) == native.available()  # a broadcast source is fine
    leaf = torch.randn(3, 4, requires_grad=True)
    assert not native.strided_copy(torch.empty(3, 4), leaf)  # autograd has to record this copy
    with torch.no_grad():
        assert native.strided_copy(torch.empty(3, 4), leaf) == native.available()
    with native.enabled(False):
        assert not native.available()
        assert not native.strided_copy(torch.empty(3, 4), a)
        out = native.copy_into(torch.empty(4, 3).t(), a)  # the fallback still copies
        assert torch.equal(out, a)


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


PROBE = (
    "import torch, subpixel; from subpixel import native;"
    "x = torch.randn(2, 18, 5, 7).contiguous(memory_format=torch.channels_last);"
    "y = subpixel.pixel_shuffle(x, 3);"
    "assert torch.equal(y, torch.nn.functional.pixel_shuffle(x, 3));"
    "print(native.info())"
)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"CC": "/nonexistent/cc"}, "no C compiler found"),
        ({"CC": "false"}, "failed"),  # a compiler that fails
        ({"SUBPIXEL_NATIVE": "0"}, "disabled by SUBPIXEL_NATIVE"),
    ],
)
def test_without_a_working_compiler_everything_still_works(tmp_path: Path, env, reason):
    done = _python(PROBE, {**env, "SUBPIXEL_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert "'available': False" in done.stdout
    assert reason in done.stdout
    assert not list(tmp_path.glob("*.so"))  # no half-built library left behind


@needs_kernel
def test_builds_once_into_the_cache_folder(tmp_path: Path):
    first = _python(PROBE, {"SUBPIXEL_CACHE_DIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    built = list(tmp_path.glob("strided_copy-*.so"))
    assert len(built) == 1 and "'available': True" in first.stdout
    mtime = built[0].stat().st_mtime_ns
    second = _python(PROBE, {"SUBPIXEL_CACHE_DIR": str(tmp_path)})
    assert second.returncode == 0, second.stderr
    assert built[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert not list(tmp_path.glob(".strided_copy-*"))  # no temporary files left


@needs_kernel
@pytest.mark.parametrize("order", ["crd", "dcr"])
@pytest.mark.parametrize("length", [37, 256])  # 8x8 blocks plus a tail, and blocks only
def test_factor_8_blocked_paths_equal_loop_reference(order, length):
    from subpixel import pixel_shuffle, pixel_unshuffle

    x = torch.randn(3, 16, length, dtype=torch.float64)
    y = pixel_shuffle(x, 8, order=order)
    channels = x.view(3, 2, 8, length) if order == "crd" else x.view(3, 8, 2, length).transpose(1, 2)
    expected = channels.permute(0, 1, 3, 2).reshape(
        3, 2, 8 * length
    )  # out[c, 8·l + φ] = in[channel(c, φ), l]
    assert torch.equal(y, expected)
    assert torch.equal(pixel_unshuffle(y, 8, order=order), x)


def test_lazy_conjugation_and_negation_are_honoured():
    from subpixel import pixel_shuffle

    x = torch.randn(2, 8, 3, 5, dtype=torch.complex128)
    for view in (x.conj(), torch._neg_view(x)):
        assert view.is_conj() or view.is_neg()
        assert torch.equal(pixel_shuffle(view, 2), pixel_shuffle(view.resolve_conj().resolve_neg(), 2))
        assert not native.strided_copy(torch.empty_like(x), view)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir() or os.name != "posix", reason="needs /proc and POSIX signals")
def test_a_hanging_compiler_is_bounded_and_reaped(tmp_path: Path):
    """A compiler that hangs costs the build timeout, not 30 s, and leaves no process."""
    pid_file = tmp_path / "child.pid"
    fake_cc = tmp_path / "cc"
    fake_cc.write_text(f"#!/bin/sh\nsleep 120 &\necho $! > {pid_file}\nwait\n")
    fake_cc.chmod(0o755)
    cache = tmp_path / "cache"
    env = {"CC": str(fake_cc), "SUBPIXEL_CACHE_DIR": str(cache), "SUBPIXEL_NATIVE_TIMEOUT": "1"}
    code = "import time; from subpixel import native; t = time.monotonic(); print(native.info()); print(time.monotonic() - t)"
    done = _python(code, env)
    assert done.returncode == 0, done.stderr
    info, elapsed = done.stdout.strip().splitlines()[-2:]
    assert "'available': False" in info and "TimeoutExpired" in info
    assert float(elapsed) < 10
    child = int(pid_file.read_text())
    for _ in range(50):  # the killed child is reaped by init shortly after
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), f"the compiler's child process {child} was left running"
    assert not list(cache.glob("*.so")) and not list(cache.glob(".strided_copy-*"))


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """``torch.set_num_threads(count)`` inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _prelu_reference(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PReLU in float64 from its definition, rounded once to x's dtype (as a product of two x-dtype numbers)."""
    w = weight.double().view(1, -1, *([1] * (x.dim() - 2)))
    xd = x.double()
    return torch.where(xd < 0, xd * w, xd).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "shape,memory_format",
    [
        ((2, 27, 13, 17), torch.channels_last),
        ((2, 27, 13, 17), torch.contiguous_format),
        ((1, 5, 3, 4, 6), torch.channels_last_3d),
        ((3, 7, 29), torch.contiguous_format),
        ((1, 40, 1, 1), torch.channels_last),
    ],
)
@pytest.mark.parametrize("shared_slope", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_prelu_in_place_equals_torch(dtype, shape, memory_format, shared_slope, threads):
    torch.manual_seed(sum(shape))
    x = (torch.randn(shape, dtype=torch.float64) * 4).to(dtype).contiguous(memory_format=memory_format)
    for index, special in zip(
        [(0,) * x.dim(), tuple(n - 1 for n in shape), (0, shape[1] - 1, *(n // 2 for n in shape[2:]))],
        [float("-inf"), float("inf"), 0.0],
        strict=True,
    ):
        x[index] = special
    weight = torch.randn(1 if shared_slope else shape[1], dtype=torch.float64).to(dtype)
    expected = _prelu_reference(x, weight)
    y = x.clone(memory_format=torch.preserve_format)
    with _threads(threads):
        done = native.prelu_(y, weight)
    if not native.available():
        assert not done
        pytest.skip(f"the compiled kernel is unavailable here: {native.info()['error']}")
    assert done
    assert y.stride() == x.stride()
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    torch.testing.assert_close(y, torch.nn.functional.prelu(x, weight), rtol=0, atol=0)


def test_prelu_keeps_nan_and_declines_what_it_does_not_handle():
    x = torch.randn(1, 4, 5, 6)
    x[0, 1, 2, 3] = float("nan")
    weight = torch.rand(4)
    y = x.clone()
    if native.prelu_(y, weight):
        assert torch.isnan(y[0, 1, 2, 3])
    declined = [
        (torch.randn(1, 4, 5, 6, dtype=torch.float64), weight.double()),  # dtype
        (x, weight.bfloat16()),  # weight dtype differs
        (x[:, :, ::2], weight),  # not dense
        (x, torch.rand(3)),  # slope count
        (torch.randn(1, 4, 5, 6, requires_grad=True), weight),  # autograd records it
    ]
    for tensor, slopes in declined:
        before = tensor.detach().clone()
        assert not native.prelu_(tensor, slopes)
        torch.testing.assert_close(tensor.detach(), before, rtol=0, atol=0, equal_nan=True)
    with native.enabled(False):
        assert not native.prelu_(x.clone(), weight)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("width", [41, 601])  # within one chunk of a row, and across three
def test_quantize_into_equals_imageio_quantize(bits, threads, width):
    """The one-pass quantization gives imageio.quantize's integers exactly, into an (h, w, C) array seen as
    (C, h, w), from a (C, h, w) source with any strides; values at every rounding boundary included."""
    import numpy as np

    from subpixel.imageio import quantize

    top = 255 if bits == 8 else 65535
    torch.manual_seed(bits + threads)
    src = torch.rand(3, 37, width) * 1.2 - 0.1
    boundaries = (torch.arange(0, top + 1, dtype=torch.float64) + 0.5) / top  # k + 0.5 exactly, then rounded
    flat = src.view(-1)
    flat[: min(flat.numel(), boundaries.numel())] = boundaries[: flat.numel()].float()
    src[0, 0, :4] = torch.tensor([float("nan"), float("inf"), float("-inf"), 1.0])
    view = src.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels-last strides
    expected = quantize(src.permute(1, 2, 0).numpy(), bits)
    out = np.zeros((37, width, 3), np.uint8 if bits == 8 else np.uint16)
    with _threads(threads):
        done = native.quantize_into(torch.from_numpy(out).permute(2, 0, 1), view)
    if not native.available():
        assert not done
        pytest.skip(f"the compiled kernel is unavailable here: {native.info()['error']}")
    assert done
    np.testing.assert_array_equal(out, expected)
    assert not native.quantize_into(torch.from_numpy(out).permute(2, 0, 1), view.double())  # declined dtype


def _ycbcr_to_rgb_affine() -> tuple[list[list[float]], list[float]]:
    """The protocol's YCbCr -> RGB conversion as ``(matrix, offset)``, read off the function (float64)."""
    import numpy as np

    from subpixel.sr.protocol import ycbcr_to_rgb

    offset = np.asarray(ycbcr_to_rgb(np.zeros((1, 3))), dtype=np.float64)[0]
    columns = np.asarray(ycbcr_to_rgb(np.eye(3)), dtype=np.float64) - offset
    return columns.T.tolist(), offset.tolist()


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("width", [7, 300])
def test_colour_quantize_into_equals_a_float64_loop(bits, threads, width):
    """YCbCr -> RGB and the rounding in one pass equal the same affine evaluated in float64 by numpy (in the
    kernel's order) and quantized by imageio.quantize: every integer, NaN and infinities included, into an
    (h, w, 3) array seen as (3, h, w) from a channels-last source."""
    import numpy as np

    from subpixel.imageio import quantize

    matrix, offset = _ycbcr_to_rgb_affine()
    g = torch.Generator().manual_seed(bits * 10 + threads + width)
    src = torch.rand(3, 19, width, generator=g) * torch.tensor([260.0, 250.0, 250.0])[:, None, None] - 2.0
    src[:, 0, :5] = torch.tensor(
        [[float("nan"), float("inf"), float("-inf"), 16.0, 235.0], [128.0] * 5, [128.0, 128.0, 128.0, 16.0, 240.0]]
    )
    view = src.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    s = src.double().numpy()
    expected_planes = [
        ((matrix[c][0] * s[0] + matrix[c][1] * s[1]) + matrix[c][2] * s[2]) + offset[c] for c in range(3)
    ]
    with np.errstate(invalid="ignore"):
        expected = quantize(np.stack(expected_planes, axis=-1), bits)
    out = np.zeros((19, width, 3), np.uint8 if bits == 8 else np.uint16)
    with _threads(threads):
        done = native.colour_quantize_into(torch.from_numpy(out).permute(2, 0, 1), view, matrix, offset)
    if not native.available():
        assert not done
        pytest.skip(f"the compiled kernel is unavailable here: {native.info()['error']}")
    assert done
    np.testing.assert_array_equal(out, expected)
    declined = [
        (torch.from_numpy(out).permute(2, 0, 1), view.double()),  # dtype
        (torch.from_numpy(out[..., :2]).permute(2, 0, 1), view[:2]),  # not three planes
        (torch.from_numpy(out).permute(2, 0, 1)[:, :3], view),  # shapes differ
    ]
    for dst, source in declined:
        assert not native.colour_quantize_into(dst, source, matrix, offset)
    with pytest.raises(ValueError, match="3×3"):
        native.colour_quantize_into(torch.from_numpy(out).permute(2, 0, 1), view, matrix[:2], offset)


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (9, 300)])
@pytest.mark.parametrize("threads", [1, 2])
def test_bicubic_upscale_into_equals_matlab_imresize(scale, size, threads):
    """The separable kernel equals MATLAB's imresize (the protocol's float64 implementation) to float32
    rounding, for planes down to one pixel (every tap clamped to the edge), from a strided source."""
    from subpixel.bicubic import interpolation_taps
    from subpixel.sr.protocol import imresize

    h, w = size
    g = torch.Generator().manual_seed(scale * 100 + h + threads)
    base = torch.rand(w, 3, h, generator=g)
    src = base.permute(1, 2, 0)  # (3, h, w), x-stride 3·h: not contiguous
    out = torch.full((3, h * scale, w * scale), float("nan"))
    with _threads(threads):
        done = native.bicubic_upscale_into(out, src, interpolation_taps(scale, "bicubic"))
    if not native.available():
        assert not done
        pytest.skip(f"the compiled kernel is unavailable here: {native.info()['error']}")
    assert done
    expected = imresize(src.double()[None], scale)[0]
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-6)
    taps = interpolation_taps(scale, "bicubic")
    assert not native.bicubic_upscale_into(out.double(), src.double(), taps)  # dtype
    assert not native.bicubic_upscale_into(out[:, 1:], src, taps)  # shape
    assert not native.bicubic_upscale_into(out, src, taps[:, :4])  # not 5 taps


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("kernel", [1, 3, 5])
@pytest.mark.parametrize(("channels", "width", "height"), [(27, 37, 7), (8, 5, 35), (3, 16, 16), (2, 33, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_lr_conv_shuffle_equals_prelu_conv_shuffle_skip_in_float64(scale, kernel, channels, width, height, threads):
    """PReLU -> k×k conv to r² channels (zero padding) -> pixel_shuffle + bias + nearest skip in one kernel equals
    the same composed in float64 from torch ops, on the bf16 operands (PReLU rounded to bf16 as torch rounds
    it): only float32 accumulation differs. Odd and even channel counts, rows shorter and longer than the
    kernel's 16-pixel blocks, images of one, two and three 16-row stripes (the last one partial), a batch of two."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(scale * 1000 + kernel * 100 + channels + threads)
    n, h = 2, height
    x = torch.randn(n, channels, h, width, generator=g).to(torch.bfloat16)
    x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(scale * scale, channels, kernel, kernel, generator=g) * 0.2
    bias, slope = torch.randn(scale * scale, generator=g), torch.rand(channels, generator=g) * 0.5
    skip = torch.rand(n, 1, h, width, generator=g)
    layer = native.LRConvShuffle(weight, bias, slope, scale)
    with _threads(threads):
        out = layer(x, skip)
        no_skip = layer(x, None)
    if not native.available() or not native._state["lr_conv_available"]:
        assert out is None
        pytest.skip(f"the compiled kernel is unavailable here: {native.info()['error'] or 'no AVX-512 BF16'}")
    activated = F.prelu(x, slope.to(torch.bfloat16)).double()  # torch's bf16 PReLU: the product rounded once
    conv = F.conv2d(activated, weight.to(torch.bfloat16).double(), bias.double(), padding=kernel // 2)
    expected = F.pixel_shuffle(conv, scale)
    torch.testing.assert_close(no_skip.double(), expected, rtol=0, atol=2e-5)
    expected = expected + F.interpolate(skip.double(), scale_factor=scale, mode="nearest")
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-5)


def test_lr_conv_shuffle_declines_what_it_does_not_handle():
    """Anything but a channels-last bf16 CPU input of the layer's channels, r in 2..4 and an odd kernel returns
    None (the caller composes torch ops)."""
    x = torch.randn(1, 6, 4, 5).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    layer = native.LRConvShuffle(torch.randn(4, 6, 3, 3), torch.randn(4), torch.rand(6), 2)
    skip = torch.rand(1, 1, 4, 5)
    assert layer(x.float(), skip) is None  # dtype
    assert layer(x.contiguous(), skip) is None  # not channels-last
    assert layer(x[:, :5].contiguous(memory_format=torch.channels_last), skip) is None  # channels
    assert layer(x, skip[..., :4]) is None  # skip shape
    assert layer(x, skip.double()) is None  # skip dtype
    assert native.LRConvShuffle(torch.randn(25, 6, 3, 3), torch.randn(25), torch.rand(6), 5)(x, None) is None
    assert native.LRConvShuffle(torch.randn(1, 6, 3, 3), torch.randn(1), torch.rand(6), 1)(x, None) is None
    assert native.LRConvShuffle(torch.randn(4, 6, 2, 2), torch.randn(4), torch.rand(6), 2)(x, None) is None
    one = torch.randn(1, 1, 4, 5).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    assert native.LRConvShuffle(torch.randn(4, 1, 3, 3), torch.randn(4), torch.rand(1), 2)(one, None) is None
    with native.enabled(False):
        assert layer(x, skip) is None
