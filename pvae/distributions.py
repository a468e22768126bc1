"""Distributions whose densities stay right over the whole range a decoder produces.

``NegativeBinomial(mu, theta)`` and ``ZeroInflatedNegativeBinomial(mu, theta,
zi_logits)`` follow the parameterisation common for count data (mean ``mu``,
inverse dispersion ``theta``; variance ``mu + mu**2 / theta``).
``ContinuousBernoulliLogits(logits)`` is the continuous Bernoulli of
Loaiza-Ganem & Cunningham (2019) computed from its logits without clamping.
``BernoulliLogits`` is a lean Bernoulli. All are proper
:class:`pyro.distributions.TorchDistribution` subclasses with ``support`` and
``arg_constraints``; ``tests/test_distributions.py`` checks their log-densities
in float32 against float64 references (:mod:`scipy.stats` where it has the
distribution) and that each one sums or integrates to 1, over stated grids of
parameters that span what trained decoders produce.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import pyro.distributions as dist
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

_EPS = 1e-8


#: Above this argument Stirling's series (three terms) gives log-gamma differences
#: to float64 precision; below it, torch.lgamma's values are small enough to subtract.
_STIRLING_FROM = 10.0


def _stirling_tail(z: torch.Tensor) -> torch.Tensor:
    """``lgamma(z) - [(z - 1/2) log z - z + log(2 pi) / 2]`` for ``z >= 10`` (error < 1e-10)."""
    r = 1.0 / z
    r2 = r * r
    return r * (1.0 / 12 - r2 * (1.0 / 360 - r2 / 1260))


def _lgamma_excess(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``lgamma(a + d) - lgamma(a) - d log a`` for ``a, a + d >= 10``, without cancellation.

    Stirling's series for both log-gamma terms, rearranged so that nothing of the
    size of ``lgamma(a)`` is subtracted: ``(a + d - 1/2) log1p(d / a) - d`` plus the
    series' tails. (In float32, ``lgamma(1e8)`` alone carries an error of about
    100 nats, so the direct difference is useless there.)
    """
    return (a + d - 0.5) * torch.log1p(d / a) - d + _stirling_tail(a + d) - _stirling_tail(a)


