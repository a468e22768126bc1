"""KL balancing during KL warm-up (Vahdat & Kautz 2020, NVAE, appendix A).

During warm-up each latent site's (each layer's) KL term is weighted by a coefficient
proportional to the KL per dimension that site carries, so a layer that carries little
is pushed towards its prior less and one that carries much is pushed more. For a
minibatch of B points and G latent sites (groups) l = 1 .. G, the objective is::

    sum_b E_q[log p(x_b | z_b)]  -  w * sum_l gamma_l * sum_b KL_bl
    c_l     = (mean_b |KL_bl| + eps) / D_l          # nats per dimension, eps = 0.01
    gamma_l = G * c_l / sum_k c_k                   # mean over the sites is 1

with ``w`` the KL warm-up weight, ``D_l`` the site's dimensions and ``gamma`` held
constant in the gradient (stop-gradient). The coefficients act only while a warm-up
weight below 1 is applied (``pvae.fit`` applies it through
:class:`pvae.program_key.LatentScale` during its ``kl_warmup`` epochs); after warm-up
every ``gamma_l`` is 1 and the objective is the plain ELBO, term for term.

Why it helps a Ladder VAE (``benchmarks/VARIANTS.md``, "Fault 2"): while an upper layer
carries nothing its coefficient is near 0, so moving q(z_2 | x) away from the prior
costs almost nothing, while the lower layer's KL (the largest) is weighted by up to G:
the gain from a better prior for z_1 is no longer scaled down by the warm-up weight
alone. ``KL_bl`` is the analytic KL with ``analytic=True`` (``elbo="meanfield"``), else
the one-sample estimate ``log q - log p`` (hence the absolute value, as NVAE does).

What the loss reports: as :class:`pvae.free_bits.FreeBits`, the value is the wrapped
ELBO's (warm-up weighted as without balancing), the gradient is the balanced objective's.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pyro.poutine.runtime import _PYRO_STACK

from pvae.fast_elbo import SurrogateELBO, _log_prob_sum
from pvae.free_bits import _site_kl
from pvae.program_key import LatentScale

#: nats added to each site's batch-mean KL before the coefficients are formed (NVAE's
#: choice), so that sites all at 0 nats get equal coefficients instead of 0 / 0.
EPS = 0.01


def check_kl_balance(kl_balance) -> bool:
    """``kl_balance`` as a bool, or ``ValueError``: it must be True or False."""
    if not isinstance(kl_balance, bool):
        raise ValueError(f"kl_balance must be True or False (weight each latent site's KL "
                         f"by its share during KL warm-up), got {kl_balance!r}")
    return kl_balance


def balance_coefficients(kls: Sequence[torch.Tensor], dims: Sequence[int],
                         eps: float = EPS) -> torch.Tensor:
    """The coefficients ``gamma`` of G latent sites, shape ``(G,)``, detached.

    ``kls[l]``: site l's KL per point (nats, unweighted), any shape whose elements are
    points; ``dims[l]``: its number of dimensions. ``gamma_l = G c_l / sum_k c_k`` with
    ``c_l = (mean |KL_l| + eps) / dims[l]`` (module docstring); ``gamma`` sums to G.
    Raises ``ValueError`` when the lengths differ or a dimension count is < 1.
    """
    if len(kls) != len(dims) or not kls:
        raise ValueError(f"need one KL tensor per site and at least one site, got {len(kls)} "
                         f"KL tensors and {len(dims)} dimension counts")
    if any(int(d) < 1 for d in dims):
        raise ValueError(f"every site needs at least one dimension, got {list(dims)}")
    c = torch.stack([(kl.detach().abs().mean() + eps) / int(d) for kl, d in zip(kls, dims)])
    return len(kls) * c / c.sum()


def balanced_terms(model_sites: dict, guide_sites: dict, analytic: bool,
                   active: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(elbo, objective)`` of one recorded minibatch (nats, summed over its points).

    Sites as :mod:`pvae.fast_elbo` records them. ``active``: weight each latent site's
    (scaled) KL by its coefficient (:func:`balance_coefficients`); otherwise the objective
    is the ELBO itself. Observed and guide-only sites enter both as in the plain ELBO.
    """
    elbo, kls, raw, dims = 0.0, [], [], []
    for name, m in model_sites.items():
        if m["is_observed"] or name not in guide_sites:
            elbo = elbo + _log_prob_sum(m)
            continue
        kl = _site_kl(m, guide_sites[name], analytic).sum(-1)  # scaled, per point
        kls.append(kl)
        scale = m["scale"]  # beta times the warm-up weight: a float, or a 0-dim tensor
        scale = scale if isinstance(scale, torch.Tensor) else torch.tensor(float(scale))
        raw.append(kl / scale.clamp_min(1e-30))  # a weight of 0 leaves every KL term at 0
        dims.append(max(1, m["fn"].event_shape.numel()))
    for name, g in guide_sites.items():  # guide-only (auxiliary) sites: their entropy term
        if name not in model_sites:
            elbo = elbo - _log_prob_sum(g)
    total = [kl.sum() for kl in kls]
    if not total:
        return elbo, elbo
    if not active:
        return elbo - sum(total), elbo - sum(total)
    gamma = balance_coefficients(raw, dims)
    return elbo - sum(total), elbo - sum(g * t for g, t in zip(gamma, total))


def warming_up() -> bool:
    """Whether a KL warm-up weight other than 1 is applied now (a
    :class:`~pvae.program_key.LatentScale` on Pyro's handler stack)."""
    return any(isinstance(h, LatentScale) and float(h.factor) != 1.0 for h in _PYRO_STACK)


class KLBalance(SurrogateELBO):
    """pvae's ``"trace"`` (or, ``analytic=True``, ``"meanfield"``) ELBO with KL balancing
    during KL warm-up (module docstring; Vahdat & Kautz 2020, appendix A). Build it with
    :func:`pvae.train.checks.with_kl_balance` (``pvae.fit(kl_balance=True)`` does).

    ``differentiable_loss`` returns minus the (warm-up weighted) ELBO's one-sample
    estimate as its value, with the balanced objective's gradient while a warm-up weight
    below 1 is applied and the plain ELBO's otherwise. Raises ``ValueError`` at the first
    loss for a guide with a site that is not reparameterised or is enumerated.
    """

    refusal = ("kl_balance needs every latent site of the guide reparameterised and not "
               "enumerated (it averages each site's KL over the minibatch); this guide has a "
               "discrete or non-reparameterised site: train it without kl_balance")

    def __init__(self, analytic: bool = False, max_plate_nesting: float = float("inf")) -> None:
        super().__init__(max_plate_nesting=max_plate_nesting)
        self.analytic = bool(analytic)
        self.balancing = False  # read into the replay key: set before each run

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        self.balancing = warming_up()
        return super().differentiable_loss(model, guide, *args, **kwargs)

    def _terms(self, recorded) -> tuple:
        return balanced_terms(*recorded, self.analytic, self.balancing)
