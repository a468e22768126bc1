"""Gradient estimator statistics: variance and signal-to-noise ratio per parameter group.

``gradient_stats(model, x, elbos=["trace", "iwae:5", ...])`` repeats each
estimator's gradient on the same batch and parameters and reports, per
parameter group (``encoder``: parameters the guide uses; ``decoder``: those
only the model uses), the mean over coordinates of the gradient's variance
and of its signal-to-noise ratio |mean| / std (Rainforth et al. 2018).
"""

from __future__ import annotations

from typing import Sequence, Union

import pyro
import torch
from pyro import poutine
from pyro.infer import ELBO

from pvae.batching import as_batch
from pvae.elbos import make_elbo, traits
from pvae.models.sites import as_pair


def _groups(model, batch) -> dict[str, list[tuple[str, torch.nn.Parameter]]]:
    """Parameters the guide uses ("encoder") and those only the model uses ("decoder")."""
    guide_fn = as_pair(model).guide
    with poutine.block(), torch.no_grad():
        g = poutine.trace(guide_fn).get_trace(*batch)
    guide_ids = {id(s["value"]) for s in g.nodes.values() if s["type"] == "param"}
    named = dict(model.named_parameters())
    groups: dict[str, list] = {"encoder": [], "decoder": []}
    for name, p in named.items():
        groups["encoder" if id(p) in guide_ids else "decoder"].append((name, p))
    return groups


def gradient_stats(model, data, elbos: Sequence[Union[str, ELBO]] = ("trace",), *,
                   num_estimates: int = 50, num_particles: int = 1) -> dict[str, dict]:
    """Per estimator and parameter group: gradient variance and SNR over repeated estimates.

    Returns ``{elbo_name: {"encoder": {"variance", "snr", "num_params"}, "decoder": {...}}}``;
    ``variance`` and ``snr`` are means over the group's coordinates.

    Raises ``ValueError`` for ``num_estimates < 2``: a variance over one
    estimate is undefined.
    """
    if not (isinstance(num_estimates, int) and num_estimates >= 2):
        raise ValueError(f"num_estimates must be an int >= 2 (a variance over repeated "
                         f"estimates), got {num_estimates!r}")
    batch = as_batch(data, model)
    groups = _groups(model, batch)
    results = {}
    for spec in elbos:
        elbo = make_elbo(spec, num_particles, model=model)  # instances pass through, checked
        name = spec if isinstance(spec, str) else type(spec).__name__
        draws = {g: [] for g in groups}
        for _ in range(num_estimates):
            model.zero_grad(set_to_none=True)
            with pyro.validation_enabled(False):
                if traits(elbo).differentiable:
                    elbo.differentiable_loss(model.model, model.guide, *batch).backward()
                else:
                    elbo.loss_and_grads(model.model, model.guide, *batch)
            for g, params in groups.items():
                draws[g].append(torch.cat([
                    (p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                    for _, p in params]) if params else torch.zeros(0))
        model.zero_grad(set_to_none=True)
        out = {}
        for g, vs in draws.items():
            if not vs or vs[0].numel() == 0:
                continue
            stack = torch.stack(vs)
            mean, std = stack.mean(0), stack.std(0)
            snr = mean.abs() / std.clamp_min(1e-12)
            out[g] = {"variance": stack.var(0).mean().item(), "snr": snr.mean().item(),
                      "num_params": stack.shape[1]}
        results[name] = out
    return results
