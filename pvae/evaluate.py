"""Evaluation in nats per data point: ELBO, importance-sampled log-likelihood, diagnostics.

Everything here reads Pyro traces (:mod:`pvae.weights`), so it works for any
model/guide pair whose sample sites lie in ``pyro.plate("data")``: a pvae model,
or a pair of callables ``(model_fn, guide_fn)``. Samples of the guide are drawn
at once (vectorised) and log densities are taken per data point as the model
is written: ``poutine.scale`` factors (beta, plate subsampling) are not
applied, so the figures are for the model itself, one data point at a time.

Memory stays bounded in :func:`elbo` and :func:`log_likelihood`: data go in
batches of ``batch_size`` and samples in chunks so that one chunk holds at most
``max_elements`` decoder outputs, counting the largest activation any network
makes per sample (a conv decoder's hidden maps, measured once per model) at half
that weight; chunks are combined exactly (``logsumexp`` / sums), and the
log-likelihood takes fewer points per batch where that lets a chunk hold more of
each point's samples. The default chunk (:data:`CHUNK_ELEMENTS`, 8 MB of
float32) keeps each chunk's elementwise work in cache: on a 2-core machine it
evaluates twice as fast as chunks of 128 MB, and chunks sized by a conv
decoder's hidden maps (with vectorised density kernels) made the conv VAE's
log-likelihood three times as fast (``benchmarks/RESULTS.md``). pvae models
check their data once up front, so distribution argument validation is switched
off inside the loops, where it would re-check every sample, as is Pyro's
parameter registration, which nothing here needs. The
diagnostics take all ``num_samples`` of a batch at once: keep
``num_samples * batch_size`` moderate there.

:func:`elbo`, :func:`log_likelihood`, :func:`parts` and :func:`site_log_probs`
live in :mod:`pvae.estimates` (below the training loop, which reports them) and
are re-exported here. Also here: :func:`diagnostics` (rate, distortion, KL per dimension, active
units) and :func:`report` (one split scored as ``pvae train``, ``pvae evaluate``
and :func:`pvae.compare` report it). Re-exported from the modules they live in:
:func:`accuracy`, :func:`bits_per_dim`, :func:`calibrate_threshold` and
:func:`roc_auc` (:mod:`pvae.scores`); :func:`gradient_stats`
(:mod:`pvae.gradients`); and the anomaly scores of :mod:`pvae.anomaly`:
:func:`anomaly_scores` per data point, :func:`window_scores` per window of a
long series, :func:`step_scores` per time step (:func:`window_steps` maps
windows to steps), :func:`step_report` (ROC AUC, calibrated threshold) and
:func:`ucr_hit` (the UCR archive's criterion).
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import torch

from pvae.anomaly import (  # noqa: F401  (re-exported: anomaly scores live there)
    anomaly_scores, step_report, step_scores, ucr_hit, window_scores, window_steps,
)
from pvae.batching import as_batch, as_batch_tensors
from pvae.estimates import (  # noqa: F401  (re-exported: the per-point estimates live there)
    CHUNK_ELEMENTS, WORKING_ELEMENTS, _Evaluation, _unvalidated, elbo, log_likelihood, parts,
    site_log_probs,
)
from pvae.gradients import gradient_stats  # noqa: F401  (re-exported)
from pvae.models.base import Classifier, as_pair
from pvae.models.ladder_units import corrected_variance, draw_moments
from pvae.scores import (  # noqa: F401  (re-exported)
    accuracy, bits_per_dim, bits_per_step, calibrate_threshold, roc_auc)
from pvae.weights import log_weights

Batch = tuple


def _posterior_means(model, batch: Batch,
                     num_samples: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per latent site, ``(m, noise)``, each of shape (N, D): ``m`` the average over
    ``num_samples`` guide draws of the site's conditional mean (the Gaussian's mean; a
    draw where the mean has no closed form, as for flows), an unbiased estimate of
    E_q[z | x]; ``noise`` the Monte Carlo variance of that average (the draws' sample
    variance over ``num_samples``): 0 for a flat Gaussian guide, not 0 where the mean
    depends on other layers' draws (hierarchies) or is itself a draw (flows)."""
    pair = as_pair(model)
    with torch.no_grad(), _unvalidated(model):
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
        except NotImplementedError:
            mean = value
        out[name] = draw_moments(mean.expand(value.shape).reshape(-1, *value.shape[-2:]))
    return out


#: The fewest data points on which active units (a variance over the data) are defined.
MIN_POINTS_ACTIVE_UNITS = 2


