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


def test_continuous_bernoulli_logits_agrees_with_torch_inside_its_clamp_and_samples_right():
    from pvae.distributions import ContinuousBernoulliLogits

    t = torch.tensor([-12.0, -3.0, -0.5, 0.2, 4.0, 12.0], dtype=torch.float64)
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64).reshape(-1, 1)
    ours = ContinuousBernoulliLogits(t)
    ref = torch.distributions.ContinuousBernoulli(logits=t)
    assert torch.allclose(ours.log_prob(x), ref.log_prob(x), atol=1e-6)
    assert torch.allclose(ours.mean, ref.mean, atol=1e-6)
    assert torch.allclose(ours.variance, ref.variance, atol=1e-6)
    # reparameterised samples in [0, 1] with the right moments, also far past the old clamp
    torch.manual_seed(0)
    far = torch.tensor([-100.0, -40.0, -1e-5, 0.0, 3.0, 40.0, 100.0], requires_grad=True)
    d = ContinuousBernoulliLogits(far)
    s = d.rsample((100_000,))
    assert s.grad_fn is not None and ((s >= 0) & (s <= 1)).all()
    assert torch.allclose(s.mean(0), d.mean, atol=3 * d.variance.sqrt().max().item() / 300)
    assert torch.allclose(s.var(0), d.variance, rtol=0.03, atol=1e-6)
    assert d.mean[0].item() == pytest.approx(0.01, abs=1e-6)  # 1 / (1 - e^100) + 1/100
    # the mean's gradient stays finite and right far out (1/t^2 - e^t / expm1(t)^2 -> 1e-4)
    g, = torch.autograd.grad(d.mean.sum(), far)
    assert torch.isfinite(g).all() and g[0].item() == pytest.approx(1e-4, rel=1e-3)
    e = ContinuousBernoulliLogits(torch.zeros(3)).expand((2, 3))
    assert e.batch_shape == (2, 3) and e.log_prob(torch.full((2, 3), 0.5)).shape == (2, 3)
    with pytest.raises(ValueError):
        ContinuousBernoulliLogits(torch.zeros(2), validate_args=True).log_prob(torch.tensor([0.5, 1.5]))
