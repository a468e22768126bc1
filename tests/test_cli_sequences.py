"""``pvae train`` / ``evaluate`` / ``plot`` / ``sample`` end to end on sequence data: words,
a UCR series and the UCR anomaly series (small budgets; skipped without pvae[sequences])."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_png

from pvae.cli import main

pytest.importorskip("aeon")
pytest.importorskip("wordfreq")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["--quiet", "--set", "train.epochs=1", "--set", "evaluate.num_samples=3",
         "--set", "model.hidden_dim=8", "--set", "model.z_dim=2"]


def test_words_train_evaluate_sample_plot(tmp_path, capsys):
    run = tmp_path / "words"
    assert main(["train", "--config", str(CONFIGS / "words.yaml"), "--out", str(run), *SMALL,
                 "--set", "data.max_train=200", "--set", "model.embedding_dim=4",
                 "--set", "data.test_fraction=0.02", "--set", "data.val_fraction=0.02"]) == 0
    out = capsys.readouterr().out
    assert "nats per sequence" in out and "bits per step" in out
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["num_points"] > 300 and test["bits_per_step"] > 0
    assert test["log_likelihood"] >= test["elbo"] - 1.0
    for name in ("curves", "reconstructions", "samples"):
        assert_png(run / f"{name}.png", 150, 100)
    assert main(["sample", "--run", str(run), "-n", "5"]) == 0
    drawn = np.load(run / "sample-n5-seed0.npz")
    assert drawn["x"].shape[0] == 5 and len(drawn["text"]) == 5
    assert all(len(w) >= 1 for w in drawn["text"]) and (drawn["lengths"] >= 1).all()
    assert main(["plot", "--run", str(run)]) == 0  # every kind that applies to text
    assert_png(run / "latent.png")
    assert_png(run / "interpolation.png", 100, 100)
    assert not any((run / f"{k}.png").exists() for k in ("traversal", "manifold", "anomaly"))
    assert main(["plot", "--run", str(run), "--kind", "traversal"]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(run), "--num-samples", "2", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "nats per sequence" in out and "bits per step" in out
    (path,) = run.glob("evaluation-val-k2-n*.json")
    assert json.loads(path.read_text())["num_samples"] == 2


def test_gunpoint_series_train_and_class_scatter(tmp_path):
    run = tmp_path / "gp"
    assert main(["train", "--config", str(CONFIGS / "gunpoint.yaml"), "--out", str(run),
                 *SMALL]) == 0
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test["num_points"] == 150 and np.isfinite(test["log_likelihood"])
    assert_png(run / "reconstructions.png", 300, 150)
    assert main(["plot", "--run", str(run), "--kind", "latent"]) == 0
    assert_png(run / "latent.png")
    assert main(["sample", "--run", str(run), "-n", "3"]) == 0
    drawn = np.load(run / "sample-n3-seed0.npz")
    assert drawn["x"].shape == (3, 150, 1) and (drawn["lengths"] == 150).all()


def test_anomaly_series_reports_the_criterion_and_draws_the_scores(tmp_path, capsys):
    run = tmp_path / "ucr"
    assert main(["train", "--config", str(CONFIGS / "ucr_anomaly.yaml"), "--out", str(run),
                 *SMALL, "--set", "data.window=60", "--set", "data.stride=10",
                 "--set", "data.test_stride=60", "--set", "evaluate.anomaly_samples=2"]) == 0
    out = capsys.readouterr().out
    assert "anomaly: highest-scoring step" in out and "UCR criterion" in out
    anomaly = json.loads((run / "metrics.json").read_text())["anomaly"]
    assert anomaly["region"] == [4187, 4199] and 0 <= anomaly["top_step"] < 7501
    lo, hi = anomaly["region"]
    assert anomaly["ucr_hit"] == (lo - 100 <= anomaly["top_step"] <= hi - 1 + 100)
    assert 0 <= anomaly["roc_auc"] <= 1
    assert_png(run / "anomaly.png", 600, 250)
    assert main(["plot", "--run", str(run), "--kind", "anomaly"]) == 2  # kept without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    drawn = (run / "anomaly.png").read_bytes()
    assert main(["plot", "--run", str(run), "--kind", "anomaly", "--overwrite"]) == 0
    assert_png(run / "anomaly.png", 600, 250)
    # the scores pvae train drew (its samples and seed), not a fresh draw
    assert (run / "anomaly.png").read_bytes() == drawn


@pytest.mark.parametrize("sets,message", [
    (["data.name=words"], "data.name words is sequence data: set model.type: seqvae"),
    (["model.type=seqvae"], "model.type seqvae takes sequence data"),
    (["data.name=words", "model.type=seqvae", "model.likelihood=gaussian"],
     "'model.likelihood' must be categorical for text"),
    (["data.name=gunpoint", "model.type=seqvae", "model.likelihood=gaussian", "data.window=50"],
     "'data.window' is for an anomaly series"),
    (["data.name=ucr_anomaly_135", "model.type=seqvae", "model.likelihood=gaussian",
      "data.window=1300"], "'data.window' (1300) is longer than the training series (1200 steps)"),
])
def test_model_and_data_that_do_not_fit_are_refused_before_any_file(tmp_path, capsys, sets,
                                                                    message):
    args = [a for s in sets for a in ("--set", s)]
    assert main(["train", "--out", str(tmp_path / "r"), "--quiet", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
