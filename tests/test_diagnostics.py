"""Diagnostics from traces, gradient statistics, estimator comparison, anomaly scores."""

import json
import warnings

import pytest
import torch

import pvae
from pvae.cli import main


class PartlyActiveEncoder(torch.nn.Module):
    """q(z|x): the first `active` means follow x, the rest are constant."""

    def __init__(self, x_dim, z_dim, active):
        super().__init__()
        self.lin = torch.nn.Linear(x_dim, z_dim)
        self.active = active
        self.register_buffer("mask", (torch.arange(z_dim) < active).float())

    def forward(self, x):
        loc = self.lin(x) * self.mask
        return loc, torch.full_like(loc, 0.5)


def test_active_units_on_a_model_built_to_have_them(binary_digits):
    torch.manual_seed(0)
    enc = PartlyActiveEncoder(64, 6, active=2)
    with torch.no_grad():
        enc.lin.weight.mul_(5.0)  # active dimensions vary well above 0.01 across x
    vae = pvae.VAE(64, 6, encoder=enc, hidden_dims=(16,))
    x = binary_digits.test.x
    au = pvae.evaluate.active_units(vae, x)
    assert au["z"]["active"] == 2 and au["z"]["dims"] == 6
    assert (au["z"]["variance"][:2] > 0.01).all() and (au["z"]["variance"][2:] < 1e-10).all()
    enc0 = PartlyActiveEncoder(64, 6, active=0)
    with pytest.warns(UserWarning, match="posterior collapse at site 'z': only 0 of 6"):
        pvae.evaluate.active_units(pvae.VAE(64, 6, encoder=enc0), x)


@pytest.mark.parametrize("model", ["vae", "hvae"])
def test_active_units_are_undefined_on_fewer_than_two_points(binary_digits, model):
    m = (pvae.VAE(64, 4, hidden_dims=(16,)) if model == "vae"
         else pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,)))
    x = binary_digits.test.x
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no collapse warning
        with pytest.raises(ValueError, match="at least 2 data points.*got 1; pass more data"):
            pvae.evaluate.active_units(m, x[:1])
        with pytest.raises(ValueError, match="empty"):
            pvae.evaluate.active_units(m, x[:0])
        d = pvae.evaluate.diagnostics(m, x[:1])
    assert d["active_units"] is None and torch.isfinite(torch.tensor(d["rate"]))
    two = pvae.evaluate.active_units(m, x[:2], threshold=0.0)  # two points: defined, finite
    assert all(torch.isfinite(v["variance"]).all() for v in two.values())


def test_accuracy_counts_labelled_points_only():
    # 27 points, 6 unlabelled; of the 21 labelled, 6 are right: 6/21 = 0.286, where counting
    # the unlabelled as errors would give 6/27 = 0.222
    y = torch.tensor([0] * 21 + [-1] * 6)
    predicted = torch.tensor([0] * 6 + [1] * 15 + [0] * 6)
    probs = torch.nn.functional.one_hot(predicted, 3).float() * 0.8 + 0.1
    for p in (probs, predicted):
        result = pvae.evaluate.accuracy(p, y)
        assert result == {"accuracy": pytest.approx(6 / 21), "num_labelled": 21}
        assert round(result["accuracy"], 3) == 0.286
    assert pvae.evaluate.accuracy(probs[21:], y[21:]) == {"accuracy": None, "num_labelled": 0}
    assert pvae.evaluate.accuracy(probs[:0], y[:0]) == {"accuracy": None, "num_labelled": 0}
    with pytest.raises(ValueError, match="shape"):
        pvae.evaluate.accuracy(probs, y[:5])
    with pytest.raises(ValueError, match="-1 .unlabelled.; found -2"):
        pvae.evaluate.accuracy(probs[:2], torch.tensor([0, -2]))
    with pytest.raises(ValueError, match="whole numbers"):
        pvae.evaluate.accuracy(probs[:2], torch.tensor([0.0, 0.5]))


