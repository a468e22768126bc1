"""Recurrent encoder and decoder blocks for sequences (GRU or LSTM).

:class:`SequenceEncoder` reads the real steps of padded sequences (packed, so
padding never enters it) and maps the final hidden states to ``(z_loc, z_scale)``.
:class:`SequenceDecoder` is an autoregressive recurrent network whose initial
state is a function of z (Bowman et al. 2016): run over a whole input sequence
(teacher forcing) or one step at a time (generation). Any leading batch
dimensions of z (particles, data) are flattened into one batch for the RNN and
restored on the way out.
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from pvae.nets import split_loc_scale

RNN = Literal["gru", "lstm"]
_RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}
History = Literal["full", "previous"]
State = "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"


def rnn_class(name: str) -> type[nn.RNNBase]:
    """``nn.GRU`` or ``nn.LSTM`` by name; ``ValueError`` for any other."""
    if name not in _RNNS:
        raise ValueError(f"rnn must be 'gru' or 'lstm', got {name!r}")
    return _RNNS[name]


class SequenceEncoder(nn.Module):
    """``(inputs (N, T, F), lengths (N,)) -> (z_loc, z_scale)``, each ``(N, z_dim)``.

    A (bidirectional) GRU/LSTM over the packed real steps; the last layer's final
    hidden state of each direction goes through a linear layer to the location
    and a softplus scale.
    """

    def __init__(self, in_dim: int, z_dim: int, hidden_dim: int, rnn: RNN = "gru",
                 num_layers: int = 1, bidirectional: bool = True) -> None:
        super().__init__()
        self.directions = 2 if bidirectional else 1
        self.num_layers, self.hidden_dim = num_layers, hidden_dim
        self.rnn = rnn_class(rnn)(in_dim, hidden_dim, num_layers, batch_first=True,
                                  bidirectional=bidirectional)
        self.out = nn.Linear(self.directions * hidden_dim, 2 * z_dim)

    def numbers_per_step(self) -> int:
        """Floats one sequence's encoder holds per time step while it runs (each layer's
        and direction's gate pre-activations and hidden states, and the input)."""
        gates = 4 if isinstance(self.rnn, nn.LSTM) else 3
        return (self.num_layers * self.directions * self.hidden_dim * (gates + 2)
                + self.rnn.input_size)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor):
        n = inputs.shape[0]
        h = final_states(self.rnn, inputs, lengths)
        h = h.view(self.num_layers, self.directions, n, self.hidden_dim)[-1]
        return split_loc_scale(self.out(h.transpose(0, 1).reshape(n, -1)))


