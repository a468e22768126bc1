"""Likelihoods: turn decoder output into a Pyro distribution of x.

One class per data type, chosen by name (``likelihood="poisson"``) or by
instance (``likelihood=Gaussian(scale=0.5)``):

========================================  ===================================================
name                                      data
========================================  ===================================================
``bernoulli``                             binary values, exactly 0 or 1
``continuous_bernoulli``                  intensities in [0, 1] (Loaiza-Ganem & Cunningham 2019)
``gaussian``                              real values; scale fixed, learned per feature, or
                                          predicted by the decoder
``laplace``                               real values with heavy tails; scale as for gaussian
``beta``                                  values strictly inside (0, 1)
``categorical``                           discrete levels 0 .. num_levels-1 (e.g. 256 grey levels)
``poisson``                               counts 0, 1, 2, ...
``negative_binomial``                     over-dispersed counts
``zero_inflated_negative_binomial``       over-dispersed counts with excess zeros
========================================  ===================================================

A likelihood knows how many numbers per feature the decoder must produce
(:attr:`Likelihood.num_params`), turns the decoder's output into a
distribution whose event shape is the data shape, and checks data against its
support before training starts (:meth:`Likelihood.check_support`).

Every log-density is computed from the decoder's unconstrained outputs in a
form that stays right in float32 over the range trained decoders reach
(logits in [-100, 100], scales 1e-3 to 1e4, concentrations 1e-3 to 1e4, count
means 1e-6 to 1e4, inverse dispersions 1e-4 to 1e8): ``tests/test_likelihoods.py``
checks each against a float64 reference and checks that it sums or integrates to 1.

A custom decoder returns the likelihood's parameters directly: one tensor of
the data's shape for single-parameter likelihoods (logits, a mean, a log rate),
a tuple of such tensors otherwise, and for ``categorical`` one tensor of shape
``(*x_shape, num_levels)``.
"""

from __future__ import annotations

import inspect
from typing import Callable, ClassVar, Literal, Sequence, Union

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pvae.distributions import (
    BernoulliLogits, ContinuousBernoulliLogits, NegativeBinomial, PoissonRate,
    ZeroInflatedNegativeBinomial,
)

Params = Union[torch.Tensor, tuple]

_REGISTRY: dict[str, type["Likelihood"]] = {}
_MIN_SCALE = 1e-3


def register(cls: type["Likelihood"]) -> type["Likelihood"]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def names() -> list[str]:
    """The registered likelihood names."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs) -> "Likelihood":
    """A new likelihood instance by name; ``kwargs`` go to its constructor."""
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown likelihood {name!r}; valid names are: {', '.join(names())}"
        )
    cls = _REGISTRY[name]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"likelihood {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(valid) or 'none'}"
        )
    return cls(**kwargs)


def resolve(spec: Union[str, "Likelihood"], **kwargs) -> "Likelihood":
    """A likelihood from a name or an instance (returned as is)."""
    if isinstance(spec, Likelihood):
        if kwargs:
            raise ValueError("likelihood options go to the constructor when passing an instance")
        return spec
    if isinstance(spec, str):
        return get(spec, **kwargs)
    raise TypeError(
        f"likelihood must be a name ({', '.join(names())}) or a pvae.likelihoods.Likelihood, "
        f"got {type(spec).__name__}"
    )


def _describe_range(x: torch.Tensor) -> str:
    return f"min {x.min().item():.4g}, max {x.max().item():.4g}"


class Likelihood(nn.Module):
    """Base class: decoder output -> distribution of x, plus a support check.

    Subclasses set :attr:`name` and :attr:`num_params`, implement
    :meth:`distribution` (from a tuple of parameter tensors) and
    :meth:`_support_problem`, and may override :meth:`mean`.
    """

    name: ClassVar[str] = ""
    #: How many numbers per feature a default decoder must produce.
    num_params: int = 1
    #: Whether x is discrete (log p(x) is a log probability, not a log density).
    discrete: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.x_shape: tuple[int, ...] = ()

    # -- set-up -------------------------------------------------------------
    def setup(self, x_shape: Sequence[int]) -> "Likelihood":
        """Bind to a data shape (creates per-feature parameters where needed)."""
        self.x_shape = tuple(int(s) for s in x_shape)
        return self

    @property
    def event_dim(self) -> int:
        return len(self.x_shape)

    # -- decoder output -> distribution ---------------------------------------
    def unflatten(self, out: torch.Tensor) -> Params:
        """Split a flat decoder output ``(..., num_params * prod(x_shape))``."""
        out = out.reshape(*out.shape[:-1], self.num_params, *self.x_shape)
        if self.num_params == 1:
            return out.squeeze(-self.event_dim - 1)
        return tuple(out.unbind(-self.event_dim - 1))

    def _as_tuple(self, params: Params) -> tuple:
        return params if isinstance(params, tuple) else (params,)

    def forward(self, params: Params) -> dist.Distribution:
        """The distribution of x (event shape ``x_shape``) given decoder output."""
        return self.distribution(*self._as_tuple(params)).to_event(self.event_dim)

    def distribution(self, *params: torch.Tensor) -> dist.Distribution:  # pragma: no cover
        raise NotImplementedError

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """How a default encoder sees the data (counts: log1p; levels: scaled to [0, 1])."""
        return x

    def mean(self, params: Params) -> torch.Tensor:
        """E[x | params], for plots and reconstructions."""
        return self.distribution(*self._as_tuple(params)).mean

    # -- data checks -----------------------------------------------------------
    def check_support(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` naming the problem and the fix if ``x`` is invalid."""
        x = torch.as_tensor(x)
        if not torch.is_floating_point(x) and x.dtype not in (
            torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool
        ):
            raise ValueError(f"data has dtype {x.dtype}; pvae needs real numbers (float32)")
        if x.is_floating_point() and not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).sum().item()
            raise ValueError(
                f"data holds {bad} NaN or infinite value(s); remove or impute them before training"
            )
        problem = self._support_problem(x.float() if x.dtype == torch.bool else x)
        if problem:
            raise ValueError(f"likelihood {self.name!r}: data has {problem}")

    def _support_problem(self, x: torch.Tensor) -> str | None:
        return None

    def hparams(self) -> dict:
        """Constructor arguments that rebuild this likelihood (for save/load)."""
        return {}

    def extra_repr(self) -> str:
        return f"x_shape={self.x_shape}"


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

    def extra_repr(self) -> str:
        return f"x_shape={self.x_shape}, scale={self.scale!r}"


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

    def extra_repr(self) -> str:
        return f"x_shape={self.x_shape}, num_levels={self.num_levels}"


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

    def extra_repr(self) -> str:
        return f"x_shape={self.x_shape}, dispersion={self.dispersion!r}"


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
