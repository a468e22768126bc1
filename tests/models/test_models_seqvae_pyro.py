"""SequenceVAE under Pyro's own tools: every ELBO under plain SVI with validation on and
warnings as errors, conditioning x equals passing it, outer plates refused."""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from test_pyro_validity import ELBOS, _scores, assert_ok, assert_warning, expectation

import pvae

N, T = 4, 5
LENGTHS = torch.tensor([5, 2, 1, 4])
MODELS = {
    "seqvae_tokens": lambda: pvae.SequenceVAE(vocab_size=3, z_dim=2, hidden_dim=4),
    "seqvae_series": lambda: pvae.SequenceVAE(x_dim=2, z_dim=2, hidden_dim=4, rnn="lstm"),
    "seqvae_flows": lambda: pvae.SequenceVAE(x_dim=2, z_dim=2, hidden_dim=4, guide_flows=1,
                                             likelihood="bernoulli"),
}


def _args(name):
    g = torch.Generator().manual_seed(0)
    if name == "seqvae_tokens":
        x = torch.randint(0, 3, (N, T), generator=g)
    elif name == "seqvae_flows":
        x = (torch.rand(N, T, 2, generator=g) > 0.5).float()
    else:
        x = torch.randn(N, T, 2, generator=g)
    x[1, 2:] = -7 if name == "seqvae_tokens" else float("nan")  # padding: never read
    return x, LENGTHS


CASES = [(m, e) for m in MODELS for e in ELBOS]


@pytest.mark.parametrize("model_name,elbo_name", CASES, ids=[f"{m}-{e}" for m, e in CASES])
def test_every_elbo_under_plain_svi(model_name, elbo_name):
    torch.manual_seed(0)
    model, args = MODELS[model_name](), _args(model_name)
    expected = expectation(model_name, elbo_name)
    if model_name == "seqvae_flows" and elbo_name in ("TraceMeanField_ELBO", "pvae_meanfield"):
        expected = ("flows",)  # the analytic KL of a flow is unknown: Monte Carlo, no error
    if expected[0] in ("ok", "flows"):
        assert_ok(model, elbo_name, args)
    else:
        assert_warning(model, elbo_name, args, expected[1])


@pytest.mark.parametrize("model_name", list(MODELS))
def test_conditioning_x_equals_passing_x(model_name):
    torch.manual_seed(0)
    model, (x, lengths) = MODELS[model_name](), _args(model_name)
    given, cond = _scores(model, (x, lengths), {"x": x}, (None, lengths), batch_size=N)
    assert set(given.stochastic_nodes + given.observation_nodes) == set(
        cond.stochastic_nodes + cond.observation_nodes) == {"data", "z", "x"}
    torch.testing.assert_close(cond.log_prob_sum(), given.log_prob_sum())
    drawn = poutine.trace(poutine.uncondition(model.model)).get_trace(x, lengths)
    value = drawn.nodes["x"]["value"]
    assert value.shape == x.shape and torch.isfinite(value).all()
    pad = torch.arange(T) >= lengths[:, None]  # drawn with the given lengths: zero beyond them
    assert (value[pad] == 0).all() and not torch.equal(value, torch.nan_to_num(x))


@pytest.mark.parametrize("model_name", list(MODELS))
def test_outer_batch_dimensions_are_refused_at_entry(model_name):
    model, (x, lengths) = MODELS[model_name](), _args(model_name)
    xs, ls = x.expand(3, *x.shape), lengths.expand(3, N)

    def outer(fn):
        def run():
            with pyro.plate("sets", 3, dim=-2):
                fn(xs, ls)
        return run

    match = r"x has shape \(3, 4, 5.*'data' and its dim -1 are reserved"
    for fn in (model.model, model.guide):
        with pytest.raises(ValueError, match=match):
            outer(fn)()
    with pytest.raises(ValueError, match=match):
        Trace_ELBO().loss(outer(model.model), outer(model.guide))


@pytest.mark.parametrize("model_name,bad,match", [
    ("seqvae_tokens", lambda x, n: (x, torch.tensor([6, 2, 1, 4])), r"length of 6 is outside 1\.\.5"),
    ("seqvae_tokens", lambda x, n: (x, torch.tensor([0, 2, 1, 4])), r"length of 0 is outside"),
    ("seqvae_tokens", lambda x, n: (x, n[:3]), r"lengths has shape \(3,\), but x has 4"),
    ("seqvae_tokens", lambda x, n: (x.masked_fill(x == 0, 3), n), "outside the vocabulary"),
    ("seqvae_series", lambda x, n: (x.masked_fill(torch.arange(T)[:, None] == 0, float("nan")),
                                    n), "NaN"),
])
def test_pyros_own_calls_get_the_clear_errors_of_bad_data(model_name, bad, match):
    """model and guide run by Pyro (SVI, Predictive, poutine.trace) refuse bad (x, lengths)
    with the messages pvae.fit gives, not an indexing error deep in the networks."""
    model, (x, lengths) = MODELS[model_name](), _args(model_name)
    x, lengths = bad(x, lengths)
    for fn in (model.model, model.guide):
        with pytest.raises(ValueError, match=match):
            poutine.trace(fn).get_trace(x, lengths)
    with pytest.raises(ValueError, match=match):
        Trace_ELBO().loss(model.model, model.guide, x, lengths)
