"""A hand-written recurrent VAE: the yardstick for the speed of pvae's ``SequenceVAE``.

The same networks and the same loss as ``pvae.SequenceVAE`` with a GRU, one layer, a
bidirectional encoder, no flows and beta 1 (the settings of ``configs/words.yaml`` and
``configs/gunpoint.yaml``), written directly in PyTorch as one would by hand
(Bowman et al. 2016's sentence VAE; Fabius & van Amersfoort 2014 for series):

- encoder: an embedding of the ids (tokens) or the series itself, a bidirectional GRU
  over the packed real steps, a linear layer on the two final states to the location
  and a softplus scale (+1e-4) of q(z | x);
- decoder: initial state ``tanh(W z)``; teacher forcing on a start input followed by the
  previous steps (tokens: an embedding with a start id ``V`` and an unknown id ``V + 1``
  for word dropout; series: the previous step, a start flag and a dropped flag); a
  linear layer to ``V + 1`` logits (the last one the end of the sequence, impossible at
  the first step; excluded ids impossible everywhere) or to the Gaussian mean of each
  feature with one learned scale per feature (softplus, +1e-3);
- loss: minus the single-sample ELBO (Monte Carlo KL, pvae's ``elbo="trace"``), the
  latent terms weighted by a KL warm-up weight, optionally with free bits (Kingma et
  al. 2016: the gradient of ``sum_b rec_b - B sum_j max(lambda w, KL_j)``, the value of
  the ELBO), averaged over the minibatch; padding is replaced by 0 and never scored.

Written for ``benchmarks/seq_speed.py`` and ``tests/test_seq_fast_reference.py``; not part
of the library.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: The floor of the likelihood's scale (pvae's likelihoods add 1e-3 to the softplus).
SCALE_FLOOR = 1e-3


class ReferenceSeqVAE(nn.Module):
    """``vocab_size=V`` for token ids ``(N, T)``, else ``x_dim=D`` for series ``(N, T, D)``
    with a Gaussian likelihood. ``loss(x, lengths)`` is minus the ELBO per sequence (nats),
    averaged over the batch."""

    def __init__(self, *, z_dim: int, hidden_dim: int, vocab_size: Optional[int] = None,
                 x_dim: Optional[int] = None, embedding_dim: Optional[int] = None,
                 excluded_ids: tuple = (), word_dropout: float = 0.0) -> None:
        super().__init__()
        if (vocab_size is None) == (x_dim is None):
            raise ValueError("give vocab_size (tokens) or x_dim (series), not both or neither")
        self.tokens, self.vocab_size, self.x_dim = vocab_size is not None, vocab_size, x_dim
        self.word_dropout, self.hidden_dim = float(word_dropout), hidden_dim
        if self.tokens:
            e = embedding_dim or hidden_dim
            self.enc_embed = nn.Embedding(vocab_size + 2, e)
            self.dec_embed = nn.Embedding(vocab_size + 2, e)
            enc_in, dec_in, out = e, e, vocab_size + 1
            excluded = torch.zeros(vocab_size + 1, dtype=torch.bool)
            excluded[list(excluded_ids)] = True
            self.register_buffer("excluded", excluded, persistent=False)
        else:
            enc_in, dec_in, out = x_dim, x_dim + 2, x_dim
            self.raw_scale = nn.Parameter(torch.full((x_dim,), 0.5413))
        self.enc_rnn = nn.GRU(enc_in, hidden_dim, batch_first=True, bidirectional=True)
        self.enc_out = nn.Linear(2 * hidden_dim, 2 * z_dim)
        self.dec_init = nn.Linear(z_dim, hidden_dim)
        self.dec_rnn = nn.GRU(dec_in, hidden_dim, batch_first=True)
        self.dec_out = nn.Linear(hidden_dim, out)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor):
        """``(loc, scale)`` of q(z | x), each ``(N, z_dim)``; x already cleaned."""
        inputs = self.enc_embed(x) if self.tokens else x
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, h = self.enc_rnn(packed)  # (2, N, H): the final state of each direction
        loc, raw = self.enc_out(h.transpose(0, 1).reshape(x.shape[0], -1)).chunk(2, -1)
        return loc, F.softplus(raw) + 1e-4

    def _decoder_inputs(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        p = self.word_dropout if self.training else 0.0
        if self.tokens:
            if p > 0:
                x = x.masked_fill(torch.rand(x.shape, device=x.device) < p, self.vocab_size + 1)
            start = torch.full((n, 1), self.vocab_size, dtype=x.dtype, device=x.device)
            return self.dec_embed(torch.cat([start, x], 1))
        t = x.shape[1]
        prev = torch.cat([x.new_zeros(n, 1, self.x_dim), x[:, :-1]], 1)
        start = x.new_zeros(n, t, 1)
        start[:, 0] = 1.0
        flag = x.new_zeros(n, t, 1)
        if p > 0:
            drop = torch.rand(n, t, 1, device=x.device) < p
            drop[:, 0] = False
            prev, flag = prev.masked_fill(drop, 0.0), drop.to(x.dtype)
        return torch.cat([prev, start, flag], -1)

    def log_px(self, x: torch.Tensor, lengths: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per sequence, nats ``(N,)`` (tokens: with the end event)."""
        h0 = torch.tanh(self.dec_init(z))[None]
        h, _ = self.dec_rnn(self._decoder_inputs(x), h0)
        out = self.dec_out(h)
        t = x.shape[1]
        real = torch.arange(t, device=x.device) < lengths[:, None]
        if not self.tokens:
            scale = F.softplus(self.raw_scale) + SCALE_FLOOR
            lp = (-0.5 * ((x - out) / scale) ** 2 - scale.log() - _HALF_LOG_2PI).sum(-1)
            return torch.where(real, lp, torch.zeros((), device=x.device)).sum(-1)
        impossible = self.excluded.expand(t + 1, -1).clone()
        impossible[0, self.vocab_size] = True  # at least one token
        logp = torch.log_softmax(out.masked_fill(impossible, float("-inf")), -1)
        step = logp[:, :-1].gather(-1, x[..., None]).squeeze(-1)
        end = logp[..., self.vocab_size].gather(1, lengths[:, None]).squeeze(1)
        return torch.where(real, step, torch.zeros((), device=x.device)).sum(-1) + end

    def loss(self, x: torch.Tensor, lengths: torch.Tensor, weight: float = 1.0,
             free_bits: float = 0.0) -> torch.Tensor:
        """Minus the ELBO per sequence, averaged over the batch (nats), latent terms times
        ``weight``; with ``free_bits`` the value is the same and the gradient that of the
        free-bits objective."""
        lengths = lengths.long()
        real = torch.arange(x.shape[1], device=x.device) < lengths[:, None]
        x = torch.where(real if self.tokens else real[..., None], x, torch.zeros((), dtype=x.dtype))
        loc, scale = self.encode(x, lengths)
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        rec = self.log_px(x, lengths, z)
        # log q(z | x) - log p(z) per dimension: the Normal densities' shared constants cancel
        kl = weight * (0.5 * (z * z - eps * eps) - scale.log())
        elbo = rec.sum() - kl.sum()
        if free_bits <= 0:
            return -elbo / x.shape[0]
        floor = free_bits * weight
        objective = rec.sum() - x.shape[0] * kl.mean(0).clamp(min=floor).sum()
        return (-objective + (objective - elbo).detach()) / x.shape[0]


