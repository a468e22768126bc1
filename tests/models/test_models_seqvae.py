"""SequenceVAE: masking, likelihoods, Pyro tools, ELBOs, save/load, sampling, bad input."""

from __future__ import annotations

import math
import types

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, Trace_ELBO

import pvae
from pvae.batching import as_batch

LENGTHS = torch.tensor([7, 3, 1, 5, 2, 6])


def tokens(n=6, t=7, v=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, v, (n, t), generator=g)


def series(n=6, t=7, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, d, generator=g)


def token_model(**kw):
    return pvae.SequenceVAE(vocab_size=5, z_dim=3, hidden_dim=16, **kw)


def series_model(**kw):
    kw.setdefault("x_dim", 2)
    return pvae.SequenceVAE(z_dim=3, hidden_dim=16, **kw)


def test_trains_evaluates_and_round_trips_end_to_end(tmp_path):
    torch.manual_seed(0)
    for model, x in ((token_model(), tokens()), (series_model(rnn="lstm"), series())):
        pvae.fit(model, (x, LENGTHS), epochs=2, batch_size=3, progress=False, logger=None)
        elbo = pvae.evaluate.elbo(model, (x, LENGTHS))
        ll = pvae.evaluate.log_likelihood(model, (x, LENGTHS), num_samples=8)
        assert elbo.shape == ll.shape == (6,) and torch.isfinite(ll).all()
        model.save(tmp_path / "m.pt")
        again = pvae.load(tmp_path / "m.pt")
        assert type(again) is pvae.SequenceVAE and again.hparams == model.hparams
        torch.manual_seed(1)
        a = pvae.evaluate.elbo(model.eval(), (x, LENGTHS))
        torch.manual_seed(1)
        b = pvae.evaluate.elbo(again, (x, LENGTHS))
        assert torch.allclose(a, b)


def _loss_and_grads(model, x, lengths, seed=0):
    """Pyro's Trace_ELBO loss of one batch and the gradient of every parameter."""
    model.zero_grad()
    pyro.set_rng_seed(seed)
    loss = Trace_ELBO().differentiable_loss(model.model, model.guide, x, lengths)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("kind", ["tokens", "series"])
def test_padding_values_change_neither_the_loss_nor_its_gradient(kind):
    torch.manual_seed(0)
    model = token_model() if kind == "tokens" else series_model(rnn="lstm")
    x = tokens() if kind == "tokens" else series()
    pad = ~(torch.arange(x.shape[1]) < LENGTHS[:, None])
    base_loss, base_grads = _loss_and_grads(model, x, LENGTHS)
    fills = [-5, 10**6, 7] if kind == "tokens" else [float("nan"), float("inf"), -1e30]
    for fill in fills:
        padded = x.clone()
        padded[pad] = fill
        loss, grads = _loss_and_grads(model, padded, LENGTHS)
        assert torch.isfinite(loss) and torch.equal(loss, base_loss)
        assert all(torch.isfinite(g).all() and torch.equal(g, b)
                   for g, b in zip(grads, base_grads))


