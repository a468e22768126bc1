"""One scoring of a split (``evaluate.report``) and one registry of plot kinds
(``pvae.figures``), shared by ``pvae train``, ``pvae evaluate``, ``pvae plot``
and ``compare``."""

import pytest
import torch

import pvae
from pvae import figures
from pvae.train import History
from pvae.data import Data, Split


@pytest.mark.filterwarnings("ignore:posterior collapse")  # an untrained model
def test_report_is_the_elbo_and_log_likelihood_evaluate_gives(binary_digits):
    d = binary_digits
    vae = pvae.VAE(64, 2, hidden_dims=(16,), likelihood="bernoulli")
    x = d.test.x[:40]
    r = pvae.evaluate.report(vae, x, num_samples=7, seed=3)
    torch.manual_seed(3)
    elbo = pvae.evaluate.elbo(vae, x).mean().item()
    ll = pvae.evaluate.log_likelihood(vae, x, num_samples=7).mean().item()
    assert r["elbo"] == pytest.approx(elbo) and r["log_likelihood"] == pytest.approx(ll)
    assert r["num_samples"] == 7 and r["num_points"] == 40
    assert r["bits_per_dim"] == pytest.approx(pvae.evaluate.bits_per_dim(-ll, 64))
    assert "accuracy" not in r and "rate" not in r
    with_diag = pvae.evaluate.report(vae, x, num_samples=7, seed=3, diagnostics=True)
    assert with_diag["elbo"] == pytest.approx(elbo)
    assert set(with_diag["active_units"]["z"]) == {"active", "dims"}
    assert len(with_diag["kl_per_dim"]["z"]) == 2


def test_report_scores_the_classifier_on_a_labelled_split(digits):
    y = digits.test.y[:30].clone()
    y[::2] = -1  # half unlabelled: not scored
    ss = pvae.SemiSupervisedVAE(64, num_classes=10, z_dim=2, hidden_dims=(16,),
                                likelihood="continuous_bernoulli")
    r = pvae.evaluate.report(ss, Split(digits.test.x[:30], y), num_samples=3, seed=0)
    assert r["num_labelled"] == 15 and 0 <= r["accuracy"] <= 1


def _view(model, history, n=12, image=(1, 8, 8)):
    g = torch.Generator().manual_seed(0)
    split = Split(torch.rand(n, 64, generator=g), torch.randint(0, 3, (n,), generator=g))
    data = Data(name="made", train=split, val=None, test=split, x_shape=(64,), image_shape=image)
    return figures.View(model, data, history)


def test_one_registry_decides_which_figures_apply():
    history = History([{"epoch": 1, "train_elbo": -50.0, "recon": -40.0, "kl": 10.0}])
    vae2 = _view(pvae.VAE(64, 2, hidden_dims=(8,)), history)
    assert figures.applicable(vae2, basic=True) == ["curves", "reconstructions", "samples"]
    assert figures.applicable(vae2) == ["curves", "reconstructions", "samples", "latent",
                                        "interpolation", "traversal", "manifold"]
    no_history = _view(pvae.VAE(64, 3, hidden_dims=(8,)), None)
    assert "curves" not in figures.applicable(no_history)
    assert "manifold" not in figures.applicable(no_history)  # z_dim 3
    cvae = _view(pvae.CVAE(64, 2, num_classes=3, hidden_dims=(8,)), history)
    assert "conditional" in figures.applicable(cvae)
    assert "conditional" not in figures.applicable(
        _view(pvae.CVAE(64, 2, num_classes=3, hidden_dims=(8,)), history, image=None))
    # pvae train draws exactly the basic kinds that apply, each one as pvae plot names it
    for view in (vae2, no_history, cvae):
        basic = figures.applicable(view, basic=True)
        assert all(k in figures.applicable(view) for k in basic)
        assert all(figures.KINDS[k].basic for k in basic)
    assert figures.figure_name("latent", "pca") == "latent-pca.png"
    assert figures.figure_name("samples") == "samples.png"
