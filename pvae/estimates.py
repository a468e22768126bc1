"""The per-point estimates everything else builds on: ELBO, importance-sampled
log-likelihood, their parts, and per-site log densities, in nats per data point.

They read Pyro traces (:mod:`pvae.weights`), so they work for any model/guide
pair whose sample sites lie in ``pyro.plate("data")``: a pvae model, or a pair
of callables ``(model_fn, guide_fn)``. They sit below :mod:`pvae.train` (whose
loop reports them per epoch) and are re-exported by :mod:`pvae.evaluate`,
whose module docstring describes batching, chunking and validation.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import pyro
import torch

from pvae.batching import as_batch
from pvae.models.base import PVAEModel, as_pair
from pvae.weights import check_per_point, log_weights

Batch = tuple

#: Decoder-output numbers per evaluation chunk (see the module docstring).
CHUNK_ELEMENTS = 2**21


def _unvalidated(model):
    """No per-sample argument validation for pvae models, whose data were checked up front."""
    return pyro.validation_enabled(False) if isinstance(model, PVAEModel) else nullcontext()


def site_log_probs(model, batch: Batch, num_samples: int) -> dict[str, dict[str, torch.Tensor]]:
    """Per-site log densities, each of shape ``(num_samples, N)``.

    Returns ``{"model": {site: log p}, "guide": {site: log q}, "observed": {site: log p}}``
    for one vectorised draw of ``num_samples`` guide samples per data point
    (discrete guide sites are sampled, not enumerated).
    """
    pair = as_pair(model)
    with torch.no_grad(), _unvalidated(model):
        w = log_weights(pair.model, pair.guide, batch, num_samples,
                        max_plate_nesting=pair.max_plate_nesting,
                        enumerate=False, keep_sites=True)
    check_per_point(w)
    return w.sites


class _Evaluation:
    """Batching, chunking and train/eval mode around a per-chunk computation."""

    def __init__(self, model, data, batch_size: int, max_elements: int, num_samples: int,
                 checked: bool = False):
        self.model = model
        # data checked already (the training loop's monitor and validation batches) skip it
        self.batch = tuple(data) if checked else as_batch(data, model)
        self.batch_size, self.num_samples = batch_size, num_samples
        x = self.batch[0]
        likelihood = getattr(model, "likelihood", None)
        per_sample = math.prod(x.shape[1:]) * max(getattr(likelihood, "num_params", 1), 1)
        self.per_point_chunk = lambda b: max(1, min(num_samples, max_elements // max(b * per_sample, 1)))

    def __iter__(self):
        was_training = bool(getattr(self.model, "training", False))
        if hasattr(self.model, "eval"):
            self.model.eval()
        try:
            for start in range(0, self.batch[0].shape[0], self.batch_size):
                sub = tuple(t[start : start + self.batch_size] for t in self.batch)
                chunk, left = self.per_point_chunk(sub[0].shape[0]), self.num_samples
                sizes = []
                while left > 0:
                    sizes.append(min(chunk, left))
                    left -= sizes[-1]
                yield sub, sizes
        finally:
            if was_training:
                self.model.train()


def _weights(model, sub, size, enumerate: bool) -> torch.Tensor:
    pair = as_pair(model)
    with torch.no_grad(), _unvalidated(model):
        w = log_weights(pair.model, pair.guide, sub, size,
                        max_plate_nesting=pair.max_plate_nesting,
                        enumerate=enumerate)
    check_per_point(w)
    return w.local


def elbo(model, data, num_samples: int = 1, *, batch_size: int = 1000,
         max_elements: int = CHUNK_ELEMENTS, checked: bool = False) -> torch.Tensor:
    """ELBO per data point (nats), averaged over ``num_samples`` guide samples.

    ``checked=True``: ``data`` is a tuple of tensors already checked against the
    model (as :func:`pvae.batching.as_batch` returns it), so it is not checked again.
    """
    out = []
    for sub, sizes in _Evaluation(model, data, batch_size, max_elements, num_samples, checked):
        total = sum(_weights(model, sub, k, enumerate=False).sum(0) for k in sizes)
        out.append(total / num_samples)
    return torch.cat(out)


def log_likelihood(model, data, num_samples: int = 1000, *, batch_size: int = 100,
                   max_elements: int = CHUNK_ELEMENTS, checked: bool = False) -> torch.Tensor:
    """Importance-sampled log p(x) per data point (nats), with the guide as proposal.

    ``log (1/K) sum_k p(x, z_k) / q(z_k | x)``, the logsumexp taken per data
    point over all ``K = num_samples`` samples (Burda et al. 2015): a
    stochastic lower bound that tightens as K grows. Discrete guide sites
    (the semi-supervised model's label) are enumerated here
    (``config_enumerate``) and summed out exactly inside each sample.
    ``checked`` as for :func:`elbo`.
    """
    out = []
    for sub, sizes in _Evaluation(model, data, batch_size, max_elements, num_samples, checked):
        lse = None
        for k in sizes:
            part = torch.logsumexp(_weights(model, sub, k, enumerate=True), 0)
            lse = part if lse is None else torch.logaddexp(lse, part)
        out.append(lse - math.log(num_samples))
    return torch.cat(out)


def parts(model, data, num_samples: int = 1, *, batch_size: int = 1000,
          checked: bool = False) -> dict[str, torch.Tensor]:
    """Per data point: ``elbo``, ``recon`` (E_q log p(x | z)) and ``kl`` (E_q log q/p),
    plus ``kl_<site>`` for each latent site; Monte Carlo over ``num_samples``.
    ``checked`` as for :func:`elbo`."""
    acc: dict[str, list[torch.Tensor]] = {}
    for sub, _ in _Evaluation(model, data, batch_size, 2**62, num_samples, checked):
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
