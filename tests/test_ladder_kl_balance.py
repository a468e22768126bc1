"""KL balancing during KL warm-up (``pvae.kl_balance``, ``fit(kl_balance=True)``,
``train.kl_balance``; Vahdat & Kautz 2020, appendix A)."""

import contextlib

import pyro
import pytest
import torch
from pyro import poutine
from torch.distributions import kl_divergence

import pvae
from pvae.config import ConfigError, TrainConfig, from_dict
from pvae.elbos import LatentScale, make_elbo
from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO
from pvae.kl_balance import KLBalance, balance_coefficients, warming_up
from pvae.train.checks import check_elbo, with_kl_balance

N, D = 24, 16


def _ladder(seed=0):
    torch.manual_seed(seed)
    return pvae.HierarchicalVAE(D, (4, 3), hidden_dims=(8,), guide="top_down", merge="residual")


def _x(n=N, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, D, generator=g) < 0.4).float()


def _step(elbo, m, x, seed, weight):
    """Loss and gradients of one step, as pvae.fit takes it (warm-up weight ``weight``)."""
    pyro.set_rng_seed(seed)
    m.zero_grad(set_to_none=True)
    scale = LatentScale(weight) if weight != 1.0 else contextlib.nullcontext()
    with pyro.validation_enabled(False), m.unregistered(), scale:
        loss = elbo.differentiable_loss(m.model, m.guide, x)
    loss.backward()
    return loss.item(), [None if p.grad is None else p.grad.clone() for p in m.parameters()]


def _agree(got, want):
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    for a, b in zip(got[1], want[1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item() + 1e-7)


def test_coefficients_by_hand():
    # site 1: KL 1 and 3 nats (mean 2) over 2 dimensions; site 2: 0 nats over 4
    gamma = balance_coefficients([torch.tensor([1.0, 3.0]), torch.zeros(2)], [2, 4])
    c1, c2 = (2 + 0.01) / 2, (0 + 0.01) / 4
    assert torch.allclose(gamma, torch.tensor([2 * c1 / (c1 + c2), 2 * c2 / (c1 + c2)]))
    assert gamma.sum().item() == pytest.approx(2.0)
    # equal KL per dimension: every coefficient is 1; the sign of a sampled KL is ignored
    same = balance_coefficients([torch.tensor([4.0, -4.0]), torch.tensor([4.0])], [2, 2])
    assert torch.allclose(same, torch.ones(2))
    kl = torch.tensor([1.0], requires_grad=True)
    assert not balance_coefficients([kl, torch.ones(1)], [1, 1]).requires_grad  # stop-gradient
    with pytest.raises(ValueError, match="one KL tensor per site"):
        balance_coefficients([torch.ones(1)], [1, 2])
    with pytest.raises(ValueError, match="at least one dimension"):
        balance_coefficients([torch.ones(1)], [0])


def _balanced_by_hand(m, x, seed, weight):
    """The balanced objective written out: recon - weight * sum_l gamma_l KL_l, gamma from
    the analytic KL per point of each layer (module docstring of pvae.kl_balance)."""
    pyro.set_rng_seed(seed)
    m.zero_grad(set_to_none=True)
    with m.unregistered():
        g = poutine.trace(m.guide).get_trace(x)
        t = poutine.trace(poutine.replay(m.model, trace=g)).get_trace(x)
    recon = t.nodes["x"]["fn"].log_prob(t.nodes["x"]["value"]).sum()
    kls = {s: kl_divergence(g.nodes[s]["fn"].base_dist, t.nodes[s]["fn"].base_dist).sum(-1)
           for s in ("z1", "z2")}
    c = {s: (kls[s].detach().mean() + 0.01) / m.z_dims[int(s[1]) - 1] for s in kls}
    gamma = {s: 2 * c[s] / (c["z1"] + c["z2"]) for s in kls}
    (-(recon - weight * sum(gamma[s] * kls[s].sum() for s in kls))).backward()
    return [None if p.grad is None else p.grad.clone() for p in m.parameters()]


def test_warm_up_gradient_is_the_balanced_objective_and_value_the_elbo():
    m, x = _ladder(), _x()
    value, grads = _step(KLBalance(analytic=True), m, x, 3, 0.4)
    plain_value, plain = _step(FastTraceMeanField_ELBO(), m, x, 3, 0.4)
    assert value == pytest.approx(plain_value, rel=1e-6)  # the (warm-up weighted) ELBO
    want = _balanced_by_hand(m, x, 3, 0.4)
    for a, b in zip(grads, want):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(not torch.allclose(a, b) for a, b in zip(grads, plain) if b is not None)


@pytest.mark.parametrize("analytic, plain", [(True, FastTraceMeanField_ELBO),
                                             (False, FastTrace_ELBO)])
def test_after_warm_up_the_loss_and_gradient_are_the_plain_elbos(analytic, plain):
    m, x = _ladder(), _x()
    assert not warming_up()
    _agree(_step(KLBalance(analytic=analytic), m, x, 5, 1.0), _step(plain(), m, x, 5, 1.0))


def test_replayed_steps_follow_the_weight_and_switch_off_after_warm_up():
    """One instance over a warm-up as fit runs it: replayed steps equal fresh ones, and
    the step at weight 1 (no LatentScale) is the plain ELBO, not a stale balanced replay."""
    m, x = _ladder(), _x()
    m.num_data = N
    fast = KLBalance(analytic=True)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for seed, weight in enumerate((0.1, 0.2, 0.3, 0.4, 1.0, 1.0, 1.0)):
        got = _step(fast, m, x, seed, weight)
        _agree(got, _step(KLBalance(analytic=True), m, x, seed, weight))
        if weight == 1.0:
            _agree(got, _step(FastTraceMeanField_ELBO(), m, x, seed, 1.0))
        for p, g in zip(m.parameters(), got[1]):
            p.grad = g
        opt.step()
    assert fast._tape.counts["replayed"] >= 2, fast._tape.refused


def test_fit_trains_with_it_and_reports_the_elbo():
    m, x = _ladder(), _x(200)
    h = pvae.fit(m, x, epochs=3, batch_size=50, kl_warmup=2, kl_balance=True, elbo="meanfield",
                 seed=0, progress=False)
    assert len(h) == 3 and all(torch.isfinite(torch.tensor(r["train_elbo"])) for r in h)
    assert h[-1]["kl_weight"] == 1.0


@pytest.mark.parametrize("kw, match", [
    (dict(kl_balance=1, kl_warmup=2), "True or False"),
    (dict(kl_balance="yes", kl_warmup=2), "True or False"),
    (dict(kl_balance=True), "only during KL warm-up"),
    (dict(kl_balance=True, kl_warmup=2, free_bits=0.5), "use one"),
    (dict(kl_balance=True, kl_warmup=2, elbo="iwae:5"), "cannot be used with IWAE"),
    (dict(kl_balance=True, kl_warmup=2, num_particles=2), "num_particles=2"),
])
def test_bad_values_are_refused_before_any_work(kw, match):
    m = _ladder()
    before = [p.clone() for p in m.parameters()]
    with pytest.raises(ValueError, match=match):
        pvae.fit(m, _x(), epochs=1, **kw)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))


