"""Evaluation in nats per data point: ELBO, importance-sampled log-likelihood, diagnostics.

Everything here reads Pyro traces (:mod:`pvae.weights`), so it works for any
model/guide pair whose sample sites lie in ``pyro.plate("data")``: a pvae model,
or a pair of callables ``(model_fn, guide_fn)``. Samples of the guide are drawn
at once (vectorised) and log densities are taken per data point as the model
is written: ``poutine.scale`` factors (beta, plate subsampling) are not
applied, so the figures are for the model itself, one data point at a time.

Memory stays bounded in :func:`elbo` and :func:`log_likelihood`: data go in
batches of ``batch_size`` and samples in chunks so that one chunk's decoder
output holds at most ``max_elements`` numbers; chunks are combined exactly
(``logsumexp`` / sums). The default chunk (:data:`CHUNK_ELEMENTS`, 8 MB of
float32) keeps each chunk's elementwise work in cache: on a 2-core machine it
evaluates twice as fast as chunks of 128 MB (``benchmarks/RESULTS.md``). pvae
models check their data once up front, so distribution argument validation is
switched off inside the loops, where it would re-check every sample. The
diagnostics take all ``num_samples`` of a batch at once: keep
``num_samples * batch_size`` moderate there.

Also here: :func:`accuracy` of a classifier on the labelled points,
:func:`diagnostics` (rate, distortion, KL per dimension, active units),
:func:`gradient_stats` (variance and SNR of gradient estimators),
:func:`anomaly_scores` with :func:`calibrate_threshold` and :func:`roc_auc`.
"""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from typing import Optional, Sequence, Union

import pyro
import torch

from pvae.batching import as_batch_tensors
from pvae.gradients import gradient_stats  # noqa: F401  (re-exported)
from pvae.models.base import as_pair
from pvae.weights import check_per_point, log_weights

Batch = tuple

#: Decoder-output numbers per evaluation chunk (see the module docstring).
CHUNK_ELEMENTS = 2**21


def _unvalidated(model):
    """No per-sample argument validation for pvae models, whose data were checked up front."""
    return pyro.validation_enabled(False) if hasattr(model, "check_data") else nullcontext()


def _as_batch(data, model=None) -> Batch:
    """A tuple of tensors, checked against the model when it can check data."""
    batch = as_batch_tensors(data, model)
    if hasattr(data, "x") and hasattr(data, "y") and hasattr(model, "evaluation_batch"):
        batch = model.evaluation_batch(batch)  # a pvae.data.Split: score what fit scores
    if hasattr(model, "check_data"):
        model.check_data(*batch)
    return batch


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


def _log_weights(parts) -> torch.Tensor:
    """log p(x, z) - log q(z | x), shape (K, N), from :func:`site_log_probs`."""
    lw = sum(parts["observed"].values()) + sum(parts["model"].values())
    return lw - sum(parts["guide"].values())


class _Evaluation:
    """Batching, chunking and train/eval mode around a per-chunk computation."""

    def __init__(self, model, data, batch_size: int, max_elements: int, num_samples: int):
        self.model = model
        self.batch = _as_batch(data, model)
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
         max_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """ELBO per data point (nats), averaged over ``num_samples`` guide samples."""
    out = []
    for sub, sizes in _Evaluation(model, data, batch_size, max_elements, num_samples):
        total = sum(_weights(model, sub, k, enumerate=False).sum(0) for k in sizes)
        out.append(total / num_samples)
    return torch.cat(out)


