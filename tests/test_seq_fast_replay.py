"""The sequence VAE's training step is recorded and replayed (pvae.replay), and every
step equals Pyro's ``Trace_ELBO`` / ``TraceMeanField_ELBO`` in value and gradient.

Each case runs one ELBO instance over several steps, as ``pvae.fit`` does (validation
off, parameters unregistered): the first step runs the Pyro program, the second records
it, later ones replay it. Every step takes a new batch of the same shape with new
lengths (so the masks by length, the packed encoder and the end events change under the
replay) and is compared with a fresh Pyro ELBO (never replayed) on the same parameters
and seed; an Adam step moves the parameters in between.
"""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pvae
from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO
from pvae.free_bits import FreeBits
from test_fast_elbo_replay import _agree, _step  # one step as fit takes it; Pyro's tolerance

V, T, N, D = 7, 6, 10, 2
PAIRS = {"trace": (FastTrace_ELBO, Trace_ELBO),
         "meanfield": (FastTraceMeanField_ELBO, TraceMeanField_ELBO)}
MODELS = {
    "tokens": lambda: pvae.SequenceVAE(vocab_size=V, z_dim=3, hidden_dim=5, embedding_dim=4,
                                       excluded_ids=(0, 2), word_dropout=0.3),
    "series": lambda: pvae.SequenceVAE(D, 3, hidden_dim=5),
    "series-lstm-2-layers": lambda: pvae.SequenceVAE(D, 3, hidden_dim=5, rnn="lstm",
                                                     num_layers=2, word_dropout=0.2),
    "tokens-one-way-z-every-step": lambda: pvae.SequenceVAE(
        vocab_size=V, z_dim=3, hidden_dim=5, bidirectional_encoder=False, z_every_step=True),
}


def _batch(model, seed: int):
    """A batch of N sequences padded to T, new lengths (one full, one of a single step)
    and garbage (NaN, excluded or out-of-vocabulary ids) in the padding."""
    g = torch.Generator().manual_seed(100 + seed)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[seed % N], lengths[(seed + 1) % N] = T, 1
    pad = torch.arange(T) >= lengths[:, None]
    if model.tokens:
        x = torch.randint(3, V, (N, T), generator=g).masked_fill(pad, 0)
        return x.masked_fill(pad & (torch.arange(T) % 2 == 0), 99), lengths
    x = torch.randn(N, T, D, generator=g)
    return x.masked_fill(pad[..., None], float("nan")), lengths


def _run(model, fast, reference, steps: int = 5, weight: float = 1.0):
    """Compare ``fast`` (one instance) with ``reference()`` (fresh each step); the tape."""
    model.num_data = 10 * N
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for seed in range(steps):
        args = _batch(model, seed)
        got = _step(fast, model, args, seed, weight)
        _agree(got, _step(reference(), model, args, seed, weight))
        for p, g in zip(model.parameters(), got[1]):
            p.grad = g
        opt.step()
    return fast.__dict__["_tape"]


@pytest.mark.parametrize("elbo_name", list(PAIRS))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_the_replayed_sequence_step_equals_pyros_elbo(model_name, elbo_name):
    torch.manual_seed(0)
    fast, reference = PAIRS[elbo_name]
    tape = _run(MODELS[model_name](), fast(), reference)
    assert tape.refused is None
    assert tape.counts == {"run": 1, "recorded": 1, "replayed": 3}


@pytest.mark.parametrize("elbo_name", list(PAIRS))
def test_a_kl_warm_up_weight_is_replayed_as_pyro_scales_it(elbo_name):
    torch.manual_seed(0)
    fast, reference = PAIRS[elbo_name]
    tape = _run(MODELS["tokens"](), fast(), reference, weight=0.3)
    assert tape.counts["replayed"] == 3


@pytest.mark.parametrize("analytic", [False, True])
def test_free_bits_on_sequences_replays_what_its_program_computes(analytic):
    """FreeBits has no Pyro counterpart: the replayed instance against fresh ones, which
    run the program each step (the switch between the two paths)."""
    torch.manual_seed(0)
    tape = _run(MODELS["tokens"](), FreeBits(0.5, analytic), lambda: FreeBits(0.5, analytic),
                weight=0.4)
    assert tape.counts["replayed"] == 3


def test_a_new_batch_shape_runs_the_program_then_replays_its_own_recording():
    """The last, smaller batch of an epoch and a longer padding are new keys: each runs
    the program (equal to Pyro) before its own recording is replayed."""
    torch.manual_seed(0)
    model, fast = MODELS["series"](), FastTrace_ELBO()
    _run(model, fast, Trace_ELBO, steps=3)
    x, lengths = _batch(model, 7)
    for seed, args in enumerate([(x[:4], lengths[:4])] * 3 + [(torch.cat([x, x], 1),
                                                                lengths)] * 3):
        _agree(_step(fast, model, args, seed, 1.0), _step(Trace_ELBO(), model, args, seed, 1.0))
    assert fast._tape.counts["replayed"] == 1 + 1 + 1


def test_with_validation_on_the_program_still_checks_the_values_every_step():
    """Pyro's tools (SVI, Predictive) validate by default: bad lengths get the clear
    message there, and such steps are never replayed (validation runs each time)."""
    model = MODELS["tokens"]()
    x, lengths = _batch(model, 0)
    elbo = FastTrace_ELBO()
    for _ in range(3):
        elbo.differentiable_loss(model.model, model.guide, x, lengths)
    assert elbo._tape.counts["replayed"] == 0
    with pytest.raises(ValueError, match="outside 1..6"):
        elbo.differentiable_loss(model.model, model.guide, x, lengths + T)
    with pyro.validation_enabled(False), pytest.raises(ValueError, match="lengths has shape"):
        elbo.differentiable_loss(model.model, model.guide, x, lengths[:3])


def test_fit_replays_the_sequence_model():
    torch.manual_seed(0)
    model = MODELS["tokens"]()
    x, lengths = _batch(model, 0)
    x = x.masked_fill(torch.arange(T) >= lengths[:, None], 0)
    data = (x.repeat(4, 1), lengths.repeat(4))
    elbo = FastTrace_ELBO()
    pvae.fit(model, data, elbo=elbo, epochs=2, batch_size=N, seed=0, monitor_size=4)
    assert elbo._tape.counts["replayed"] == 2 * 4 - 2
