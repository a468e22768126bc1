"""Pyro's own validity checks, run on every pvae model with every ELBO that applies.

Re-creates the pattern of Pyro's ``tests/infer/test_valid_models.py``: each
model/guide pair runs under plain ``pyro.infer.SVI`` with ``pyro.optim``, Pyro's
validation on and every warning an error (``assert_ok``); where Pyro is meant
to warn, the warning is asserted (``assert_warning``), and where a combination
is refused, the refusal and its message (``assert_refused``). A new model goes
into ``MODELS`` and a new ELBO into ``ELBOS``; ``expectation`` says what each
pair must do.
"""

from __future__ import annotations

import math
import warnings

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import (
    SVI, RenyiELBO, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO,
    config_enumerate,
)
from pyro.optim import Adam

import pvae
from helpers import data_in_support
from pvae.elbos import make_elbo
from pvae.fast_elbo import FastTraceMeanField_ELBO
from pvae.weights import log_weights

N, D, C = 4, 6, 3  # data points, features, classes


def _data():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(N, D, generator=g) > 0.5).float()
    return x, torch.arange(N) % C, torch.randn(N, 2, generator=g)


small = dict(hidden_dims=(4,))
#: name -> (constructor, which data the model and guide take: "x", "xy" labels, "xv" vectors)
MODELS = {
    "vae": (lambda: pvae.VAE(D, 2, **small), "x"),
    "vae_flows": (lambda: pvae.VAE(D, 2, guide_flows=1, **small), "x"),
    "cvae_classes": (lambda: pvae.CVAE(D, 2, num_classes=C, **small), "xy"),
    "cvae_ydim": (lambda: pvae.CVAE(D, 2, y_dim=2, **small), "xv"),
    "ssvae_labelled": (lambda: pvae.SemiSupervisedVAE(D, C, z_dim=2, balance_weight=1.0,
                                                      **small), "xy"),
    "ssvae_unlabelled": (lambda: pvae.SemiSupervisedVAE(D, C, z_dim=2, balance_weight=1.0,
                                                        **small), "x"),
    "hvae_bottom_up": (lambda: pvae.HierarchicalVAE(D, (3, 2), guide="bottom_up", **small), "x"),
    "hvae_top_down": (lambda: pvae.HierarchicalVAE(D, (3, 2), guide="top_down", **small), "x"),
    # learned priors (pvae.priors): the KL of their site is Monte Carlo under every ELBO
    "vae_vamp": (lambda: pvae.VAE(D, 2, prior="vamp", prior_components=3, **small), "x"),
    "hvae_top_down_mog": (lambda: pvae.HierarchicalVAE(D, (3, 2), guide="top_down", prior="mog",
                                                       **small), "x"),
    "hvae_top_down_vamp": (lambda: pvae.HierarchicalVAE(D, (3, 2), guide="top_down",
                                                        prior="vamp", prior_components=3,
                                                        **small), "x"),
    "ssvae_unlabelled_mog": (lambda: pvae.SemiSupervisedVAE(D, C, z_dim=2, prior="mog",
                                                            **small), "x"),
}


def _args(kind: str):
    x, y, v = _data()
    return {"x": (x,), "xy": (x, y), "xv": (x, v)}[kind]


#: name -> (ELBO factory, whether the guide is enumerated as the docs say to)
ELBOS = {
    "Trace_ELBO": (lambda: Trace_ELBO(), False),
    "TraceMeanField_ELBO": (lambda: TraceMeanField_ELBO(), False),
    "TraceGraph_ELBO": (lambda: TraceGraph_ELBO(), False),
    "TraceEnum_ELBO": (lambda: TraceEnum_ELBO(max_plate_nesting=1), True),
    "RenyiELBO": (lambda: RenyiELBO(alpha=0.5, num_particles=2, vectorize_particles=True,
                                    max_plate_nesting=1), False),
    "pvae_trace": (lambda: make_elbo("trace"), False),
    "pvae_meanfield": (lambda: make_elbo("meanfield"), False),
    "pvae_enum": (lambda: make_elbo("enum"), False),
    "pvae_iwae": (lambda: make_elbo("iwae:2"), False),
}

