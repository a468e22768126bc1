"""Evaluation against closed forms: a linear-Gaussian model whose marginal likelihood is exact."""

import math

import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pvae


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
    lw = pvae.evaluate._log_weights(pvae.evaluate.site_log_probs(vae, (x,), 5000))
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
    torch.manual_seed(3)
    vae, marginal = linear_gaussian(torch.randn(4, 2), torch.zeros(4), 0.5, exact_posterior=False)
    x = marginal.sample((30,))
    torch.manual_seed(0)
    a = pvae.evaluate.log_likelihood(vae, x, num_samples=64)
    torch.manual_seed(0)
    b = pvae.evaluate.log_likelihood(vae, x, num_samples=64, batch_size=30, max_elements=4 * 30 * 4)
    assert a.shape == b.shape == (30,)
    # same estimator, different sample chunks: equal in distribution, close in value
    assert (a - b).abs().max() < 0.1


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