def _deviance(n: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``bd0 = x log(x / n) + n - x`` for ``x = n (1 + u)``, as ``n ((1 + u) log1p(u) - u)``.

    Loader (2000), "Fast and accurate computation of binomial probabilities": the
    deviance term whose direct form cancels terms of size ``x log x``.
    """
    return n * ((1 + u) * torch.log1p(u) - u)


def _poisson_log_prob(x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """log Poisson(x | rate), accurate in float32 near the mode of large counts.

    The textbook ``x log rate - rate - lgamma(x + 1)`` subtracts terms of size
    ``x log x`` and loses about 1e-3 nats near ``x = rate = 1e4`` in float32 (enough
    for the probabilities to sum to 1.001). For ``x >= 10`` this uses Loader's (2000)
    deviance form ``-bd0(x, rate) - log(2 pi x) / 2 - s(x)`` with ``s`` the tail of
    Stirling's series.
    """
    direct = x * torch.log(rate) - rate - torch.lgamma(x + 1)
    xb = x.clamp(min=_STIRLING_FROM)
    stirling = (-_deviance(rate, (xb - rate) / rate) - 0.5 * torch.log(2 * math.pi * xb)
                - _stirling_tail(xb))
    return torch.where(x >= _STIRLING_FROM, stirling, direct)


class PoissonRate(dist.Poisson):
    """``pyro.distributions.Poisson`` whose ``log_prob`` stays exact in float32 for large counts."""

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PoissonRate, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        rate, value = broadcast_all(self.rate, value)
        return _poisson_log_prob(value, rate)


def _nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """log NB(x | mu, theta), accurate in float32 for theta in [1e-4, 1e8], mu in [1e-6, 1e4].

    ``lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) - theta log1p(mu / theta)
    - x log1p(theta / mu)``, with each part in the form that is exact to float32
    rounding of the result where it is used (``torch.where`` evaluates every form,
    so each is fed clamped arguments that keep its value and gradient finite):

    - ``theta, x >= 10``: Loader's (2000) saddle-point form of the binomial
      ``NB(x) = theta / (theta + x) Bin(theta | theta + x, theta / (theta + mu))``,
      deviances and Stirling tails only, so nothing of the size of ``x log x`` is
      subtracted (the direct form lost 0.03 nats near ``x = mu = 1e4``);
    - ``theta >= 10 > x``: ``lgamma(x + theta) - lgamma(theta)`` from Stirling's series;
    - ``theta < 10 <= x``: ``lgamma(x + theta) - lgamma(x + 1)`` from Stirling's series;
    - both small: ``torch.lgamma`` directly.
    """
    tail = -theta * torch.log1p(mu / theta) - x * torch.log1p(theta / mu)
    small = torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1) + tail
    xb = x.clamp(min=_STIRLING_FROM)
    tb = theta.clamp(min=_STIRLING_FROM)
    large_x = (_lgamma_excess(xb + 1, theta - 1) + (theta - 1) * torch.log(xb + 1)
               - torch.lgamma(theta) + tail)
    large_theta = (_lgamma_excess(tb, x) + x * torch.log(mu) - (x + tb) * torch.log1p(mu / tb)
                   - torch.lgamma(x + 1))
    # both large: log theta/(theta+x) + log Bin(theta | n = theta + x, p = theta/(theta+mu))
    n = tb + xb
    u_succ = (mu - xb) / n                      # theta = N (1 + u), N = n theta / (theta + mu)
    u_fail = tb * (xb - mu) / (n * mu)          # x = M (1 + u), M = n mu / (theta + mu)
    both = (torch.log(tb / n) + _stirling_tail(n) - _stirling_tail(tb) - _stirling_tail(xb)
            - _deviance(n * tb / (tb + mu), u_succ) - _deviance(n * mu / (tb + mu), u_fail)
            - 0.5 * torch.log(2 * math.pi * tb * xb / n))
    big_theta = theta >= _STIRLING_FROM
    big_x = x >= _STIRLING_FROM
    return torch.where(big_theta, torch.where(big_x, both, large_theta),
                       torch.where(big_x, large_x, small))


class NegativeBinomial(TorchDistribution):
    """Negative binomial with mean ``mu`` and inverse dispersion ``theta``.

    ``p(x) = Gamma(x + theta) / (Gamma(theta) x!) (theta / (theta + mu))**theta
    (mu / (theta + mu))**x`` for ``x = 0, 1, 2, ...``.
    """

    arg_constraints = {"mu": constraints.positive, "theta": constraints.positive}
    support = constraints.nonnegative_integer
    has_rsample = False

    def __init__(self, mu: torch.Tensor, theta: torch.Tensor, validate_args=None):
        self.mu, self.theta = broadcast_all(mu, theta)
        super().__init__(self.mu.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(NegativeBinomial, _instance)
        batch_shape = torch.Size(batch_shape)
        new.mu = self.mu.expand(batch_shape)
        new.theta = self.theta.expand(batch_shape)
        super(NegativeBinomial, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return self.mu

    @property
    def variance(self) -> torch.Tensor:
        return self.mu + self.mu**2 / self.theta

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return _nb_log_prob(value, self.mu, self.theta)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            # Gamma-Poisson mixture: rate ~ Gamma(theta, theta / mu).
            rate = torch.distributions.Gamma(
                self.theta.expand(shape), (self.theta / self.mu.clamp_min(_EPS)).expand(shape)
            ).sample()
            return torch.poisson(rate)


class ZeroInflatedNegativeBinomial(TorchDistribution):
    """Negative binomial with an extra point mass at zero.

    With ``pi = sigmoid(zi_logits)``: ``p(0) = pi + (1 - pi) NB(0)`` and
    ``p(x) = (1 - pi) NB(x)`` for ``x > 0``.
    """

    arg_constraints = {
        "mu": constraints.positive,
        "theta": constraints.positive,
        "zi_logits": constraints.real,
    }
    support = constraints.nonnegative_integer
    has_rsample = False

    def __init__(self, mu, theta, zi_logits, validate_args=None):
        self.mu, self.theta, self.zi_logits = broadcast_all(mu, theta, zi_logits)
        super().__init__(self.mu.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ZeroInflatedNegativeBinomial, _instance)
        batch_shape = torch.Size(batch_shape)
        new.mu = self.mu.expand(batch_shape)
        new.theta = self.theta.expand(batch_shape)
        new.zi_logits = self.zi_logits.expand(batch_shape)
        super(ZeroInflatedNegativeBinomial, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return torch.sigmoid(-self.zi_logits) * self.mu

    @property
    def variance(self) -> torch.Tensor:
        pi = torch.sigmoid(self.zi_logits)
        nb_var = self.mu + self.mu**2 / self.theta
        return (1 - pi) * (nb_var + self.mu**2) - ((1 - pi) * self.mu) ** 2

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        nb = _nb_log_prob(value, self.mu, self.theta)
        log_pi = -F.softplus(-self.zi_logits)  # log sigmoid(zi_logits)
        log_not_pi = -F.softplus(self.zi_logits)  # log (1 - sigmoid(zi_logits))
        zero = torch.logaddexp(log_pi, log_not_pi + nb)
        return torch.where(value == 0, zero, log_not_pi + nb)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            counts = NegativeBinomial(self.mu, self.theta).sample(sample_shape)
            gate = torch.bernoulli(torch.sigmoid(self.zi_logits).expand(counts.shape))
            return torch.where(gate > 0, torch.zeros_like(counts), counts)


class BernoulliLogits(dist.Bernoulli):
    """``Bernoulli(logits=...)`` whose ``log_prob`` is ``x * logits - softplus(logits)``.

    The same values as torch's ``Bernoulli.log_prob`` (``tests/test_distributions.py``)
    by the kernel that is fastest for the call: without gradients (evaluation),
    three elementwise passes that need not expand ``x`` to the logits' shape (with K
    importance samples per image the logits are K times larger than the data);
    with gradients (training), equal shapes and dtypes, torch's fused
    ``binary_cross_entropy_with_logits``, whose backward is one pass too.
    """

    def __init__(self, logits: torch.Tensor, validate_args=None) -> None:
        super().__init__(logits=logits, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(BernoulliLogits, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits = self.logits
        if (logits.requires_grad and torch.is_grad_enabled() and value.shape == logits.shape
                and value.dtype == logits.dtype):
            return -F.binary_cross_entropy_with_logits(logits, value, reduction="none")
        if logits.requires_grad and torch.is_grad_enabled():
            return value * logits - F.softplus(logits)
        return (value * logits).sub_(_softplus_no_grad(logits))


def _softplus_no_grad(logits: torch.Tensor) -> torch.Tensor:
    """softplus(t) = max(t, 0) + log(1 + exp(-|t|)), without gradients, in place on one
    temporary: exp and log are vectorised where torch's softplus and log1p kernels are
    not (on the AVX-512 CPU of ``benchmarks/RESULTS.md``, 14 ms against 66 ms for 2M
    logits). ``log(1 + e)`` for ``e = exp(-|t|)`` in (0, 1] differs from ``log1p(e)`` by
    at most float32's rounding of ``1 + e`` (6e-8 nats per value)."""
    return logits.abs().neg_().exp_().add_(1.0).log_().add_(logits.clamp(min=0))