def from_pvae(vae) -> ReferenceSeqVAE:
    """A reference with the sizes and a copy of the weights of ``vae`` (a
    ``pvae.SequenceVAE`` with a one-layer GRU, a bidirectional encoder, no flows, beta 1
    and, for series, a Gaussian likelihood with a learned scale); ``ValueError`` else."""
    enc, dec = vae.encoder, vae.decoder
    if not (isinstance(enc.rnn, nn.GRU) and enc.directions == 2 and enc.num_layers == 1
            and dec.num_layers == 1 and not dec.z_every_step and vae.beta == 1.0
            and len(list(vae.posterior.parameters())) == 0
            and (vae.tokens or (vae.likelihood.name == "gaussian"
                                and vae.likelihood.scale == "learned"))):
        raise ValueError("the reference covers one-layer GRUs, a bidirectional encoder "
                         "without z at every step, no flows, beta 1 and, for series, a "
                         "learned Gaussian scale; build the SequenceVAE so")
    ref = ReferenceSeqVAE(z_dim=vae.z_dim, hidden_dim=enc.hidden_dim, vocab_size=vae.vocab_size,
                          x_dim=vae.x_dim,
                          embedding_dim=vae.dec_inputs.dim if vae.tokens else None,
                          excluded_ids=vae.excluded_ids, word_dropout=vae.word_dropout)
    with torch.no_grad():
        pairs = [(ref.enc_rnn, enc.rnn), (ref.enc_out, enc.out), (ref.dec_init, dec.init),
                 (ref.dec_rnn, dec.rnn), (ref.dec_out, dec.out)]
        if vae.tokens:
            pairs += [(ref.enc_embed, vae.enc_inputs.embedding),
                      (ref.dec_embed, vae.dec_inputs.embedding)]
        else:
            ref.raw_scale.copy_(vae.likelihood.raw_scale)
        for mine, theirs in pairs:
            mine.load_state_dict(theirs.state_dict())
    return ref


