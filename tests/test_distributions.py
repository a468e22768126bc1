"""The count distributions against scipy's reference formulas."""

import numpy as np
import pytest
import torch
from scipy import stats

import pyro
import pyro.distributions as dist

from pvae.distributions import BernoulliLogits, NegativeBinomial, ZeroInflatedNegativeBinomial


@pytest.mark.parametrize("mu,theta", [(0.5, 0.3), (3.0, 2.0), (40.0, 10.0)])
def test_negative_binomial_matches_scipy(mu, theta):
    x = torch.arange(0, 60, dtype=torch.float64)
    d = NegativeBinomial(torch.tensor(mu, dtype=torch.float64), torch.tensor(theta, dtype=torch.float64))
    # scipy: n = theta, p = theta / (theta + mu)
    ref = stats.nbinom.logpmf(x.numpy(), theta, theta / (theta + mu))
    np.testing.assert_allclose(d.log_prob(x).numpy(), ref, rtol=1e-6, atol=1e-6)
    assert d.mean.item() == pytest.approx(mu)
    assert d.variance.item() == pytest.approx(stats.nbinom.var(theta, theta / (theta + mu)))


@pytest.mark.parametrize("mu,theta,pi", [(2.0, 1.0, 0.3), (10.0, 5.0, 0.05)])
def test_zinb_matches_mixture_formula(mu, theta, pi):
    x = torch.arange(0, 50, dtype=torch.float64)
    logit = np.log(pi / (1 - pi))
    d = ZeroInflatedNegativeBinomial(torch.tensor(mu, dtype=torch.float64),
                                     torch.tensor(theta, dtype=torch.float64),
                                     torch.tensor(logit, dtype=torch.float64))
    nb = stats.nbinom.pmf(x.numpy(), theta, theta / (theta + mu))
    ref = np.log((1 - pi) * nb + pi * (x.numpy() == 0))
    np.testing.assert_allclose(d.log_prob(x).numpy(), ref, rtol=1e-6, atol=1e-6)
    assert d.log_prob(x).exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    assert d.mean.item() == pytest.approx((1 - pi) * mu)


def test_samples_have_the_right_moments():
    torch.manual_seed(0)
    d = ZeroInflatedNegativeBinomial(torch.full((200000,), 4.0), torch.tensor(2.0), torch.tensor(-1.0))
    s = d.sample()
    assert (s >= 0).all() and (s == s.round()).all()
    assert s.mean().item() == pytest.approx(d.mean[0].item(), rel=0.02)
    assert s.var().item() == pytest.approx(d.variance[0].item(), rel=0.05)


def test_support_and_constraints_are_declared():
    d = NegativeBinomial(torch.tensor([1.0]), torch.tensor([1.0]), validate_args=True)
    assert d.support.check(torch.tensor([3.0])).all()
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([-1.0]))
    with pytest.raises(ValueError):
        NegativeBinomial(torch.tensor([-1.0]), torch.tensor([1.0]), validate_args=True)
    e = d.expand((4,))
    assert e.batch_shape == (4,) and e.log_prob(torch.zeros(4)).shape == (4,)


def test_bernoulli_logits_equals_torch_bernoulli_with_broadcasting_and_grads():
    torch.manual_seed(0)
    logits = (torch.randn(7, 5, 30) * 12).requires_grad_()  # large |logits| too
    x = torch.bernoulli(torch.full((5, 30), 0.3))  # broadcast over 7 samples
    ours = BernoulliLogits(logits).log_prob(x)
    ref = dist.Bernoulli(logits=logits).log_prob(x)
    assert ours.shape == ref.shape == (7, 5, 30)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-6)
    g_ours, = torch.autograd.grad(ours.sum(), logits)
    g_ref, = torch.autograd.grad(ref.sum(), logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)
    # equal shapes with gradients take the fused kernel; without, the three-pass one:
    # both equal torch's values (and gradients), also for x in [0, 1]
    for xs in (x.expand(7, 5, 30), torch.rand(7, 5, 30)):
        ref = dist.Bernoulli(logits=logits, validate_args=False).log_prob(xs)
        fused = BernoulliLogits(logits, validate_args=False).log_prob(xs)
        with torch.no_grad():
            plain = BernoulliLogits(logits, validate_args=False).log_prob(xs)
        assert plain.grad_fn is None
        assert "BinaryCrossEntropyWithLogits" in type(fused.grad_fn.next_functions[0][0]).__name__
        assert torch.allclose(fused, ref, atol=1e-5, rtol=1e-6)
        assert torch.allclose(plain, ref, atol=1e-5, rtol=1e-6)
        g_fused, = torch.autograd.grad(fused.sum(), logits)
        g_ref, = torch.autograd.grad(ref.sum(), logits)
        assert torch.allclose(g_fused, g_ref, atol=1e-6)
    # Pyro machinery: expand, to_event, enumeration of the support, validation
    d = BernoulliLogits(logits[0, 0]).expand((4, 30)).to_event(1)
    assert isinstance(d.base_dist, BernoulliLogits) and d.batch_shape == (4,)
    assert BernoulliLogits(torch.zeros(2)).enumerate_support().shape == (2, 2)
    with pyro.validation_enabled(True), pytest.raises(ValueError):
        BernoulliLogits(torch.zeros(3), validate_args=True).log_prob(torch.tensor([0.0, 2.0, 1.0]))