MEAN_FIELD_ELBOS = ("TraceMeanField_ELBO", "pvae_meanfield")
ENUM_ELBOS = ("TraceEnum_ELBO", "pvae_enum")
NO_ENUMERABLE_SITES = "TraceEnum_ELBO found no sample sites configured for enumeration"
ORDER_WARNING = "Failed to verify mean field restriction on the guide"


def expectation(model_name: str, elbo_name: str):
    """``("ok",)``, ``("warn", match)`` or ``("error", exception, match)``."""
    if elbo_name in MEAN_FIELD_ELBOS:
        if model_name.startswith("ssvae_unlabelled"):  # y ~ Categorical: not reparameterised
            return ("error", NotImplementedError, "must be fully reparameterized")
        if model_name == "hvae_bottom_up":  # z1 drawn before z2 in the guide, after in the model
            return ("warn", ORDER_WARNING)
    if elbo_name in ENUM_ELBOS and not model_name.startswith("ssvae_unlabelled"):
        return ("warn", NO_ENUMERABLE_SITES)  # nothing to enumerate: Pyro's own warning
    return ("ok",)


def _svi(model, elbo_name):
    make, enumerate_guide = ELBOS[elbo_name]
    guide = config_enumerate(model.guide) if enumerate_guide else model.guide
    elbo = make()
    return SVI(model.model, guide, Adam({"lr": 1e-2}), elbo), elbo, guide


def assert_ok(model, elbo_name, args):
    """A few plain-SVI steps and the ELBO's own entry points, without any warning or error."""
    before = [p.detach().clone() for p in model.parameters()]
    with pyro.validation_enabled(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        svi, elbo, guide = _svi(model, elbo_name)
        for _ in range(3):
            assert math.isfinite(svi.step(*args))
        pyro.set_rng_seed(1)
        loss = elbo.loss(model.model, guide, *args)
        if hasattr(elbo, "differentiable_loss"):  # the same draws give the same number
            pyro.set_rng_seed(1)
            diff = elbo.differentiable_loss(model.model, guide, *args).item()
            assert diff == pytest.approx(loss, rel=1e-4, abs=1e-3)
    assert math.isfinite(loss)
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters())]
    assert any(changed), "SVI with pyro.optim changed no parameter"


def assert_warning(model, elbo_name, args, match):
    with pyro.validation_enabled(True), pytest.warns(UserWarning, match=match):
        _svi(model, elbo_name)[0].step(*args)


def assert_refused(model, elbo_name, args, exception, match):
    with pyro.validation_enabled(True), pytest.raises(exception, match=match):
        _svi(model, elbo_name)[0].step(*args)


CASES = [(m, e) for m in MODELS for e in ELBOS]


@pytest.mark.parametrize("model_name,elbo_name", CASES, ids=[f"{m}-{e}" for m, e in CASES])
def test_every_model_with_every_elbo(model_name, elbo_name):
    make, kind = MODELS[model_name]
    torch.manual_seed(0)
    model, args = make(), _args(kind)
    expected = expectation(model_name, elbo_name)
    if expected[0] == "ok":
        assert_ok(model, elbo_name, args)
    elif expected[0] == "warn":
        assert_warning(model, elbo_name, args, expected[1])
    else:
        assert_refused(model, elbo_name, args, expected[1], expected[2])


def _data_for(likelihood) -> torch.Tensor:
    """The first of a few small data sets that lies in the likelihood's support."""
    return data_in_support(likelihood, N, D)


LIKELIHOOD_CASES = [(name, e) for name in pvae.likelihoods.names()
                    for e in ("Trace_ELBO", "TraceMeanField_ELBO", "TraceGraph_ELBO",
                              "pvae_trace", "pvae_meanfield")]


@pytest.mark.parametrize("likelihood,elbo_name", LIKELIHOOD_CASES,
                         ids=[f"{lik}-{e}" for lik, e in LIKELIHOOD_CASES])
def test_every_likelihood_with_the_elbos_of_a_vae(likelihood, elbo_name):
    torch.manual_seed(0)
    vae = pvae.VAE(D, 2, likelihood=likelihood, **small)
    assert_ok(vae, elbo_name, (_data_for(vae.likelihood),))


