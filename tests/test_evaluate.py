"""Evaluation (``pvae.evaluate``) against closed forms: a linear-Gaussian model whose
marginal likelihood is exact; one report of a split; diagnostics, active units and
anomaly scores."""

import math
import warnings

import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pvae
from pvae.data import Split
from pvae.estimates import CHUNK_ELEMENTS, _Evaluation


class LinearDecoder(torch.nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = torch.nn.Parameter(w), torch.nn.Parameter(b)

    def forward(self, z):
        return z @ self.w.T + self.b


class AffineEncoder(torch.nn.Module):
    """q(z|x) = Normal(A (x - b), s): the exact posterior when W has orthogonal columns."""

    def __init__(self, a, b, s):
        super().__init__()
        self.a, self.b, self.s = a, b, s

    def forward(self, x):
        loc = (x - self.b) @ self.a.T
        return loc, self.s.expand_as(loc)


def linear_gaussian(w, b, sigma, exact_posterior: bool):
    """x = W z + b + sigma * eps, z ~ N(0, I): p(x) = N(b, W W^T + sigma^2 I)."""
    z_dim = w.shape[1]
    prec = torch.eye(z_dim) + w.T @ w / sigma**2
    cov = torch.linalg.inv(prec)
    a = cov @ w.T / sigma**2
    s = cov.diagonal().sqrt() if exact_posterior else 1.5 * cov.diagonal().sqrt()
    vae = pvae.VAE(w.shape[0], z_dim, likelihood=pvae.likelihoods.Gaussian(scale=sigma),
                   encoder=AffineEncoder(a, b, s), decoder=LinearDecoder(w, b))
    marginal = torch.distributions.MultivariateNormal(b, w @ w.T + sigma**2 * torch.eye(w.shape[0]))
    return vae, marginal


def test_elbo_equals_exact_log_likelihood_with_the_exact_posterior():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 2))
    w = q * torch.tensor([2.0, 0.7])  # orthogonal columns: diagonal exact posterior
    b = torch.randn(6)
    vae, marginal = linear_gaussian(w, b, 0.5, exact_posterior=True)
    x = marginal.sample((50,))
    exact = marginal.log_prob(x)
    torch.testing.assert_close(pvae.evaluate.elbo(vae, x, num_samples=3), exact, rtol=0, atol=1e-4)
    torch.testing.assert_close(pvae.evaluate.log_likelihood(vae, x, num_samples=7), exact,
                               rtol=0, atol=1e-4)


def test_importance_sampled_log_likelihood_matches_the_exact_marginal():
    torch.manual_seed(1)
    w, b = torch.randn(5, 2), torch.randn(5)  # correlated posterior: the guide is approximate
    vae, marginal = linear_gaussian(w, b, 0.4, exact_posterior=False)
    x = marginal.sample((40,))
    exact = marginal.log_prob(x)
    elbo = pvae.evaluate.elbo(vae, x, num_samples=2000)
    ll = pvae.evaluate.log_likelihood(vae, x, num_samples=5000, batch_size=8, max_elements=2**16)
    assert (elbo < exact - 0.05).all()  # a strict bound here
    # within Monte Carlo error: the delta-method standard error of log mean(w) is
    # std(w) / (mean(w) sqrt(K)), measured from an independent draw of the weights
    parts = pvae.evaluate.site_log_probs(vae, (x,), 5000)  # log w = log p(x, z) - log q(z | x)
    lw = sum(parts["observed"].values()) + sum(parts["model"].values()) - sum(parts["guide"].values())
    w = torch.exp(lw - lw.max(0).values)
    se = w.std(0) / (w.mean(0) * math.sqrt(5000))
    assert ((ll - exact).abs() < 5 * se + 1e-4).all(), ((ll - exact) / se)
    assert (ll - exact).mean().abs() < 5 * se.pow(2).mean().sqrt() / math.sqrt(len(x)) + 1e-4
    # and far closer than the ELBO
    assert (exact - ll).abs().mean() < 0.1 * (exact - elbo).mean()


def test_log_likelihood_increases_with_samples_toward_the_truth():
    torch.manual_seed(2)
    w, b = torch.randn(5, 2), torch.randn(5)
    vae, marginal = linear_gaussian(w, b, 0.3, exact_posterior=False)
    x = marginal.sample((200,))
    gaps = [(marginal.log_prob(x) - pvae.evaluate.log_likelihood(vae, x, num_samples=k)).mean()
            for k in (1, 10, 100)]
    assert gaps[0] > gaps[1] > gaps[2] > -0.01


