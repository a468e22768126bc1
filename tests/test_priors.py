"""Learned priors (pvae.priors): densities against the mixture written by hand, sampling,
every ELBO path, training, save/load, config and the refusals."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Predictive, Trace_ELBO, TraceMeanField_ELBO

import pvae
from pvae import priors
from pvae.nets import split_loc_scale
from pvae.config import ConfigError, from_dict
from pvae.elbos import make_elbo
from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO
from pvae.models import from_config


def vae(prior, k=None, **kw):
    return pvae.VAE(64, 3, hidden_dims=(16,), prior=prior, prior_components=k, **kw)


def learned_models():
    """Every model and learned prior it takes, with whether its batch carries labels."""
    return [
        ("vae-vamp", vae("vamp", 7), False),
        ("vae-mog", vae("mog", 4), False),
        ("vae-vamp-flows", vae("vamp", 5, guide_flows=1), False),
        ("hvae-vamp", pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,), guide="top_down",
                                           prior="vamp", prior_components=6), False),
        ("hvae-mog", pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,), prior="mog"), False),
        ("ssvae-mog", pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,), prior="mog",
                                             prior_components=3), True),
    ]


NAMES = [name for name, _, _ in learned_models()]


def model(name):
    """``(model, labelled)`` of one of :func:`learned_models`, built afresh."""
    return next((m, labels) for n, m, labels in learned_models() if n == name)


def hand_mixture(z, log_w, loc, scale):
    """log sum_k w_k prod_d Normal(z_d; loc_kd, scale_kd), written out."""
    comp = torch.stack([torch.distributions.Normal(loc[k], scale[k]).log_prob(z).sum(-1)
                        for k in range(loc.shape[0])], -1)
    return torch.logsumexp(comp + log_w, -1)


# -- densities -------------------------------------------------------------------------------
def test_vamp_log_density_is_the_mixture_of_the_encoder_at_the_pseudo_inputs():
    m = vae("vamp", 7)
    z = 2 * torch.randn(5, 3)
    u = m.latent_prior.pseudo_inputs()
    assert u.shape == (7, 64)
    loc, scale = m.encode(u)
    want = hand_mixture(z.double(), torch.full((7,), -math.log(7)).double(), loc.double(),
                        scale.double())
    got = m.pz(5).log_prob(z)
    assert got.shape == (5,) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-5)


def test_hvae_vamp_pushes_pseudo_inputs_through_the_top_layer_of_the_guide():
    m = pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,), guide="top_down", prior="vamp",
                             prior_components=6).double()
    u = m.latent_prior.pseudo_inputs()
    h = m._flat(u)
    for net in m.up:  # the guide's deterministic bottom-up pass, then the top head
        h = net(h)
    loc, scale = split_loc_scale(m.up_heads[-1](h))
    z = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(m.pz(4).log_prob(z),
                               hand_mixture(z, torch.full((6,), -math.log(6)).double(), loc,
                                            scale))


def test_mog_log_density_is_the_weighted_mixture():
    p = priors.MixturePrior(3, 4).double()
    with torch.no_grad():
        p.logits.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0]))
    z = 3 * torch.randn(2, 5, 3, dtype=torch.float64)
    scale = torch.nn.functional.softplus(p.raw_scale) + 1e-5
    want = hand_mixture(z, torch.log_softmax(p.logits, -1), p.loc, scale)
    got = p((5,)).log_prob(z)
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, want)
    # and Pyro's MixtureSameFamily, whose log_prob the subclass replaces, agrees
    torch.testing.assert_close(got, dist.MixtureSameFamily.log_prob(p((5,)), z))


def test_pseudo_inputs_stay_in_the_data_domain():
    assert priors.pseudo_input_domain(vae("vamp").likelihood) == (0.0, 1.0)
    gauss = pvae.VAE(64, 3, likelihood="gaussian", prior="vamp")
    assert gauss.latent_prior.low is None and gauss.latent_prior.high is None
    cat = pvae.VAE(64, 3, likelihood="categorical", likelihood_kwargs={"num_levels": 17},
                   prior="vamp")
    assert (cat.latent_prior.low, cat.latent_prior.high) == (0.0, 16.0)
    m = vae("vamp", 5)
    with torch.no_grad():
        m.latent_prior.raw_inputs.copy_(torch.linspace(-3, 3, 320).reshape(5, 64))
    u = m.latent_prior.pseudo_inputs()
    assert u.min() == 0.0 and u.max() == 1.0  # hard-tanh into [0, 1], as the paper


# -- sampling --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_sampling_shapes(name):
    m, labels = model(name)
    top = m.z_dims[-1] if hasattr(m, "z_dims") else m.z_dim
    pz = m.pz(6)
    assert pz.batch_shape == (6,) and pz.event_shape == (top,)
    assert pz.sample().shape == (6, top) and pz.sample((2,)).shape == (2, 6, top)
    assert m.sample(4).shape == (4, 64)
    pred = Predictive(m.model, num_samples=2)(batch_size=3)
    assert pred["x"].shape == (2, 3, 64)


def test_mixture_samples_follow_the_weights():
    mix = priors.DiagonalNormalMixture(torch.log(torch.tensor([0.2, 0.8])),
                                       torch.tensor([[-5.0], [5.0]]), torch.ones(2, 1), (4000,))
    z = mix.sample()
    assert z.shape == (4000, 1)
    assert abs((z > 0).float().mean().item() - 0.8) < 0.03
    assert abs(z[z > 0].mean().item() - 5.0) < 0.1


# -- ELBO paths --------------------------------------------------------------------------------
PAIRS = [(FastTrace_ELBO, Trace_ELBO), (FastTraceMeanField_ELBO, TraceMeanField_ELBO)]


@pytest.mark.parametrize("pair", PAIRS, ids=["trace", "meanfield"])
@pytest.mark.parametrize("name", NAMES)
def test_lean_paths_equal_pyros_trace_elbo(name, pair, binary_digits):
    """The lean ELBOs give Pyro's value and gradients; with a learned prior, the mean-field
    ELBO's KL is Monte Carlo, so for one-latent models it equals Trace_ELBO's value."""
    m, labels = model(name)
    if pair[0] is FastTraceMeanField_ELBO and not m.mean_field:
        pytest.skip("not a mean-field guide")
    x, y = binary_digits.train.x[:30], binary_digits.train.y[:30]
    args = (x, y) if labels else (x,)
    m.num_data = 300
    out = []
    for cls in (*pair, Trace_ELBO):
        pyro.set_rng_seed(0)
        m.zero_grad()
        loss = cls().differentiable_loss(m.model, m.guide, *args)
        loss.backward()
        out.append((loss.item(), [p.grad.clone() for p in m.parameters() if p.grad is not None]))
    (fast, fast_g), (ref, ref_g), (trace, _) = out
    assert fast == pytest.approx(ref, rel=1e-6)
    assert len(fast_g) == len(ref_g) > 0
    for a, b in zip(fast_g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    if name.startswith(("vae", "ssvae")):  # the only latent site's KL is Monte Carlo
        assert fast == pytest.approx(trace, rel=1e-6)
    grads = dict(m.named_parameters())
    assert any(grads[k].grad is not None and grads[k].grad.abs().sum() > 0
               for k in grads if k.startswith("latent_prior"))  # the prior learns


@pytest.mark.parametrize("name", ["jit_trace", "jit_meanfield"])
def test_jit_elbos_equal_eager_once_compiled(name, binary_digits):
    m = vae("vamp", 5)
    x = binary_digits.train.x[:30]
    elbo = make_elbo(name)
    elbo.differentiable_loss(m.model, m.guide, x)  # compiles
    values = []
    for fn in (elbo, Trace_ELBO()):
        pyro.set_rng_seed(3)
        values.append(fn.differentiable_loss(m.model, m.guide, x).item())
    assert values[0] == pytest.approx(values[1], rel=1e-5)


def test_meanfield_says_the_kl_is_monte_carlo(binary_digits):
    x = binary_digits.train.x[:64]
    with pytest.warns(UserWarning, match=r"site\(s\) 'z' .*VampPrior.*Monte Carlo"):
        pvae.fit(vae("vamp", 5), x, elbo="meanfield", epochs=1, batch_size=32)
    h = pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,), guide="top_down", prior="mog")
    assert h.monte_carlo_kl_sites == ("z2",)
    with pytest.warns(UserWarning, match=r"'z2' .*MixturePrior"):
        pvae.fit(h, x, elbo="meanfield", epochs=1, batch_size=32)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pvae.fit(vae("standard"), x, elbo="meanfield", epochs=1, batch_size=32)
        pvae.fit(vae("vamp", 5), x, elbo="trace", epochs=1, batch_size=32)
    assert vae("standard").monte_carlo_kl_sites == ()


def test_diagnostics_report_the_rate_and_leave_kl_per_dim_undefined(binary_digits):
    m = vae("vamp", 5)
    d = pvae.evaluate.diagnostics(m, binary_digits.train.x[:100])
    assert d["kl_per_dim"]["z"] is None  # no closed form per dimension against a mixture
    assert math.isfinite(d["rate"]) and d["rate"] == pytest.approx(d["rate_z"])
    assert d["active_units"]["z"]["dims"] == 3


# -- training, save/load, config -----------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_each_option_trains_and_is_saved_and_loaded(name, binary_digits, tmp_path):
    m, labels = model(name)
    x, y = binary_digits.train.x[:200], binary_digits.train.y[:200].clone()
    if labels:
        y[50:] = -1
    prior_before = [p.detach().clone() for p in m.latent_prior.parameters()]
    h = pvae.fit(m, (x, y) if labels else x, elbo="enum" if labels else "trace", epochs=2,
                 batch_size=50, lr=1e-2)
    assert all(math.isfinite(r["train_elbo"]) for r in h)
    assert any(not torch.equal(a, b) for a, b in zip(prior_before, m.latent_prior.parameters()))
    m.save(tmp_path / "m.pt")
    back = pvae.load(tmp_path / "m.pt")
    assert type(back.latent_prior) is type(m.latent_prior)
    assert back.hparams["prior"] == m.hparams["prior"] != "standard"
    assert back.latent_prior.num_components == m.latent_prior.num_components
    z = torch.randn(7, m.pz(1).event_shape[0])
    torch.testing.assert_close(back.pz(7).log_prob(z), m.eval().pz(7).log_prob(z))
    ll = []
    for mm in (m, back):
        pyro.set_rng_seed(0)
        ll.append(pvae.evaluate.log_likelihood(mm, (x[:20], y[:20]) if labels else x[:20], 5))
    torch.testing.assert_close(ll[0], ll[1])


def test_standard_prior_adds_nothing_to_the_weights():
    """Checkpoints of models without a learned prior keep their keys (old files load)."""
    m = vae("standard")
    assert not any(k.startswith("latent_prior") for k in m.state_dict())
    assert m.hparams["prior"] == "standard" and m.hparams["prior_components"] is None
    z = torch.randn(4, 3)
    torch.testing.assert_close(m.pz(4).log_prob(z), dist.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_config_builds_a_learned_prior():
    cfg = from_dict({"model": {"prior": "vamp", "prior_components": 9}})
    m = from_config(cfg.model, (64,))
    assert isinstance(m.latent_prior, priors.VampPrior) and m.latent_prior.num_components == 9
    cfg = from_dict({"model": {"type": "hvae", "guide": "top_down", "prior": "mog"}})
    assert isinstance(from_config(cfg.model, (64,)).latent_prior, priors.MixturePrior)


@pytest.mark.parametrize("values, message", [
    ({"prior": "flow"}, r"'model.prior' must be one of"),
    ({"type": "cvae", "prior": "vamp"}, r"'model.prior': model.type cvae cannot take "
                                        r"prior='vamp': its prior is the conditional p\(z \| y\)"),
    ({"type": "ssvae", "prior": "vamp"}, r"q\(z \| x, y\)"),
    ({"prior_components": 5}, r"with prior='standard' leave it None"),
    ({"prior": "mog", "prior_components": 0}, r"prior_components must be a positive int"),
])
def test_bad_prior_configs(values, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"model": values})


def test_train_command_with_model_prior_vamp(tmp_path):
    from pvae.cli import main

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "model.prior=vamp", "--set",
                 "model.prior_components=20", "--set", "model.hidden_dims=[16]", "--set",
                 "data.max_train=300", "--set", "train.epochs=1", "--set",
                 "evaluate.num_samples=5", "--quiet"]) == 0
    trained = pvae.load(out / "checkpoint.pt")
    assert isinstance(trained.latent_prior, priors.VampPrior)


# -- refusals -------------------------------------------------------------------------------
@pytest.mark.parametrize("build, message", [
    (lambda: pvae.CVAE(64, 3, num_classes=10, prior="vamp"),
     r"CVAE cannot take prior='vamp': its prior is the conditional p\(z \| y\).*learned_prior"),
    (lambda: pvae.CVAE(64, 3, num_classes=10, prior="mog"), r"CVAE cannot take prior='mog'"),
    (lambda: pvae.SemiSupervisedVAE(64, 10, prior="vamp"),
     r"SemiSupervisedVAE cannot take prior='vamp': its encoder is q\(z \| x, y\).*prior='mog'"),
    (lambda: pvae.HierarchicalVAE(64, (4, 2), prior="vamp"),
     r"HierarchicalVAE cannot take prior='vamp': with guide='bottom_up'.*guide='top_down'"),
    (lambda: vae("gaussian"), r"prior must be one of 'standard', 'vamp', 'mog', got 'gaussian'"),
    (lambda: vae("standard", 10), r"prior_components=10 .*with prior='standard' leave it None"),
    (lambda: vae("vamp", 0), r"prior_components must be a positive int, got 0"),
    (lambda: vae("mog", 2.5), r"prior_components must be a positive int, got 2.5"),
])
def test_refusals_are_clear(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_one_layer_bottom_up_hierarchy_takes_the_vamp_prior():
    m = pvae.HierarchicalVAE(64, (3,), hidden_dims=(16,), prior="vamp", prior_components=4)
    assert m.pz(2).log_prob(torch.zeros(2, 3)).shape == (2,)
