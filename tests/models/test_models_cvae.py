"""The conditional VAE (``pvae.models.cvae``): sites, Predictive, learned label prior,
conditional samples."""

import pytest
import torch
from helpers import L, cvae, sites
from pyro.infer import Predictive

import pvae


# ---- site names and plain-Pyro use -----------------------------------------------------------------
def test_cvae_sites_predictive_and_conditional_samples(xy):
    x, y = xy
    m = cvae()
    s = sites(m.model, x[:5], y[:5])
    assert set(s) == {"y", "z", "x"} and s["y"]["is_observed"] and s["y"]["mask"] is False
    assert set(sites(m.guide, x[:5], y[:5])) == {"z"}
    post = Predictive(m.model, guide=m.guide, num_samples=3)(x[:5], y[:5])
    assert post["z"].shape == (3, 5, 3)
    prior = Predictive(m.model, num_samples=2, return_sites=["y", "x"])(None, None, batch_size=4)
    assert prior["y"].shape == (2, 4) and prior["x"].shape == (2, 4, 64)
    assert m.sample(6, y=3).shape == (6, 64) and m.sample(3, y=torch.tensor([0, 1, 2])).shape == (3, 64)
    assert m.reconstruct(x[:4], y[:4]).shape == (4, 64)


def test_cvae_learned_prior_depends_on_the_label():
    m = cvae()
    loc0, _ = m.prior(m.features(torch.tensor([0])))
    loc1, _ = m.prior(m.features(torch.tensor([1])))
    assert not torch.allclose(loc0, loc1)
    flat = cvae(learned_prior=False)
    assert torch.equal(flat.prior(flat.features(torch.tensor([4])))[0], torch.zeros(1, 3))


def test_sample_with_a_condition_vector():
    cvae = pvae.CVAE(5, 2, y_dim=3, hidden_dims=(8,), likelihood="gaussian")
    assert cvae.sample(4, y=torch.ones(3)).shape == (4, 5)
    assert cvae.sample(2, y=torch.ones(2, 3)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"shape \(3, 3\): give one vector of size y_dim=3"):
        cvae.sample(2, y=torch.ones(3, 3))
    with pytest.raises(ValueError, match="pass y"):
        cvae.sample(2, y=None)
    x = torch.randn(2, 5)
    z, dec = L.interpolate(cvae, x[0], x[1], steps=3, y_a=torch.ones(3), y_b=torch.zeros(3))
    assert dec.shape == (3, 5)
    assert L.traverse(cvae, x[0], steps=2, y=torch.ones(3))[1].shape == (2, 2, 5)
