"""Free bits (Kingma et al. 2016, appendix C.8): a floor on each latent dimension's KL.

The training objective becomes, for a minibatch of B points (nats)::

    sum_b E_q[log p(x_b | z_b)]  -  B * sum_j max(lambda, KL_j),
    KL_j = (1/B) sum_b KL_bj            # dimension j's KL, averaged over the minibatch

so a dimension whose average KL is below ``lambda`` gets no gradient pushing it further
down (it is "free"), while a dimension above the floor is trained exactly as by the
plain ELBO. Groups: each dimension of a latent site whose guide and model distributions
are both factorised (``Normal(...).to_event(1)``: the KL is a sum over dimensions);
otherwise the whole site is one group (an IAF posterior, a learned mixture prior: their
log-densities do not split into per-dimension KLs) whose floor is ``lambda`` times its
dimensions, so the same ``lambda`` protects as much KL whatever the guide and prior. With ``elbo="meanfield"`` KL_bj is the analytic KL of
each dimension; with ``elbo="trace"`` it is the one-sample estimate
``log q(z_bj | x_b) - log p(z_bj)``. Latent sites keep their scale (``beta``, KL
warm-up): the term is ``scale * max(lambda, KL_j / scale)`` in effect, the floor
applying to the KL itself.

Because ``KL_j`` is an average over the minibatch, the objective is not a sum of
per-point terms: it is not linear in the data plate's scale. :data:`pvae.elbos.TRAITS`
declares it so (as for Renyi), and ``pvae.fit`` leaves the plate unscaled and
multiplies the minibatch loss by ``num_data / B``.

What the loss reports: :meth:`FreeBits.differentiable_loss` returns a tensor whose
*value* is the wrapped ELBO's (minus the ELBO, with the same KL weight as without free
bits) and whose *gradient* is the free-bits objective's (the surrogate-loss device
Pyro's ELBOs use for score-function terms). So ``pvae.fit``'s ``train_elbo`` stays the
minibatch ELBO, not the free-bits objective.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pyro.distributions.util import scale_and_mask
from torch.distributions import Independent, kl_divergence

from pvae.fast_elbo import SurrogateELBO, _log_prob_sum


def check_free_bits(free_bits: Any) -> float:
    """``free_bits`` as a float, or ``ValueError``: it must be a finite number >= 0 (nats)."""
    if isinstance(free_bits, bool) or not isinstance(free_bits, (int, float)) or not (
            math.isfinite(free_bits) and free_bits >= 0):
        raise ValueError(f"free_bits must be a finite number >= 0 (nats per latent "
                         f"dimension; 0 turns it off), got {free_bits!r}")
    return float(free_bits)


def _factorised(fn) -> bool:
    """Whether ``fn``'s log-density is a sum over its last dimension of univariate terms."""
    if fn.event_shape == ():
        return True
    return (isinstance(fn, Independent) and fn.reinterpreted_batch_ndims == 1
            and fn.base_dist.event_shape == ())


def _per_group(fn, value, per_dim: bool) -> torch.Tensor:
    """Log-density of ``value`` by group: shape ``(*batch, D)`` per dimension, else
    ``(*batch, 1)`` for the whole site."""
    if not per_dim:
        return fn.log_prob(value).unsqueeze(-1)
    if fn.event_shape == ():
        return fn.log_prob(value).unsqueeze(-1)
    return fn.base_dist.log_prob(value)


def _scalar(scale, site: str) -> float | torch.Tensor:
    if isinstance(scale, torch.Tensor):
        if scale.numel() != 1:
            raise ValueError(f"free bits needs one scale for latent site {site!r}, which has "
                             "a scale per point; train without free_bits")
        return scale.reshape(())
    return scale


