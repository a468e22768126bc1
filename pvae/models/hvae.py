"""Hierarchical VAE: L stochastic layers, bottom-up or Ladder-style top-down guide.

The top-down guide's merges of evidence and prior (Sønderby et al. 2016, eq. 18-19;
Vahdat & Kautz 2020) are plain functions in :mod:`pvae.models.merges`, tested on their
own. Every network is a :class:`pvae.nets.MLP`, with per-point layer normalisation
(``norm="layer"``) as pvae's stand-in for the paper's batch normalisation.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence, Union

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method
from torch import nn

from pvae import likelihoods as lk
from pvae import priors
from pvae.flows import GaussianPosterior
from pvae.models.base import PVAEModel, num_draws, takes_data
from pvae.models.checks import Shape, check_hparams
from pvae.models.merges import (JOINT_MERGES, MERGES, JointNetwork, Merge, check_merge,
                                precision_weighted)
from pvae.models.registry import register
from pvae.nets import MLP, NORMS, activation as make_activation, split_loc_scale


Norm = Literal["none", "layer"]
__all__ = ["HierarchicalVAE", "precision_weighted"]


#: Why the bottom-up guide (more than one layer) cannot take the VampPrior.
VAMP_BOTTOM_UP = ("with guide='bottom_up', q(z_L | x) integrates over the layers below "
                  "and has no closed form to push the pseudo-inputs through; use "
                  "guide='top_down' (whose q(z_L | x) is a Gaussian of x) or prior='mog'")


@register
class HierarchicalVAE(PVAEModel):
    r"""VAE with L stochastic layers (Burda et al. 2015; Sønderby et al. 2016).

    Generative story, for each data point in ``pyro.plate("data")``::

        z_L ~ p(z_L)                                  # site "zL"; Normal(0, I) by default
        z_l ~ Normal(top_down_l(z_{l+1}))             # sites "z{L-1}", ..., "z1"
        x   ~ likelihood(decoder(z_1))                # site "x"

    Guides (``guide=``):

    ``"bottom_up"`` (the default)
        q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}) (Burda et al. 2015). Each
        layer depends on the one below, drawn before it; use ``elbo="trace"``.
    ``"top_down"`` (Ladder VAE)
        A deterministic bottom-up pass d_1 = f_1(x), d_l = f_l(d_{l-1}) gives
        each layer a Gaussian "likelihood" term; then, from the top, q(z_L | x)
        is that term and q(z_l | z_{l+1}, x) combines it (``merge``) with the
        model's own p(z_l | z_{l+1}): the deterministic paths of
        model and guide are shared, and computed from the guide's own draw of
        z_{l+1}. Sites are drawn in the model's order, so ``TraceMeanField_ELBO``
        applies.

    Training the top-down guide (measured in ``benchmarks/VARIANTS.md``): with
    Sønderby et al.'s precision-weighted merge (``merge="precision"``, the
    default) the guide's mean follows the bottom-up evidence only by its weight
    sigma_p^2 / (sigma_p^2 + sigma_hat^2). While the decoder still draws the mean
    image, shrinking the prior's scale removes z1's noise and lowers the KL at
    once; the weight falls to ~0.001 within an epoch and with it the gradient that
    would teach the bottom-up pass. ``merge="residual"`` (Vahdat & Kautz 2020)
    keeps that gradient. Both share a second weakness: q(z_l | z_{l+1}, x) follows
    p(z_l | z_{l+1}) at the guide's own draw of z_{l+1}, so an upper layer that
    is still uninformative is noise in the layer below, and training cuts it off;
    the analytic per-layer KL (``elbo="meanfield"``) softens this in small
    networks. Upper layers still collapsed in the 784-256-256 networks and in
    every five-layer ladder tried. ``configs/ladder_top_down*.yaml`` use
    ``merge: residual`` and ``elbo: meanfield``; see :mod:`pvae.models.merges`.
    KL balancing during warm-up (``pvae.fit(kl_balance=True)``, :mod:`pvae.kl_balance`)
    keeps z2 in use (about 2 nats) with the ELBO as the objective after warm-up, but
    did not raise the log-likelihood, and the layers above z2 of five still collapse
    when warm-up ends; free bits (``pvae.fit(free_bits=0.1)``, not the ELBO) kept all
    five layers active. ``merge="joint"`` removes the second weakness at its source: q's
    parameters are a linear layer of the bottom-up features and the top-down state, so
    the guide can cancel or use what the draw of z_{l+1} adds; z2 stays in use without
    changing the objective (100 epochs on MNIST: z2 7.4 nats, test log p(x) -86.15 against
    -87.48 with ``"residual"``, its ELBO level with the bottom-up guide's but its
    log-likelihood 0.95 nats below it).
    Count each layer's active units with
    :func:`pvae.models.ladder_units.layer_active_units` (q(z_l | x) alone).

    ``evaluate.parts`` and the training history report the KL of each layer
    (``kl_z1``, ``kl_z2``, ...).

    Parameters
    ----------
    z_dims
        Latent sizes from the bottom layer (z1, next to x) to the top (zL).
    hidden_dims
        Hidden sizes of every deterministic network (MLPs on flattened x).
    prior, prior_components
        p(z_L) of the top layer, as for :class:`pvae.VAE` (:mod:`pvae.priors`).
        ``"vamp"`` pushes the pseudo-inputs through q(z_L | x), which is a
        Gaussian of x only with ``guide="top_down"`` or one layer (the
        bottom-up guide's q(z_L | x) integrates over the layers below it:
        ``ValueError``).
    norm
        ``"layer"``: layer normalisation after every hidden linear layer of
        every network (per data point; see :class:`pvae.nets.MLP`); ``"none"``:
        plain MLPs. Default (None): ``"layer"`` for ``guide="top_down"``,
        ``"none"`` for ``"bottom_up"``. Batch normalisation, as in the paper,
        is not offered: it ties the points of a batch together.
    merge
        How the top-down guide combines its evidence with p(z_l | z_{l+1}):
        ``"precision"`` (Sønderby et al. 2016; the default, as pvae built it
        before this option), ``"residual"`` (Vahdat & Kautz 2020), or ``"joint"`` /
        ``"joint_residual"``: q's parameters (outright, or relative to the prior) from a
        network of the bottom-up features d_l(x) and the top-down state h_l(z_{l+1})
        (the last hidden layer of p(z_l | z_{l+1})'s network; Vahdat & Kautz 2020,
        Maaløe et al. 2019), which can ignore the draw of z_{l+1} or use it; see
        :mod:`pvae.models.merges`. Only ``"precision"`` with ``guide="bottom_up"``.
    Others as for :class:`pvae.VAE`.

    Raises
    ------
    ValueError
        A bad ``guide``, ``norm``, ``merge``, latent or hidden size (before anything is built).
    """

    config_name = "hvae"

    def __init__(
        self,
        x_dim: Shape,
        z_dims: Sequence[int] = (32, 16),
        hidden_dims: Sequence[int] = (256,),
        likelihood: Union[str, lk.Likelihood] = "bernoulli",
        beta: float = 1.0,
        *,
        guide: Literal["top_down", "bottom_up"] = "bottom_up",
        activation: str = "relu",
        likelihood_kwargs: Optional[dict] = None,
        guide_flows: int = 0,
        prior: priors.PriorName = "standard",
        prior_components: Optional[int] = None,
        norm: Optional[Norm] = None,
        merge: Merge = "precision",
    ) -> None:
        super().__init__()
        check_hparams(z_dims=z_dims, hidden_dims=hidden_dims, beta=beta, guide_flows=guide_flows)
        z_dims = tuple(int(z) for z in z_dims)
        priors.check(prior, prior_components, {"vamp": VAMP_BOTTOM_UP} if (
            guide == "bottom_up" and len(z_dims) > 1) else None, "HierarchicalVAE")
        if guide not in ("top_down", "bottom_up"):
            raise ValueError(f"guide must be 'top_down' or 'bottom_up', got {guide!r}")
        check_merge(merge, guide)
        if norm is None:
            norm = "layer" if guide == "top_down" else "none"
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))} (or None for the "
                             f"guide's default), got {norm!r}")
        self._setup_likelihood(x_dim, likelihood, likelihood_kwargs)
        hidden_dims = tuple(int(h) for h in hidden_dims)
        self.z_dims, self.guide_type, self.beta, self.norm = z_dims, guide, float(beta), norm
        self.merge = merge
        self.latent_sites = tuple(f"z{i + 1}" for i in range(len(z_dims)))
        x_numel = math.prod(self.x_shape)
        L, h = len(z_dims), hidden_dims[-1]
        self._default_decoder = True
        self.decoder = MLP(z_dims[0], hidden_dims[::-1], self.likelihood.num_params * x_numel,
                           activation, norm)
        # p(z_l | z_{l+1}) for l = 1 .. L-1 (index l-1)
        self.top_down = nn.ModuleList(
            MLP(z_dims[i + 1], hidden_dims, 2 * z_dims[i], activation, norm) for i in range(L - 1)
        )
        if guide == "top_down":  # deterministic d_l = f_l(d_{l-1}) and its Gaussian term
            self.up = nn.ModuleList(
                nn.Sequential(MLP(x_numel if i == 0 else h, hidden_dims, h, activation, norm),
                              make_activation(activation))
                for i in range(L)
            )
            # the Gaussian term of each layer; with a joint merge only the top's (the lower
            # layers' come from a network of d_l and the top-down state: self.joint)
            heads = z_dims[-1:] if merge in JOINT_MERGES else z_dims
            self.up_heads = nn.ModuleList(nn.Linear(h, 2 * z) for z in heads)
            if merge in JOINT_MERGES:  # q(z_l | z_{l+1}, x) for l = 1 .. L-1 (index l-1)
                self.joint = nn.ModuleList(
                    JointNetwork(h, self.top_down[i].hidden_dim, z_dims[i],
                                 residual=JOINT_MERGES[merge]) for i in range(L - 1))
        else:
            self.up = nn.ModuleList(
                MLP(x_numel if i == 0 else z_dims[i - 1], hidden_dims, 2 * z_dims[i], activation,
                    norm)
                for i in range(L)
            )
        self.posteriors = nn.ModuleList(  # IAF context: each layer's hidden features
            GaussianPosterior(z, guide_flows, hidden_dims[-1]) for z in z_dims)
        self.latent_prior = priors.build(prior, prior_components, z_dim=z_dims[-1],
                                         x_shape=self.x_shape, likelihood=self.likelihood)
        self._remember(
            x_dim=list(self.x_shape), z_dims=list(z_dims), hidden_dims=list(hidden_dims),
            likelihood=self.likelihood.name, likelihood_kwargs=self.likelihood.hparams(),
            beta=self.beta, guide=guide, activation=activation, guide_flows=guide_flows,
            prior=prior, prior_components=self.latent_prior.num_components,
            norm=norm, merge=merge,
        )

    @classmethod
    def saved_hparams(cls, hparams: dict) -> dict:
        """Files saved before ``norm`` existed were built without normalisation, and
        before ``merge`` existed with the precision-weighted merge."""
        hparams.setdefault("norm", "none")
        hparams.setdefault("merge", "precision")
        return super().saved_hparams(hparams)

    @property
    def mean_field(self) -> bool:
        """Mean-field only with the top-down guide and no flows."""
        return self.guide_type == "top_down" and super().mean_field

    @property
    def code_dim(self) -> int:
        """Size of the bottom latent layer ``"z1"`` (what :meth:`embed` gives)."""
        return self.z_dims[0]

    @property
    def not_mean_field_reason(self) -> str:
        if self.guide_type == "bottom_up":
            return "its bottom-up guide draws each layer given the one below"
        return "it has normalising flows"

    # -- pieces -----------------------------------------------------------------------------------
    def pz(self, n: int, device: Optional[torch.device] = None):
        """p(z_L) of the top layer, batch shape ``(n,)`` (:mod:`pvae.priors`)."""
        encode = priors.guide_gaussian(self._guide_body, self.latent_sites[-1])
        return self.latent_prior((n,), device or self.device, encode)

    def prior(self, layer: int, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters of p(z_layer | z_{layer+1}) (layers counted from 1)."""
        return split_loc_scale(self.top_down[layer - 1](z_above))

    def decode(self, z1: torch.Tensor, *, mean: bool = False):
        """p(x | z1): the distribution, or its mean with ``mean=True``."""
        params = self._likelihood_params(self.decoder(z1))
        return self.likelihood.mean(params) if mean else self.likelihood(params)

    @takes_data
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Posterior means of z1 .. zL (top-down: each given the layer above's mean)."""
        with pyro.poutine.block(), pyro.poutine.trace() as tr:
            self._guide_body(x, use_mean=True)
        return [tr.trace.nodes[name]["value"] for name in self.latent_sites]

    @takes_data
    @torch.no_grad()
    def embed(self, x: torch.Tensor, *rest) -> torch.Tensor:
        """Means of the bottom layer z1 (the one the decoder reads)."""
        return self.encode(x)[0]

    @torch.no_grad()
    def decode_mean(self, z1: torch.Tensor) -> torch.Tensor:
        return self.decode(z1, mean=True)

    @takes_data
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)[0], mean=True)

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True) -> torch.Tensor:
        z = self.pz(num_draws(n)).sample()
        for layer in range(len(self.z_dims) - 1, 0, -1):
            loc, scale = self.prior(layer, z)
            z = loc + scale * torch.randn_like(loc)
        px = self.decode(z)
        return px.mean if mean else px.sample()

    # -- Pyro program ------------------------------------------------------------------------------
    @pyro_method
    def model(self, x: Optional[torch.Tensor] = None, *, batch_size: Optional[int] = None):
        """p(zL) p(zL-1 | zL) ... p(z1 | z2) p(x | z1)."""
        n, device = self._batch(x, batch_size=batch_size)
        L = len(self.z_dims)
        decoder = self.decoder
        plate = self.data_plate(n, device)
        with plate, self.kl_scale():
            z = pyro.sample(f"z{L}", self.pz(n, device))
            for layer in range(L - 1, 0, -1):
                loc, scale = self.prior(layer, z)
                z = pyro.sample(f"z{layer}", dist.Normal(loc, scale).to_event(1))
        with plate:
            return pyro.sample("x", self.likelihood(self._likelihood_params(decoder(z))), obs=x)

    def evidence(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Top-down guide: the bottom-up pass's Gaussian terms ``(mu_hat_l, sigma_hat_l)``
        of layers l = 1 .. L, each of shape (N, z_dims[l-1]) (Sønderby et al. 2016, eq. 16-17);
        with ``merge="residual"``, layers below the top are ``(d_mu_l, d_sigma_l)`` relative
        to p(z_l | z_{l+1}); the top layer's is q(z_L | x) itself. With a joint merge
        (``"joint"``, ``"joint_residual"``) the lower layers' terms depend on z_{l+1} as well
        (:class:`pvae.models.merges.JointNetwork`), and the list holds the top layer's only.
        """
        if self.guide_type != "top_down":
            raise ValueError("evidence() is the top-down guide's bottom-up pass; this model "
                             "has guide='bottom_up'")
        return self._evidence_with_contexts(x)[0]

    def _evidence_with_contexts(self, x: torch.Tensor) -> tuple[list, list]:
        """:meth:`evidence` and each layer's hidden features (the IAF context)."""
        h, contexts = self._flat(x), []
        for up in self.up:
            h = up(h)
            contexts.append(h)
        heads = self.up_heads
        return ([split_loc_scale(head(c)) for head, c in zip(heads, contexts[-len(heads):])],
                contexts)

    def _guide_body(self, x: torch.Tensor, use_mean: bool = False):
        L = len(self.z_dims)
        h = self._flat(x)

        def draw(layer, loc, scale, context):
            q = self.posteriors[layer - 1](loc, scale, context)
            if use_mean:
                return pyro.sample(f"z{layer}", dist.Delta(loc).to_event(1))
            return pyro.sample(f"z{layer}", q)

        if self.guide_type == "bottom_up":
            for layer in range(1, L + 1):
                out, context = self.up[layer - 1].with_hidden(h)
                h = draw(layer, *split_loc_scale(out), context)
            return
        evidence, contexts = self._evidence_with_contexts(x)
        z = draw(L, *evidence[-1], contexts[-1])
        for layer in range(L - 1, 0, -1):
            if self.merge in JOINT_MERGES:
                out, state = self.top_down[layer - 1].with_hidden(z)
                loc, scale = self.joint[layer - 1](contexts[layer - 1], state,
                                                   *split_loc_scale(out))
            else:
                loc, scale = MERGES[self.merge](*evidence[layer - 1], *self.prior(layer, z))
            z = draw(layer, loc, scale, contexts[layer - 1])

    @pyro_method
    def guide(self, x: Optional[torch.Tensor] = None, *, batch_size: Optional[int] = None):
        """Top-down (Ladder) or bottom-up q(z1, ..., zL | x)."""
        if x is None:
            raise ValueError("the guide needs data: call guide(x)")
        with self.data_plate(*self._batch(x)), self.kl_scale():
            self._guide_body(x)