def test_chunking_does_not_change_the_answer():
    """With q(z|x) = p(z) and a decoder that ignores z, every importance weight is p(x):
    any cut into batches and chunks (even, uneven, one sample each) gives the exact value."""
    torch.manual_seed(3)
    b = torch.randn(4)
    vae = pvae.VAE(4, 2, likelihood=pvae.likelihoods.Gaussian(scale=0.5),
                   encoder=AffineEncoder(torch.zeros(2, 4), b, torch.ones(2)),
                   decoder=LinearDecoder(torch.zeros(4, 2), b))
    x = torch.randn(30, 4)
    exact = torch.distributions.Normal(b, 0.5).log_prob(x).sum(-1)
    plans = set()
    for kw in ({}, dict(batch_size=30, max_elements=4 * 30 * 4), dict(batch_size=7, max_elements=4 * 9),
               dict(max_elements=4)):
        ev = _Evaluation(vae, x, kw.get("batch_size", 100), kw.get("max_elements", CHUNK_ELEMENTS),
                         64, many_samples=True)
        plans.add((ev.batch_size, tuple(next(iter(ev))[1])))
        ll = pvae.evaluate.log_likelihood(vae, x, num_samples=64, **kw)
        torch.testing.assert_close(ll, exact, rtol=0, atol=1e-4)
    assert len(plans) == 4  # four different cuts: (30, (64,)), (1, (64,)), (1, (22, 21, 21)), (1, (1,) * 64)


def test_chunks_are_sized_by_the_largest_activation_of_a_conv_decoder():
    """A conv decoder's hidden maps (32 x 28 x 28) are 32 times its output: a chunk holds
    32 / ACTIVATION_SHARE times fewer samples than an MLP's; the probe leaves the RNG as it
    was."""
    from pvae.estimates import activation_numbers

    conv = pvae.VAE((1, 28, 28), 4, hidden_dims=(32, 64), likelihood="continuous_bernoulli")
    mlp = pvae.VAE(784, 4, hidden_dims=(400,))
    x = torch.rand(3, 1, 28, 28)
    state = torch.get_rng_state()
    assert activation_numbers(conv, (x,)) == 32 * 28 * 28
    assert activation_numbers(mlp, (x.flatten(1).round(),)) == 784  # its output (logits)
    assert torch.equal(torch.get_rng_state(), state)
    ev = _Evaluation(conv, x, 100, CHUNK_ELEMENTS, 200, many_samples=True)
    share = pvae.estimates.ACTIVATION_SHARE
    assert ev.outputs == 32 * 28 * 28 // share
    assert ev.per_point_chunk(1) == CHUNK_ELEMENTS * share // (32 * 28 * 28)
    assert conv.training  # evaluation modes restored
    assert pvae.evaluate.log_likelihood(conv, x, num_samples=5).shape == (3,)


def test_analytic_and_monte_carlo_kl_agree(binary_digits):
    vae = pvae.VAE(64, 4, hidden_dims=(32,))
    pvae.fit(vae, binary_digits.train.x[:256], epochs=2, seed=0)
    x = binary_digits.test.x[:20]
    loc, scale = vae.encode(x)
    analytic = torch.distributions.kl_divergence(
        torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 1.0)).sum(-1)
    parts = pvae.evaluate.parts(vae, x, num_samples=20000)
    torch.testing.assert_close(parts["kl"], analytic, rtol=0.02, atol=0.05)
    assert torch.allclose(parts["elbo"], parts["recon"] - parts["kl"])
    # the same through Pyro: TraceMeanField (analytic KL) vs Trace_ELBO (Monte Carlo)
    mf = TraceMeanField_ELBO(num_particles=1000, vectorize_particles=True).loss(vae.model, vae.guide, x)
    mc = Trace_ELBO(num_particles=1000, vectorize_particles=True).loss(vae.model, vae.guide, x)
    assert mf == pytest.approx(mc, rel=0.01)


def test_bits_per_dim():
    assert pvae.evaluate.bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert pvae.evaluate.bits_per_dim(64 * math.log(2), (1, 8, 8)) == pytest.approx(1.0)


def test_user_model_guide_pair_and_sites_outside_the_plate():
    import pyro
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, math.sqrt(0.5)))  # exact posterior

    x = torch.randn(10)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(x)
    torch.testing.assert_close(pvae.evaluate.log_likelihood((model, guide), x, num_samples=5),
                               exact, rtol=0, atol=1e-5)

    def global_model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def global_guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="outside pyro.plate"):
        pvae.evaluate.elbo((global_model, global_guide), x)


def test_a_split_is_scored_as_fit_scores_it(binary_digits):
    """For the semi-supervised model, a Split is scored on x alone: log p(x), y marginalised."""
    import pyro

    d = binary_digits
    m = pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,))
    test = pvae.data.Split(d.test.x[:20], d.test.y[:20])
    pyro.set_rng_seed(0)
    a = pvae.evaluate.log_likelihood(m, test, num_samples=5)
    pyro.set_rng_seed(0)
    b = pvae.evaluate.log_likelihood(m, d.test.x[:20], num_samples=5)
    torch.testing.assert_close(a, b)


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
