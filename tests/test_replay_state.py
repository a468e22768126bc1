"""State a network keeps on itself between steps, under the replayed training step."""

from __future__ import annotations

import torch
from pyro.infer import Trace_ELBO

import pvae
from pvae.fast_elbo import FastTrace_ELBO
from pvae.program_key import module_tree
from test_fast_elbo_replay import _agree, _step

D = 6


class _Centred(torch.nn.Module):
    """A decoder that centres its output on a running mean it *reassigns* every step."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, D)
        self.center = torch.zeros(D)

    def forward(self, z):
        h = self.lin(z)
        self.center = 0.5 * self.center + 0.5 * h.mean(0).detach()
        return h - self.center


def test_a_tensor_the_program_reassigns_on_its_module_is_not_replayed_stale():
    """A replay would keep the recording's centre and never update the attribute."""
    fast_model = pvae.VAE(D, 2, hidden_dims=(8,), decoder=_Centred())
    pyro_model = pvae.VAE(D, 2, hidden_dims=(8,), decoder=_Centred())
    pyro_model.load_state_dict(fast_model.state_dict())
    x = (torch.rand(8, D) > 0.5).float()
    fast = FastTrace_ELBO()
    for seed in range(5):  # each model carries its own centre from step to step
        _agree(_step(fast, fast_model, (x,), seed, 1.0),
               _step(Trace_ELBO(), pyro_model, (x,), seed, 1.0))
        torch.testing.assert_close(fast_model.decoder.center, pyro_model.decoder.center)


def test_a_long_container_attribute_is_not_copied_into_every_key():
    model = pvae.VAE(D, 2, hidden_dims=(8,))
    model.decoder.log = [0.0] * 10
    assert module_tree(model.model) is not None
    model.decoder.log = [0.0] * 1000  # a per-step log: the replay is off, the key not built
    assert module_tree(model.model) is None
