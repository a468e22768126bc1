"""Evaluation in nats per data point: ELBO, importance-sampled log-likelihood, parts.

Everything here reads Pyro traces, so it works for any model/guide pair whose
sample sites lie in ``pyro.plate("data")`` (dim -1): a pvae model, or a pair
of callables ``(model_fn, guide_fn)``. ``num_samples`` samples of the guide are
drawn at once (vectorised with an outer plate) and the log densities are taken
per data point, ignoring any ``poutine.scale`` (beta, plate subsampling): the
figures are for the model as written, one data point at a time.

Memory stays bounded: data go in batches of ``batch_size`` and samples in
chunks so that one chunk's decoder output holds at most ``max_elements``
numbers; chunks are combined exactly (``logsumexp`` / means).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

Batch = tuple


def _callables(model) -> tuple[Callable, Callable]:
    if isinstance(model, (tuple, list)):
        model_fn, guide_fn = model
        return model_fn, guide_fn
    return model.model, model.guide


def _as_batch(data, model=None) -> Batch:
    """A tuple of tensors, checked against the model when it can check data."""
    if hasattr(data, "x") and hasattr(data, "y"):  # pvae.data.Split
        data = (data.x, data.y) if getattr(model, "takes_labels", False) else (data.x,)
    if isinstance(data, torch.Tensor):
        batch = (data,)
    elif isinstance(data, (tuple, list)):
        batch = tuple(data)
    else:
        raise TypeError(f"expected a tensor or a tuple of tensors, got {type(data).__name__}")
    if hasattr(model, "check_data"):
        model.check_data(*batch)
    return batch


def _data_dim(site) -> int:
    for frame in site["cond_indep_stack"]:
        if frame.name == "data":
            return frame.dim
    raise ValueError(
        f"sample site {site['name']!r} is outside pyro.plate('data'); per-data-point "
        "evaluation needs every sample site inside the data plate"
    )


def _sample_dim(model) -> int:
    return -(int(getattr(model, "max_plate_nesting", 1)) + 1)


def _per_point(lp: torch.Tensor, site, sample_dim: int, num_samples: int, n: int) -> torch.Tensor:
    """Reduce a site's log density to shape (K, N): sum all but the sample and data dims."""
    data_dim = _data_dim(site)
    while lp.dim() < -sample_dim:
        lp = lp.unsqueeze(0)
    lp = lp.movedim((sample_dim, data_dim), (0, -1))
    if lp.dim() > 2:
        lp = lp.reshape(lp.shape[0], -1, lp.shape[-1]).sum(1)
    return lp.expand(num_samples, n)


def site_log_probs(model, batch: Batch, num_samples: int) -> dict[str, dict[str, torch.Tensor]]:
    """Per-site log densities, each of shape ``(num_samples, N)``.

    Returns ``{"model": {site: log p}, "guide": {site: log q}, "observed": {site: log p}}``
    for one vectorised draw of ``num_samples`` guide samples per data point.
    ``model`` is a pvae model or a ``(model_fn, guide_fn)`` pair; the samples
    plate sits left of the model's ``max_plate_nesting`` (default 1) plates.
    """
    model_fn, guide_fn = _callables(model)
    n = batch[0].shape[0]
    sdim = _sample_dim(model)
    with torch.no_grad(), poutine.block(), pyro.plate("_samples", num_samples, dim=sdim):
        guide_tr = poutine.trace(guide_fn).get_trace(*batch)
        model_tr = poutine.trace(poutine.replay(model_fn, trace=guide_tr)).get_trace(*batch)
    out: dict[str, dict[str, torch.Tensor]] = {"model": {}, "guide": {}, "observed": {}}
    for part, tr in (("model", model_tr), ("guide", guide_tr)):
        for name, site in tr.nodes.items():
            if (site["type"] != "sample" or site_is_subsample(site)
                    or site["infer"].get("pvae_auxiliary")):
                continue
            lp = site["fn"].log_prob(site["value"])
            mask = site["mask"]
            if isinstance(mask, torch.Tensor):
                lp = lp.masked_fill(~mask, 0.0)
            elif mask is False:
                lp = torch.zeros_like(lp)
            key = "observed" if (part == "model" and site["is_observed"]) else part
            out[key][name] = _per_point(lp, site, sdim, num_samples, n)
    return out


