"""Count distributions in the mean/dispersion parameterisation, and a lean Bernoulli.

``NegativeBinomial(mu, theta)`` and ``ZeroInflatedNegativeBinomial(mu, theta,
zi_logits)`` follow the parameterisation common for count data (mean ``mu``,
inverse dispersion ``theta``; variance ``mu + mu**2 / theta``). Both are proper
:class:`pyro.distributions.TorchDistribution` subclasses with ``support`` and
``arg_constraints``; ``tests/test_distributions.py`` checks them against
:mod:`scipy.stats`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import pyro.distributions as dist
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

_EPS = 1e-8


def _nb_log_prob(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    log_theta_mu = torch.log(theta + mu + _EPS)
    return (
        theta * (torch.log(theta + _EPS) - log_theta_mu)
        + x * (torch.log(mu + _EPS) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


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
        return value * logits - F.softplus(logits)
