"""The count distributions against scipy's reference formulas."""

import numpy as np
import pytest
import torch
from scipy import stats

from pvae.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial


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