def _site_kl(m: dict, g: dict, analytic: bool) -> torch.Tensor:
    """KL of one latent site per point and group, scaled and masked: ``(*batch, D or 1)``."""
    per_dim = _factorised(m["fn"]) and _factorised(g["fn"])
    if analytic:
        q = g["fn"].base_dist if per_dim and g["fn"].event_shape != () else g["fn"]
        p = m["fn"].base_dist if per_dim and m["fn"].event_shape != () else m["fn"]
        try:
            kl = kl_divergence(q, p)
            kl = kl if per_dim and g["fn"].event_shape != () else kl.unsqueeze(-1)
            return _masked(kl, g["scale"], g["mask"])
        except NotImplementedError:  # Monte Carlo, as the mean-field ELBO does
            pass
    lq = _masked(_per_group(g["fn"], g["value"], per_dim), g["scale"], g["mask"])
    lp = _masked(_per_group(m["fn"], m["value"], per_dim), m["scale"], m["mask"])
    return lq - lp


def _masked(t: torch.Tensor, scale, mask) -> torch.Tensor:
    if mask is not None and isinstance(mask, torch.Tensor):
        mask = mask.unsqueeze(-1)
    return scale_and_mask(t, scale, mask)


def free_bits_terms(model_sites: dict, guide_sites: dict, free_bits: float,
                    analytic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(elbo, objective)`` of one recorded minibatch (nats, summed over its points).

    ``model_sites`` / ``guide_sites``: sample messages as :mod:`pvae.fast_elbo` records
    them. Observed sites and guide-only sites enter both as in the plain ELBO; each
    latent site shared by model and guide enters the objective as
    ``B * sum_j max(scale * free_bits, KL_j)`` (module docstring).
    """
    elbo = objective = 0.0
    for name, m in model_sites.items():
        if m["is_observed"] or name not in guide_sites:
            term = _log_prob_sum(m)
            elbo, objective = elbo + term, objective + term
            continue
        kl = _site_kl(m, guide_sites[name], analytic)
        points = kl.shape[:-1].numel()
        mean_kl = kl.reshape(-1, kl.shape[-1]).mean(0)  # KL_j, averaged over the minibatch
        width = 1 if kl.shape[-1] > 1 or _factorised(m["fn"]) and _factorised(
            guide_sites[name]["fn"]) else m["fn"].event_shape.numel()  # dims in one group
        floor = free_bits * width * _scalar(m["scale"], name)
        elbo = elbo - kl.sum()
        objective = objective - points * torch.clamp(mean_kl, min=floor).sum()
    for name, g in guide_sites.items():  # guide-only (auxiliary) sites: their entropy term
        if name not in model_sites:
            term = _log_prob_sum(g)
            elbo, objective = elbo - term, objective - term
    return elbo, objective


class FreeBits(SurrogateELBO):
    """pvae's ``"trace"`` (or, ``analytic=True``, ``"meanfield"``) ELBO trained with free
    bits: the objective of :mod:`pvae.free_bits`. Build it with
    :func:`pvae.train.checks.with_free_bits` (``pvae.fit(free_bits=...)`` does), which refuses
    the ELBOs it cannot stand for.

    Parameters
    ----------
    free_bits
        The floor lambda, nats per latent dimension (a site whose density does not
        factorise is one group with floor lambda times its dimensions); 0 gives the
        plain ELBO's gradient.
    analytic
        Take each dimension's KL analytically where known (``"meanfield"``).

    ``differentiable_loss`` returns minus the ELBO's one-sample estimate as its value,
    with the free-bits objective's gradient. Raises ``ValueError`` for a negative
    ``free_bits`` (at construction) and, at the first loss, for a guide with a site
    that is not reparameterised or is enumerated, such as the semi-supervised model's
    label on unlabelled data.
    """

    refusal = ("free bits needs every latent site of the guide reparameterised and not "
               "enumerated (it averages each dimension's KL over the minibatch); this guide "
               "has a discrete or non-reparameterised site (e.g. SemiSupervisedVAE's label on "
               "unlabelled data): train it without free_bits")

    def __init__(self, free_bits: float, analytic: bool = False,
                 max_plate_nesting: float = float("inf")) -> None:
        super().__init__(max_plate_nesting=max_plate_nesting)
        self.free_bits, self.analytic = check_free_bits(free_bits), bool(analytic)

    def _terms(self, recorded) -> tuple:
        return free_bits_terms(*recorded, self.free_bits, self.analytic)