# -- conditioning a site equals passing it as an argument ---------------------------------------
def _scores(model, args, conditioned: dict, cond_args, **kwargs):
    """log p of the model's trace, given as arguments and conditioned, the same guide draws."""
    pyro.set_rng_seed(2)
    guide_tr = poutine.trace(model.guide).get_trace(*args)
    given = poutine.trace(poutine.replay(model.model, trace=guide_tr)).get_trace(*args)
    cond = poutine.condition(model.model, data=conditioned)
    cond_tr = poutine.trace(poutine.replay(cond, trace=guide_tr)).get_trace(*cond_args, **kwargs)
    return given, cond_tr


@pytest.mark.parametrize("model_name", list(MODELS))
def test_conditioning_x_equals_passing_x(model_name):
    make, kind = MODELS[model_name]
    torch.manual_seed(0)
    model, args = make(), _args(kind)
    x, rest = args[0], args[1:]
    given, cond = _scores(model, args, {"x": x}, (None, *rest), batch_size=N)
    assert set(given.stochastic_nodes + given.observation_nodes) == set(
        cond.stochastic_nodes + cond.observation_nodes)
    torch.testing.assert_close(cond.log_prob_sum(), given.log_prob_sum())


@pytest.mark.parametrize("model_name", [m for m, (_, kind) in MODELS.items() if kind != "x"])
def test_conditioning_x_and_y_equals_passing_them(model_name):
    make, kind = MODELS[model_name]
    torch.manual_seed(0)
    model, (x, y) = make(), _args(kind)
    given, cond = _scores(model, (x, y), {"x": x, "y": y}, (None, None), batch_size=N)
    torch.testing.assert_close(cond.log_prob_sum(), given.log_prob_sum())
    if kind == "xy":  # site y conditioned alone, x passed
        given, cond = _scores(model, (x, y), {"y": y}, (x,))
        torch.testing.assert_close(cond.log_prob_sum(), given.log_prob_sum())


def test_cvae_with_a_continuous_condition_needs_it_given_or_conditioned():
    m = pvae.CVAE(D, 2, y_dim=2, **small)
    with pytest.raises(ValueError, match="continuous condition needs y: pass it, or condition"):
        m.model(_data()[0])


@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "unlabelled"])
def test_ssvae_auxiliary_terms_come_from_the_observed_x(labelled):
    """The classifier term (labelled) and the balance term (unlabelled) are scored on the
    observed site x however it arrives; a generated x gets neither."""
    torch.manual_seed(0)
    m = pvae.SemiSupervisedVAE(D, C, z_dim=2, balance_weight=1.0, **small)
    x, y, _ = _data()
    args = (x, y) if labelled else (x,)
    aux = "y_aux" if labelled else "y_balance"
    given, cond = _scores(m, args, {"x": x}, (None, *args[1:]), batch_size=N)
    assert aux in given.nodes and aux in cond.nodes
    given.compute_log_prob()
    cond.compute_log_prob()
    torch.testing.assert_close(cond.nodes[aux]["log_prob_sum"], given.nodes[aux]["log_prob_sum"])
    assert given.nodes[aux]["log_prob_sum"].abs() > 0
    generated = poutine.trace(poutine.uncondition(m.model)).get_trace(*args)
    assert "y_aux" not in generated.nodes and "y_balance" not in generated.nodes


# -- pvae's data plate inside a user's own plate ------------------------------------------------
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("num_sets", [3, N], ids=["S!=N", "S==N"])
def test_outer_batch_dimensions_are_refused_at_entry(model_name, num_sets):
    make, kind = MODELS[model_name]
    model, args = make(), _args(kind)
    xs = args[0].expand(num_sets, *args[0].shape)  # S data sets of N points
    rest = tuple(t.expand(num_sets, *t.shape) for t in args[1:])

    def outer(fn):
        def run():
            with pyro.plate("sets", num_sets, dim=-2):
                fn(xs, *rest)
        return run

    match = r"x has shape \(%d, %d, %d\).*\(N, %d\).*'data' and its dim -1 are reserved" % (
        num_sets, N, D, D)
    for fn in (model.model, model.guide):
        with pytest.raises(ValueError, match=match):
            outer(fn)()
    with pytest.raises(ValueError, match=match):
        Trace_ELBO().loss(outer(model.model), outer(model.guide))


