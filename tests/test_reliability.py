"""Crash safety, distributed training, and bad input over whole spaces of inputs."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pvae
from pvae.checkpoint import CheckpointError
from pvae.config import ConfigError, from_dict

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _train_cmd(out, *extra):
    return [sys.executable, "-m", "pvae", "train", "--out", str(out), "--quiet",
            "--set", "train.epochs=150", "--set", "train.checkpoint_every=1",
            "--set", "evaluate.num_samples=5", "--set", "train.batch_size=256", *extra]


def _final_state(out):
    rec = torch.load(out / "checkpoint.pt", weights_only=True)
    return rec["state_dict"], [r["train_elbo"] for r in rec["training"]["history"]]


def test_sigkill_at_random_moments_then_resume_gives_the_same_numbers(tmp_path):
    ref = tmp_path / "uninterrupted"
    r = subprocess.run(_train_cmd(ref), env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    for attempt in range(20):
        cmd = _train_cmd(out, *(["--resume"] if out.is_dir() else []))
        p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < 4:
            time.sleep(rng.uniform(3.0, 7.0))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
            if (out / "checkpoint.pt").exists():  # never unreadable, whenever the kill came
                pvae.load(out / "checkpoint.pt")
            continue
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
        break
    assert kills >= 3
    ref_state, ref_curve = _final_state(ref)
    state, curve = _final_state(out)
    assert curve == ref_curve  # every epoch's number, bit for bit
    for k in ref_state:
        assert torch.equal(ref_state[k], state[k]), k
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def _one_and_two_processes(tmp_path, common: list, batch_size: int) -> tuple[dict, dict]:
    """metrics.json of ``pvae train`` on one process at ``batch_size`` and on two at half."""
    out = []
    for nproc, batch in ((1, batch_size), (2, batch_size // 2)):
        folder = tmp_path / f"nproc{nproc}"
        r = subprocess.run([sys.executable, "-m", "pvae", "train", "--nproc", str(nproc),
                            "--out", str(folder), "--set", f"train.batch_size={batch}", *common],
                           env=ENV, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        out.append(json.loads((folder / "metrics.json").read_text()))
    assert out[0]["processes"] == 1 and out[1]["processes"] == 2
    return out[0], out[1]


def test_two_processes_match_one_with_the_same_effective_batch(tmp_path):
    common = ["--set", "train.epochs=20", "--set", "evaluate.num_samples=20", "--quiet"]
    m1, m2 = _one_and_two_processes(tmp_path, common, 64)
    two = tmp_path / "nproc2"
    # the same number of optimiser steps per epoch (each rank sees half the data)
    assert len(m2["history"]) == len(m1["history"]) == 20
    # same objective and budget: the curves agree within the noise of different draws
    for a, b in zip(m1["history"][5:], m2["history"][5:]):
        assert abs(a["train_elbo"] - b["train_elbo"]) < 0.05 * abs(a["train_elbo"]) + 2
    assert abs(m1["test"]["elbo"] - m2["test"]["elbo"]) < 3.0
    pvae.load(two / "checkpoint.pt")  # rank 0 wrote a complete checkpoint


def test_a_sequence_model_trains_on_two_processes(tmp_path):
    """DistributedDataParallel on the sequence VAE (packed recurrent encoder, masked
    site x): two processes of half the batch follow one process's curve."""
    pytest.importorskip("aeon")
    common = ["--config", str(ROOT / "configs" / "gunpoint.yaml"), "--set", "train.epochs=4",
              "--set", "model.hidden_dim=8", "--set", "evaluate.num_samples=4", "--quiet"]
    m1, m2 = _one_and_two_processes(tmp_path, common, 16)
    two = tmp_path / "nproc2"
    assert len(m2["history"]) == len(m1["history"]) == 4
    for a, b in zip(m1["history"], m2["history"]):
        assert abs(a["train_elbo"] - b["train_elbo"]) < 0.05 * abs(a["train_elbo"]) + 2
    assert isinstance(pvae.load(two / "checkpoint.pt"), pvae.SequenceVAE)


def test_a_run_writes_only_inside_its_folder(tmp_path):
    from pvae.cli import main

    work = tmp_path / "work"
    work.mkdir()
    data = tmp_path / "data.npy"
    np.save(data, np.random.default_rng(0).poisson(2.0, (200, 5)).astype(np.float32))
    before = set(tmp_path.rglob("*"))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        code = main(["train", "--out", "run", "--quiet", "--set", "data.name=array",
                     "--set", f"data.path={data}", "--set", "model.likelihood=poisson",
                     "--set", "train.epochs=2", "--set", "evaluate.num_samples=3"])
    finally:
        os.chdir(cwd)
    assert code == 0
    new = set(tmp_path.rglob("*")) - before
    assert new and all(work / "run" in p.parents or p == work / "run" for p in new)


# ---- property-based: whole spaces of bad input ------------------------------------------------
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(FLOATS, min_size=1, max_size=12))
def test_bernoulli_accepts_exactly_binary_finite_data(values):
    x = torch.tensor(values, dtype=torch.float32).reshape(1, -1)
    lik = pvae.likelihoods.get("bernoulli").setup((x.shape[1],))
    ok = all(v in (0.0, 1.0) for v in values)
    if ok:
        lik.check_support(x)
    else:
        with pytest.raises(ValueError, match="bernoulli|NaN or infinite"):
            lik.check_support(x)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["poisson", "negative_binomial", "zero_inflated_negative_binomial"]),
       st.lists(FLOATS, min_size=1, max_size=12))
def test_count_likelihoods_accept_exactly_non_negative_whole_numbers(name, values):
    x = torch.tensor(values, dtype=torch.float32).reshape(1, -1)
    lik = pvae.likelihoods.get(name).setup((x.shape[1],))
    finite = torch.isfinite(x).all()
    ok = bool(finite and (x >= 0).all() and (x == x.round()).all())
    if ok:
        lik.check_support(x)
    else:
        with pytest.raises(ValueError):
            lik.check_support(x)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(["data", "model", "train", "evaluate", "extra"]),
                       st.dictionaries(st.text(min_size=1, max_size=10),
                                       st.one_of(st.integers(-5, 5), st.text(max_size=5),
                                                 st.floats(-3, 3), st.booleans(), st.none()),
                                       max_size=3),
                       max_size=3))
def test_configs_are_either_valid_or_a_config_error(values):
    try:
        cfg = from_dict(values)
    except ConfigError as e:
        assert "config" in str(e)
    else:
        assert from_dict(cfg.to_dict()) == cfg


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "m.pt"
    pvae.VAE(16, 2, hidden_dims=(8,)).save(path)
    return path.read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_truncation_or_corruption_of_a_checkpoint_is_refused_cleanly(saved_checkpoint, tmp_path, data):
    blob = bytearray(saved_checkpoint)
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 20))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] = data.draw(st.integers(0, 255))
    path = tmp_path / "c.pt"
    path.write_bytes(bytes(blob))
    try:
        model = pvae.load(path)
    except CheckpointError:
        return
    # a corruption that left a loadable file must still give a well-formed model
    assert isinstance(model, pvae.VAE)