@pytest.mark.parametrize("kind", ["tokens", "series"])
def test_a_batch_of_mixed_lengths_scores_as_its_sequences_alone(kind):
    """Encoder outputs and log p(x | z) of each sequence in a padded batch equal those of
    the sequence alone, unpadded; so the batch loss is the sum of per-sequence losses."""
    torch.manual_seed(0)
    model = (token_model() if kind == "tokens" else series_model()).eval()
    x = tokens() if kind == "tokens" else series()
    z = torch.randn(len(x), 3)
    loc, scale = model.encode(x, LENGTHS)
    whole = _log_px(model, x, LENGTHS, z)
    for i, n in enumerate(LENGTHS.tolist()):
        alone = x[i : i + 1, :n]
        one_loc, one_scale = model.encode(alone, LENGTHS[i : i + 1])
        assert torch.allclose(one_loc[0], loc[i], atol=1e-6)
        assert torch.allclose(one_scale[0], scale[i], atol=1e-6)
        assert torch.allclose(_log_px(model, alone, LENGTHS[i : i + 1], z[i : i + 1])[0],
                              whole[i], atol=1e-5)
    # and the whole negative ELBO is the sum of the sequences' (same guide noise)
    pyro.set_rng_seed(3)
    total = Trace_ELBO().loss(model.model, model.guide, x, LENGTHS)
    pyro.set_rng_seed(3)
    eps = torch.randn(len(x), 3)
    parts = 0.0
    for i, n in enumerate(LENGTHS.tolist()):
        zi = loc[i : i + 1] + scale[i : i + 1] * eps[i : i + 1]
        trace = poutine.trace(poutine.condition(model.model, {"z": zi})).get_trace(
            x[i : i + 1, :n], LENGTHS[i : i + 1])
        lq = dist.Normal(loc[i], scale[i]).log_prob(zi[0]).sum()
        parts += -(trace.log_prob_sum() - lq).item()
    assert total == pytest.approx(parts, rel=1e-5)


def _log_px(model, x, lengths, z):
    trace = poutine.trace(poutine.condition(model.model, {"z": z})).get_trace(x, lengths)
    site = trace.nodes["x"]
    return site["fn"].log_prob(site["value"])


@pytest.mark.parametrize("likelihood,make", [
    ("categorical", lambda: tokens(48, 6)),
    ("gaussian", lambda: torch.sin(torch.linspace(0, 3, 6))[None, :, None]
     + 0.1 * series(48, 6, 1)),
    ("laplace", lambda: series(48, 6, 2).cumsum(1) * 0.3),
    ("bernoulli", lambda: ((torch.arange(6)[None, :, None] + torch.randint(
        0, 2, (48, 1, 3), generator=torch.Generator().manual_seed(2))) % 2).float()),
])
def test_every_likelihood_trains_and_improves_its_elbo(likelihood, make):
    torch.manual_seed(0)
    x = make()
    lengths = torch.randint(2, 7, (len(x),), generator=torch.Generator().manual_seed(1))
    if likelihood == "categorical":
        model = token_model()
    else:
        model = series_model(x_dim=x.shape[2], likelihood=likelihood)
    before = pvae.evaluate.elbo(model, (x, lengths), num_samples=4).mean()
    pvae.fit(model, (x, lengths), epochs=15, batch_size=16, lr=1e-2, progress=False,
             logger=None, seed=0)
    after = pvae.evaluate.elbo(model, (x, lengths), num_samples=4).mean()
    assert after > before + 1.0, (likelihood, before.item(), after.item())


def test_predictive_and_trace_show_the_sites_and_shapes():
    torch.manual_seed(0)
    model, x = token_model(), tokens()
    trace = poutine.trace(model.model).get_trace(x, LENGTHS)
    assert trace.nodes["z"]["value"].shape == (6, 3)
    assert trace.nodes["x"]["fn"].event_shape == (7,) and trace.nodes["x"]["fn"].batch_shape == (6,)
    assert trace.nodes["x"]["is_observed"]
    guide = poutine.trace(model.guide).get_trace(x, LENGTHS)
    assert [n for n, s in guide.nodes.items() if s["type"] == "sample"] == ["data", "z"]
    post = Predictive(model.model, guide=model.guide, num_samples=4, return_sites=["z", "x"])
    out = post(x, LENGTHS)
    assert out["z"].shape == (4, 6, 3) and out["x"].shape == (4, 6, 7)
    series_m = series_model()
    prior = Predictive(series_m.model, num_samples=5, return_sites=["z", "x", "lengths"])
    out = prior(None, LENGTHS)  # generated series of the given lengths
    assert out["x"].shape == (5, 6, 7, 2) and torch.equal(out["lengths"][0], LENGTHS)
    assert (out["x"][:, 2, 1:] == 0).all()  # beyond its length of 1