def log_likelihood(model, data, num_samples: int = 1000, *, batch_size: int = 100,
                   max_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Importance-sampled log p(x) per data point (nats), with the guide as proposal.

    ``log (1/K) sum_k p(x, z_k) / q(z_k | x)``, the logsumexp taken per data
    point over all ``K = num_samples`` samples (Burda et al. 2015): a
    stochastic lower bound that tightens as K grows. Discrete guide sites
    (the semi-supervised model's label) are enumerated here
    (``config_enumerate``) and summed out exactly inside each sample.
    """
    out = []
    for sub, sizes in _Evaluation(model, data, batch_size, max_elements, num_samples):
        lse = None
        for k in sizes:
            part = torch.logsumexp(_weights(model, sub, k, enumerate=True), 0)
            lse = part if lse is None else torch.logaddexp(lse, part)
        out.append(lse - math.log(num_samples))
    return torch.cat(out)


def parts(model, data, num_samples: int = 1, *, batch_size: int = 1000) -> dict[str, torch.Tensor]:
    """Per data point: ``elbo``, ``recon`` (E_q log p(x | z)) and ``kl`` (E_q log q/p),
    plus ``kl_<site>`` for each latent site; Monte Carlo over ``num_samples``."""
    acc: dict[str, list[torch.Tensor]] = {}
    for sub, _ in _Evaluation(model, data, batch_size, 2**62, num_samples):
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
    """Convert nats per data point to bits per dimension (for discrete data: -log2 p / D)."""
    d = x_dim if isinstance(x_dim, int) else math.prod(x_dim)
    return nats / (d * math.log(2))


# -- classification ---------------------------------------------------------------------------
def accuracy(probs: torch.Tensor, y: torch.Tensor) -> dict:
    """Classification accuracy on the labelled points only.

    Parameters
    ----------
    probs
        Class probabilities or scores, shape ``(N, C)`` (e.g. ``model.classify(x)``),
        or predicted labels, shape ``(N,)``.
    y
        True labels, shape ``(N,)``; ``-1`` marks an unlabelled point, which is
        not scored (neither right nor wrong).

    Returns
    -------
    dict
        ``{"accuracy": float | None, "num_labelled": int}``: the share of
        labelled points whose most probable class is their label, and how many
        labelled points there were; ``accuracy`` is ``None`` when none is.

    Raises
    ------
    ValueError
        If ``probs`` and ``y`` have different numbers of rows, or ``y`` holds
        anything but whole numbers ``>= -1``.
    """
    probs, y = torch.as_tensor(probs), torch.as_tensor(y)
    if probs.dim() not in (1, 2) or y.dim() != 1 or probs.shape[0] != y.shape[0]:
        raise ValueError(f"accuracy needs predictions of shape (N, C) or (N,) and labels of shape "
                         f"(N,); got {tuple(probs.shape)} and {tuple(y.shape)}")
    if y.is_floating_point() and not (torch.isfinite(y).all() and (y == y.round()).all()):
        raise ValueError("labels must be whole numbers (class indices, -1 for unlabelled)")
    if y.numel() and y.min() < -1:
        raise ValueError(f"labels must be class indices or -1 (unlabelled); found {y.min().item():g}")
    predicted = probs.argmax(-1) if probs.dim() == 2 else probs
    labelled = y >= 0
    n = int(labelled.sum())
    if n == 0:
        return {"accuracy": None, "num_labelled": 0}
    right = predicted.to(y.device)[labelled].long() == y[labelled].long()
    return {"accuracy": right.double().mean().item(), "num_labelled": n}


# -- diagnostics ------------------------------------------------------------------------------
def _posterior_means(model, batch: Batch, num_samples: int) -> dict[str, torch.Tensor]:
    """E_q[z | x] per latent site, shape (N, D): the mean of Gaussian guides, else MC."""
    pair = as_pair(model)
    with torch.no_grad():
        w = log_weights(pair.model, pair.guide, batch, num_samples,
                        max_plate_nesting=pair.max_plate_nesting,
                        enumerate=False)
    out = {}
    for name, site in w.guide_trace.nodes.items():
        if site["type"] != "sample" or name == "data" or site["value"].dim() < 2:
            continue
        value = site["value"]
        if not value.is_floating_point() or value.shape[-2] != batch[0].shape[0]:
            continue  # discrete labels, or sites without one value per data point
        try:
            mean = site["fn"].mean
            out[name] = mean.reshape(-1, *value.shape[-2:]).mean(0)
        except NotImplementedError:
            out[name] = value.reshape(-1, *value.shape[-2:]).mean(0)
    return out


#: The fewest data points on which active units (a variance over the data) are defined.
MIN_POINTS_ACTIVE_UNITS = 2


def active_units(model, data, *, threshold: float = 0.01, num_samples: int = 100,
                 batch_size: int = 1000) -> dict[str, dict]:
    """Active latent dimensions (Burda et al. 2015): Cov_x(E_q[z_d | x]) > ``threshold``.

    Returns, per latent site, ``{"active": count, "dims": D, "variance": tensor(D)}``
    and warns when a site's posterior has collapsed (no active dimension, or
    fewer than a tenth of them).

    Raises
    ------
    ValueError
        With fewer than two data points, where a variance over the data is
        undefined (and no collapse can be told apart).
    """
    evaluation = _Evaluation(model, data, batch_size, 2**62, 1)
    n = evaluation.batch[0].shape[0]
    if n < MIN_POINTS_ACTIVE_UNITS:
        raise ValueError(f"active units need at least {MIN_POINTS_ACTIVE_UNITS} data points (a "
                         f"variance over the data), got {n}; pass more data")
    means: dict[str, list[torch.Tensor]] = {}
    for sub, _ in evaluation:
        for name, m in _posterior_means(model, sub, num_samples).items():
            means.setdefault(name, []).append(m)
    out = {}
    for name, chunks in means.items():
        variance = torch.cat(chunks).var(0)
        active = int((variance > threshold).sum())
        out[name] = {"active": active, "dims": variance.numel(), "variance": variance}
        if active == 0 or active < 0.1 * variance.numel():
            warnings.warn(
                f"posterior collapse at site {name!r}: only {active} of {variance.numel()} latent "
                "dimensions are active (Cov_x E_q[z|x] > {threshold}); try KL warm-up, a smaller "
                "beta, or a weaker decoder".replace("{threshold}", str(threshold)),
                stacklevel=2,
            )
    return out


def _kl_per_dim(model, batch: Batch) -> dict[str, Optional[torch.Tensor]]:
    """Analytic KL(q || p) per latent dimension for Normal sites (mean over data), else None."""
    import pyro.distributions as dist

    pair = as_pair(model)
    with torch.no_grad():
        w = log_weights(pair.model, pair.guide, batch, 1,
                        max_plate_nesting=pair.max_plate_nesting, enumerate=False)
    out = {}
    for name, site in w.guide_trace.nodes.items():
        if site["type"] != "sample" or name not in w.model_trace.nodes or name == "data":
            continue
        q, p = site["fn"], w.model_trace.nodes[name]["fn"]
        while isinstance(q, dist.Independent):
            q = q.base_dist
        while isinstance(p, dist.Independent):
            p = p.base_dist
        if isinstance(q, dist.Normal) and isinstance(p, dist.Normal):
            kl = torch.distributions.kl_divergence(q, p)
            out[name] = kl.reshape(-1, *kl.shape[-2:]).mean(0).mean(0)
        else:
            out[name] = None
    return out


def diagnostics(model, data, *, num_samples: int = 10, batch_size: int = 1000,
                threshold: float = 0.01) -> dict:
    """Rate and distortion per latent site, KL per dimension, active units.

    Returns ``{"elbo", "distortion", "rate", "rate_<site>", "kl_per_dim": {site: tensor | None},
    "active_units": {...} | None}``, in nats per data point (means over the data).
    ``distortion`` is -E_q log p(x | z); ``rate`` is E_q[log q(z|x) - log p(z)],
    the KL, per latent site as ``rate_<site>``. ``active_units`` is as
    :func:`active_units` gives it, or ``None`` for fewer than two data points,
    where it is undefined (and no collapse is warned of).
    """
    p = parts(model, data, num_samples, batch_size=batch_size)
    out: dict = {"elbo": p["elbo"].mean().item(), "distortion": -p["recon"].mean().item(),
                 "rate": p["kl"].mean().item()}
    for key, val in p.items():
        if key.startswith("kl_"):
            out["rate_" + key[3:]] = val.mean().item()
    batch = _as_batch(data, model)
    kl_dims: dict[str, list] = {}
    for start in range(0, batch[0].shape[0], batch_size):
        sub = tuple(t[start : start + batch_size] for t in batch)
        for name, kl in _kl_per_dim(model, sub).items():
            kl_dims.setdefault(name, []).append((kl, sub[0].shape[0]))
    out["kl_per_dim"] = {
        name: None if any(k is None for k, _ in v)
        else sum(k * n for k, n in v) / sum(n for _, n in v)
        for name, v in kl_dims.items()
    }
    out["active_units"] = (
        active_units(model, data, threshold=threshold, batch_size=batch_size)
        if batch[0].shape[0] >= MIN_POINTS_ACTIVE_UNITS else None)
    return out


# -- anomaly scores -----------------------------------------------------------------------------
def anomaly_scores(model, data, *, score: str = "elbo", num_samples: int = 10,
                   batch_size: int = 500) -> torch.Tensor:
    """Per data point: ``-ELBO`` (``score="elbo"``) or ``-log p(x)``
    (``score="log_likelihood"``); higher means more anomalous."""
    if score == "elbo":
        return -elbo(model, data, num_samples, batch_size=batch_size)
    if score == "log_likelihood":
        return -log_likelihood(model, data, num_samples, batch_size=batch_size)
    raise ValueError(f"score must be 'elbo' or 'log_likelihood', got {score!r}")


def calibrate_threshold(normal_scores, false_positive_rate: float = 0.05) -> float:
    """The score above which only ``false_positive_rate`` of normal (validation) data lies.

    ``normal_scores``: shape (N,), a tensor, array or list. Raises ``ValueError``
    for no scores, NaN scores, or a rate outside (0, 1).
    """
    if not 0 < false_positive_rate < 1:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
    normal_scores = torch.as_tensor(normal_scores).double().flatten()
    if normal_scores.numel() == 0 or torch.isnan(normal_scores).any():
        raise ValueError("calibrate_threshold needs at least one score and no NaN scores; "
                         "check the model and the data that gave them")
    return torch.quantile(normal_scores, 1 - false_positive_rate).item()


def roc_auc(scores, is_anomaly) -> float:
    """Area under the ROC curve: P(score of an anomaly > score of a normal point), ties half.

    ``scores``: shape (N,), finite; ``is_anomaly``: N labels, 1 (or True) for an
    anomaly and 0 (False) for a normal point. Tensors, arrays or lists. Raises
    ``ValueError`` before computing if the lengths differ, a label is not 0/1,
    a score is NaN, or only one kind of point is present.
    """
    scores = torch.as_tensor(scores).double().flatten()
    labels = torch.as_tensor(is_anomaly).flatten()
    if labels.shape != scores.shape:
        raise ValueError(f"roc_auc: {labels.numel()} labels for {scores.numel()} scores; give "
                         "one label (1: anomaly, 0: normal) per score")
    if torch.isnan(scores).any():
        raise ValueError(f"roc_auc: {int(torch.isnan(scores).sum())} score(s) are NaN; "
                         "check the model and the data that gave them")
    if labels.dtype != torch.bool:
        values = sorted(set(torch.unique(labels).tolist()))
        if not set(values) <= {0, 1}:
            raise ValueError(f"roc_auc: labels must be 0 (normal) or 1 (anomaly), found the "
                             f"values {values[:10]}; e.g. pass (labels == ANOMALY_VALUE)")
    is_anomaly = labels.bool()
    if is_anomaly.all() or not is_anomaly.any():
        raise ValueError("roc_auc needs both anomalies and normal points")
    ranks = torch.empty_like(scores)
    order = scores.argsort()
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    # average ranks of ties
    uniq, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, ranks)
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = int(is_anomaly.sum()), int((~is_anomaly).sum())
    return ((ranks[is_anomaly].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).item()
