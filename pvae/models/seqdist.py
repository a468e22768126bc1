"""The distribution of one padded sequence: per-step likelihoods masked by its length.

:class:`MaskedSequence` is what the sequence model observes at site ``"x"``:
batch shape ``(..., N)``, event shape ``(T, *step_shape)``, so each sequence has
one log-probability. Steps at or beyond a sequence's length contribute nothing,
and an optional end-of-sequence term scores the length itself (token data).
"""

from __future__ import annotations

from typing import Optional

import torch
from pyro.distributions import TorchDistribution, constraints


def step_mask(lengths: torch.Tensor, num_steps: int) -> torch.Tensor:
    """``arange(T) < lengths[..., None]``: True at the real steps, shape ``(*lengths.shape, T)``."""
    return torch.arange(num_steps, device=lengths.device) < lengths[..., None]


class MaskedSequence(TorchDistribution):
    """p(x_{0:L}) = prod_{t<L} p_t(x_t) [* p(end at step L)] for padded sequences x.

    Parameters
    ----------
    steps
        The per-step distributions, batch shape ``(..., N, T)`` and event shape
        the step's (``()`` for a token, ``(D,)`` for a vector), computed by an
        autoregressive decoder from the same x the log-density is asked for
        (teacher forcing): ``log_prob`` scores only that x.
    lengths
        Integer lengths, shape broadcastable to the batch shape, each in ``1..T``.
    end_log_prob
        Optional ``(..., N, T + 1)``: log-probability of the end event at each
        step; ``log_prob`` adds the term at step ``L`` (the length).
    draw
        A value drawn by running the decoder autoregressively, returned by
        :meth:`sample` (the steps alone cannot be sampled independently).

    ``log_prob(x)`` has shape ``(..., N)``, in nats. Padding is never read:
    the caller replaces it by a valid value before the decoder runs (so no NaN
    reaches a gradient), and the masked steps are taken out with ``torch.where``.
    """

    arg_constraints: dict = {}

    def __init__(self, steps, lengths: torch.Tensor, end_log_prob: Optional[torch.Tensor] = None,
                 draw: Optional[torch.Tensor] = None) -> None:
        self.steps = steps
        num_steps = steps.batch_shape[-1]
        batch_shape = steps.batch_shape[:-1]
        self.lengths = lengths.long().expand(batch_shape)
        self.end_log_prob = end_log_prob
        self.draw = draw
        self.mask = step_mask(self.lengths, num_steps)
        super().__init__(batch_shape, torch.Size((num_steps, *steps.event_shape)),
                         validate_args=False)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.independent(self.steps.support, 1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        lp = self.steps.log_prob(value)
        lp = torch.where(self.mask, lp, torch.zeros((), dtype=lp.dtype, device=lp.device))
        lp = lp.sum(-1)
        if self.end_log_prob is not None:
            end = self.end_log_prob.expand(*self.batch_shape, self.end_log_prob.shape[-1])
            lp = lp + end.gather(-1, self.lengths[..., None]).squeeze(-1)
        return lp

    def expand(self, batch_shape, _instance=None) -> "MaskedSequence":
        batch_shape = torch.Size(batch_shape)
        steps = self.steps.expand(batch_shape + self.steps.batch_shape[-1:])
        end = (None if self.end_log_prob is None else
               self.end_log_prob.expand(*batch_shape, self.end_log_prob.shape[-1]))
        draw = (None if self.draw is None else
                self.draw.expand(*batch_shape, *self.event_shape))
        return MaskedSequence(steps, self.lengths.expand(batch_shape), end, draw)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        if self.draw is None:
            raise NotImplementedError(
                "a sequence's steps depend on the steps before them: draw sequences with "
                "SequenceVAE.sample, or run the model without x")
        return self.draw.expand(torch.Size(sample_shape) + self.draw.shape)
