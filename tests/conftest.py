"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

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
def _deterministic() -> None:
    torch.manual_seed(0)
