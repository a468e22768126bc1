"""Free bits (``pvae.free_bits``, ``fit(free_bits=...)``, ``train.free_bits``)."""

import math

import pytest
import torch

import pvae
from pvae.config import ConfigError, TrainConfig
from pvae.elbos import make_elbo, traits
from pvae.fast_elbo import FastTraceMeanField_ELBO
from pvae.free_bits import FreeBits
from pvae.train.checks import with_free_bits


def _model():
    torch.manual_seed(0)
    return pvae.VAE(64, 6, hidden_dims=(16,))


def _grads(m, elbo, x, seed=1):
    m.zero_grad()
    torch.manual_seed(seed)
    loss = elbo.differentiable_loss(m.model, m.guide, x)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in m.parameters()]


def _kl_per_point(m, x):
    """Analytic KL(q(z_j|x_b) || N(0, 1)) per point and dimension, shape (B, D)."""
    loc, scale = m.encode(x)
    return 0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()


def _grads_of(m, value):
    m.zero_grad()
    value.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in m.parameters()]


@pytest.mark.parametrize("where", ["below_some", "above_all", "below_all"])
def test_free_bits_changes_the_gradient_only_below_its_threshold(x, where):
    """Dimensions whose batch-averaged KL is above lambda keep the plain ELBO's gradient;
    those below lose their KL gradient; the reported value stays the ELBO."""
    m, xb = _model(), x[:40]
    kl = _kl_per_point(m, xb).detach().mean(0)
    ordered = kl.sort().values
    lam = {"below_some": float((ordered[2] + ordered[3]) / 2),
           "above_all": float(ordered[0] / 2), "below_all": float(ordered[-1] * 2)}[where]
    below = kl < lam
    assert {"below_some": 0 < below.sum() < 6, "above_all": below.sum() == 0,
            "below_all": below.all()}[where]
    plain_value, plain = _grads(m, FastTraceMeanField_ELBO(), xb)
    fb_value, fb = _grads(m, FreeBits(lam, analytic=True), xb)
    floored = _grads_of(m, _kl_per_point(m, xb)[:, below].sum())
    assert fb_value == pytest.approx(plain_value, rel=1e-6)  # the true ELBO, reported
    for g_fb, g_plain, g_floor in zip(fb, plain, floored):
        assert torch.allclose(g_fb, g_plain - g_floor, atol=1e-5)
    if where == "above_all":
        assert all(torch.equal(a, b) for a, b in zip(fb, plain))
    else:
        assert any(not torch.allclose(a, b) for a, b in zip(fb, plain))


def test_monte_carlo_free_bits_floors_the_sampled_kl(x):
    """With elbo='trace' the per-dimension KL is log q - log p at the drawn z; lambda = 0
    gives exactly the plain estimator's gradient."""
    m, xb = _model(), x[:30]
    plain_value, plain = _grads(m, make_elbo("trace"), xb)
    value, fb = _grads(m, with_free_bits(make_elbo("trace"), 1e-12), xb)
    assert value == pytest.approx(plain_value, rel=1e-6)
    for a, b in zip(fb, plain):
        assert torch.allclose(a, b, atol=1e-5)
    _, huge = _grads(m, with_free_bits(make_elbo("trace"), 1e6), xb)
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(huge, plain))


def test_free_bits_is_declared_not_linear_in_the_plate_scale():
    fb = with_free_bits(make_elbo("meanfield"), 0.5)
    assert isinstance(fb, FreeBits) and fb.analytic
    assert not traits(fb).linear_in_plate_scale and traits(fb).lean_path
    assert with_free_bits(make_elbo("trace"), 0.0).__class__ is not FreeBits  # 0: off


def test_fit_reports_the_elbo_not_the_free_bits_objective(x):
    """One step on the whole data: the first epoch's train_elbo is the same ELBO with or
    without free bits (the value is computed before the step); the objectives differ."""
    runs = {}
    for fb in (0.0, 5.0):
        m = _model()
        runs[fb] = pvae.fit(m, x[:100], epochs=2, batch_size=100, elbo="meanfield",
                            free_bits=fb, seed=0)
    assert runs[5.0][0]["train_elbo"] == pytest.approx(runs[0.0][0]["train_elbo"], rel=1e-6)
    assert runs[5.0][1]["train_elbo"] != pytest.approx(runs[0.0][1]["train_elbo"], rel=1e-6)


