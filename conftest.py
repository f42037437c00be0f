"""Root pytest configuration: names available to every doctest."""

import numpy
import pytest
import torch


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace["torch"] = torch
    doctest_namespace["np"] = numpy
    torch.manual_seed(0)
