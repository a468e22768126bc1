"""The Normal log-density of the lean ELBO path (:mod:`pvae.fast_normal`): equal to torch's
in value and gradient, the closed form in the noise used only at the distribution's own
untouched draw, and the draw itself the one ``Normal.rsample`` makes."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

import pvae
from pvae.fast_elbo import FastTrace_ELBO, _Record
from pvae.fast_normal import NOISE, log_density


def _params(shape=(5, 3), scale_shape=None):
    torch.manual_seed(0)
    loc = torch.randn(shape, requires_grad=True)
    scale = (torch.rand(scale_shape or shape) + 0.3).requires_grad_()
    return loc, scale


def _grads(out, *leaves):
    """Gradients of ``out.sum()``, zeros for a leaf that is not in its graph."""
    grads = torch.autograd.grad(out.sum(), leaves, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]


@pytest.mark.parametrize("event", [0, 1])
@pytest.mark.parametrize("scale_shape", [None, (3,)], ids=["same shape", "broadcast scale"])
def test_the_density_of_any_value_equals_torchs_in_value_and_gradient(event, scale_shape):
    loc, scale = _params(scale_shape=scale_shape)
    value = torch.randn(5, 3, requires_grad=True)
    fn = dist.Normal(loc, scale, validate_args=False)
    fn = fn.to_event(event) if event else fn
    msg = {"fn": fn, "value": value}
    got, want = log_density(msg), fn.log_prob(value)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    for a, b in zip(_grads(got, loc, scale, value), _grads(want, loc, scale, value)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _guide_site(change=None, obs=None):
    """Run a one-site guide under the lean path's recorder; ``change(loc, z)`` runs after
    the draw. Returns the site's message."""
    loc, scale = _params()

    def guide():
        with pyro.plate("data", 5):
            z = pyro.sample("z", dist.Normal(loc, scale).to_event(1), obs=obs)
        if change is not None:
            change(loc, z)

    with pyro.validation_enabled(False), _Record() as rec:
        guide()
    return rec.sites["z"], loc, scale


def test_a_guide_draw_is_rsamples_draw_and_its_density_is_closed_form_in_the_noise():
    msg, loc, scale = _guide_site()
    _params()  # the same random stream as the guide's: its set-up, then the draw
    want_z = dist.Normal(loc, scale).rsample()
    assert torch.equal(msg["value"], want_z)  # the same numbers from the same stream
    eps = msg[NOISE][0]
    assert torch.equal(msg["value"], loc + eps * scale)
    got = log_density(msg)
    want = dist.Normal(loc, scale, validate_args=False).to_event(1).log_prob(msg["value"])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # the closed form in eps: log q = -eps^2 / 2 - log scale - log(2 pi) / 2, summed
    closed = (-0.5 * eps ** 2 - scale.log() - 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum(-1)
    torch.testing.assert_close(got, closed, rtol=1e-6, atol=1e-6)
    # its gradient: d/dloc 0 and d/dscale -1/scale, as Pyro's through z (up to rounding)
    g_loc, g_scale = _grads(got, loc, scale)
    w_loc, w_scale = _grads(want, loc, scale)
    assert torch.count_nonzero(g_loc) == 0
    torch.testing.assert_close(g_scale, -1 / scale, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_loc, w_loc, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_scale, w_scale, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change", ["loc in place", "value in place"])
def test_a_draw_changed_in_place_afterwards_gets_the_density_of_what_it_became(change):
    def after(loc, z):
        with torch.no_grad():
            (loc if change == "loc in place" else z).add_(1.5)

    msg, loc, scale = _guide_site(after)
    assert NOISE in msg  # drawn here, but no longer the distribution's own draw
    with torch.no_grad():
        want = msg["fn"].log_prob(msg["value"])
        got = log_density(msg)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    eps = msg[NOISE][0]
    stale = (-0.5 * eps ** 2 - scale.log() - 0.9189385332046727).sum(-1)
    assert not torch.allclose(got, stale, atol=1e-2)  # the closed form would be wrong here


def test_an_observed_site_or_a_value_set_around_the_call_is_not_drawn_here():
    obs = torch.randn(5, 3)
    msg, _, _ = _guide_site(obs=obs)
    assert NOISE not in msg and msg["value"] is obs
    # a handler below the recorder sets the value: nothing is drawn (the stream unchanged)
    pyro.set_rng_seed(0)
    fixed = torch.zeros(5, 3)
    with poutine.condition(data={"z": fixed}):
        msg, _, _ = _guide_site()
    after = torch.randn(1)
    pyro.set_rng_seed(0)
    assert NOISE not in msg and msg["value"] is fixed
    _params()  # the same draws as _guide_site's own set-up
    assert torch.equal(after, torch.randn(1))


def test_a_subclass_of_normal_and_half_precision_get_torchs_log_prob_exactly():
    class Shifted(dist.Normal):
        def log_prob(self, value):
            return super().log_prob(value) + 1.0

    loc, scale = _params()
    value = torch.randn(5, 3)
    fn = Shifted(loc, scale, validate_args=False)
    assert torch.equal(log_density({"fn": fn, "value": value}), fn.log_prob(value))
    half = dist.Normal(loc.detach().bfloat16(), scale.detach().bfloat16(), validate_args=False)
    v = value.bfloat16()
    assert torch.equal(log_density({"fn": half, "value": v}), half.log_prob(v))


def test_a_table_step_records_fewer_operations_and_still_equals_pyros():
    """The Monte Carlo step of a Gaussian table VAE: 45 operations with torch's Normal
    densities, 32 with these (a hand-written VAE takes about 34)."""
    from pyro.infer import Trace_ELBO

    model = pvae.VAE(12, 3, hidden_dims=(64,), likelihood="gaussian")
    model.num_data = 1000
    x = torch.randn(50, 12)
    fast = FastTrace_ELBO()
    with pyro.validation_enabled(False), model.unregistered():
        for seed in range(3):
            pyro.set_rng_seed(seed)
            got = fast.differentiable_loss(model.model, model.guide, x)
            pyro.set_rng_seed(seed)
            want = Trace_ELBO().differentiable_loss(model.model, model.guide, x)
            assert got.item() == pytest.approx(want.item(), rel=1e-5)
    (recording,) = [r for r in fast._tape.recordings.values() if r is not None]
    assert len(recording.ops) <= 32
