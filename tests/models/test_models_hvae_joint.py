"""The top-down guide's joint merges (``HierarchicalVAE(merge="joint" | "joint_residual")``):
q(z_l | z_{l+1}, x)'s parameters from a network of the bottom-up features d_l(x) and the
model's top-down state h_l(z_{l+1}) (Vahdat & Kautz 2020; Maaløe et al. 2019), checked
against values written out by hand, the per-layer KL against its closed form and a Monte
Carlo estimate, saved and loaded with the model, and refused where it means nothing."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import hvae
from pyro import poutine

import pvae
from pvae.models.merges import JointNetwork

JOINT = ["joint", "joint_residual"]


def _by_hand(net: JointNetwork, d, h, loc_p, scale_p):
    """JointNetwork written out: W_d d + W_h h + b, split into a location and a softplus
    scale (+ 1e-4), outright or relative to the prior."""
    w, b = net.net.weight, net.net.bias
    nd = d.shape[-1]
    out = d @ w[:, :nd].T + h @ w[:, nd:].T + b
    k = out.shape[-1] // 2
    loc, scale = out[..., :k], F.softplus(out[..., k:]) + 1e-4
    return (loc_p + loc, scale_p * scale) if net.residual else (loc, scale)


@pytest.mark.parametrize("residual", [False, True])
def test_joint_network_is_the_formula_written_out_and_starts_blind_to_the_state(residual):
    g = torch.Generator().manual_seed(0)
    net = JointNetwork(5, 4, 3, residual=residual)
    d, h = torch.randn(6, 5, generator=g), torch.randn(6, 4, generator=g)
    loc_p, scale_p = torch.randn(6, 3, generator=g), torch.rand(6, 3, generator=g) + 0.1
    # at initialisation the weights from the top-down state are zero: q's own part ignores h
    assert torch.equal(net.net.weight[:, 5:], torch.zeros(6, 4))
    a = net(d, h, loc_p, scale_p)
    b = net(d, torch.randn(6, 4, generator=g), loc_p, scale_p)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])
    with torch.no_grad():  # then give h weight and compare with the formula
        net.net.weight.normal_(generator=g)
    loc, scale = net(d, h, loc_p, scale_p)
    want = _by_hand(net, d, h, loc_p, scale_p)
    assert torch.allclose(loc, want[0], atol=1e-5) and torch.allclose(scale, want[1], atol=1e-5)
    moved = net(d, h + 1.0, loc_p, scale_p)[0]
    assert not torch.allclose(moved, loc)  # the network does read the state
    # a leading particle dimension on the state broadcasts against the features
    loc3, _ = net(d, h.expand(2, 6, 4), loc_p, scale_p)
    assert loc3.shape == (2, 6, 3) and torch.allclose(loc3[1], loc, atol=1e-6)


@pytest.mark.parametrize("merge", JOINT)
def test_joint_guide_reads_the_features_and_the_models_state_at_its_own_draw(x, merge):
    torch.manual_seed(0)
    m = pvae.HierarchicalVAE(64, (6, 4, 3), hidden_dims=(32,), guide="top_down", merge=merge)
    with torch.no_grad():  # away from the initialisation's zero weights on the state
        for net in m.joint:
            net.net.weight.normal_(0, 0.3)
    xb = x[:5]
    g = poutine.trace(m.guide).get_trace(xb)
    mt = poutine.trace(poutine.replay(m.model, trace=g)).get_trace(xb)
    ev = m.evidence(xb)
    assert len(ev) == 1  # the top layer's term only: the lower ones depend on z_{l+1}
    q3 = g.nodes["z3"]["fn"].base_dist
    assert torch.allclose(q3.loc, ev[0][0]) and torch.allclose(q3.scale, ev[0][1])
    d = m._flat(xb)
    feats = []
    for up in m.up:
        d = up(d)
        feats.append(d)
    for layer in (2, 1):
        z_above = g.nodes[f"z{layer + 1}"]["value"]
        p_loc, p_scale = m.prior(layer, z_above)
        p = mt.nodes[f"z{layer}"]["fn"].base_dist  # the model's own prior at the guide's draw
        assert torch.allclose(p.loc, p_loc) and torch.allclose(p.scale, p_scale)
        td = m.top_down[layer - 1]
        state = z_above
        for mod in list(td)[:-1]:  # the last hidden layer of p(z_l | z_{l+1})'s network
            state = mod(state)
        want = _by_hand(m.joint[layer - 1], feats[layer - 1], state, p_loc, p_scale)
        q = g.nodes[f"z{layer}"]["fn"].base_dist
        assert torch.allclose(q.loc, want[0], atol=1e-5)
        assert torch.allclose(q.scale, want[1], atol=1e-5)


@pytest.mark.parametrize("merge", JOINT)
def test_joint_per_layer_kl_matches_closed_form_and_monte_carlo(x, merge):
    """kl_z1 (Monte Carlo, pvae.evaluate.parts) against E_{z2 ~ q} KL(q(z1|z2,x) || p(z1|z2))
    in closed form over 4000 draws of z2, after training (every weight has moved)."""
    torch.manual_seed(0)
    m = hvae(guide="top_down", merge=merge)
    pvae.fit(m, x, epochs=3, seed=0, elbo="meanfield")
    assert m.joint[0].net.weight[:, 32:].abs().sum() > 0  # it learnt to read z2's state
    xb = x[:8]
    with torch.no_grad():
        (top,) = m.evidence(xb)
        kl2 = torch.distributions.kl_divergence(torch.distributions.Normal(*top),
                                                torch.distributions.Normal(0.0, 1.0)).sum(-1)
        torch.manual_seed(1)
        z2 = top[0] + top[1] * torch.randn(4000, *top[0].shape)
        d = m.up[0](xb)
        out, state = m.top_down[0].with_hidden(z2)
        p_loc, p_scale = pvae.nets.split_loc_scale(out)
        q_loc, q_scale = _by_hand(m.joint[0], d.expand(4000, *d.shape), state, p_loc, p_scale)
        kl1 = (torch.log(p_scale / q_scale) + (q_scale**2 + (q_loc - p_loc) ** 2)
               / (2 * p_scale**2) - 0.5).sum(-1)
        torch.manual_seed(2)
        mc = pvae.evaluate.parts(m, xb, num_samples=4000)
    assert torch.allclose(mc["kl_z2"], kl2, atol=0.1 + 0.02 * kl2.max())
    assert torch.allclose(mc["kl_z1"], kl1.mean(0), atol=0.1 + 0.02 * kl1.max())
    assert torch.allclose(mc["kl"], mc["kl_z1"] + mc["kl_z2"])


@pytest.mark.parametrize("merge", JOINT)
def test_joint_merge_is_saved_configured_and_every_parameter_learns(x, tmp_path, merge):
    from pvae.config import Config
    from pvae.fast_elbo import FastTraceMeanField_ELBO
    from pvae.models import from_config

    torch.manual_seed(0)
    m = hvae(guide="top_down", merge=merge)
    assert m.mean_field  # sites drawn in the model's order: the analytic KL applies
    with torch.no_grad():
        m.joint[0].net.weight.normal_(0, 0.3)
    FastTraceMeanField_ELBO().differentiable_loss(m.model, m.guide, x[:16]).backward()
    for name, p in m.named_parameters():  # no head left unused by the joint merge
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    m.save(str(tmp_path / "m.pt"))
    back = pvae.load(str(tmp_path / "m.pt"))
    assert back.merge == merge and back.hparams["merge"] == merge
    torch.manual_seed(3)
    a = pvae.evaluate.elbo(m, x[:4], num_samples=1)
    torch.manual_seed(3)
    assert torch.allclose(a, pvae.evaluate.elbo(back, x[:4], num_samples=1))
    cfg = Config.model_validate({"data": {"name": "digits"}, "model": {
        "type": "hvae", "z_dims": [6, 3], "guide": "top_down", "merge": merge}})
    assert from_config(cfg.model, (64,)).merge == merge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        h = pvae.fit(m, x, epochs=1, seed=0, elbo="meanfield")
    assert {"kl_z1", "kl_z2"} <= set(h[-1])


def test_joint_merge_is_refused_clearly_where_it_means_nothing():
    with pytest.raises(ValueError, match="merge='joint' is how the top-down guide"):
        hvae(merge="joint")  # the bottom-up guide has no merge
    with pytest.raises(ValueError, match="'joint', 'joint_residual', got 'Joint'"):
        hvae(guide="top_down", merge="Joint")
    with pytest.raises(ValueError, match="merge must be one of"):
        hvae(guide="top_down", merge=None)


def test_joint_merge_takes_the_vamp_prior_and_flows(x):
    """The top layer's q(z_L | x) is still a Gaussian of x alone (the VampPrior pushes its
    pseudo-inputs through it) and each layer's draw may pass through IAF flows."""
    torch.manual_seed(0)
    m = hvae(guide="top_down", merge="joint", prior="vamp", prior_components=5, guide_flows=1)
    elbo = pvae.evaluate.elbo(m, x[:6], num_samples=2)
    assert elbo.shape == (6,) and torch.isfinite(elbo).all()
    assert m.pz(3).batch_shape == (3,)
