"""SequenceVAE: masking, likelihoods, Pyro tools, ELBOs, save/load, sampling, bad input."""

from __future__ import annotations

import pytest
import torch

import pvae

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