def final_states(rnn: nn.RNNBase, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The final hidden states ``(num_layers * directions, N, H)`` of ``rnn`` (a
    ``batch_first`` GRU or LSTM, zero initial state) over the packed real steps of
    ``inputs`` ``(N, T, F)``: step ``lengths[i] - 1`` forwards, step 0 backwards.

    The computation of ``rnn(pack_padded_sequence(inputs, lengths, batch_first=True,
    enforce_sorted=False))`` (the same kernel on the same packed data), called without
    the module's checks, which read the largest batch size into Python: here no
    tensor value is read, so the training step can be recorded and replayed
    (:mod:`pvae.replay`) although the packed data's size depends on the lengths; no
    number derived from that size is used after the kernel. ``lengths`` in ``1..T``
    (the model checks them).
    """
    lengths, order = torch.sort(lengths.cpu().long(), descending=True)
    order = order.to(inputs.device)
    data, batch_sizes = torch._VF._pack_padded_sequence(inputs.index_select(0, order),
                                                        lengths, True)
    hx = inputs.new_zeros(rnn.num_layers * (2 if rnn.bidirectional else 1), inputs.shape[0],
                          rnn.hidden_size)
    rnn._update_flat_weights()  # as nn.GRU.forward: weights swapped by functional_call or
    # computed by a parametrization (weight norm) are read afresh, not the cached list
    args = (rnn._flat_weights, rnn.bias, rnn.num_layers, float(rnn.dropout), rnn.training,
            rnn.bidirectional)
    if isinstance(rnn, nn.LSTM):
        h = torch._VF.lstm(data, batch_sizes, (hx, hx), *args)[1]
    else:
        h = torch._VF.gru(data, batch_sizes, hx, *args)[1]
    return h.index_select(1, torch.argsort(order))  # back to the batch's order


class SequenceDecoder(nn.Module):
    """Autoregressive GRU/LSTM decoder with its initial state from z.

    ``forward(inputs (..., T, F), z (..., z_dim)) -> (..., T, out_dim)``: the
    output at step t depends on z and on ``inputs[..., :t+1]`` only (causal), so
    steps after a sequence's end never change the outputs before it.

    ``z_every_step`` also appends z to every step's input, so each prediction has
    z in reach, not only through the recurrence. ``history="previous"`` narrows the
    autoregressive context to the previous step (Chen et al. 2017, "Variational
    Lossy Autoencoder": a local receptive field leaves the global structure to z):
    the RNN reads only z (at every step), and a one-hidden-layer head maps
    ``(h_t, inputs_t)`` to the step's parameters, so p(x_t | x_{t-1}, z).
    """

    def __init__(self, in_dim: int, z_dim: int, hidden_dim: int, out_dim: int,
                 rnn: RNN = "gru", num_layers: int = 1, z_every_step: bool = False,
                 history: History = "full") -> None:
        super().__init__()
        if history not in ("full", "previous"):
            raise ValueError(f"history must be 'full' or 'previous', got {history!r}")
        self.history, self.lstm = history, rnn == "lstm"
        self.z_every_step = bool(z_every_step) or history == "previous"
        self.num_layers, self.hidden_dim = num_layers, hidden_dim
        self.in_dim, self.out_dim = in_dim, out_dim
        self.gates = 4 if self.lstm else 3
        rnn_in = (0 if history == "previous" else in_dim) + (z_dim if self.z_every_step else 0)
        self.rnn = rnn_class(rnn)(rnn_in, hidden_dim, num_layers, batch_first=True)
        self.init = nn.Linear(z_dim, num_layers * hidden_dim * (2 if self.lstm else 1))
        if history == "previous":
            self.out = nn.Sequential(nn.Linear(hidden_dim + in_dim, hidden_dim), nn.Tanh(),
                                     nn.Linear(hidden_dim, out_dim))
        else:
            self.out = nn.Linear(hidden_dim, out_dim)

    def initial_state(self, z: torch.Tensor):
        """The RNN state for codes ``z`` of shape ``(B, z_dim)``."""
        h = torch.tanh(self.init(z)).view(z.shape[0], -1, self.num_layers, self.hidden_dim)
        h = h.permute(1, 2, 0, 3).contiguous()  # (1 or 2, layers, B, H)
        return (h[0], h[1]) if self.lstm else h[0]

    def step(self, inputs: torch.Tensor, state, z: Optional[torch.Tensor] = None):
        """One or more steps from ``state``: inputs ``(B, t, F)`` -> ``(B, t, out_dim)``, state.
        ``z`` ``(B, z_dim)`` is needed with ``z_every_step`` (``ValueError`` without it)."""
        if not self.z_every_step:
            h, state = self.rnn(inputs, state)
            return self.out(h), state
        if z is None:
            raise ValueError("this decoder feeds z to every step: call step(inputs, state, z)")
        zs = z[:, None].expand(-1, inputs.shape[1], -1)
        if self.history == "previous":
            h, state = self.rnn(zs, state)
            return self.out(torch.cat([h, inputs], -1)), state
        h, state = self.rnn(torch.cat([inputs, zs], -1), state)
        return self.out(h), state

    def numbers_per_step(self) -> int:
        """Floats one sequence's decoder holds per time step while it runs (each layer's
        gate pre-activations for all steps, hidden states and the step's own work; the
        inputs, head and outputs): the working size evaluation budgets for
        (:mod:`pvae.estimates`). Measured: a GRU of 128 units held about 5 per unit."""
        head = 2 * self.hidden_dim + self.in_dim if self.history == "previous" else 0
        return (self.num_layers * self.hidden_dim * (self.gates + 2) + head
                + self.rnn.input_size + self.in_dim + self.out_dim)

    def forward(self, inputs: torch.Tensor, z: torch.Tensor,
                state: Optional[object] = None) -> torch.Tensor:
        lead = z.shape[:-1]
        flat_z = z.reshape(-1, z.shape[-1])
        flat_in = inputs.expand(*lead, *inputs.shape[-2:]).reshape(-1, *inputs.shape[-2:])
        out, _ = self.step(flat_in, self.initial_state(flat_z), flat_z)
        return out.reshape(*lead, *out.shape[-2:])


def _dropped(shape, p: float, device) -> Optional[torch.Tensor]:
    """Where word dropout replaces a decoder input (True), or None when p is 0."""
    return torch.rand(shape, device=device) < p if p > 0 else None


class TokenInputs(nn.Module):
    """Decoder inputs for token ids ``0..V-1``: an embedding with two ids of its own,
    ``V`` (the start of a sequence) and ``V + 1`` (unknown: word dropout's input)."""

    def __init__(self, vocab_size: int, embedding_dim: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embedding = nn.Embedding(vocab_size + 2, embedding_dim)

    @property
    def dim(self) -> int:
        return self.embedding.embedding_dim

    def teacher(self, x: torch.Tensor, word_dropout: float = 0.0) -> torch.Tensor:
        """``(N, T)`` ids -> ``(N, T + 1, E)``: start, then x_0 .. x_{T-1} (each replaced
        by the unknown id with probability ``word_dropout``)."""
        drop = _dropped(x.shape, word_dropout, x.device)
        if drop is not None:
            x = x.masked_fill(drop, self.vocab_size + 1)
        start = torch.full_like(x[:, :1], self.vocab_size)
        return self.embedding(torch.cat([start, x], 1))

    def first(self, n: int, device) -> torch.Tensor:
        """The start input for ``n`` sequences, ``(n, 1, E)``."""
        return self.embedding(torch.full((n, 1), self.vocab_size, device=device))

    def next(self, token: torch.Tensor) -> torch.Tensor:
        """The input after emitting ``token`` (shape ``(n,)``), ``(n, 1, E)``."""
        return self.embedding(token[:, None])


class SeriesInputs(nn.Module):
    """Decoder inputs for real-valued steps of ``D`` features: the previous step, a flag
    marking the start and a flag marking a dropped (zeroed) input, ``D + 2`` numbers."""

    def __init__(self, x_dim: int) -> None:
        super().__init__()
        self.x_dim = x_dim

    @property
    def dim(self) -> int:
        return self.x_dim + 2

    def teacher(self, x: torch.Tensor, word_dropout: float = 0.0) -> torch.Tensor:
        """``(N, T, D)`` -> ``(N, T, D + 2)``: at step t the step t - 1 (zeros and the
        start flag at t = 0); word dropout zeroes an input and sets its flag."""
        n, t, _ = x.shape
        prev = torch.cat([x.new_zeros(n, 1, self.x_dim), x[:, :-1]], 1)
        start = x.new_zeros(n, t, 1)
        start[:, 0] = 1.0
        flag = x.new_zeros(n, t, 1)
        drop = _dropped((n, t, 1), word_dropout, x.device)
        if drop is not None:
            drop[:, 0] = False
            prev = prev.masked_fill(drop, 0.0)
            flag = drop.to(x.dtype)
        return torch.cat([prev, start, flag], -1)

    def first(self, n: int, device) -> torch.Tensor:
        out = torch.zeros(n, 1, self.dim, device=device)
        out[..., self.x_dim] = 1.0
        return out

    def next(self, step: torch.Tensor) -> torch.Tensor:
        """The input after emitting ``step`` (shape ``(n, D)``), ``(n, 1, D + 2)``."""
        return torch.cat([step, step.new_zeros(step.shape[0], 2)], -1)[:, None]
