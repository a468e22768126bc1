"""Running the sequence model's decoder: teacher-forced scores, sampling, greedy decoding."""

from __future__ import annotations

from typing import Optional

import torch


def no_empty(logits: torch.Tensor, vocab_size: int,
             excluded: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Token logits ``(..., T + 1, V + 1)`` with the end event (category ``V``) impossible
    at the first step (a sequence has at least one token) and, where ``excluded`` (a
    boolean mask ``(V + 1,)``) is True, impossible at every step."""
    impossible = torch.zeros(logits.shape[-2:], dtype=torch.bool, device=logits.device)
    impossible[0, vocab_size] = True
    if excluded is not None:
        impossible = impossible | excluded
    return logits.masked_fill(impossible, float("-inf"))


def teacher_score(decoder, inputs, likelihood, vocab_size: Optional[int], word_dropout: float,
                  z: torch.Tensor, x: torch.Tensor, excluded: Optional[torch.Tensor] = None):
    """Log-probabilities of cleaned sequences ``x`` given codes ``z`` by teacher forcing:
    ``(per step (..., T), end event per step (..., T + 1) or None for series)``.

    ``x``: ``(..., T)`` token ids or ``(..., T, D)`` series, its leading dims
    broadcasting with ``z.shape[:-1]``; ``word_dropout``: the probability of
    replacing each decoder input (training only: pass 0 otherwise); ``excluded``:
    token categories of probability 0 (mask ``(V + 1,)``; see :func:`no_empty`).
    """
    k = 1 if vocab_size is not None else 2  # x's dims per sequence
    flat = inputs.teacher(x.reshape(-1, *x.shape[x.dim() - k:]), word_dropout)
    out = decoder(flat.reshape(*x.shape[: x.dim() - k], *flat.shape[1:]), z)
    if vocab_size is None:
        return likelihood(likelihood.unflatten(out)).log_prob(x), None
    logits = no_empty(out, vocab_size, excluded)
    return (likelihood(logits[..., :-1, :]).log_prob(x),
            torch.log_softmax(logits, -1)[..., vocab_size])


def _token(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0.0:
        return logits.argmax(-1)
    return torch.distributions.Categorical(logits=logits / temperature).sample()


def _step(likelihood, params, temperature: float) -> torch.Tensor:
    """One step of a series: a draw at ``temperature`` (0: the mean, rounded if discrete)."""
    mean = likelihood.mean(params)
    if temperature == 0.0:
        return mean.round() if likelihood.discrete else mean
    if likelihood.name == "bernoulli":
        return torch.bernoulli(torch.sigmoid(params / temperature))
    draw = likelihood(params).sample()
    if likelihood.discrete or temperature == 1.0:
        return draw
    return mean + temperature * (draw - mean)


def generate(model, z: torch.Tensor, max_len: int, temperature: float, trim: bool = True,
             lengths: Optional[torch.Tensor] = None):
    """``(x, lengths)`` decoded from codes ``z`` ``(..., z_dim)`` by ``model`` (a
    :class:`pvae.models.seqvae.SequenceVAE`): tokens until the end event (then padded
    with 0; a sequence without one by ``max_len`` is cut there), series ``max_len`` steps.
    Token x has ``max(lengths)`` columns with ``trim``, else ``max_len``.

    Given ``lengths`` (shape ``z.shape[:-1]``, each at most ``max_len``), every
    sequence gets its length: tokens are drawn with the end event forbidden before
    it, series are zeroed beyond it."""
    lead = z.shape[:-1]
    target = None if lengths is None else lengths.reshape(-1)
    flat = z.reshape(-1, z.shape[-1])
    b, device = flat.shape[0], flat.device
    decoder, inputs = model.decoder, model.dec_inputs
    state = decoder.initial_state(flat)
    step_in = inputs.first(b, device)
    steps = []
    lengths = torch.full((b,), max_len, dtype=torch.long, device=device)
    alive = torch.ones(b, dtype=torch.bool, device=device)
    for t in range(max_len):
        out, state = decoder.step(step_in, state)
        out = out[:, 0]
        if model.tokens:
            end = model.vocab_size
            if model.excluded_mask is not None:  # ids of probability 0
                out = out.masked_fill(model.excluded_mask, float("-inf"))
            if t == 0 or target is not None:
                out = out.clone()
                out[:, end] = float("-inf")  # at least one token; or a length given
            token = _token(out, temperature)
            ended = alive & (token == end)
            lengths[ended] = t
            alive &= ~ended
            token = torch.where(alive, token, torch.zeros_like(token))
            steps.append(token)
            if not alive.any() and trim:
                break
            step_in = inputs.next(token)
        else:
            x_t = _step(model.likelihood, model.likelihood.unflatten(out), temperature)
            steps.append(x_t)
            step_in = inputs.next(x_t)
    x = torch.stack(steps, 1)
    if target is not None:
        lengths = target.clone()
        mask = torch.arange(max_len, device=device) < lengths[:, None]
        x = torch.where(mask.reshape(*mask.shape, *([1] * (x.dim() - 2))), x,
                        torch.zeros((), dtype=x.dtype, device=device))
    if model.tokens and trim:
        x = x[:, : int(lengths.max())]
    return x.reshape(*lead, *x.shape[1:]), lengths.reshape(lead)