def test_free_bits_keeps_latent_dimensions_active(x):
    """The point of free bits: a floor of 1 nat keeps the KL from collapsing below it."""
    kls = {}
    for fb in (0.0, 1.0):
        m = _model()
        pvae.fit(m, x, epochs=15, batch_size=100, elbo="meanfield", free_bits=fb, seed=0)
        kls[fb] = _kl_per_point(m, x).mean(0).detach()
    assert kls[1.0].sum() > kls[0.0].sum()


@pytest.mark.parametrize("make", [
    lambda: pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=1),  # IAF: the site is one group
    lambda: pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,)),
    lambda: pvae.VAE(64, 3, hidden_dims=(16,), beta=2.0),
])
def test_free_bits_trains_other_models(x, make):
    h = pvae.fit(make(), x[:100], epochs=1, batch_size=50, free_bits=0.5, seed=0, kl_warmup=1)
    assert math.isfinite(h[-1]["train_elbo"])


def test_cvae_takes_free_bits(xy):
    x, y = xy
    m = pvae.CVAE(64, 3, num_classes=10, hidden_dims=(16,))
    h = pvae.fit(m, (x[:100], y[:100]), epochs=1, batch_size=50, free_bits=0.5, seed=0)
    assert math.isfinite(h[-1]["train_elbo"])


@pytest.mark.parametrize("kwargs, match", [
    ({"elbo": "iwae:3"}, "IWAE: its latent terms enter a log-mean-exp"),
    ({"elbo": "renyi:0.5", "num_particles": 2}, "RenyiELBO: its latent terms"),
    ({"elbo": "enum"}, "ParallelEnum_ELBO: it sums out discrete latent sites"),
    ({"elbo": "tracegraph"}, "built on pvae's one-particle 'trace' and 'meanfield'"),
    ({"elbo": "jit_trace"}, "built on pvae's one-particle 'trace' and 'meanfield'"),
    ({"num_particles": 2}, "num_particles=2: use num_particles=1"),
    ({"free_bits": -1.0}, "free_bits must be a finite number >= 0"),
    ({"free_bits": float("nan")}, "free_bits must be a finite number >= 0"),
])
def test_free_bits_refusals_are_clear(x, kwargs, match):
    kwargs = {"free_bits": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        pvae.fit(_model(), x[:50], epochs=1, **kwargs)


def test_free_bits_refuses_the_enumerated_or_sampled_label(xy):
    x, y = xy
    m = pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,))
    with pytest.raises(ValueError, match="discrete or non-reparameterised site"):
        pvae.fit(m, (x[:60], torch.full_like(y[:60], -1)), epochs=1, free_bits=0.5)


def test_train_free_bits_config_round_trip():
    cfg = TrainConfig(free_bits=0.25, elbo="meanfield")
    assert cfg.fit_kwargs()["free_bits"] == 0.25
    assert TrainConfig(**cfg.model_dump()).free_bits == 0.25
    assert TrainConfig().free_bits == 0.0
    with pytest.raises((ConfigError, ValueError), match="train.free_bits.*IWAE"):
        TrainConfig(free_bits=0.5, elbo="iwae:5")
    with pytest.raises((ConfigError, ValueError)):
        TrainConfig(free_bits=-0.5)


@pytest.mark.parametrize("make", [
    lambda: pvae.VAE(64, 4, hidden_dims=(16,)),                 # per dimension
    lambda: pvae.VAE(64, 4, hidden_dims=(16,), prior="mog"),    # one group: a mixture prior
    lambda: pvae.VAE(64, 4, hidden_dims=(16,), guide_flows=1),  # one group: an IAF guide
])
def test_the_floor_a_site_gets_does_not_depend_on_how_its_density_factorises(x, make):
    """A huge lambda floors every group: the objective's latent part is then -B * D * lambda
    whether the site is D groups of one dimension or one group of D dimensions."""
    from pvae.fast_elbo import _record
    from pvae.free_bits import free_bits_terms

    torch.manual_seed(0)
    m, xb, lam = make(), x[:8], 1e4
    sites = _record(m.model, m.guide, (xb,), {})
    elbo, objective = free_bits_terms(*sites, lam, analytic=False)
    recon = sites[0]["x"]["fn"].log_prob(sites[0]["x"]["value"]).sum()
    assert float(objective - recon) == pytest.approx(-8 * 4 * lam, rel=1e-6)