@pytest.mark.parametrize("elbo", ["trace", "meanfield", "iwae:3", "tracegraph"])
def test_each_elbo_trains(elbo):
    torch.manual_seed(0)
    model, x = token_model(), tokens()
    history = pvae.fit(model, (x, LENGTHS), elbo=elbo, epochs=2, batch_size=3,
                       progress=False, logger=None)
    assert all(math.isfinite(v) for v in history["train_elbo"])


def test_guide_flows_train_and_meanfield_refuses_them():
    torch.manual_seed(0)
    model, x = token_model(guide_flows=2), tokens()
    assert not model.mean_field
    pvae.fit(model, (x, LENGTHS), epochs=2, batch_size=3, progress=False, logger=None)
    with pytest.raises(ValueError, match="mean-field|meanfield|flows"):
        pvae.fit(model, (x, LENGTHS), elbo="meanfield", epochs=1, progress=False, logger=None)


def test_fits_lean_loss_equals_pyros_trace_elbo():
    from pvae.fast_elbo import FastTrace_ELBO

    model, x = series_model(rnn="lstm", word_dropout=0.3).train(), series()
    with model.unregistered():
        pyro.set_rng_seed(5)
        lean = FastTrace_ELBO().differentiable_loss(model.model, model.guide, x, LENGTHS)
    pyro.set_rng_seed(5)
    ref = Trace_ELBO().differentiable_loss(model.model, model.guide, x, LENGTHS)
    assert torch.allclose(lean, ref)


def test_kl_warmup_word_dropout_and_diagnostics():
    torch.manual_seed(0)
    model, x = token_model(word_dropout=0.5), tokens(24)
    lengths = LENGTHS.repeat(4)
    pvae.fit(model, (x, lengths), epochs=3, batch_size=8, kl_warmup=2, progress=False,
             logger=None)
    model.eval()  # word dropout is for training only: evaluation is deterministic given z
    z = torch.randn(24, 3)
    assert torch.equal(_log_px(model, x, lengths, z), _log_px(model, x, lengths, z))
    model.train()
    assert not torch.equal(_log_px(model, x, lengths, z), _log_px(model, x, lengths, z))
    diag = pvae.evaluate.diagnostics(model.eval(), (x, lengths))
    assert diag["active_units"]["z"]["dims"] == 3 and diag["kl_per_dim"]["z"].shape == (3,)
    report = pvae.evaluate.report(model, (x, lengths), num_samples=5)
    assert report["bits_per_step"] == pytest.approx(
        -report["log_likelihood"] * 24 / ((lengths + 1).sum().item() * math.log(2)))


def test_resume_continues_to_the_same_numbers(tmp_path):
    x = tokens(12)
    lengths = LENGTHS.repeat(2)
    torch.manual_seed(0)
    straight = pvae.fit(token_model(), (x, lengths), epochs=4, batch_size=4, seed=1,
                        progress=False, logger=None)
    torch.manual_seed(0)  # the same initial weights
    pvae.fit(token_model(), (x, lengths), epochs=2, batch_size=4, seed=1, progress=False,
             logger=None, checkpoint_dir=tmp_path)
    resumed = pvae.fit(token_model(), (x, lengths), epochs=4, batch_size=4, seed=1,
                       progress=False, logger=None, checkpoint_dir=tmp_path, resume=True)
    assert resumed["train_elbo"][-1] == pytest.approx(straight["train_elbo"][-1], rel=1e-5)


def test_sample_stops_at_the_end_event_and_pads():
    torch.manual_seed(0)
    model = token_model()
    with torch.no_grad():  # make the end event certain wherever it is allowed
        model.decoder.out.bias[:] = -50.0
        model.decoder.out.bias[5] = 50.0
        model.decoder.out.weight[:] = 0.0
    x, lengths = model.sample(4, max_len=10)  # one token (never an empty sequence), then end
    assert torch.equal(lengths, torch.full((4,), 1)) and x.shape == (4, 1)
    x, lengths = token_model().sample(50, max_len=3, temperature=0.5)
    assert x.shape[1] <= 3 and ((1 <= lengths) & (lengths <= 3)).all()
    assert (x[torch.arange(x.shape[1]) >= lengths[:, None]] == 0).all()
    xs, ls = series_model().sample(3, max_len=5, temperature=0.0)
    assert xs.shape == (3, 5, 2) and (ls == 5).all()
    xb, _ = series_model(likelihood="bernoulli").sample(3, max_len=4)
    assert ((xb == 0) | (xb == 1)).all()


