"""The variational autoencoder as a Pyro model/guide pair."""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence, Union

import pyro
import torch
from pyro.nn import pyro_method
from torch import nn

from pvae import likelihoods as lk
from pvae import priors
from pvae.flows import GaussianPosterior
from pvae.models.base import PVAEModel, takes_data
from pvae.models.checks import Shape, check_hparams, num_draws
from pvae.models.registry import register
from pvae.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder

@register
class VAE(PVAEModel):
    r"""Variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014).

    Generative story, for each data point ``n`` in ``pyro.plate("data")``::

        z_n ~ p(z)                               # site "z", shape (z_dim,); Normal(0, I)
        x_n ~ likelihood(decoder(z_n))           # site "x", shape x_shape

    Guide (amortised, mean-field)::

        z_n ~ Normal(encoder(x_n))               # site "z"

    Parameters
    ----------
    x_dim
        Shape of one data point: an int for vectors, ``(C, H, W)`` for images.
    z_dim
        Number of latent dimensions.
    hidden_dims
        Hidden layer sizes of the default MLP encoder (the decoder mirrors
        them; default ``(400,)``), or the channels of the default
        convolutional networks (default ``(32, 64)``).
    likelihood
        A name from :func:`pvae.likelihoods.names` or a
        :class:`pvae.likelihoods.Likelihood` instance.
    encoder
        Optional ``nn.Module`` mapping x to ``(z_loc, z_scale)``.
    decoder
        Optional ``nn.Module`` mapping z to the likelihood's parameters (for
        a Gaussian with fixed scale, just the mean; see :mod:`pvae.likelihoods`).
    beta
        Weight of the KL term (beta-VAE, Higgins et al. 2017): the latent
        site is scaled by ``beta`` in both model and guide.
    arch
        ``"mlp"`` or ``"conv"`` default networks; ``None`` picks conv for
        ``(C, H, W)`` shapes and MLP otherwise.
    activation
        Activation of the default networks.
    likelihood_kwargs
        Options for a likelihood given by name, e.g. ``{"scale": 0.1}``.
    guide_flows
        Number of inverse autoregressive flows on q(z | x) (0: the diagonal
        Gaussian, mean-field), conditioned on the encoder's last hidden layer and
        initialised near the identity (:mod:`pvae.flows`, Kingma et al. 2016).
        With flows, use ``elbo="trace"``.
    prior
        p(z) (:mod:`pvae.priors`): ``"standard"`` Normal(0, I); ``"vamp"``, the
        VampPrior (Tomczak & Welling 2018), a mixture of q(z | u_k) at K learned
        pseudo-inputs; ``"mog"``, a mixture of K learned diagonal Gaussians.
        The learned priors' KL is estimated by Monte Carlo (also under
        ``elbo="meanfield"``, which warns that it is).
    prior_components
        K for ``"vamp"`` (default 500) or ``"mog"`` (default 10); ``None`` for
        ``"standard"``.

    Raises
    ------
    ValueError
        For a non-positive ``z_dim`` or ``beta``, bad ``hidden_dims``, ``x_dim``
        or ``arch``, a likelihood name or option pvae does not know, or an
        unknown ``prior`` or bad ``prior_components``.
    """

    config_name = "vae"

    def __init__(
        self,
        x_dim: Shape,
        z_dim: int = 20,
        hidden_dims: Optional[Sequence[int]] = None,
        likelihood: Union[str, lk.Likelihood] = "bernoulli",
        encoder: Optional[nn.Module] = None,
        decoder: Optional[nn.Module] = None,
        beta: float = 1.0,
        *,
        arch: Optional[Literal["mlp", "conv"]] = None,
        activation: str = "relu",
        likelihood_kwargs: Optional[dict] = None,
        guide_flows: int = 0,
        prior: priors.PriorName = "standard",
        prior_components: Optional[int] = None,
    ) -> None:
        super().__init__()
        check_hparams(z_dim=z_dim, beta=beta, guide_flows=guide_flows)
        priors.check(prior, prior_components)
        self.z_dim = z_dim
        self.beta = float(beta)
        self._setup_likelihood(x_dim, likelihood, likelihood_kwargs)
        if arch is None:
            arch = "conv" if len(self.x_shape) == 3 else "mlp"
        if hidden_dims is None:
            hidden_dims = (32, 64) if arch == "conv" else (400,)
        check_hparams(hidden_dims=hidden_dims)
        hidden_dims = tuple(int(h) for h in hidden_dims)
        if arch not in ("mlp", "conv"):
            raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")
        if arch == "conv" and len(self.x_shape) != 3:
            raise ValueError(f"arch='conv' needs x_dim=(C, H, W), got {self.x_shape}")
        self._default_encoder = encoder is None
        self._default_decoder = decoder is None
        out_dim = self.likelihood.num_params * math.prod(self.x_shape)
        if encoder is None:
            encoder = (
                ConvEncoder(self.x_shape, z_dim, hidden_dims, activation)
                if arch == "conv"
                else MLPEncoder(self.x_shape, z_dim, hidden_dims, activation)
            )
        if decoder is None:
            decoder = (
                ConvDecoder(z_dim, self.x_shape, self.likelihood.num_params * self.x_shape[0],
                            hidden_dims[::-1], activation)
                if arch == "conv"
                else MLPDecoder(z_dim, hidden_dims[::-1], out_dim, activation)
            )
        self.encoder = encoder
        self.decoder = decoder
        # IAF context: the default encoder's last hidden layer (Kingma et al. 2016)
        self.posterior = GaussianPosterior(
            z_dim, guide_flows, encoder.hidden_dim if self._default_encoder else None)
        self.latent_prior = priors.build(prior, prior_components, z_dim=z_dim,
                                         x_shape=self.x_shape, likelihood=self.likelihood)
        self._remember(
            rebuildable=self._default_encoder and self._default_decoder,
            x_dim=list(self.x_shape), z_dim=z_dim, hidden_dims=list(hidden_dims),
            likelihood=self.likelihood.name, likelihood_kwargs=self.likelihood.hparams(),
            beta=self.beta, arch=arch, activation=activation, guide_flows=guide_flows,
            prior=prior, prior_components=self.latent_prior.num_components,
        )

    # -- networks ---------------------------------------------------------------------
    @takes_data
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters ``(z_loc, z_scale)`` of q(z | x) (of the base Gaussian, with flows).

        ``x``: shape ``(N, *x_shape)``, checked and cast as ``pvae.fit`` does
        (``ValueError`` / ``TypeError`` naming the problem). Returns two
        tensors of shape ``(N, z_dim)``.
        """
        if self._default_encoder:
            return self.encoder(self._encoder_input(x))
        return self._checked_encoder_output(self.encoder(x), x.shape[: x.dim() - len(self.x_shape)])

    def decoder_params(self, z: torch.Tensor):
        """The likelihood's parameters for latent codes ``z``."""
        return self._likelihood_params(self.decoder(z))

    def decode(self, z: torch.Tensor, *, mean: bool = False):
        """p(x | z): the distribution, or its mean with ``mean=True``."""
        params = self.decoder_params(z)
        return self.likelihood.mean(params) if mean else self.likelihood(params)

    @takes_data
    @torch.no_grad()
    def embed(self, x: torch.Tensor, *rest) -> torch.Tensor:
        return self.encode(x)[0]

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z, mean=True)

    @takes_data
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """E[x | z = E_q[z | x]]: the mean reconstruction of each input, shape (N, *x_shape).

        ``x`` is checked and cast as ``pvae.fit`` does (``ValueError`` /
        ``TypeError`` naming the problem).
        """
        return self.decode(self.encode(x)[0], mean=True)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> torch.Tensor:
        """``n`` draws from the model, shape ``(n, *x_shape)``: decoder means (default) or
        sampled x. ``n`` must be a positive int (``ValueError``)."""
        z = self.pz(num_draws(n)).sample()
        params = self.decoder_params(z)
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

    def pz(self, n: int, device: Optional[torch.device] = None):
        """p(z) with batch shape ``(n,)``, event shape ``(z_dim,)`` (:mod:`pvae.priors`)."""
        return self.latent_prior((n,), device or self.device, self.encode)

    # -- Pyro program -------------------------------------------------------------------
    @pyro_method
    def model(self, x: Optional[torch.Tensor] = None, *, batch_size: Optional[int] = None):
        """p(z) p(x | z). With ``x=None`` it generates ``batch_size`` data points."""
        n, device = self._batch(x, batch_size=batch_size)
        decoder = self.decoder  # registers the decoder with Pyro (pyro.module)
        likelihood = self.likelihood
        with self.data_plate(n, device):
            with self.kl_scale():
                z = pyro.sample("z", self.pz(n, device))
            return pyro.sample("x", likelihood(self._likelihood_params(decoder(z))), obs=x)

    @pyro_method
    def guide(self, x: Optional[torch.Tensor] = None, *, batch_size: Optional[int] = None):
        """q(z | x) = Normal(encoder(x))."""
        if x is None:
            raise ValueError("the guide needs data: call guide(x)")
        with self.data_plate(*self._batch(x)):
            qz = self.posterior(*(self.encoder.with_hidden(self._encoder_input(x))
                                  if self._default_encoder else self.encode(x)))
            with self.kl_scale():
                return pyro.sample("z", qz)