def _log_cb_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(t) of the continuous Bernoulli: ``log(t / tanh(t / 2))``, ``log 2`` at ``t = 0``.

    Written as ``log|t| - log(-expm1(-|t|)) + log1p(exp(-|t|))`` (no overflow, no
    clamping: it grows like ``log|t|``), and as its Taylor series
    ``log 2 + t**2 / 12 - 7 t**4 / 1440`` for ``|t| < 1e-2``, where the two logs cancel.
    """
    a = logits.abs()
    near = a < 1e-2
    safe = torch.where(near, torch.ones_like(a), a)
    far = torch.log(safe) - torch.log(-torch.expm1(-safe)) + torch.log1p(torch.exp(-safe))
    t2 = logits * logits
    return torch.where(near, math.log(2.0) + t2 / 12 - 7 * t2 * t2 / 1440, far)


def _cb_log_prob_no_grad(t: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``log C(t) + x t - softplus(t)`` without gradients (evaluation), by vectorised
    kernels: ``log C(t) = log|t| - log tanh(|t| / 2)`` with ``|t|`` floored at 1e-6,
    where it is ``log 2`` to within 1e-6 (its Taylor series ``log 2 + t**2 / 12``), and
    :func:`_softplus_no_grad`; faster than the gradient path's expm1 and
    log1p (3.5x on the CPU of ``benchmarks/RESULTS.md``); ``tests/test_likelihoods.py`` checks
    both against float64 over logits in [-100, 100]."""
    a = t.abs().clamp_(min=1e-6)
    log_c = a.mul(0.5).tanh_().log_().neg_().add_(a.log_())
    return (value * t).add_(log_c).sub_(_softplus_no_grad(t))


