"""Shared fixtures: a clean Pyro state per test, small data, the shared MNIST files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


@pytest.fixture
def x(binary_digits):
    return binary_digits.train.x[:400]


@pytest.fixture
def xy(binary_digits):
    return binary_digits.train.x[:500], binary_digits.train.y[:500]


@pytest.fixture(scope="module")
def vae2(binary_digits):
    import pvae

    torch.manual_seed(0)
    m = pvae.VAE(64, 2, hidden_dims=(32,))
    pvae.fit(m, binary_digits.train.x, epochs=5, seed=0)
    return m


@pytest.fixture
def table(tmp_path):
    """A small table (40 rows, 5 features) with class labels, and its config options."""
    from helpers import TABLE

    rng = np.random.default_rng(0)
    path = tmp_path / "table.npz"
    np.savez(path, x=rng.normal(size=(40, 5)).astype("float32"), y=rng.integers(0, 3, 40))
    return ["--set", "data.name=array", "--set", f"data.path={path}", *TABLE]


@pytest.fixture
def run(tmp_path, table):
    from pvae.cli import main

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *table]) == 0
    return out