def test_check_elbo_builds_it_and_leaves_the_elbo_alone_when_off():
    m = _ladder()
    assert isinstance(check_elbo(m, "meanfield", 1, 2, 0, True), KLBalance)
    assert check_elbo(m, "meanfield", 1, 2, 0, True).analytic
    assert not isinstance(check_elbo(m, "trace", 1, 2, 0, False), KLBalance)
    assert with_kl_balance(make_elbo("trace"), False, 0) .__class__ is not KLBalance


def test_train_config_round_trip_and_refusals():
    cfg = TrainConfig(kl_balance=True, kl_warmup=10.0, elbo="meanfield")
    assert cfg.fit_kwargs()["kl_balance"] is True
    assert TrainConfig(**cfg.model_dump()).kl_balance is True
    assert TrainConfig().kl_balance is False
    whole = from_dict({"model": {"type": "hvae", "guide": "top_down"},
                       "train": {"kl_balance": True, "kl_warmup": 3.0, "elbo": "meanfield"}})
    import yaml
    assert from_dict(yaml.safe_load(whole.to_yaml())).train.kl_balance is True
    with pytest.raises((ConfigError, ValueError), match="train.kl_balance.*warm-up"):
        TrainConfig(kl_balance=True)
    with pytest.raises((ConfigError, ValueError), match="train.kl_balance"):
        TrainConfig(kl_balance=True, kl_warmup=3.0, free_bits=0.5)
    with pytest.raises((ConfigError, ValueError), match="train.kl_balance.*IWAE"):
        TrainConfig(kl_balance=True, kl_warmup=3.0, elbo="iwae:5")
    with pytest.raises((ConfigError, ValueError)):
        TrainConfig(kl_balance="yes", kl_warmup=3.0)


def test_a_warm_up_weight_of_zero_gives_finite_gradients_of_the_reconstruction_alone():
    m, x = _ladder(), _x()
    value, grads = _step(KLBalance(analytic=True), m, x, 2, 0.0)
    _, plain = _step(FastTraceMeanField_ELBO(), m, x, 2, 0.0)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    for a, b in zip(grads, plain):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