def test_reconstruct_and_interpolate():
    torch.manual_seed(0)
    model = token_model()
    xr, lr = model.reconstruct(tokens(), LENGTHS)
    assert xr.shape[0] == 6 and (lr >= 1).all()
    z, (xi, li) = pvae.latent.interpolate(model, tokens()[0], (tokens()[1], 3), steps=5)
    assert z.shape == (5, 3) and xi.shape[0] == 5 and li.shape == (5,)
    series_m = series_model()
    z, (xs, ls) = pvae.latent.interpolate(series_m, series()[0, :4], series()[1, :6], steps=4)
    assert xs.shape == (4, 6, 2) and (ls == 6).all()  # as long as the longer input
    xr, lr = series_m.reconstruct(series(), LENGTHS)
    assert xr.shape == (6, 7, 2) and torch.equal(lr, LENGTHS) and (xr[2, 1:] == 0).all()
    assert pvae.latent.encode(series_m, series(), lengths=LENGTHS).shape == (6, 3)


def test_sequence_objects_enter_as_x_and_lengths():
    data = types.SimpleNamespace(x=tokens(), lengths=LENGTHS, y=torch.zeros(6))
    model = token_model()
    assert pvae.evaluate.elbo(model, data).shape == (6,)
    batch = as_batch(data, model)
    assert batch[0].dtype == torch.int64 and torch.equal(batch[1], LENGTHS)
    assert as_batch((tokens().double(), LENGTHS), model)[0].dtype == torch.float64  # exact ids


@pytest.mark.parametrize("make,data,message", [
    (token_model, lambda: (torch.full((2, 3), 5), torch.tensor([3, 3])), "outside the vocab"),
    (token_model, lambda: (torch.full((2, 3), 1.5), torch.tensor([3, 3])), "whole numbers"),
    (token_model, lambda: (torch.zeros(2, 3, 1).long(), torch.tensor([3, 3])), r"\(N, T\)"),
    (token_model, lambda: (torch.zeros(2, 3).long(), torch.tensor([0, 3])), "outside 1..3"),
    (token_model, lambda: (torch.zeros(2, 3).long(), torch.tensor([4, 3])), "outside 1..3"),
    (token_model, lambda: (torch.zeros(2, 3).long(), torch.tensor([3, 3, 3])), r"shape \(3,\)"),
    (token_model, lambda: (torch.zeros(2, 3).long(), torch.tensor([[3, 3]])), "one row per"),
    (token_model, lambda: (torch.zeros(2, 3).long(), torch.tensor([2.5, 3])), "whole numbers"),
    (token_model, lambda: (torch.zeros(2, 3).long(), torch.tensor([True, True])), "dtype"),
    (token_model, lambda: (torch.zeros(2, 3).long(), [3, 3]), "tensor"),
    (token_model, lambda: (torch.zeros(2, 3).long(),), r"\(x, lengths\)"),
    (series_model, lambda: (torch.zeros(2, 3), torch.tensor([3, 3])), r"x\[\.\.\., None\]"),
    (series_model, lambda: (torch.zeros(2, 3, 5), torch.tensor([3, 3])), "x_dim=2"),
    (series_model, lambda: (torch.tensor([[[float("nan")] * 2] * 3] * 2), torch.tensor([3, 3])),
     "NaN"),
])
def test_bad_input_is_refused_before_any_work(make, data, message):
    model = make()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises((ValueError, TypeError), match=message):
        pvae.fit(model, data(), epochs=1, progress=False, logger=None)
    with pytest.raises((ValueError, TypeError), match=message):
        pvae.evaluate.elbo(model, data())
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="x_dim=D .* or vocab_size=V"):
        pvae.SequenceVAE(z_dim=2)
    with pytest.raises(ValueError, match="categorical"):
        pvae.SequenceVAE(vocab_size=4, likelihood="gaussian")
    with pytest.raises(ValueError, match="rnn must be"):
        pvae.SequenceVAE(x_dim=2, rnn="transformer")
    with pytest.raises(ValueError, match="word_dropout"):
        pvae.SequenceVAE(x_dim=2, word_dropout=1.0)
    with pytest.raises(ValueError, match="temperature"):
        token_model().sample(2, temperature=-1)
    with pytest.raises(ValueError, match="positive int"):
        token_model().sample(0)