def test_diagnostics_rate_distortion_and_kl_per_dimension(binary_digits):
    vae = pvae.VAE(64, 4, hidden_dims=(32,))
    pvae.fit(vae, binary_digits.train.x, epochs=5, seed=0)
    x = binary_digits.test.x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = pvae.evaluate.diagnostics(vae, x, num_samples=200)
    assert d["elbo"] == pytest.approx(-d["distortion"] - d["rate"], rel=1e-5)
    assert d["rate_z"] == pytest.approx(d["rate"])
    kl = d["kl_per_dim"]["z"]
    assert kl.shape == (4,) and (kl >= 0).all()
    # the analytic per-dimension KL sums to the Monte Carlo rate
    assert kl.sum().item() == pytest.approx(d["rate"], rel=0.05)
    hv = pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dh = pvae.evaluate.diagnostics(hv, x[:50])
    assert {"rate_z1", "rate_z2"} <= set(dh) and set(dh["active_units"]) == {"z1", "z2"}
    flow = pvae.VAE(64, 3, guide_flows=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pvae.evaluate.diagnostics(flow, x[:50])["kl_per_dim"]["z"] is None


def test_gradient_stats_groups_and_more_particles_less_variance(binary_digits):
    vae = pvae.VAE(64, 4, hidden_dims=(32,))
    x = binary_digits.train.x[:32]
    s1 = pvae.evaluate.gradient_stats(vae, x, ["trace"], num_estimates=30)["trace"]
    s8 = pvae.evaluate.gradient_stats(vae, x, ["trace"], num_estimates=30, num_particles=8)["trace"]
    enc = sum(p.numel() for p in vae.encoder.parameters())
    assert s1["encoder"]["num_params"] == enc
    assert s1["decoder"]["num_params"] == sum(p.numel() for p in vae.decoder.parameters())
    assert s8["encoder"]["variance"] < s1["encoder"]["variance"]
    assert s8["decoder"]["snr"] > s1["decoder"]["snr"]
    assert all(p.grad is None for p in vae.parameters())  # leaves no gradients behind


def test_variances_over_one_draw_are_refused_before_any_work(binary_digits, tmp_path):
    vae = pvae.VAE(64, 4, hidden_dims=(16,))
    x = binary_digits.train.x[:16]
    with pytest.raises(ValueError, match="num_estimates must be an int >= 2.*got 1"):
        pvae.evaluate.gradient_stats(vae, x, ["trace"], num_estimates=1)
    trained = []
    with pytest.raises(ValueError, match="snr_estimates must be an int >= 2.*got 1"):
        pvae.compare(lambda: trained.append(1) or vae, x, ["trace"], snr_estimates=1,
                     out=tmp_path / "cmp")
    assert trained == [] and not (tmp_path / "cmp").exists()


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


def test_compare_and_evaluate_commands(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--set", "train.epochs=2", "--quiet",
                 "--set", "evaluate.num_samples=5"]) == 0
    assert main(["evaluate", "--run", str(run), "--num-samples", "20"]) == 0
    result = json.loads((run / "evaluation-test-k20.json").read_text())
    assert result["num_samples"] == 20 and result["log_likelihood"] >= result["elbo"] - 1
    assert set(result["active_units"]) == {"z"} and len(result["kl_per_dim"]["z"]) == 8
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    out = tmp_path / "cmp"
    assert main(["compare", "--elbos", "trace,renyi:0.5,iwae:2", "--epochs", "1", "--out", str(out),
                 "--quiet", "--set", "evaluate.num_samples=5"]) == 0
    assert (out / "comparison.csv").exists() and "renyi:0.5" in (out / "comparison.md").read_text()
    assert main(["compare", "--elbos", "trace,bogus", "--out", str(tmp_path / "c2")]) == 2
    assert not (tmp_path / "c2").exists()


def test_anomaly_scores_threshold_and_auc(binary_digits):
    """Hold digit 0 out of training: a VAE of the other digits flags it."""
    d = binary_digits
    train = d.train.x[d.train.y != 0]
    vae = pvae.VAE(64, 4, hidden_dims=(64,))
    pvae.fit(vae, train, epochs=30, seed=0, lr=3e-3)
    val_normal = d.val.x[d.val.y != 0]
    threshold = pvae.evaluate.calibrate_threshold(
        pvae.evaluate.anomaly_scores(vae, val_normal), false_positive_rate=0.1)
    scores = pvae.evaluate.anomaly_scores(vae, d.test.x)
    is_anomaly = d.test.y == 0
    auc = pvae.evaluate.roc_auc(scores, is_anomaly)
    assert auc > 0.8
    from sklearn.metrics import roc_auc_score

    assert auc == pytest.approx(roc_auc_score(is_anomaly.numpy(), scores.numpy()), abs=1e-9)
    fpr = (scores[~is_anomaly] > threshold).float().mean().item()
    assert fpr < 0.25  # calibrated at 0.1 on validation data
    ll_scores = pvae.evaluate.anomaly_scores(vae, d.test.x, score="log_likelihood", num_samples=50)
    assert pvae.evaluate.roc_auc(ll_scores, is_anomaly) > 0.8
    with pytest.raises(ValueError, match="both anomalies and normal"):
        pvae.evaluate.roc_auc(scores, torch.zeros_like(is_anomaly))
    with pytest.raises(ValueError, match="false_positive_rate"):
        pvae.evaluate.calibrate_threshold(scores, 1.5)


def test_roc_auc_ties_and_exact_values():
    s = torch.tensor([0.1, 0.4, 0.35, 0.8])
    y = torch.tensor([0, 0, 1, 1])
    assert pvae.evaluate.roc_auc(s, y) == pytest.approx(0.75)
    assert pvae.evaluate.roc_auc(torch.ones(4), y) == pytest.approx(0.5)