def _log_weights(parts) -> torch.Tensor:
    """log p(x, z) - log q(z | x), shape (K, N)."""
    lw = sum(parts["observed"].values()) + sum(parts["model"].values())
    return lw - sum(parts["guide"].values())


def _weight_stats(model, data, num_samples: int, batch_size: int, max_elements: int):
    """Per data point: logsumexp and mean of the log weights over ``num_samples`` samples."""
    batch = _as_batch(data, model)
    x = batch[0]
    likelihood = getattr(model, "likelihood", None)
    per_sample = math.prod(x.shape[1:]) * max(getattr(likelihood, "num_params", 1), 1)
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    lses, means = [], []
    try:
        for start in range(0, x.shape[0], batch_size):
            sub = tuple(t[start : start + batch_size] for t in batch)
            b = sub[0].shape[0]
            chunk = max(1, min(num_samples, max_elements // max(b * per_sample, 1)))
            lse, total, left = None, 0.0, num_samples
            while left > 0:
                size = min(chunk, left)
                lw = _log_weights(site_log_probs(model, sub, size))
                part = torch.logsumexp(lw, 0)
                lse = part if lse is None else torch.logaddexp(lse, part)
                total = total + lw.sum(0)
                left -= size
            lses.append(lse)
            means.append(total / num_samples)
    finally:
        if was_training:
            model.train()
    return torch.cat(lses), torch.cat(means)


def elbo(model, data, num_samples: int = 1, *, batch_size: int = 1000,
         max_elements: int = 2**25) -> torch.Tensor:
    """ELBO per data point (nats), averaged over ``num_samples`` guide samples."""
    return _weight_stats(model, data, num_samples, batch_size, max_elements)[1]


def log_likelihood(model, data, num_samples: int = 1000, *, batch_size: int = 100,
                   max_elements: int = 2**25) -> torch.Tensor:
    """Importance-sampled log p(x) per data point (nats), with the guide as proposal.

    ``log (1/K) sum_k p(x, z_k) / q(z_k | x)``, the logsumexp taken per data
    point over all ``K = num_samples`` samples (Burda et al. 2015). It is a
    lower bound in expectation that tightens as K grows.
    """
    lse, _ = _weight_stats(model, data, num_samples, batch_size, max_elements)
    return lse - math.log(num_samples)


def parts(model, data, num_samples: int = 1, *, batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """Per data point: ``elbo``, ``recon`` (E_q log p(x | z)) and ``kl`` (E_q log q/p),
    plus ``kl_<site>`` for each latent site; Monte Carlo over ``num_samples``."""
    batch = _as_batch(data, model)
    acc: dict[str, list[torch.Tensor]] = {}
    for start in range(0, batch[0].shape[0], batch_size):
        sub = tuple(t[start : start + batch_size] for t in batch)
        p = site_log_probs(model, sub, num_samples)
        recon = sum(p["observed"].values()).mean(0)
        row = {"recon": recon}
        kl_total = torch.zeros_like(recon)
        for name, lq in p["guide"].items():
            kl = (lq - p["model"][name]).mean(0)
            row[f"kl_{name}"] = kl
            kl_total = kl_total + kl
        row["kl"] = kl_total
        row["elbo"] = recon - kl_total
        for key, val in row.items():
            acc.setdefault(key, []).append(val)
    return {k: torch.cat(v) for k, v in acc.items()}


def bits_per_dim(nats: Union[torch.Tensor, float], x_dim: Union[int, Sequence[int]]):
    """Convert nats per data point to bits per dimension."""
    d = x_dim if isinstance(x_dim, int) else math.prod(x_dim)
    return nats / (d * math.log(2))
