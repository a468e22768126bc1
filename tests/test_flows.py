"""Flow guides (``pvae.flows``): the posterior is a transformed distribution."""

import pyro
import torch
from pyro import poutine

import pvae


def test_flow_guide_is_a_transformed_distribution(xy):
    x, _ = xy
    m = pvae.VAE(64, 3, guide_flows=2)
    g = poutine.trace(m.guide).get_trace(x[:4])
    assert isinstance(g.nodes["z"]["fn"], pyro.distributions.TransformedDistribution)
    assert len(g.nodes["z"]["fn"].transforms) == 3  # two IAFs and a permutation between
    assert any("posterior.flows" in n for n, _ in m.named_parameters())
    ll = pvae.evaluate.log_likelihood(m, x[:10], num_samples=20)
    assert ll.shape == (10,) and torch.isfinite(ll).all()
