"""Running the sequence model's decoder forward: sampling, greedy decoding."""

from __future__ import annotations

import torch


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


def generate(model, z: torch.Tensor, max_len: int, temperature: float, trim: bool = True):
    """``(x, lengths)`` decoded from codes ``z`` ``(..., z_dim)`` by ``model`` (a
    :class:`pvae.models.seqvae.SequenceVAE`): tokens until the end event (then padded
    with 0; a sequence without one by ``max_len`` is cut there), series ``max_len`` steps.
    Token x has ``max(lengths)`` columns with ``trim``, else ``max_len``."""
    lead = z.shape[:-1]
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
            if t == 0:
                out = out.clone()
                out[:, end] = float("-inf")  # a sequence has at least one token
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
    if model.tokens and trim:
        x = x[:, : int(lengths.max())]
    return x.reshape(*lead, *x.shape[1:]), lengths.reshape(lead)
