"""Active units per layer of a hierarchy (``pvae.models.ladder_units``): q(z_l | x) alone,
the other layers' draws averaged out and their Monte Carlo noise removed."""

import pytest
import torch

import pvae
from pvae.models.ladder_units import _draws, layer_active_units


def _ladder(seed=0):
    torch.manual_seed(seed)
    return pvae.HierarchicalVAE(16, (4, 3), hidden_dims=(16,), guide="top_down",
                                merge="residual")


@torch.no_grad()
def _ignore_x(m, layer_loc_scale=3.0):
    """z2 and z1 ignore x: q(z2 | x) is a fixed Gaussian and z1's evidence offset is 0, so
    q(z1 | x) is the same mixture for every x; p(z1 | z2)'s mean moves a lot with z2."""
    for head in m.up_heads:
        head.weight.zero_()
        head.bias.zero_()  # d_mu = 0 and the top layer's loc 0; scales softplus(0) + 1e-4
    m.top_down[0][-1].weight.mul_(layer_loc_scale)  # the last Linear of p(z1 | z2)


def _x(n=400, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 16, generator=g) < 0.4).float()


def test_a_layer_that_ignores_x_has_no_active_units_despite_noisy_upper_draws():
    m = _ladder()
    _ignore_x(m)
    x = _x(500)
    torch.manual_seed(0)
    au = layer_active_units(m, x, num_draws=100)
    assert au["z1"]["active"] == 0 and au["z2"]["active"] == 0
    assert au["z1"]["variance"].abs().max() < 0.003
    # the average of 100 draws without the correction (pvae.evaluate.active_units) keeps
    # noise E_x[s^2] / 100 that crosses the 0.01 threshold here
    torch.manual_seed(0)
    assert (_draws(m, x, 100)["z1"].mean(0).var(0) > 0.01).sum() >= 1
    # the noise it removes is real: one draw per point (z2's draw not averaged out)
    # gives z1's conditional mean a large variance over the data
    single = _draws(m, x, 1)["z1"][0]
    assert (single.var(0) > 0.01).sum() >= 1  # a single draw would count these units
    assert layer_active_units(m, x, num_draws=2)["z1"]["active"] == 0  # even with 2 draws


def test_a_layer_that_reads_x_is_counted_and_matches_the_exact_variance():
    m = _ladder()
    _ignore_x(m, layer_loc_scale=1.0)
    with torch.no_grad():  # z1's evidence offset reads x in its first dimension only
        m.up_heads[0].weight[0].normal_(0, 1.0)
    x = _x()
    au = layer_active_units(m, x, num_draws=40)
    assert au["z2"]["active"] == 0 and au["z1"]["active"] >= 1
    # z1's mean = E_z2[mu_p(z2)] + d_mu(x), so Cov_x is the variance over x of d_mu(x)
    d_mu = m.evidence(x)[0][0]
    exact = d_mu.var(0)
    assert au["z1"]["variance"][0] == pytest.approx(exact[0].item(), rel=0.05, abs=5e-3)


def test_flat_gaussian_guide_gives_the_variance_of_the_posterior_mean():
    torch.manual_seed(0)
    m = pvae.HierarchicalVAE(16, (4,), hidden_dims=(16,), guide="bottom_up")
    x = _x()
    au = layer_active_units(m, x, num_draws=3)
    loc = m.encode(x)[0]
    assert torch.allclose(au["z1"]["variance"], loc.var(0), atol=1e-5)


@pytest.mark.parametrize("kw, match", [
    ({"num_draws": 1}, "num_draws"), ({"num_draws": 2.0}, "num_draws"),
    ({"threshold": -1}, "threshold")])
def test_bad_options_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        layer_active_units(_ladder(), _x(10), **kw)


def test_too_few_points_and_a_non_model_are_refused():
    with pytest.raises(ValueError, match="at least 2"):
        layer_active_units(_ladder(), _x(1))
    with pytest.raises(TypeError, match="latent_sites"):
        layer_active_units(object(), _x(10))


def test_evaluate_active_units_removes_the_draw_noise_too():
    """pvae.evaluate.active_units (what pvae train and pvae evaluate report) uses the same
    noise-corrected estimate: an unused layer under noisy upper draws counts no units, a
    flat Gaussian guide still gives the variance of its posterior means."""
    m = _ladder()
    _ignore_x(m)
    x = _x(500)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="posterior collapse"):
        au = pvae.evaluate.active_units(m, x, num_samples=100)
    assert au["z1"]["active"] == 0 and au["z2"]["active"] == 0
    assert au["z1"]["variance"].abs().max() < 0.003
    torch.manual_seed(0)
    flat = pvae.HierarchicalVAE(16, (4,), hidden_dims=(16,), guide="bottom_up")
    au = pvae.evaluate.active_units(flat, _x(), num_samples=3)
    assert torch.allclose(au["z1"]["variance"], flat.encode(_x())[0].var(0), atol=1e-5)
