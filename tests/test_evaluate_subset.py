"""The log-likelihood on a reproducible subset of the test points, with standard errors;
the whole set on request; the progress bar; bad subset sizes refused before any work."""

import json
import sys

import pytest
import torch

import pvae
from pvae.cli import main
from pvae.config import DEFAULT_TEST_POINTS, ConfigError, load_config, points_to_score
from pvae.evaluate import SUBSET_SEED, report, standard_error, subset

QUICK = ["--set", "train.epochs=1", "--set", "evaluate.num_samples=3"]


@pytest.fixture
def fitted(binary_digits):
    torch.manual_seed(0)
    vae = pvae.VAE(64, 4, hidden_dims=(32,))
    pvae.fit(vae, binary_digits.train.x[:256], epochs=1, seed=0, progress=False)
    return vae, binary_digits.test.x[:120]


def test_subset_is_reproducible_sorted_and_all_when_asked_for_all():
    a, b = subset(1000, 50), subset(1000, 50)
    assert torch.equal(a, b) and len(a.unique()) == 50 and torch.equal(a, a.sort().values)
    assert not torch.equal(a, subset(1000, 50, seed=SUBSET_SEED + 1))
    assert torch.equal(subset(7, 7), torch.arange(7))
    for bad in (0, 8, 2.5, True, -1):
        with pytest.raises(ValueError, match=r"whole number of points in 1\.\.7"):
            subset(7, bad)


def test_report_scores_the_subset_with_standard_errors(fitted):
    vae, x = fitted
    r = report(vae, x, num_samples=4, seed=1, points=30)
    assert r["num_points"] == 120 and r["log_likelihood_points"] == 30
    assert r["subset_seed"] == SUBSET_SEED
    # the same subset and figures again
    assert report(vae, x, num_samples=4, seed=1, points=30) == r
    # the standard errors are those of the per-point values the means are taken over
    torch.manual_seed(1)
    elbos = pvae.evaluate.elbo(vae, x, num_samples=1)
    lls = pvae.evaluate.log_likelihood(vae, x[subset(120, 30)], num_samples=4)
    assert r["elbo"] == pytest.approx(elbos.mean().item(), abs=1e-5)
    assert r["elbo_se"] == pytest.approx(elbos.std().item() / 120 ** 0.5, rel=1e-4)
    assert r["log_likelihood"] == pytest.approx(lls.mean().item(), abs=1e-5)
    assert r["log_likelihood_se"] == pytest.approx(lls.std().item() / 30 ** 0.5, rel=1e-4)
    assert standard_error(torch.ones(1)) is None
    # every point: the same as asking for all of them
    full = report(vae, x, num_samples=4, seed=1)
    assert full["log_likelihood_points"] == 120 == full["num_points"]
    assert report(vae, x, num_samples=4, seed=1, points=120) == full


@pytest.mark.parametrize("bad", [0, 121, 2.5])
def test_bad_subset_sizes_are_refused_before_any_estimate(fitted, monkeypatch, bad):
    vae, x = fitted

    def no_work(*args, **kwargs):
        raise AssertionError("an estimate ran")

    monkeypatch.setattr(pvae.evaluate, "elbo", no_work)
    monkeypatch.setattr(pvae.evaluate, "log_likelihood", no_work)
    with pytest.raises(ValueError, match="whole number of points in 1..120"):
        report(vae, x, num_samples=4, points=bad)


def test_progress_bar_shows_with_time_left_unless_quiet(fitted, monkeypatch, capsys):
    vae, x = fitted
    pvae.evaluate.log_likelihood(vae, x, num_samples=3, progress=True)
    assert "log-likelihood, K = 3" in capsys.readouterr().err
    pvae.evaluate.log_likelihood(vae, x, num_samples=3, progress=False)
    pvae.evaluate.log_likelihood(vae, x, num_samples=3, progress=None)  # stderr not a terminal
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    report(vae, x, num_samples=3, progress=None)
    assert "<" in capsys.readouterr().err  # tqdm's elapsed<left
    report(vae, x, num_samples=3, progress=False)
    assert capsys.readouterr().err == ""


def test_config_key_and_default():
    assert load_config(None).evaluate.test_points is None
    assert load_config(None, ["evaluate.test_points=all"]).evaluate.test_points == "all"
    assert load_config(None, ["evaluate.test_points=500"]).evaluate.test_points == 500
    for bad in ("0", "-3", "2.5", "abc", "true"):
        with pytest.raises(ConfigError, match="'evaluate.test_points' must be a positive whole"):
            load_config(None, [f"evaluate.test_points={bad}"])
    assert points_to_score(None, 10000) == DEFAULT_TEST_POINTS
    assert points_to_score(None, 270) == 270 == points_to_score("all", 270)
    with pytest.raises(ConfigError, match="is 300, but the split has only 270 points"):
        points_to_score(300, 270)


def test_train_records_the_subset_and_refuses_bad_sizes_before_writing(tmp_path, capsys,
                                                                        monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["train", "--out", str(out), "--quiet", "--test-points", "50", *QUICK]) == 0
    cap = capsys.readouterr()
    assert "log-likelihood, K" not in cap.err  # quiet: no bar
    assert "(K = 3 importance samples; 50 of the 270 points)" in cap.out
    assert "--test-points all scores all 270" in cap.out
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert metrics["evaluate_seconds"] > 0
    assert test["log_likelihood_points"] == 50 and test["num_points"] == 270
    assert test["log_likelihood_se"] > 0 and test["elbo_se"] > 0
    assert main(["evaluate", "--run", str(out), "--num-samples", "3", "--points", "all"]) == 0
    assert "log-likelihood, K = 3" in capsys.readouterr().err  # a terminal: the bar
    result = json.loads((out / "evaluation-test-k3-n270.json").read_text())
    assert result["log_likelihood_points"] == 270
    for bad, why in (("0", "must be a positive whole number"),
                     ("271", "is 271, but the split has only 270 points")):
        folder = tmp_path / f"bad{bad}"
        assert main(["train", "--out", str(folder), "--quiet", "--test-points", bad,
                     *QUICK]) == 2
        assert why in capsys.readouterr().err and not folder.exists()
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path / "x"), "--test-points", "2.5"])
    assert "whole number of points or 'all'" in capsys.readouterr().err
