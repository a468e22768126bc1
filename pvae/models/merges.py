"""How a top-down (Ladder) guide combines the bottom-up evidence with the model's prior.

:class:`pvae.HierarchicalVAE` with ``guide="top_down"`` builds, for each layer below
the top, q(z_l | z_{l+1}, x) from two Gaussians: the model's own p(z_l | z_{l+1}) =
N(mu_p, sigma_p^2) (its top-down network, shared with the generative model and
evaluated at the guide's draw of z_{l+1}) and a term (d_mu, d_sigma) that the
deterministic bottom-up pass computes from x. ``merge=`` chooses how:

``"precision"``: :func:`precision_weighted` (Sønderby et al. 2016, eq. 18-19)
    The normalised product of N(d_mu, d_sigma^2) and the prior. The guide's mean
    moves with the evidence's mean only by the evidence's weight
    ``sigma_p^2 / (sigma_p^2 + d_sigma^2)``; nothing bounds that weight away from 0,
    and once the prior's scale is small next to the evidence's the bottom-up pass
    stops learning (its gradient is scaled by that weight).
``"residual"``: :func:`residual_normal` (Vahdat & Kautz 2020, NVAE, section 3.2)
    N(mu_p + d_mu, (sigma_p d_sigma)^2): the evidence is an offset and a factor
    relative to the prior; the guide's mean moves one for one with ``d_mu``
    whatever the prior's scale, and KL(q || p) = sum_d 0.5 (d_mu^2 / sigma_p^2 +
    d_sigma^2 - 1 - log d_sigma^2) does not fall when the prior's scale shrinks.
``"joint"``: :class:`JointNetwork` (Vahdat & Kautz 2020's combiner; Maaløe et al. 2019, BIVA)
    q's parameters outright, ``(loc, scale) = Linear(concat(d_l, h_l))`` of the bottom-up
    features d_l(x) and the top-down state h_l(z_{l+1}) (the last hidden layer of the
    model's network for p(z_l | z_{l+1})). It can represent a q(z_l | x) that ignores the
    draw of z_{l+1} (whose noise the two merges above pass on to z_l) as well as one that
    uses it; it starts ignoring it (the weights from h_l are zero at initialisation).
``"joint_residual"``: :class:`JointNetwork` relative to the prior
    ``(d_mu, d_sigma) = Linear(concat(d_l, h_l))``, q = N(mu_p + d_mu, (sigma_p d_sigma)^2):
    the residual normal with evidence that also sees the top-down state, so it can
    cancel what the draw of z_{l+1} adds to mu_p.

Each function takes tensors of one broadcastable shape and returns ``(loc, scale)``.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn

from pvae.nets import cat_broadcast, split_loc_scale

Merge = Literal["precision", "residual", "joint", "joint_residual"]


def precision_weighted(loc_a, scale_a, loc_b, scale_b):
    """Combine two Gaussians' evidence (Sønderby et al. 2016, eq. 18-19).

    ``sigma^2 = 1 / (sigma_a^-2 + sigma_b^-2)``, ``mu = (mu_a sigma_a^-2 + mu_b sigma_b^-2)
    sigma^2``: the normalised product N(mu_a, sigma_a^2) N(mu_b, sigma_b^2). Tensors of any
    one broadcastable shape; returns ``(loc, scale)``.
    """
    prec_a, prec_b = scale_a.pow(-2), scale_b.pow(-2)
    var = 1.0 / (prec_a + prec_b)
    return (loc_a * prec_a + loc_b * prec_b) * var, var.sqrt()


def residual_normal(d_loc: torch.Tensor, d_scale: torch.Tensor, loc_p: torch.Tensor,
                    scale_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q = N(loc_p + d_loc, (scale_p * d_scale)^2): the evidence relative to the prior
    N(loc_p, scale_p^2) (Vahdat & Kautz 2020, "residual normal"). Returns ``(loc, scale)``."""
    return loc_p + d_loc, scale_p * d_scale


#: ``HierarchicalVAE(merge=...)`` name -> function ``(d_loc, d_scale, loc_p, scale_p)``
MERGES: dict[str, Callable] = {"precision": precision_weighted, "residual": residual_normal}


class JointNetwork(nn.Module):
    """q(z_l | z_{l+1}, x)'s parameters from both the bottom-up features and the top-down state.

    ``forward(d, h, loc_p, scale_p)``: ``d`` (N, d_dim) the bottom-up features d_l(x),
    ``h`` (N, h_dim) the top-down state h_l(z_{l+1}), ``loc_p``, ``scale_p`` (N, z_dim)
    the prior p(z_l | z_{l+1}); returns ``(loc, scale)`` of q, each (N, z_dim).
    ``residual=False`` (merge ``"joint"``): ``split_loc_scale(Linear(concat(d, h)))``;
    ``residual=True`` (``"joint_residual"``): ``(loc_p + d_mu, scale_p * d_sigma)`` with
    ``(d_mu, d_sigma) = split_loc_scale(Linear(concat(d, h)))``. The weights from ``h``
    start at zero, so at initialisation q's own parameters depend on x alone (a linear
    head of d, as the other merges' evidence). One linear layer, as NVAE's
    combiner (a 1x1 convolution of the concatenated features): d and h are already deep
    features, and a hidden layer here trained worse (``benchmarks/VARIANTS.md``).
    Vahdat & Kautz 2020 (NVAE's encoder combiner); Maaløe et al. 2019 (BIVA).
    """

    def __init__(self, d_dim: int, h_dim: int, z_dim: int, *, residual: bool = False):
        super().__init__()
        self.d_dim, self.residual = int(d_dim), bool(residual)
        self.net = nn.Linear(d_dim + h_dim, 2 * z_dim)
        with torch.no_grad():
            self.net.weight[:, self.d_dim:].zero_()

    def forward(self, d, h, loc_p, scale_p):
        loc, scale = split_loc_scale(self.net(cat_broadcast(d, h)))
        return residual_normal(loc, scale, loc_p, scale_p) if self.residual else (loc, scale)


#: merges whose evidence is a network of both d_l(x) and h_l(z_{l+1}): name -> residual?
JOINT_MERGES: dict[str, bool] = {"joint": False, "joint_residual": True}


def check_merge(merge: str, guide: str) -> None:
    """``ValueError`` for an unknown merge, or any merge but ``"precision"`` with a guide that
    has no merge."""
    names = (*MERGES, *JOINT_MERGES)
    if not isinstance(merge, str) or merge not in names:
        raise ValueError(f"merge must be one of {', '.join(map(repr, names))}, got {merge!r}")
    if merge != "precision" and guide != "top_down":
        raise ValueError(f"merge={merge!r} is how the top-down guide combines evidence and "
                         f"prior; guide={guide!r} has no merge: use guide='top_down' or leave "
                         "merge at its default")
