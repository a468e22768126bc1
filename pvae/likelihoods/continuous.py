"""Likelihoods of binary, intensity and real-valued data (one class each, registered by name)."""

from __future__ import annotations

from typing import Callable, ClassVar, Literal, Union

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pvae.distributions import BernoulliLogits, ContinuousBernoulliLogits
from pvae.likelihoods.base import _MIN_SCALE, Likelihood, _describe_range, register


def _unit_interval_problem(x: torch.Tensor, fix: str) -> str | None:
    if (x < 0).any() or (x > 1).any():
        return f"values outside [0, 1] ({_describe_range(x)}); {fix}"
    return None


@register
class Bernoulli(Likelihood):
    """Binary data. Decoder output: logits."""

    name = "bernoulli"
    discrete = True

    def distribution(self, logits):
        return BernoulliLogits(logits)

    def mean(self, params):
        return torch.sigmoid(params)

    def _support_problem(self, x):
        problem = _unit_interval_problem(
            x, "scale to [0, 1] (for 8-bit images divide by 255) and binarise, "
            "or use likelihood='gaussian'"
        )
        if problem:
            return problem
        if ((x != 0) & (x != 1)).any():
            return (
                "values in [0, 1] that are not 0 or 1; binarise them "
                "(pvae.data.binarize(x) or binarize='static'/'dynamic' in the data config) "
                "or use likelihood='continuous_bernoulli'"
            )
        return None


@register
class ContinuousBernoulli(Likelihood):
    """Intensities in [0, 1] (the continuous Bernoulli). Decoder output: logits.

    Computed by :class:`pvae.distributions.ContinuousBernoulliLogits`, exact for
    any logit (torch's ``ContinuousBernoulli`` clamps its probabilities and so
    freezes its normaliser beyond logits of about +-15.9).

    At x exactly 0 (or 1) the density grows without bound as the logit goes to
    -inf (+inf), like ``log|t|``: on data with many exact 0s and 1s (the 8x8
    digits) log p(x | z) keeps rising slowly with training, and comparisons of
    nats with a discrete likelihood's are meaningless (a density is not a
    probability).
    """

    name = "continuous_bernoulli"

    def distribution(self, logits):
        return ContinuousBernoulliLogits(logits)

    def _support_problem(self, x):
        return _unit_interval_problem(
            x, "scale to [0, 1] (for 8-bit images divide by 255) or use likelihood='gaussian'"
        )


class _LocScale(Likelihood):
    """Location-scale family with a fixed, learned or predicted scale."""

    family: ClassVar[Callable] = dist.Normal

    def __init__(self, scale: Union[float, Literal["learned", "predicted"]] = "learned") -> None:
        super().__init__()
        if isinstance(scale, str):
            if scale not in ("learned", "predicted"):
                raise ValueError(
                    f"{self.name} scale must be a positive number, 'learned' or 'predicted', "
                    f"got {scale!r}"
                )
        elif not float(scale) > 0:
            raise ValueError(f"{self.name} scale must be positive, got {scale}")
        self.scale = scale
        self.num_params = 2 if scale == "predicted" else 1

    def setup(self, x_shape):
        super().setup(x_shape)
        if self.scale == "learned":
            # softplus(0.5413) = 1: start at unit scale.
            self.raw_scale = nn.Parameter(torch.full(self.x_shape, 0.5413))
        return self

    def _scale(self, loc: torch.Tensor, raw: torch.Tensor | None) -> torch.Tensor:
        if self.scale == "learned":
            return F.softplus(self.raw_scale) + _MIN_SCALE
        if self.scale == "predicted":
            return F.softplus(raw) + _MIN_SCALE
        return torch.full_like(loc, float(self.scale))

    def distribution(self, loc, raw_scale=None):
        return self.family(loc, self._scale(loc, raw_scale))

    def mean(self, params):
        return self._as_tuple(params)[0]

    def hparams(self) -> dict:
        return {"scale": self.scale}


@register
class Gaussian(_LocScale):
    """Real-valued data. Decoder output: the mean (and a raw scale if ``scale='predicted'``).

    ``scale``: a positive number (fixed), ``"learned"`` (one scale per feature,
    the default) or ``"predicted"`` (the decoder outputs it, softplus-transformed).
    """

    name = "gaussian"
    family = dist.Normal


@register
class Laplace(_LocScale):
    """Real-valued data with heavier tails; ``scale`` options as for :class:`Gaussian`."""

    name = "laplace"
    family = dist.Laplace


@register
class Beta(Likelihood):
    """Values strictly inside (0, 1). Decoder output: two raw concentrations.

    Concentrations are ``softplus(raw) + 1e-3``. The log-density is torch's, whose
    float32 rounding grows with the size of its terms: about 1e-2 nats at
    concentrations near 1e4 (``tests/test_likelihoods.py`` states the tolerance).
    """

    name = "beta"
    num_params = 2

    def distribution(self, raw_a, raw_b):
        return dist.Beta(F.softplus(raw_a) + _MIN_SCALE, F.softplus(raw_b) + _MIN_SCALE)

    def _support_problem(self, x):
        if (x <= 0).any() or (x >= 1).any():
            return (
                f"values outside the open interval (0, 1) ({_describe_range(x)}); "
                "squeeze them inside, e.g. x.clamp(1e-4, 1 - 1e-4), "
                "or use likelihood='continuous_bernoulli' for [0, 1]"
            )
        return None
