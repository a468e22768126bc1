"""The sequence encoder's direct call of the recurrent kernel (``final_states``, which lets
the training step be replayed) computes what ``nn.GRU`` / ``nn.LSTM`` give on
``pack_padded_sequence``: final states, and gradients to the inputs and every weight."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from pvae.nets_recurrent import final_states

N, T, F, H = 7, 5, 3, 4


def _packed_final_states(rnn, inputs, lengths):
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    h = rnn(packed)[1]
    return h[0] if isinstance(h, tuple) else h


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("layers", [1, 2])
def test_final_states_equal_the_modules_on_packed_sequences(cell, bidirectional, layers):
    torch.manual_seed(0)
    rnn = cell(F, H, layers, batch_first=True, bidirectional=bidirectional)
    inputs = torch.randn(N, T, F, requires_grad=True)
    lengths = torch.tensor([5, 1, 3, 5, 2, 4, 1])
    mine = final_states(rnn, inputs, lengths)
    theirs = _packed_final_states(rnn, inputs, lengths)
    torch.testing.assert_close(mine, theirs)
    weights = torch.randn_like(theirs)
    params = [inputs, *rnn.parameters()]
    for a, b in zip(torch.autograd.grad((mine * weights).sum(), params),
                    torch.autograd.grad((theirs * weights).sum(), params)):
        torch.testing.assert_close(a, b)


def test_padding_never_reaches_the_final_states():
    torch.manual_seed(0)
    rnn = nn.GRU(F, H, batch_first=True, bidirectional=True)
    inputs, lengths = torch.randn(N, T, F), torch.tensor([5, 1, 3, 5, 2, 4, 1])
    garbage = inputs.masked_fill((torch.arange(T) >= lengths[:, None])[..., None], 1e6)
    torch.testing.assert_close(final_states(rnn, garbage, lengths),
                               final_states(rnn, inputs, lengths))


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM])
def test_final_states_read_weights_swapped_or_computed_as_the_module_does(cell):
    """Weights from a parametrization (weight norm and the like) or swapped in by
    ``torch.func.functional_call`` are read afresh each call, as ``nn.GRU.forward`` does,
    not from the module's cached list of flat weights."""
    from torch.nn.utils import parametrize

    class Half(nn.Module):
        def forward(self, w):
            return w * 0.5

    torch.manual_seed(0)
    rnn = cell(F, H, 1, batch_first=True)
    inputs = torch.randn(N, T, F)
    lengths = torch.tensor([5, 1, 3, 5, 2, 4, 1])
    final_states(rnn, inputs, lengths)  # caches the flat weights
    parametrize.register_parametrization(rnn, "weight_hh_l0", Half())
    torch.testing.assert_close(final_states(rnn, inputs, lengths),
                               _packed_final_states(rnn, inputs, lengths))
    class Wrap(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, inputs, lengths):
            return final_states(self.rnn, inputs, lengths)

    plain = cell(F, H, 1, batch_first=True)
    wrap = Wrap(plain)
    wrap(inputs, lengths)
    zeros = {name: torch.zeros_like(p) for name, p in wrap.named_parameters()}
    out = torch.func.functional_call(wrap, zeros, (inputs, lengths))
    assert out.abs().max() == 0  # zero weights and biases: zero states
