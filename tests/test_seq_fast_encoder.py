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