def pvae_grads(vae) -> list:
    """The gradients of ``vae``'s parameters in the order of the parameters of
    ``from_pvae(vae)`` (the mapping ``from_pvae`` copies the weights by)."""
    mods = [vae.enc_inputs.embedding, vae.dec_inputs.embedding] if vae.tokens else []
    out = [] if vae.tokens else [vae.likelihood.raw_scale.grad]
    for m in (*mods, vae.encoder.rnn, vae.encoder.out, vae.decoder.init, vae.decoder.rnn,
              vae.decoder.out):
        out += [p.grad for p in m.parameters()]
    return out


def warm_up_weight(step: int, steps_per_epoch: int, kl_warmup: float) -> float:
    """The latent terms' weight at a run's ``step`` (0-based, counted over epochs): rising
    linearly to 1 over ``kl_warmup`` epochs, as in ``pvae.fit``; 1 without warm-up."""
    return min(1.0, (step + 1) / (kl_warmup * steps_per_epoch)) if kl_warmup else 1.0


def reference_step(model: ReferenceSeqVAE, opt: torch.optim.Optimizer, x, lengths,
                   weight: float = 1.0, free_bits: float = 0.0) -> float:
    """One training step; the loss (nats per sequence), read as ``pvae.fit`` reads it."""
    loss = model.loss(x, lengths, weight, free_bits)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    value = loss.item()  # pvae.fit reads each step's loss, to check it and to report it
    opt.step()
    return value


def train_reference(model: ReferenceSeqVAE, x: torch.Tensor, lengths: torch.Tensor, *,
                    epochs: int, batch_size: int, lr: float = 1e-3, fused: bool = True,
                    kl_warmup: float = 0.0, free_bits: float = 0.0, seed: int = 0) -> list:
    """Adam (``fused``: one kernel for all parameters, as ``pvae.fit``) on shuffled
    minibatches, the warm-up weight rising per step as in ``pvae.fit``; seconds per epoch."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, **({"fused": True} if fused else {}))
    n, seconds = len(x), []
    steps = math.ceil(n / batch_size)
    model.train()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(steps):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            reference_step(model, opt, x[idx], lengths[idx],
                           warm_up_weight(epoch * steps + i, steps, kl_warmup), free_bits)
        seconds.append(time.perf_counter() - t0)
    return seconds
