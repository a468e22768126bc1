"""Conditional VAE: the VAE with a condition y at an extra sample site."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import pyro_method
from torch import nn

from pvae import likelihoods as lk
from pvae import priors
from pvae.flows import GaussianPosterior
from pvae.models.base import ObservedSites, PVAEModel, takes_data
from pvae.models.checks import (  # noqa: F401  (check_labels: its old home)
    Shape, check_hparams, check_labels, num_draws)
from pvae.models.registry import register
from pvae.nets import MLP, cat_broadcast, one_hot, split_loc_scale


def draw_labels(y, n: int, num_classes: int, device=None) -> torch.Tensor:
    """Labels for ``n`` draws, checked: one label (``n`` draws of that class) or ``n`` of them.

    ``y``: an int, a 0-d tensor, or ``n`` labels (shape ``(n,)`` or ``(n, 1)``), whole
    numbers in ``0..num_classes-1``. Returns a long tensor of shape ``(n,)``; raises
    ``ValueError`` for another number of labels, fractions, NaN or labels out of range.
    """
    n = num_draws(n)
    try:
        y = torch.as_tensor(y, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"labels y must be an int or a tensor/array of class ids, got "
                        f"{type(y).__name__}") from None
    if y.dim() == 2 and y.shape[1] == 1:
        y = y.squeeze(1)
    if y.dim() > 1 or (y.dim() == 1 and y.shape[0] != n):
        raise ValueError(f"y has shape {tuple(y.shape)}: give one label (n={n} draws of that "
                         f"class) or {n} labels, one per draw")
    y = y.expand(n) if y.dim() == 0 else y
    check_labels(y, num_classes, n)
    return y.long()


@register
class CVAE(PVAEModel):
    r"""Conditional VAE (Sohn et al. 2015): p(x | y) for a class label or a vector y.

    Generative story, for each data point in ``pyro.plate("data")``::

        y_n                                   # site "y": observed condition
        z_n ~ Normal(prior_net(y_n))          # site "z"; Normal(0, I) if learned_prior=False
        x_n ~ likelihood(decoder(z_n, y_n))   # site "x"

    Guide::

        z_n ~ Normal(encoder(x_n, y_n))       # site "z"

    The condition is observed and not modelled: site ``"y"`` carries a uniform
    prior over labels (a placeholder for vectors) masked out of every log
    density, so the ELBO bounds log p(x | y), and ``model(y=None)`` draws
    labels uniformly when generating.

    Parameters
    ----------
    x_dim, z_dim, hidden_dims, likelihood, beta, likelihood_kwargs, guide_flows, activation
        As for :class:`pvae.VAE` (networks are MLPs on flattened x).
    num_classes
        Number of class labels (y holds integers ``0..num_classes-1``) ...
    y_dim
        ... or the size of a continuous condition vector. Give exactly one.
    encoder
        Optional ``nn.Module``: ``encoder(x, y_features) -> (z_loc, z_scale)``,
        where ``y_features`` is the one-hot label or the condition vector.
    decoder
        Optional ``nn.Module``: ``decoder(torch.cat([z, y_features], -1))`` ->
        the likelihood's parameters.
    learned_prior
        Learn p(z | y) with a network (default) or use Normal(0, I).
    prior, prior_components
        Only ``"standard"`` / ``None`` (``ValueError`` otherwise): the CVAE's
        prior is the conditional p(z | y) above, not one of :mod:`pvae.priors`.
    """

    batch_parts = ("x", "y")
    config_name = "cvae"
    #: Priors this model cannot take (:mod:`pvae.priors`), and why.
    refused_priors = dict.fromkeys(("vamp", "mog"), (
        "its prior is the conditional p(z | y) (learned_prior=True: a network of y; False: "
        "Normal(0, I)), not an unconditional p(z); use learned_prior"))

    def __init__(
        self,
        x_dim: Shape,
        z_dim: int = 20,
        num_classes: Optional[int] = None,
        y_dim: Optional[int] = None,
        hidden_dims: Sequence[int] = (400,),
        likelihood: Union[str, lk.Likelihood] = "bernoulli",
        encoder: Optional[nn.Module] = None,
        decoder: Optional[nn.Module] = None,
        beta: float = 1.0,
        *,
        learned_prior: bool = True,
        activation: str = "relu",
        likelihood_kwargs: Optional[dict] = None,
        guide_flows: int = 0,
        prior: priors.PriorName = "standard",
        prior_components: Optional[int] = None,
    ) -> None:
        super().__init__()
        priors.check(prior, prior_components, self.refused_priors, "CVAE")
        if (num_classes is None) == (y_dim is None):
            raise ValueError("give exactly one of num_classes (class labels) or y_dim "
                             "(a continuous condition vector)")
        c_dim = num_classes if num_classes is not None else y_dim
        if not (isinstance(c_dim, int) and c_dim >= 1):
            raise ValueError(f"num_classes / y_dim must be a positive int, got {c_dim!r}")
        check_hparams(z_dim=z_dim, beta=beta, guide_flows=guide_flows, hidden_dims=hidden_dims)
        self._setup_likelihood(x_dim, likelihood, likelihood_kwargs)
        hidden_dims = tuple(int(h) for h in hidden_dims)
        self.z_dim, self.beta = z_dim, float(beta)
        self.num_classes, self.y_dim, self.c_dim = num_classes, y_dim, c_dim
        x_numel = math.prod(self.x_shape)
        self._default_encoder = encoder is None
        self._default_decoder = decoder is None
        self.encoder = encoder or MLP(x_numel + c_dim, hidden_dims, 2 * z_dim, activation)
        self.decoder = decoder or MLP(z_dim + c_dim, hidden_dims[::-1],
                                      self.likelihood.num_params * x_numel, activation)
        self.prior_net = (MLP(c_dim, hidden_dims[-1:], 2 * z_dim, activation)
                          if learned_prior else None)
        self.posterior = GaussianPosterior(  # IAF context: the encoder's last hidden layer
            z_dim, guide_flows, self.encoder.hidden_dim if self._default_encoder else None)
        self._remember(
            rebuildable=self._default_encoder and self._default_decoder,
            x_dim=list(self.x_shape), z_dim=z_dim, num_classes=num_classes, y_dim=y_dim,
            hidden_dims=list(hidden_dims), likelihood=self.likelihood.name,
            likelihood_kwargs=self.likelihood.hparams(), beta=self.beta,
            learned_prior=learned_prior, activation=activation, guide_flows=guide_flows,
        )

    # -- pieces -----------------------------------------------------------------------------
    def features(self, y: torch.Tensor) -> torch.Tensor:
        """The condition as the networks see it: one-hot labels, or the vector itself."""
        return one_hot(y, self.num_classes) if self.num_classes else y.float()

    def prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of p(z | y) from condition features ``c``."""
        if self.prior_net is None:
            loc = c.new_zeros(*c.shape[:-1], self.z_dim)
            return loc, torch.ones_like(loc)
        return split_loc_scale(self.prior_net(c))

    @takes_data
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters ``(z_loc, z_scale)`` of q(z | x, y), each of shape ``(N, z_dim)``.

        ``x`` (N, *x_shape) and ``y`` (N,) labels or (N, y_dim) vectors are
        checked and cast as ``pvae.fit`` does (``ValueError`` naming the problem).
        """
        return self._encode(x, y)[:2]

    def _encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """``(z_loc, z_scale, h)`` with the default encoder (h: its last hidden layer, the
        IAF's context); ``(z_loc, z_scale)`` with a custom one."""
        c = self.features(y)
        if not self._default_encoder:
            return self._checked_encoder_output(self.encoder(x, c),
                                                x.shape[: x.dim() - len(self.x_shape)])
        x = self._encoder_input(x)
        h = x.reshape(*x.shape[: x.dim() - len(self.x_shape)], -1)
        out, hidden = self.encoder.with_hidden(cat_broadcast(h, c))
        return (*split_loc_scale(out), hidden)  # (z_loc, z_scale, h: the IAF's context)

    def decode(self, z: torch.Tensor, y: torch.Tensor, *, mean: bool = False):
        """p(x | z, y): the distribution, or its mean with ``mean=True``."""
        params = self._likelihood_params(self.decoder(cat_broadcast(z, self.features(y))))
        return self.likelihood.mean(params) if mean else self.likelihood(params)

    def _labels(self, y, n: int) -> torch.Tensor:
        """The condition for ``n`` draws: one label or vector for all, or one per draw."""
        if y is None:
            raise ValueError("the CVAE generates for a condition: pass y (a label, or n of them"
                             + (")" if self.num_classes else "; here vectors of size "
                                f"y_dim={self.y_dim})"))
        if self.num_classes:
            return draw_labels(y, n, self.num_classes, self.device)
        n = num_draws(n)
        y = torch.as_tensor(y, device=self.device).float()
        if y.dim() == 1 and y.shape[0] == self.y_dim:
            y = y.expand(n, -1)
        if tuple(y.shape) != (n, self.y_dim):
            raise ValueError(f"the condition has shape {tuple(y.shape)}: give one vector of "
                             f"size y_dim={self.y_dim} (for all {n} draws) or {n} of them, "
                             f"shape ({n}, {self.y_dim})")
        if not torch.isfinite(y).all():
            raise ValueError("the condition y holds NaN or infinite values")
        return y

    @takes_data
    @torch.no_grad()
    def embed(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.encode(x, y)[0]

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor, y) -> torch.Tensor:
        y = self._labels(y, z.shape[0])
        return self.decode(z, y, mean=True)

    @takes_data
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean reconstruction of x given its condition y, shape ``(N, *x_shape)``.

        Inputs are checked and cast as ``pvae.fit`` does.
        """
        return self.decode(self.encode(x, y)[0], y, mean=True)

    @torch.no_grad()
    def sample(self, n: int, y, *, mean: bool = True) -> torch.Tensor:
        """``n`` draws for condition ``y``, shape ``(n, *x_shape)``.

        ``y``: one label (or one vector, with ``y_dim``) gives ``n`` draws of that
        condition; ``n`` of them give one draw each. Another number of labels,
        fractional labels (``y=1.5``) or labels out of range raise ``ValueError``.
        """
        y = self._labels(y, n)
        loc, scale = self.prior(self.features(y))
        z = loc + scale * torch.randn_like(loc)
        params = self._likelihood_params(self.decoder(cat_broadcast(z, self.features(y))))
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

    # -- Pyro program ----------------------------------------------------------------------------
    def _y_prior(self, n: int, device) -> dist.Distribution:
        if self.num_classes:
            return dist.Categorical(logits=torch.zeros(n, self.num_classes, device=device))
        return dist.Normal(torch.zeros(n, self.c_dim, device=device), 1.0).to_event(1)

    @pyro_method
    def model(self, x: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None, *,
              batch_size: Optional[int] = None):
        """p(z | y) p(x | z, y); ``x=None`` generates (``y=None``: uniform labels)."""
        n, device = self._batch(x, y, batch_size=batch_size)
        decoder = self.decoder
        with self.data_plate(n, device):
            with poutine.mask(mask=False), ObservedSites() as sites:  # given, not modelled
                y = pyro.sample("y", self._y_prior(n, device), obs=y)
            if not self.num_classes and not sites.observed["y"]:
                raise ValueError("a CVAE with a continuous condition needs y: pass it, or "
                                 "condition site 'y' on it")
            c = self.features(y)
            loc, scale = self.prior(c)
            with self.kl_scale():
                z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))
            params = self._likelihood_params(decoder(cat_broadcast(z, c)))
            return pyro.sample("x", self.likelihood(params), obs=x)

    @pyro_method
    def guide(self, x: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None, *,
              batch_size: Optional[int] = None):
        """q(z | x, y)."""
        if x is None or y is None:
            raise ValueError("the CVAE guide needs data and condition: call guide(x, y)")
        with self.data_plate(*self._batch(x)):
            qz = self.posterior(*self._encode(x, y))
            with self.kl_scale():
                return pyro.sample("z", qz)

    # -- checks ------------------------------------------------------------------------------------
    def check_part(self, name: str, y: torch.Tensor, n: int) -> None:
        """The condition: ``n`` class labels, or ``(n, y_dim)`` finite vectors."""
        if self.num_classes:
            check_labels(y, self.num_classes, n)
            return
        if y.dim() != 2 or y.shape != (n, self.y_dim):
            raise ValueError(
                f"the condition has shape {tuple(y.shape)}, but the model expects "
                f"({n}, {self.y_dim}) (y_dim={self.y_dim})"
            )
        if not torch.isfinite(y).all():
            raise ValueError("the condition y holds NaN or infinite values")

    def _parts_message(self, given: int) -> str:
        return "a CVAE trains on pairs: pass (x, y) with one condition per row"
