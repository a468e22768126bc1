"""The importance-sampled log-likelihood replays its chunks (pvae.estimates._Replays): the
same numbers as running the Pyro program for every chunk, bit for bit, and a replay lets
each intermediate go after its last use."""

from __future__ import annotations

import weakref

import pyro
import pytest
import torch
from torch.overrides import TorchFunctionMode

import pvae
from pvae import estimates
from pvae.replay import Tape

D = 6


def _models():
    return {
        "vae": lambda: pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian"),
        "vae-iaf": lambda: pvae.VAE(D, 2, hidden_dims=(8,), guide_flows=1,
                                    likelihood="gaussian"),
        "hvae": lambda: pvae.HierarchicalVAE(D, (3, 2), hidden_dims=(8,),
                                             likelihood="gaussian"),
        "ssvae, labels enumerated": lambda: pvae.SemiSupervisedVAE(
            D, 3, z_dim=2, hidden_dims=(8,), likelihood="gaussian"),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_a_replayed_log_likelihood_equals_the_programs_bit_for_bit(name, monkeypatch):
    torch.manual_seed(0)
    model = _models()[name]()
    x = torch.randn(7, D)
    tapes = []

    class Spy(estimates._Replays):
        def __init__(self) -> None:
            super().__init__()
            tapes.append(self.tape)

    monkeypatch.setattr(estimates, "_Replays", Spy)
    # chunks of 5 of the 12 samples: sizes 4, 4, 4, points one by one (and one size left)
    kwargs = dict(num_samples=12, batch_size=2, max_elements=5 * D)
    pyro.set_rng_seed(1)
    got = pvae.evaluate.log_likelihood(model, x, **kwargs)
    assert tapes[0].counts["replayed"] > 0  # replayed, not only run
    monkeypatch.setattr(Spy, "__call__", lambda self, pair, sub, size, e, run: run(*sub))
    pyro.set_rng_seed(1)
    want = pvae.evaluate.log_likelihood(model, x, **kwargs)
    assert torch.equal(got, want)


def test_a_changed_model_is_not_replayed_with_its_old_parameters():
    """Between two evaluations an optimiser updates parameters in place (seen by a replay)
    and a network may be replaced (a new key): each equals the program's result."""
    torch.manual_seed(0)
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian")
    x = torch.randn(5, D)
    replays = estimates._Replays()
    for step in range(4):
        if step == 2:
            model.decoder = pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian").decoder
        with torch.no_grad():
            next(model.parameters()).add_(0.5)
        pyro.set_rng_seed(step)
        got = [estimates._weights(model, (x[i:i + 1],), 4, True, replays) for i in range(5)]
        pyro.set_rng_seed(step)
        want = [estimates._weights(model, (x[i:i + 1],), 4, True) for i in range(5)]
        assert all(torch.equal(g, w) for g, w in zip(got, want))
    assert replays.tape.counts["replayed"] >= 10


class _Alive(TorchFunctionMode):
    """Counts, at each torch call, how many earlier results are still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list = []
        self.alive: list[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.alive.append(sum(r() is not None for r in self.refs))
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.refs.append(weakref.ref(out))
        return out


def test_a_replay_lets_each_intermediate_go_after_its_last_use():
    def chain(x):
        return (x * 2 + 1).exp().log().sin().sum()

    tape = Tape()
    x = torch.randn(1000)
    for _ in range(2):
        tape("k", chain, [x])
    mode = _Alive()
    with mode:
        got = tape("k", chain, [x])
    assert tape.counts["replayed"] == 1 and torch.equal(got, chain(x))
    # five operations before the sum; when each runs, only its own operand is alive
    assert max(mode.alive) <= 1, mode.alive
