"""The hand-written recurrent VAE of ``benchmarks/seq_reference.py`` computes pvae's loss:
``benchmarks/seq_speed.py`` times the two against each other, so they must do the same
work. On the same weights and seed, its loss and every parameter's gradient equal
Pyro's ``Trace_ELBO`` on ``SequenceVAE`` (and pvae's free-bits objective), with word
dropout, excluded ids, a KL warm-up weight and masks by length."""

from __future__ import annotations

import sys
from pathlib import Path

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import pvae
from pvae.free_bits import FreeBits
from pvae.program_key import LatentScale

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from seq_reference import from_pvae, pvae_grads, train_reference  # noqa: E402

V, T, N = 9, 7, 12


def _tokens():
    return pvae.SequenceVAE(vocab_size=V, z_dim=3, hidden_dim=6, embedding_dim=5,
                            excluded_ids=(0, 1), word_dropout=0.3)


def _series():
    return pvae.SequenceVAE(2, 3, hidden_dim=6)


def _data(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[0], lengths[1] = T, 1
    pad = torch.arange(T) >= lengths[:, None]
    if model.tokens:
        return torch.randint(2, V, (N, T), generator=g).masked_fill(pad, 1), lengths
    return torch.randn(N, T, 2, generator=g).masked_fill(pad[..., None], float("nan")), lengths


def _compare(model, elbo, weight, free_bits=0.0):
    torch.manual_seed(0)
    ref = from_pvae(model)
    x, lengths = _data(model)
    pyro.set_rng_seed(3)
    with LatentScale(weight), pyro.validation_enabled(False):
        mine = elbo.differentiable_loss(model.model, model.guide, x, lengths) / N
    mine.backward()
    pyro.set_rng_seed(3)
    theirs = ref.loss(x, lengths, weight, free_bits)
    theirs.backward()
    assert theirs.item() == pytest.approx(mine.item(), rel=1e-5)
    grads = pvae_grads(model)
    assert len(grads) == len(list(ref.parameters()))
    for a, p in zip(grads, ref.parameters()):
        torch.testing.assert_close(p.grad, a, rtol=1e-5, atol=1e-5 * a.abs().max().item() + 1e-7)


@pytest.mark.parametrize("make", [_tokens, _series], ids=["tokens", "series"])
@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_the_reference_loss_and_gradients_equal_pyros_trace_elbo(make, weight):
    _compare(make(), Trace_ELBO(), weight)


@pytest.mark.parametrize("make", [_tokens, _series], ids=["tokens", "series"])
def test_the_reference_free_bits_objective_equals_pvaes(make):
    """A floor above some dimensions' KL and below others', with a warm-up weight."""
    _compare(make(), FreeBits(0.4), 0.5, free_bits=0.4)


def test_a_wrong_reference_is_caught(monkeypatch):
    """The comparison sees the floor of the likelihood's scale at 1e-4 instead of pvae's
    1e-3: a change of the loss of about 1e-5 relative, of the gradients by more."""
    import seq_reference

    monkeypatch.setattr(seq_reference, "SCALE_FLOOR", 1e-4)
    with pytest.raises(AssertionError):
        _compare(_series(), Trace_ELBO(), 1.0)


def test_the_reference_refuses_models_it_does_not_cover_and_trains():
    with pytest.raises(ValueError, match="one-layer GRUs"):
        from_pvae(pvae.SequenceVAE(2, 3, hidden_dim=4, rnn="lstm"))
    model = _tokens()
    ref = from_pvae(model)
    x, lengths = _data(model)
    x = torch.where(torch.arange(T) < lengths[:, None], x, 2)
    before = ref.loss(x, lengths).item()
    seconds = train_reference(ref, x.repeat(4, 1), lengths.repeat(4), epochs=8, batch_size=N,
                              lr=0.02, kl_warmup=2, free_bits=0.1)
    assert len(seconds) == 8
    ref.eval()
    assert ref.loss(x, lengths).item() < before
