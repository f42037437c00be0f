"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

#: ``../shared/data`` beside the checkout (present on developer machines and in CI, absent elsewhere).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_sr_data() -> Path:
    """The folder of standard SR image sets (``../shared/data/sr``); skips the test when it is absent."""
    path = SHARED_DATA / "sr"
    if not path.is_dir():
        pytest.skip(f"standard SR image sets not found at {path} (the project's ../shared/data is absent)")
    return path


@pytest.fixture(autouse=True)
def _deterministic() -> Iterator[None]:
    """Seed every test, and give the next test the thread count this one started with (code under test, a CLI's
    ``--threads`` or a training config, may set it)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run the test on one intra-op thread and restore the thread count afterwards (calling
    ``torch.set_num_threads`` at import time would change it for every test of the run)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write_synthetic_images(folder: Path, n: int, size: tuple[int, int], seed: int) -> None:
    from subpixel.imageio import write_image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        yy, xx = np.mgrid[0 : size[0], 0 : size[1]] / 7.0
        img = 0.5 + 0.25 * np.sin(xx + i)[..., None] * np.cos(yy)[..., None] + 0.05 * rng.random((*size, 3))
        write_image(folder / f"img{i}.png", np.clip(img, 0, 1))


@pytest.fixture(scope="session")
def write_synthetic_images() -> Callable[[Path, int, tuple[int, int], int], None]:
    """``write(folder, n, (height, width), seed)``: ``n`` smooth RGB PNGs with a little noise (a tiny stand-in
    for a training or test set)."""
    return _write_synthetic_images


@pytest.fixture(params=["native", "fallback"])
def copy_kernel(request: pytest.FixtureRequest):
    """Run a test with the compiled copy kernel (:mod:`subpixel.native`) and with its ``copy_`` fallback.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("copy_kernel")``. The native run skips, with the
    reason, where the kernel cannot be built (no C compiler).
    """
    from subpixel import native

    if request.param == "native" and not native.available():
        pytest.skip(f"compiled copy kernel unavailable: {native.info()['error']}")
    with native.enabled(request.param == "native"):
        yield request.param


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ×2 ESPCN's weights file (seed 0), for tests of the commands that read weights."""
    from subpixel.sr.models import ESPCN, save

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny_x2.safetensors"
    save(ESPCN(2, widths=(4,), kernel_sizes=(3, 3)), path)
    return path
