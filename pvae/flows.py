"""Flexible posteriors: inverse autoregressive flows on the guide's Gaussian.

``GaussianPosterior(z_dim, num_flows)`` turns an encoder's ``(loc, scale)``
into q(z | x): a diagonal Normal when ``num_flows == 0`` (mean-field), or that
Normal pushed through ``num_flows`` conditional affine autoregressive
transforms (IAF, Kingma et al. 2016) with permutations between them, built
from :mod:`pyro.distributions.transforms`. The transforms are conditioned on
``(loc, log scale)``, so the flow is amortised like the encoder.
"""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn


class GaussianPosterior(nn.Module):
    """q(z | x) from ``(loc, scale)``: diagonal Normal, optionally followed by IAFs."""

    def __init__(self, z_dim: int, num_flows: int = 0, hidden_dims: Sequence[int] | None = None):
        super().__init__()
        if not (isinstance(num_flows, int) and num_flows >= 0):
            raise ValueError(f"guide_flows must be a non-negative int, got {num_flows!r}")
        self.z_dim = z_dim
        self.num_flows = num_flows
        hidden = list(hidden_dims or [max(4 * z_dim, 32)] * 2)
        self.flows = nn.ModuleList(
            T.conditional_affine_autoregressive(z_dim, 2 * z_dim, hidden_dims=hidden, stable=True)
            for _ in range(num_flows)
        )
        # Fixed reversals between flows so every coordinate can depend on every other.
        self.register_buffer("reverse", torch.arange(z_dim - 1, -1, -1), persistent=False)

    @property
    def mean_field(self) -> bool:
        return self.num_flows == 0

    def forward(self, loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
        base = dist.Normal(loc, scale).to_event(1)
        if not self.num_flows:
            return base
        context = torch.cat([loc, scale.log()], -1)
        transforms: list = []
        for i, flow in enumerate(self.flows):
            if i:
                transforms.append(T.Permute(self.reverse))
            transforms.append(flow.condition(context))
        return dist.TransformedDistribution(base, transforms)