def active_units(model, data, *, threshold: float = 0.01, num_samples: int = 100,
                 batch_size: int = 1000) -> dict[str, dict]:
    """Active latent dimensions (Burda et al. 2015): Cov_x(E_q[z_d | x]) > ``threshold``.

    E_q[z | x] is averaged over ``num_samples`` guide draws where it depends on other
    draws (a hierarchy's layers given the layers drawn before them; a flow), and the
    covariance is estimated without their Monte Carlo noise: with S draws, m(x) their
    average and s^2(x) their sample variance, ``Var_x m(x) - mean_x s^2(x) / S``, an
    unbiased estimate (the plain ``Var_x m(x)`` carries the noise E_x s^2 / S, which
    crosses 0.01 for an unused layer below or above a noisy one). For a flat Gaussian
    guide s^2 = 0 and this is the variance of the posterior means.

    Returns, per latent site, ``{"active": count, "dims": D, "variance": tensor(D)}``
    and warns when a site's posterior has collapsed (no active dimension, or
    fewer than a tenth of them).

    Raises
    ------
    ValueError
        With fewer than two data points, where a variance over the data is
        undefined (and no collapse can be told apart).
    """
    # all num_samples draws of a batch are taken at once: rows shrink so that they stay
    # within the chunk's budgets (decoder outputs, a recurrent model's working numbers)
    evaluation = _Evaluation(model, data, batch_size, CHUNK_ELEMENTS, 1,
                             max_working=WORKING_ELEMENTS, together=num_samples)
    n = evaluation.batch[0].shape[0]
    if n < MIN_POINTS_ACTIVE_UNITS:
        raise ValueError(f"active units need at least {MIN_POINTS_ACTIVE_UNITS} data points (a "
                         f"variance over the data), got {n}; pass more data")
    moments: dict[str, list] = {}
    for sub, _ in evaluation:
        for name, pair in _posterior_means(model, sub, num_samples).items():
            moments.setdefault(name, []).append(pair)
    out = {}
    for name, chunks in moments.items():
        variance = corrected_variance(chunks)
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
    with torch.no_grad(), _unvalidated(model):
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
    batch = as_batch(data, model)
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


# -- one report ------------------------------------------------------------------------------
#: The seed of the random subset of points :func:`report` scores (:func:`subset`): fixed, so
#: that every run on the same data scores the same points, whatever its training seed.
SUBSET_SEED = 0


