"""Likelihoods of discrete levels and counts (one class each, registered by name)."""

from __future__ import annotations

from typing import ClassVar, Literal

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pvae.distributions import NegativeBinomial, PoissonRate, ZeroInflatedNegativeBinomial
from pvae.likelihoods.base import Likelihood, _describe_range, register


def _log1p(x: torch.Tensor) -> torch.Tensor:
    return torch.log1p(x)


def _count_problem(x: torch.Tensor) -> str | None:
    if (x < 0).any():
        return f"negative values ({_describe_range(x)}); counts must be 0, 1, 2, ..."
    if x.is_floating_point() and (x != torch.round(x)).any():
        return (
            "values that are not whole numbers; counts must be 0, 1, 2, ... "
            "(round them, or use likelihood='gaussian' for continuous data)"
        )
    return None


@register
class Categorical(Likelihood):
    """Discrete levels ``0 .. num_levels - 1`` per feature (e.g. 256 grey levels).

    Decoder output: ``num_levels`` logits per feature. The mean is the expected
    level, in level units.
    """

    name = "categorical"
    discrete = True

    def __init__(self, num_levels: int = 256) -> None:
        super().__init__()
        if int(num_levels) < 2:
            raise ValueError(f"categorical needs num_levels >= 2, got {num_levels}")
        self.num_levels = int(num_levels)
        self.num_params = self.num_levels

    def unflatten(self, out):
        out = out.reshape(*out.shape[:-1], self.num_levels, *self.x_shape)
        return out.movedim(-self.event_dim - 1, -1)

    def distribution(self, logits):
        return dist.Categorical(logits=logits)

    def encoder_input(self, x):
        return x / (self.num_levels - 1)

    def mean(self, params):
        levels = torch.arange(self.num_levels, dtype=params.dtype, device=params.device)
        return (torch.softmax(params, -1) * levels).sum(-1)

    def _support_problem(self, x):
        top = self.num_levels - 1
        if (x < 0).any() or (x > top).any() or (
            x.is_floating_point() and (x != torch.round(x)).any()
        ):
            return (
                f"values that are not whole levels in 0..{top} ({_describe_range(x)}); "
                f"quantise them, e.g. (x * {top}).round() for intensities in [0, 1], "
                "or set num_levels"
            )
        return None

    def hparams(self) -> dict:
        return {"num_levels": self.num_levels}


@register
class Poisson(Likelihood):
    """Counts. Decoder output: a raw rate (softplus-transformed)."""

    name = "poisson"
    discrete = True
    encoder_input = staticmethod(_log1p)

    def distribution(self, raw_rate):
        return PoissonRate(F.softplus(raw_rate) + 1e-6)

    def _support_problem(self, x):
        return _count_problem(x)


class _Dispersed(Likelihood):
    """Shared set-up of the negative-binomial family: a learned or predicted theta."""

    def __init__(self, dispersion: Literal["feature", "predicted"] = "feature") -> None:
        super().__init__()
        if dispersion not in ("feature", "predicted"):
            raise ValueError(
                f"{self.name} dispersion must be 'feature' or 'predicted', got {dispersion!r}"
            )
        self.dispersion = dispersion
        self.num_params = self.base_params + (dispersion == "predicted")

    base_params: ClassVar[int] = 1
    discrete = True
    encoder_input = staticmethod(_log1p)

    def setup(self, x_shape):
        super().setup(x_shape)
        if self.dispersion == "feature":
            self.raw_theta = nn.Parameter(torch.full(self.x_shape, 0.5413))
        return self

    def _split(self, params: tuple) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        mu = F.softplus(params[0]) + 1e-6
        if self.dispersion == "predicted":
            theta, rest = F.softplus(params[-1]) + 1e-4, params[1:-1]
        else:
            theta, rest = F.softplus(self.raw_theta) + 1e-4, params[1:]
        return mu, theta, rest

    def _support_problem(self, x):
        return _count_problem(x)

    def hparams(self) -> dict:
        return {"dispersion": self.dispersion}


@register
class NegativeBinomialLikelihood(_Dispersed):
    """Over-dispersed counts. Decoder output: a raw mean (and a raw theta if predicted).

    ``dispersion``: ``"feature"`` (one inverse dispersion per feature, learned)
    or ``"predicted"`` (the decoder outputs it).
    """

    name = "negative_binomial"

    def distribution(self, *params):
        mu, theta, _ = self._split(params)
        return NegativeBinomial(mu, theta)


@register
class ZeroInflatedNegativeBinomialLikelihood(_Dispersed):
    """Counts with excess zeros. Decoder output: raw mean, zero-inflation logits
    (and a raw theta if ``dispersion='predicted'``)."""

    name = "zero_inflated_negative_binomial"
    base_params = 2

    def distribution(self, *params):
        mu, theta, (zi_logits,) = self._split(params)
        return ZeroInflatedNegativeBinomial(mu, theta, zi_logits)