def test_one_data_set_inside_a_user_plate_at_dim_minus_2_runs():
    """What the docs say works: the user's plate named otherwise, at dim -2."""
    vae = pvae.VAE(D, 2, **small)
    x = _data()[0]

    def model():
        with pyro.plate("sets", 3, dim=-2):
            vae.model(x)

    def guide():
        with pyro.plate("sets", 3, dim=-2):
            vae.guide(x)

    with pyro.validation_enabled(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        tr = poutine.trace(guide).get_trace()
        assert tr.nodes["z"]["value"].shape == (3, N, 2)
        assert math.isfinite(Trace_ELBO().loss(model, guide))


# -- enumeration where it is asked for ------------------------------------------------------------
def test_pvae_enum_equals_pyro_traceenum_on_the_enumerated_guide():
    torch.manual_seed(0)
    m = pvae.SemiSupervisedVAE(D, C, z_dim=2, **small)
    x = _data()[0]
    pyro.set_rng_seed(3)
    ours = make_elbo("enum").loss(m.model, m.guide, x)
    pyro.set_rng_seed(3)
    pyros = TraceEnum_ELBO(max_plate_nesting=1).loss(m.model, config_enumerate(m.guide), x)
    pyro.set_rng_seed(3)
    sampled = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False).loss(
        m.model, m.guide, x)
    assert ours == pytest.approx(pyros, rel=1e-6)
    assert ours != pytest.approx(sampled, rel=1e-6)  # the plain guide samples y


def test_log_likelihood_sums_the_label_out_exactly():
    """log p^(x) with one z per label equals
    logsumexp_y [log p(y) p(z_y) p(x | z_y, y) - log q(z_y | x, y)], the z_y read from the
    evaluation's own guide trace: y enumerated, not sampled."""
    torch.manual_seed(0)
    m = pvae.SemiSupervisedVAE(D, C, z_dim=2, **small)
    x = _data()[0]
    pyro.set_rng_seed(4)
    ll = pvae.evaluate.log_likelihood(m, x, num_samples=1)
    pyro.set_rng_seed(4)
    with torch.no_grad():
        w = log_weights(m.model, m.guide, (x,), 1, enumerate=True)
    assert w.num_enumerated_sites == 1
    torch.testing.assert_close(w.local[0], ll)
    z = w.guide_trace.nodes["z"]["value"].reshape(C, N, 2)  # one draw per label and point
    terms = []
    with torch.no_grad():
        for c in range(C):
            y = torch.full((N,), c)
            loc, scale = m.encode(x, y)
            terms.append(math.log(1 / C)
                         + torch.distributions.Normal(0.0, 1.0).log_prob(z[c]).sum(-1)
                         + m.decode(z[c], y).log_prob(x)
                         - torch.distributions.Normal(loc, scale).log_prob(z[c]).sum(-1))
    torch.testing.assert_close(torch.logsumexp(torch.stack(terms), 0), ll)


# -- the lean mean-field ELBO checks the mean-field condition as Pyro does ----------------------
@pytest.mark.parametrize("guide", ["bottom_up", "top_down"])
def test_lean_meanfield_checks_site_order_like_pyro(guide):
    torch.manual_seed(0)
    h = pvae.HierarchicalVAE(D, (3, 2), guide=guide, **small)
    x = _data()[0]
    for cls in (TraceMeanField_ELBO, FastTraceMeanField_ELBO):
        with pyro.validation_enabled(True), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            cls().loss(h.model, h.guide, x)
        hits = [w for w in seen if ORDER_WARNING in str(w.message)]
        assert len(hits) == (1 if guide == "bottom_up" else 0), cls.__name__
    with pyro.validation_enabled(False), warnings.catch_warnings():
        warnings.simplefilter("error")  # as Pyro's class: no check with validation off
        FastTraceMeanField_ELBO().loss(h.model, h.guide, x)
