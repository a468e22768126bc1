"""Learned priors p(z): the VampPrior and a mixture of Gaussians.

A model's unconditional prior over its latent code is chosen by one string,
``prior="standard" | "vamp" | "mog"``, and built here by :func:`build` as a
module whose call gives the Pyro distribution of site ``"z"`` (event dim 1,
batch shape the data plate's), so it sits in the model exactly where
``Normal(0, I)`` did:

``"standard"``
    ``Normal(0, I)`` (:class:`StandardPrior`): the KL from a Gaussian q(z | x)
    has a closed form.
``"vamp"``
    The VampPrior (Tomczak & Welling 2018, "VAE with a VampPrior", AISTATS):
    p(z) = 1/K sum_k q(z | u_k), the model's own encoder at K learned
    pseudo-inputs u_k of the data's shape (:class:`VampPrior`).
``"mog"``
    A mixture of K diagonal Gaussians with learned weights, means and scales
    (:class:`MixturePrior`).

Both learned priors give a :class:`DiagonalNormalMixture`, a Pyro
``MixtureSameFamily`` whose K components are shared by every data point, so
its log-density is one matrix product (no tensor of shape (..., K, z_dim)).
Their KL from q(z | x) has no closed form: every ELBO estimates it by Monte
Carlo, ``TraceMeanField_ELBO`` included (Pyro's and pvae's fall back to
``log q - log p`` at the guide's sample when ``kl_divergence`` is not
registered, and ``pvae.fit`` warns that they do).
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Optional, Sequence

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.poutine.runtime import NonlocalExit
from torch import nn

PriorName = Literal["standard", "vamp", "mog"]
#: Every prior name ``prior=`` takes.
PRIORS: tuple[str, ...] = ("standard", "vamp", "mog")
#: Default number of components: Tomczak & Welling used K = 500 pseudo-inputs on
#: MNIST; ten Gaussians, one per digit class, for the mixture.
DEFAULT_COMPONENTS = {"vamp": 500, "mog": 10}

#: An encoder as the VampPrior calls it: inputs ``(K, *x_shape)`` -> ``(loc, scale)``,
#: each ``(K, z_dim)``.
Encode = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class DiagonalNormalMixture(dist.MixtureSameFamily):
    """sum_k w_k Normal(z; loc_k, diag(scale_k^2)), the same K components for every
    batch element (a Pyro ``MixtureSameFamily`` with event dim 1).

    Parameters
    ----------
    logits
        Shape ``(K,)``: unnormalised log mixture weights.
    loc, scale
        Shape ``(K, z_dim)``: each component's mean and standard deviation.
    batch_shape
        The batch shape (a data plate's ``(N,)``); the components are not copied.

    ``log_prob(z)`` for ``z`` of shape ``(..., z_dim)`` is computed as
    logsumexp_k [log w_k + log Normal(z; loc_k, scale_k)] with the quadratic
    form as one matrix product in float64 (memory ``(..., K)``, not
    ``(..., K, z_dim)``), returned in ``z``'s dtype. ``sample`` picks a
    component per draw, then draws from it (no reparameterised sample).
    """

    arg_constraints = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                 batch_shape: Sequence[int] = (), validate_args: Optional[bool] = None):
        if logits.dim() != 1 or loc.shape != scale.shape or loc.shape[:1] != logits.shape:
            raise ValueError(f"a mixture of K diagonal Normals takes logits (K,) and loc, "
                             f"scale (K, z_dim); got {tuple(logits.shape)}, {tuple(loc.shape)}, "
                             f"{tuple(scale.shape)}")
        self._shared = (logits, loc, scale)
        batch_shape = torch.Size(batch_shape)
        k, d = loc.shape
        mixture = dist.Categorical(logits=logits.expand(*batch_shape, k))
        components = dist.Normal(loc.expand(*batch_shape, k, d),
                                 scale.expand(*batch_shape, k, d)).to_event(1)
        super().__init__(mixture, components, validate_args=False)
        # Pyro's and torch's validation setting, as every distribution follows it
        self._validate_args = (torch.distributions.Distribution._validate_args
                               if validate_args is None else bool(validate_args))

    @property
    def num_components(self) -> int:
        return self._shared[0].shape[0]

    def expand(self, batch_shape, _instance=None) -> "DiagonalNormalMixture":
        return DiagonalNormalMixture(*self._shared, batch_shape=batch_shape,
                                     validate_args=self._validate_args)

    def component_log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log Normal(value; loc_k, scale_k) for every component k: shape ``(..., K)``."""
        _, loc, scale = (t.double() for t in self._shared)
        z = value.double()
        prec = scale.pow(-2)
        quad = (z * z) @ prec.T - 2.0 * z @ (loc * prec).T + (loc * loc * prec).sum(-1)
        norm = scale.log().sum(-1) + 0.5 * loc.shape[-1] * math.log(2 * math.pi)
        return (-0.5 * quad - norm).to(value.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_w = torch.log_softmax(self._shared[0], -1)
        lp = torch.logsumexp(self.component_log_prob(value) + log_w.to(value.dtype), -1)
        return lp.expand(torch.broadcast_shapes(lp.shape, self.batch_shape))

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        logits, loc, scale = self._shared
        shape = torch.Size(sample_shape) + self.batch_shape
        with torch.no_grad():
            k = dist.Categorical(logits=logits).sample(shape)
            return loc[k] + scale[k] * torch.randn(*shape, loc.shape[-1], dtype=loc.dtype,
                                                   device=loc.device)


class StandardPrior(nn.Module):
    """p(z) = Normal(0, I): ``prior(batch_shape, device)`` gives it with that batch shape."""

    analytic_kl = True
    num_components = None

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = z_dim

    def forward(self, batch_shape, device=None, encode: Optional[Encode] = None):
        loc = torch.zeros(*torch.Size(batch_shape), self.z_dim, device=device)
        return dist.Normal(loc, 1.0).to_event(1)


class MixturePrior(nn.Module):
    """p(z) = sum_k w_k Normal(mu_k, diag(sigma_k^2)) with learned w, mu and sigma.

    Means start as draws from Normal(0, I), scales at 1 (softplus of a free
    parameter), weights equal. ``prior(batch_shape, device)`` gives the
    :class:`DiagonalNormalMixture`.
    """

    analytic_kl = False

    def __init__(self, z_dim: int, num_components: int = DEFAULT_COMPONENTS["mog"]) -> None:
        super().__init__()
        self.z_dim, self.num_components = z_dim, num_components
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(torch.randn(num_components, z_dim))
        self.raw_scale = nn.Parameter(torch.full((num_components, z_dim), math.log(math.e - 1)))

    def forward(self, batch_shape, device=None, encode: Optional[Encode] = None):
        scale = nn.functional.softplus(self.raw_scale) + 1e-5
        return DiagonalNormalMixture(self.logits, self.loc, scale, batch_shape)


#: Where pseudo-inputs live, ``(low, high)`` with ``None`` for unbounded, by likelihood name.
_DOMAINS = {"bernoulli": (0.0, 1.0), "continuous_bernoulli": (0.0, 1.0), "beta": (0.0, 1.0),
            "poisson": (0.0, None), "negative_binomial": (0.0, None),
            "zero_inflated_negative_binomial": (0.0, None)}


def pseudo_input_domain(likelihood) -> tuple[Optional[float], Optional[float]]:
    """The data's domain ``(low, high)`` for a likelihood (``None``: unbounded): [0, 1] for
    binary and intensity data, [0, levels - 1] for levels, [0, inf) for counts, the real
    line otherwise (a likelihood pvae does not know included)."""
    if getattr(likelihood, "name", None) == "categorical":
        return 0.0, float(likelihood.num_levels - 1)
    return _DOMAINS.get(getattr(likelihood, "name", None), (None, None))


class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling 2018): p(z) = 1/K sum_k q(z | u_k).

    K pseudo-inputs u_k of the data's shape are learned with the model and
    pushed through the model's own encoder at every call, so the prior
    follows the encoder (the paper's "VampPrior", eq. 9: equal weights 1/K).
    As in the paper, u = hardtanh(a) with free parameters a: a clamp into
    the data's domain (``domain``, e.g. [0, 1] for binary images), a
    one-sided clamp for counts, the identity for real data; a starts at
    low + (high - low) * (0.05 + 0.01 eps) for bounded data (the paper's
    pseudo-input mean 0.05 and standard deviation 0.01 on MNIST), low + 0.05 +
    0.01 eps for counts and 0.01 eps for real data, eps ~ Normal(0, 1).

    ``prior(batch_shape, device, encode)`` gives the
    :class:`DiagonalNormalMixture` of ``encode(u)`` (``encode``: inputs
    ``(K, *x_shape)`` -> ``(loc, scale)`` of shape ``(K, z_dim)``). A model with
    flows on q(z | x) uses the encoder's Gaussian before the flows.
    """

    analytic_kl = False

    def __init__(self, x_shape: Sequence[int], num_components: int = DEFAULT_COMPONENTS["vamp"],
                 domain: tuple[Optional[float], Optional[float]] = (None, None)) -> None:
        super().__init__()
        self.x_shape, self.num_components = tuple(x_shape), num_components
        self.low, self.high = domain
        eps = 0.01 * torch.randn(num_components, *self.x_shape)
        if self.low is not None and self.high is not None:
            start = self.low + (self.high - self.low) * (0.05 + eps)
        elif self.low is not None:
            start = self.low + 0.05 + eps
        else:
            start = eps
        self.raw_inputs = nn.Parameter(start)

    def pseudo_inputs(self) -> torch.Tensor:
        """The K pseudo-inputs u_k in the data's domain, shape ``(K, *x_shape)``."""
        if self.low is None and self.high is None:
            return self.raw_inputs
        return torch.clamp(self.raw_inputs, self.low, self.high)

    def forward(self, batch_shape, device=None, encode: Optional[Encode] = None):
        if encode is None:
            raise TypeError("VampPrior needs the model's encoder: prior(batch_shape, device, "
                            "encode) with encode(u) -> (loc, scale)")
        loc, scale = encode(self.pseudo_inputs())
        logits = torch.zeros(self.num_components, device=loc.device, dtype=loc.dtype)
        return DiagonalNormalMixture(logits, loc, scale, batch_shape)


def check(prior: str, num_components: Optional[int], refused: Optional[dict] = None,
          owner: str = "this model") -> None:
    """Raise ``ValueError`` naming the fix for a prior name or component count that
    cannot be built; ``refused`` maps a prior name to why ``owner`` cannot take it."""
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {', '.join(map(repr, PRIORS))}, got {prior!r}")
    if refused and prior in refused:
        raise ValueError(f"{owner} cannot take prior={prior!r}: {refused[prior]}")
    if num_components is None:
        return
    if prior == "standard":
        raise ValueError(f"prior_components={num_components!r} is the number of mixture "
                         "components of prior='vamp' or 'mog'; with prior='standard' leave "
                         "it None")
    if not (isinstance(num_components, int) and not isinstance(num_components, bool)
            and num_components >= 1):
        raise ValueError(f"prior_components must be a positive int, got {num_components!r}")


def build(prior: str, num_components: Optional[int], *, z_dim: int,
          x_shape: Sequence[int] = (), likelihood=None) -> nn.Module:
    """The prior module of name ``prior`` (see the module docstring).

    ``num_components`` defaults to :data:`DEFAULT_COMPONENTS`; ``x_shape`` and
    ``likelihood`` (for the pseudo-inputs' domain) are read by ``"vamp"``.
    Raises ``ValueError`` as :func:`check` does.
    """
    check(prior, num_components)
    if prior == "standard":
        return StandardPrior(z_dim)
    k = num_components or DEFAULT_COMPONENTS[prior]
    if prior == "mog":
        return MixturePrior(z_dim, k)
    return VampPrior(x_shape, k, pseudo_input_domain(likelihood))


def gaussian_params(q) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale)`` of a diagonal Normal q (``Independent`` wrappers and the base of a
    flow's ``TransformedDistribution`` looked through); ``TypeError`` for anything else."""
    base = q
    while isinstance(base, (dist.Independent, torch.distributions.TransformedDistribution)):
        base = base.base_dist
    if not isinstance(base, torch.distributions.Normal):
        raise TypeError(f"the VampPrior needs the encoder's Normal, got {type(q).__name__}")
    return base.loc, base.scale


def guide_gaussian(guide_fn: Callable, site: str) -> Encode:
    """An :data:`Encode` reading q(site | x) off a guide: ``guide_fn(x)`` runs up to
    ``site`` (nothing is drawn there, and handlers outside never see it) and the site's
    diagonal Normal gives ``(loc, scale)`` (:func:`gaussian_params`). For a hierarchy's top
    layer, whose q(z_L | x) is a Gaussian of x alone (a top-down guide)."""

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            poutine.escape(guide_fn, escape_fn=lambda msg: msg["name"] == site)(x)
        except NonlocalExit as e:
            return gaussian_params(e.site["fn"])
        raise RuntimeError(f"the guide drew no site {site!r}")

    return encode