def test_registry_builds_it_by_name_and_from_a_config():
    model = pvae.models.get("seqvae", vocab_size=7, z_dim=2, hidden_dim=8)
    assert isinstance(model, pvae.SequenceVAE) and model.config_name == "seqvae"
    assert pvae.models.get("seqvae", x_dim=(3,), z_dim=2).x_dim == 3
    cfg = types.SimpleNamespace(type="seqvae", z_dim=4, hidden_dim=8, vocab_size=None,
                                num_classes=None, y_dim=None)
    assert pvae.models.from_config(cfg, (20, 3)).x_dim == 3  # series (T, D)
    with pytest.raises(ValueError, match="set model.vocab_size"):
        pvae.models.from_config(cfg, (20,))
    cfg.vocab_size = 30
    assert pvae.models.from_config(cfg, (20,)).vocab_size == 30  # token ids (T,)


def test_the_model_without_data_generates_and_traverse_decodes():
    torch.manual_seed(0)
    model = token_model()
    out = Predictive(model.model, num_samples=3, return_sites=["x", "lengths"])(
        None, None, batch_size=4, max_len=6)
    x, lengths = out["x"], out["lengths"]
    assert x.shape == (3, 4, 6) and lengths.shape == (3, 4)
    assert ((1 <= lengths) & (lengths <= 6)).all()
    z, (xt, lt) = pvae.latent.traverse(model, torch.tensor([1, 2, 3]), steps=3)
    assert z.shape == (3, 3, 3) and xt.shape[:2] == (3, 3) and lt.shape == (3, 3)


def test_a_temperature_the_likelihood_cannot_apply_is_refused_not_ignored():
    torch.manual_seed(0)
    model = series_model(likelihood="poisson")
    for t in (0.0, 1.0):  # greedy and plain draws are defined for any likelihood
        x, _ = model.sample(2, max_len=3, temperature=t)
        assert x.shape == (2, 3, 2) and (x >= 0).all() and (x == x.round()).all()
    with pytest.raises(ValueError, match="temperature=0.5 .* 'poisson'"):
        model.sample(2, max_len=3, temperature=0.5)
    series_model(likelihood="bernoulli").sample(2, max_len=3, temperature=0.5)  # logits / T


@pytest.mark.parametrize("parallel", [False, True])
def test_the_recorded_lengths_of_drawn_token_sequences_are_the_drawn_ones(parallel):
    """Site "lengths" holds where each drawn sequence ended, also when Pyro's plates
    expand the site's distribution (they sample a copy of it)."""
    torch.manual_seed(0)
    model = token_model()
    with torch.no_grad():  # the end event certain wherever it is allowed: every length is 1
        model.decoder.out.bias[:] = -50.0
        model.decoder.out.bias[5] = 50.0
        model.decoder.out.weight[:] = 0.0
    out = Predictive(model.model, num_samples=3, parallel=parallel,
                     return_sites=["x", "lengths"])(None, None, batch_size=4, max_len=6)
    assert (out["lengths"] == 1).all(), out["lengths"]
    trace = poutine.trace(model.model).get_trace(None, None, batch_size=4, max_len=6)
    assert (trace.nodes["lengths"]["value"] == 1).all()
    site = trace.nodes["x"]
    assert torch.equal(site["fn"].lengths, trace.nodes["lengths"]["value"])