def subset(num_points: int, n: int, seed: int = SUBSET_SEED) -> torch.Tensor:
    """Indices of ``n`` of ``num_points`` points drawn at random without replacement,
    sorted: the same for the same ``(num_points, n, seed)``; all of them, in order, when
    ``n == num_points``. Raises ``ValueError`` unless ``1 <= n <= num_points``."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= num_points:
        raise ValueError(f"the subset must be a whole number of points in 1..{num_points}, "
                         f"got {n!r}")
    if n == num_points:
        return torch.arange(num_points)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(num_points, generator=g)[:n].sort().values


def standard_error(values: torch.Tensor) -> Optional[float]:
    """The standard error of the mean of ``values`` (sample standard deviation over
    sqrt(n)), in their units; ``None`` for fewer than two values."""
    n = values.numel()
    return (values.double().std() / math.sqrt(n)).item() if n >= 2 else None


def report(model, data, *, num_samples: int = 1000, elbo_samples: int = 1,
           seed: Optional[int] = None, diagnostics: bool = False, what: str = "data",
           points: Optional[int] = None, progress: Optional[bool] = False) -> dict:
    """Score a model on one split: what ``pvae train``, ``pvae evaluate`` and
    :func:`pvae.compare` report.

    Parameters
    ----------
    model
        A pvae model; the data are moved to ``model.device``.
    data
        A :class:`pvae.data.Split`, a tensor ``(N, ...)`` or a tuple ``(x, y)``.
        A split's labels are used where the model takes them, and score the
        classifier where it has one.
    num_samples
        Importance samples for the log-likelihood.
    elbo_samples
        Guide samples averaged in the ELBO.
    seed
        Seeds torch's generator first, when given (the same figures each time).
    diagnostics
        Also rate, distortion, ``rate_<site>``, KL per dimension and active units
        (:func:`diagnostics`), as plain numbers and lists.
    what
        How the data are named in error messages.
    points
        The importance-sampled log-likelihood (the costly part: ``num_samples``
        decoder passes per point) on this many points, a random subset chosen by
        :func:`subset` with :data:`SUBSET_SEED`; ``None``: every point. The ELBO,
        the accuracy and the diagnostics always take every point.
    progress
        A progress bar with the time left during the log-likelihood (``None``: when
        stderr is a terminal).

    Returns
    -------
    dict
        ``elbo`` and ``elbo_se`` over all ``num_points``; ``log_likelihood`` and
        ``log_likelihood_se`` over ``log_likelihood_points`` of them (the subset, drawn
        with ``subset_seed``), with ``num_samples``: nats per data point, means over
        the points, and standard errors of those means (``None`` for one point);
        ``bits_per_dim`` (on the subset) where the likelihood is discrete; for
        sequence models instead ``log_likelihood_per_step`` (nats) and, for discrete
        data, ``bits_per_step`` (:func:`bits_per_step`); ``accuracy``
        and ``num_labelled`` (:func:`accuracy`) where the
        model classifies and ``data`` has labels; with ``diagnostics``, also
        ``distortion``, ``rate``, ``rate_<site>``, ``active_units``
        (``{site: {"active", "dims"}}``, or ``None`` with ``active_units_note``
        for fewer than two points) and ``kl_per_dim`` (``{site: list | None}``).

    Raises
    ------
    ValueError, TypeError
        Data the model cannot score (as :func:`elbo`), or ``points`` outside
        ``1..N``; both before any estimate.
    """
    labels = getattr(data, "y", None) if hasattr(data, "x") else None
    if hasattr(data, "x") and labels is None and not hasattr(data, "lengths"):
        data = data.x  # a split without labels
    batch = model.evaluation_batch(as_batch_tensors(data, model, what))
    batch = tuple(t.to(model.device) for t in batch)
    n = batch[0].shape[0]
    chosen = subset(n, n if points is None else points)
    model.check_data(*batch)  # once, for every estimate below
    if seed is not None:
        torch.manual_seed(seed)
    elbos = elbo(model, batch, num_samples=elbo_samples, checked=True)
    out = {"elbo": elbos.mean().item(), "elbo_se": standard_error(elbos), "num_points": n}
    part = tuple(t[chosen.to(t.device)] for t in batch)
    ll = log_likelihood(model, part, num_samples=num_samples, checked=True, progress=progress)
    out.update({"log_likelihood": ll.mean().item(), "log_likelihood_se": standard_error(ll),
                "log_likelihood_points": len(chosen), "subset_seed": SUBSET_SEED,
                "num_samples": num_samples})
    if diagnostics:
        out.update(_diagnostics_summary(model, batch))
    if "lengths" in model.batch_parts:  # sequences: per step, over the real steps only
        out.update(_per_step(model, ll, part[1]))
    elif model.likelihood.discrete:  # bits/dim is meaningful for probabilities, not densities
        out["bits_per_dim"] = bits_per_dim(-out["log_likelihood"], tuple(batch[0].shape[1:]))
    if isinstance(model, Classifier) and labels is not None:
        # on the labelled points only (None when there are none), and how many there were
        out.update(accuracy(model.classify(batch[0]).cpu(), labels))
    return out


def _per_step(model, ll: torch.Tensor, lengths: torch.Tensor) -> dict:
    """Sequences' log-likelihood per step (nats) and, for discrete data, bits per step;
    token models count their end-of-sequence event as a step (:func:`bits_per_step`)."""
    end = bool(getattr(model, "tokens", False))
    out = {"log_likelihood_per_step": -bits_per_step(-ll, lengths, end_event=end) * math.log(2)}
    if model.likelihood.discrete:
        out["bits_per_step"] = bits_per_step(-ll, lengths, end_event=end)
    return out


def _diagnostics_summary(model, batch: Batch) -> dict:
    """:func:`diagnostics` as plain numbers and lists (JSON-ready)."""
    diag = diagnostics(model, batch)
    out = {"distortion": diag["distortion"], "rate": diag["rate"],
           **{k: v for k, v in diag.items() if k.startswith("rate_")},
           "active_units": None if diag["active_units"] is None else
           {k: {"active": v["active"], "dims": v["dims"]} for k, v in diag["active_units"].items()},
           "kl_per_dim": {k: (v.tolist() if v is not None else None)
                          for k, v in diag["kl_per_dim"].items()}}
    if diag["active_units"] is None:
        out["active_units_note"] = (f"undefined on {batch[0].shape[0]} point(s): a variance over "
                                    "the data needs at least 2")
    return out
