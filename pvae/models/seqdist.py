"""The distribution of padded sequences under an autoregressive decoder, masked by length.

:class:`MaskedSequence` is what the sequence model observes at site ``"x"``:
batch shape ``(..., N)``, event shape ``(T, *step_shape)``, so each sequence has
one log-probability. Its ``log_prob(x)`` runs the decoder on x itself (teacher
forcing), so it scores any value, however the value reaches the site
(``obs=``, ``poutine.condition``); steps at or beyond a sequence's length
contribute nothing, and an optional end-of-sequence term scores the length
(token data). ``sample()`` runs the decoder step by step.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from pyro.distributions import TorchDistribution, constraints


def step_mask(lengths: torch.Tensor, num_steps: int) -> torch.Tensor:
    """``arange(T) < lengths[..., None]``: True at the real steps, shape ``(*lengths.shape, T)``."""
    return torch.arange(num_steps, device=lengths.device) < lengths[..., None]


def clean(x: torch.Tensor, lengths: torch.Tensor, tokens: bool):
    """``(x, lengths)`` with padding replaced by 0 (ids as int64, series as float32) and
    lengths as int64: nothing beyond a length can reach a computation or its gradient.

    ``x``: ``(..., T)`` token ids or ``(..., T, D)`` series; ``lengths``: its
    leading shape, or broadcasting to it.
    """
    lengths = lengths.long()
    mask = step_mask(lengths, x.shape[-1 if tokens else -2])
    if not tokens:
        mask, x = mask[..., None], x.float()
    x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return (x.long() if tokens else x), lengths


#: ``score(z, x) -> (log p per step (..., T), log p(end) per step (..., T + 1) or None)``.
Score = Callable[[torch.Tensor, torch.Tensor], tuple]
#: ``sample(z, lengths) -> (x, lengths)``: the decoder run step by step from codes z.
Sampler = Callable[[torch.Tensor, Optional[torch.Tensor]], tuple]


class MaskedSequence(TorchDistribution):
    """p(x_{0:L} | z) = prod_{t<L} p(x_t | x_{<t}, z) [* p(end at step L | x, z)].

    Parameters
    ----------
    score
        Teacher-forced log-probabilities of cleaned sequences (see :data:`Score`).
    z
        Latent codes, shape ``(..., N, z_dim)``: the batch shape is ``z.shape[:-1]``.
    lengths
        Integer lengths in ``1..T``, broadcastable to the batch shape; ``None``:
        unknown until :meth:`sample` draws them (token sequences drawn until
        their end event), all ``T`` until then.
    num_steps, step_shape, step_support
        T, the shape of one step (``()`` tokens, ``(D,)`` vectors) and its support.
    sampler
        Draws ``(x, lengths)`` (see :data:`Sampler`); ``lengths`` is passed
        when they are fixed, so draws have them.

    ``log_prob(x)`` has the batch shape, in nats. Padding is never read: it is
    replaced by 0 before the decoder runs (no NaN reaches a gradient) and the
    masked steps are taken out with ``torch.where``. One value's result is
    cached, so Pyro's repeated calls on a trace run the decoder once.
    """

    arg_constraints: dict = {}

    def __init__(self, score: Score, z: torch.Tensor, lengths: Optional[torch.Tensor],
                 num_steps: int, step_shape: tuple = (), step_support=constraints.real,
                 sampler: Optional[Sampler] = None) -> None:
        batch_shape = z.shape[:-1]
        self.score, self.z, self.sampler = score, z, sampler
        self.fixed_lengths = lengths is not None
        if lengths is None:
            lengths = torch.full((), num_steps, dtype=torch.long, device=z.device)
        self._set_lengths(lengths.long().expand(batch_shape), num_steps)
        self.step_support = step_support
        self._cache: Optional[tuple] = None
        # shared with the copies expand() makes (Pyro's plates sample a copy): the lengths
        # a draw gave, for the model to record
        self._drawn: dict = {"lengths": None}
        super().__init__(batch_shape, torch.Size((num_steps, *step_shape)), validate_args=False)

    def _set_lengths(self, lengths: torch.Tensor, num_steps: int) -> None:
        self.lengths = lengths
        self.mask = step_mask(lengths, num_steps)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.independent(self.step_support, 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._cache is not None and self._cache[0] is value:
            return self._cache[1]
        x, _ = clean(value.expand(*self.batch_shape, *self.event_shape), self.lengths,
                     tokens=len(self.event_shape) == 1)
        step_lp, end_lp = self.score(self.z, x)
        lp = torch.where(self.mask, step_lp, torch.zeros((), dtype=step_lp.dtype,
                                                          device=step_lp.device)).sum(-1)
        if end_lp is not None:
            lp = lp + end_lp.gather(-1, self.lengths[..., None]).squeeze(-1)
        self._cache = (value, lp)
        return lp

    def expand(self, batch_shape, _instance=None) -> "MaskedSequence":
        batch_shape = torch.Size(batch_shape)
        z = self.z.expand(*batch_shape, self.z.shape[-1])
        out = MaskedSequence(self.score, z, self.lengths.expand(batch_shape),
                             self.event_shape[0], tuple(self.event_shape[1:]), self.step_support,
                             self.sampler)
        out.fixed_lengths = self.fixed_lengths
        out._drawn = self._drawn
        return out

    @property
    def drawn_lengths(self) -> torch.Tensor:
        """The lengths of the last draw of this distribution or of any copy :meth:`expand`
        made of it (Pyro's plates sample such a copy); :attr:`lengths` before any draw."""
        drawn = self._drawn["lengths"]
        return self.lengths if drawn is None else drawn

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Sequences drawn step by step; without fixed lengths, :attr:`lengths` become the
        drawn ones (token sequences end at their end event)."""
        if self.sampler is None:
            raise NotImplementedError("this sequence distribution has no sampler")
        shape = torch.Size(sample_shape) + self.batch_shape
        z = self.z.expand(*shape, self.z.shape[-1])
        x, lengths = self.sampler(z, self.lengths.expand(shape) if self.fixed_lengths else None)
        if not sample_shape:
            self._set_lengths(lengths, self.event_shape[0])
        self._drawn["lengths"] = lengths
        return x