class ContinuousBernoulliLogits(TorchDistribution):
    """The continuous Bernoulli on [0, 1] from unconstrained logits ``t``.

    ``p(x | t) = C(t) sigmoid(t)**x sigmoid(-t)**(1 - x)`` with normaliser
    ``C(t) = t / tanh(t / 2)`` (Loaiza-Ganem & Cunningham 2019, eq. 7 with
    ``lambda = sigmoid(t)``), so ``log p = log C(t) + x t - softplus(t)``.

    Unlike ``torch.distributions.ContinuousBernoulli``, which clamps its
    probabilities to about ``sigmoid(+-15.9)`` and so freezes the normaliser and
    its gradient beyond that, every quantity here is computed from ``t``
    directly and stays exact in float32 for any finite ``t`` (checked over
    ``t`` in [-100, 100] in ``tests/test_distributions.py``). Example: ``t = -40``,
    ``x = 0`` gives ``log p = log 40 = 3.6889`` nats.

    Shapes: ``logits`` of any shape is the batch shape; ``log_prob(x)`` returns
    the broadcast shape of ``x`` and ``logits``.
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, logits: torch.Tensor, validate_args=None) -> None:
        (self.logits,) = broadcast_all(logits)
        super().__init__(self.logits.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ContinuousBernoulliLogits, _instance)
        new.logits = self.logits.expand(torch.Size(batch_shape))
        super(ContinuousBernoulliLogits, new).__init__(torch.Size(batch_shape),
                                                      validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        t = self.logits
        if t.requires_grad and torch.is_grad_enabled():
            return _log_cb_norm(t) + value * t - F.softplus(t)
        return _cb_log_prob_no_grad(t, value)

    @property
    def mean(self) -> torch.Tensor:
        """``1 / (1 - exp(-t)) - 1 / t`` (``1/2 + t / 12`` near 0), in (0, 1)."""
        t = self.logits
        near = t.abs() < 1e-3
        safe = torch.where(near, torch.ones_like(t), t)
        neg = safe.clamp(max=-1e-3)  # 1 / (1 - exp(-t)) = exp(t) / expm1(t): no overflow for t < 0
        pos = safe.clamp(min=1e-3)
        first = torch.where(safe < 0, torch.exp(neg) / torch.expm1(neg), -1.0 / torch.expm1(-pos))
        return torch.where(near, 0.5 + t / 12, first - 1.0 / safe)

    @property
    def variance(self) -> torch.Tensor:
        """``1 / t**2 - 1 / (4 sinh(t / 2)**2)`` (``1/12 - t**2 / 240`` near 0)."""
        t = self.logits
        near = t.abs() < 1e-2
        a = torch.where(near, torch.ones_like(t), t.abs())
        far = 1.0 / a**2 - torch.exp(-a) / torch.expm1(-a) ** 2
        return torch.where(near, 1.0 / 12 - t * t / 240, far)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Inverse-CDF sampling: ``x = log1p(u expm1(t)) / t``, rewritten to avoid overflow."""
        shape = self._extended_shape(sample_shape)
        t = self.logits.expand(shape)
        u = torch.rand(shape, dtype=t.dtype, device=t.device)
        near = t.abs() < 1e-3
        safe = torch.where(near, torch.ones_like(t), t)
        a = safe.abs()
        # t < 0: log1p(u expm1(t)) / t; t > 0: by symmetry, 1 minus the same at -t with 1 - u
        neg = torch.log1p(u * torch.expm1(-a)) / -a
        pos = 1.0 - torch.log1p((1 - u) * torch.expm1(-a)) / -a
        far = torch.where(safe < 0, neg, pos)
        x = torch.where(near, u + u * (1 - u) * t / 2, far)
        return x.clamp(0.0, 1.0)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)
