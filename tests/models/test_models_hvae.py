"""The hierarchical VAE (``pvae.models.hvae``): site order and per-layer KL."""

import pytest
from helpers import hvae, sites
from pyro import poutine
from pyro.infer import Predictive

import pvae


def test_hvae_sites_order_and_per_layer_kl(xy):
    x, _ = xy
    m = hvae(guide="top_down")
    assert m.latent_sites == ("z1", "z2")
    g = poutine.trace(m.guide).get_trace(x[:5])
    mt = sites(poutine.replay(m.model, trace=g), x[:5])
    assert list(mt) == ["z2", "z1", "x"]
    assert [n for n in g.nodes if n.startswith("z")] == ["z2", "z1"]  # top-down: model order
    assert mt["z1"]["value"].shape == (5, 6) and mt["z2"]["value"].shape == (5, 3)
    bu = hvae()
    assert bu.guide_type == "bottom_up"  # the default
    gb = poutine.trace(bu.guide).get_trace(x[:5])
    assert [n for n in gb.nodes if n.startswith("z")] == ["z1", "z2"]
    h = pvae.fit(m, x, epochs=2, seed=0)
    assert {"kl_z1", "kl_z2"} <= set(h[-1])
    assert h[-1]["kl"] == pytest.approx(h[-1]["kl_z1"] + h[-1]["kl_z2"], rel=1e-4)
    assert [t.shape for t in m.encode(x[:4])] == [(4, 6), (4, 3)]
    assert m.sample(3).shape == (3, 64) and m.reconstruct(x[:2]).shape == (2, 64)
    post = Predictive(m.model, guide=m.guide, num_samples=2)(x[:5])
    assert post["z1"].shape == (2, 5, 6)
