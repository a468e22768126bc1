"""Shared fixtures: a clean Pyro state per test, small data, the shared MNIST files."""

from __future__ import annotations

from pathlib import Path

import pyro
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The tests' networks are tiny: one intra-op thread is as fast, and immune to the 10x
# slow-down that two threads showed here when another process held a core.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def clean_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def digits():
    import pvae

    return pvae.data.load("digits", flatten=True)


@pytest.fixture(scope="session")
def binary_digits():
    import pvae

    return pvae.data.load("digits", flatten=True, binarize="static")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"shared MNIST files not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_report_header(config):
    return f"torch {torch.__version__}, pyro {pyro.__version__}, shared data: {SHARED_DATA.is_dir()}"
