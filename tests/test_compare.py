"""Estimator comparison in Python (``pvae.compare``)."""

import os

import pytest
import torch
from helpers import compare_module, fail_estimator

import pvae


def test_compare_table_on_a_tiny_run(binary_digits, tmp_path):
    d = binary_digits
    rows = pvae.compare(lambda: pvae.VAE(64, 3, hidden_dims=(16,)), d.train.x[:300],
                        ["trace", "meanfield", "iwae:3"], test=d.test.x[:50], epochs=2,
                        num_samples=20, snr_estimates=5, out=tmp_path)
    assert [r["elbo"] for r in rows] == ["trace", "meanfield", "iwae:3"]
    for r in rows:
        assert r["test_log_likelihood"] >= r["test_elbo"] - 1
        assert r["seconds_per_step"] > 0 and r["snr_encoder"] > 0
    md = (tmp_path / "comparison.md").read_text()
    assert md.startswith("| elbo | final_train_objective |") and "iwae:3" in md
    assert (tmp_path / "comparison.csv").read_text().count("\n") == 4
    assert (tmp_path / "comparison.png").stat().st_size > 10000


def test_compare_in_python_checks_every_estimator_first(digits, monkeypatch):
    calls = []
    monkeypatch.setattr(compare_module, "fit", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="estimator 'meanfield'.*nothing was trained"):
        compare_module.compare(lambda: pvae.VAE(64, 2, hidden_dims=(8,), guide_flows=1,
                                                likelihood="continuous_bernoulli"),
                               digits.train.x[:20], ["trace", "meanfield"], epochs=1)
    with pytest.raises(ValueError, match="not 0 or 1; binarise"):  # the data too, once
        compare_module.compare(lambda: pvae.VAE(64, 2, hidden_dims=(8,), likelihood="bernoulli"),
                               digits.train.x[:20], ["trace", "iwae:2"], epochs=1)
    assert calls == []


def test_compare_in_python_keeps_rows_when_the_first_estimator_fails(tmp_path, digits,
                                                                     monkeypatch):
    fail_estimator(monkeypatch, "trace", FloatingPointError("the loss became inf"))
    with pytest.raises(compare_module.EstimatorFailed, match="1 of 2 estimators failed") as e:
        compare_module.compare(lambda: pvae.VAE(64, 2, hidden_dims=(8,),
                                                likelihood="continuous_bernoulli"),
                               digits.train.x[:40],
                               ["trace", "iwae:2"], epochs=1, snr_estimates=2, out=tmp_path)
    rows = e.value.rows
    assert rows[0] == {"elbo": "trace", "epochs": 1,
                       "error": "FloatingPointError: the loss became inf"}
    assert rows[1]["elbo"] == "iwae:2" and rows[1]["final_train_objective"] < 0
    assert sorted(os.listdir(tmp_path)) == ["comparison.csv", "comparison.md", "comparison.png"]


def test_compare_scores_the_same_subset_of_test_points_for_every_estimator(binary_digits):
    d = binary_digits
    test = d.test.x[:60]
    rows = pvae.compare(lambda: pvae.VAE(64, 2, hidden_dims=(8,)), d.train.x[:200],
                        ["trace", "meanfield"], test=test, epochs=1, num_samples=10,
                        snr_estimates=2, test_points=25)
    for r in rows:
        assert r["test_points"] == 25 and r["test_log_likelihood_se"] > 0
    # the subset is pvae.evaluate.subset's: scoring exactly those points gives the same figure
    torch.manual_seed(0)
    vae = pvae.VAE(64, 2, hidden_dims=(8,))
    pvae.fit(vae, d.train.x[:200], elbo="trace", epochs=1, seed=0, progress=False)
    full = pvae.evaluate.report(vae, test, num_samples=10, seed=0, points=25)
    assert rows[0]["test_log_likelihood"] == pytest.approx(full["log_likelihood"], abs=1e-4)


def test_compare_refuses_a_bad_number_of_test_points_before_training(digits, monkeypatch):
    calls = []
    monkeypatch.setattr(compare_module, "fit", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="1..50"):
        compare_module.compare(lambda: pvae.VAE(64, 2, hidden_dims=(8,)), digits.train.x[:100],
                               ["trace"], test=digits.test.x[:50], test_points=51)
    with pytest.raises(ValueError, match="needs test data"):
        compare_module.compare(lambda: pvae.VAE(64, 2, hidden_dims=(8,)), digits.train.x[:100],
                               ["trace"], test_points=10)
    assert calls == []
