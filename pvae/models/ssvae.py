"""Semi-supervised VAE (Kingma et al. 2014, model M2): y observed or latent."""

from __future__ import annotations

import math
from typing import Iterator, Optional, Sequence, Union

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import pyro_method

from pvae import likelihoods as lk
from pvae import priors
from pvae.batching import num_batches
from pvae.flows import GaussianPosterior
from pvae.models.base import Batch, Classifier, ObservedSites, PVAEModel, auxiliary, takes_data
from pvae.models.cvae import draw_labels
from pvae.models.checks import Shape, check_hparams, check_labels
from pvae.models.registry import register
from pvae.nets import MLP, cat_broadcast, one_hot, split_loc_scale


@register
class SemiSupervisedVAE(Classifier, PVAEModel):
    r"""Semi-supervised VAE, model M2 of Kingma et al. (2014).

    Generative story, for each data point in ``pyro.plate("data")``::

        y_n ~ Categorical(uniform)               # site "y": observed if labelled, else latent
        z_n ~ p(z)                               # site "z"; Normal(0, I) by default
        x_n ~ likelihood(decoder(z_n, y_n))      # site "x"

    Guide::

        y_n ~ Categorical(classifier(x_n))       # site "y", only when unlabelled
        z_n ~ Normal(encoder(x_n, y_n))          # site "z"

    For labelled data the model also scores the classifier on the label,
    ``aux_weight * log q(y_n | x_n)`` (site ``"y_aux"``, Kingma et al.'s
    alpha term), so that q(y | x) learns from labels directly. Evaluation
    skips this auxiliary site, and the optional class-balance site
    ``"y_balance"`` on unlabelled batches (``balance_weight``, below).

    The guide samples ``y`` as written, so every Pyro ELBO runs it without
    warnings; enumeration is asked for where it is wanted: with
    ``elbo="enum"`` (:class:`pvae.elbos.ParallelEnum_ELBO`, a ``TraceEnum_ELBO``
    that applies ``config_enumerate`` to the guide) the unlabelled ELBO sums
    over all classes exactly, as does :func:`pvae.evaluate.log_likelihood`;
    with ``trace``/``tracegraph`` it is sampled. In your own SVI loop:
    ``SVI(m.model, config_enumerate(m.guide), optim, TraceEnum_ELBO())``.

    Training data is ``(x, y)`` with ``y == -1`` for unlabelled points. Three
    ways to form the optimiser steps (``batching``), measured on MNIST with
    100 labels in ``benchmarks/VARIANTS.md``:

    ``"balanced"`` (default)
        Each step pairs a batch of unlabelled points with a batch of labelled
        ones (cycling through the labelled set, which is often small), and a
        labelled point weighs as much as an unlabelled one in the step, as if
        the labelled set were as large as the unlabelled one. This is how
        most M2 implementations train: labelled points count
        N_unlabelled / N_labelled times more than in Kingma et al.'s
        objective as written. The best of the three on MNIST pixels.
    ``"paired"``
        The same pairs, each batch's plate sized to its own set: exactly
        Kingma et al.'s objective (the sum over all labelled and unlabelled
        points). Adam normalises the labels' small share of every gradient
        away.
    ``"separate"``
        Labelled-only and unlabelled-only steps, the labelled ones spread
        evenly through the epoch, every point weighted alike and seen once
        per epoch, as in Pyro's tutorial. The same objective as
        ``"paired"``, with a rare, large labelled step.

    In short training budgets on MNIST pixels the unlabelled images do not yet
    improve q(y | x) over the same classifier trained on the labels alone
    (``benchmarks/VARIANTS.md`` gives every measured figure).

    Stacked on a VAE's latent codes (Kingma et al.'s M1+M2), they do. Train a
    :class:`pvae.VAE` (M1) on all the images, then this model on its codes,
    drawn afresh each step by :class:`pvae.latent.Features`::

        binarize = pvae.data.binarize
        m1 = pvae.VAE(784, 50, hidden_dims=(500, 500), activation="softplus")
        pvae.fit(m1, x, elbo="meanfield", epochs=100, batch_size=100, transform=binarize)
        m2 = pvae.SemiSupervisedVAE(50, 10, z_dim=10, likelihood="gaussian",
                                    likelihood_kwargs={"scale": "predicted"}, aux_weight=10.0,
                                    balance_weight=20.0)
        codes = pvae.latent.Features(m1, transform=binarize)
        pvae.fit(m2, (x, y), elbo="enum", epochs=80, batch_size=200, lr=2e-3, transform=codes)
        pvae.fit(m2, (x, y), elbo="enum", epochs=10, batch_size=200, lr=2e-4, transform=codes)
        probs = m2.classify(pvae.latent.Features(m1, sample=False)(binarize(x_test)))

    From the command line: ``configs/mnist_m1.yaml``, then ``configs/mnist_m1m2.yaml``
    (``data.features`` names the M1's run folder).

    ``benchmarks/VARIANTS.md`` gives this recipe's measured accuracies (with 100
    and 3000 labels, by Pyro's tutorial's protocol and after the last epoch),
    its run times and the schedules it was chosen over. The class-balance term
    (``balance_weight``) goes beyond Kingma et al.'s M2: it penalises the KL of
    an unlabelled batch's mean q(y | x) from the uniform p(y), against runs that
    put too many unlabelled images into one class. The recipe's
    ``aux_weight=10`` and higher rate reach in 50 M2 epochs what the default
    ``aux_weight`` 50 at lr 1e-3 reached in 70.

    Parameters
    ----------
    x_dim, z_dim, hidden_dims, likelihood, beta, likelihood_kwargs, guide_flows, activation
        As for :class:`pvae.VAE` (networks are MLPs on flattened x).
    num_classes
        Number of classes.
    aux_weight
        Weight per labelled data point of the classification term. Kingma et
        al. use alpha = 0.1 N over the labelled mean, i.e. 0.1 N / N_labelled
        per point (50 for 100 labels in 50,000); Pyro's tutorial uses 46.
    classifier_hidden_dims
        Hidden sizes of q(y | x); default ``hidden_dims``.
    batching
        ``"balanced"``, ``"paired"`` or ``"separate"`` steps, as above.
    prior, prior_components
        p(z): ``"standard"`` Normal(0, I) or ``"mog"``, a mixture of K learned
        Gaussians (:mod:`pvae.priors`). p(z) does not depend on y, so summing
        y out (``elbo="enum"``) is unchanged. ``"vamp"`` is refused
        (``ValueError``): :attr:`refused_priors` says why.
    balance_weight
        Weight per unlabelled data point of a class-balance term (default 0:
        off, Kingma et al.'s M2 as written). For an unlabelled batch the model
        adds ``-balance_weight * KL(q_mean || p(y))`` per point (site
        ``"y_balance"``), where ``q_mean`` is the batch's mean of q(y | x) and
        p(y) the uniform prior: it penalises a classifier that puts more of
        the unlabelled data in some classes than the prior does. Training
        only, like the classifier term; ``log p(x)`` does not include it.
        Suits data whose classes are about equally frequent.
    """

    batch_parts = ("x", "y")
    optional_parts = ("y",)  # unlabelled data: x alone, or y == -1
    config_name = "ssvae"
    shardable = False  # its steps pair labelled and unlabelled batches (``batching``)
    #: Priors this model cannot take (:mod:`pvae.priors`), and why.
    refused_priors = {"vamp": (
        "its encoder is q(z | x, y), so pseudo-inputs would need labels too, and p(z) "
        "would then depend on y, which M2's p(y) p(z) keeps independent; use prior='mog' "
        "(a learned mixture that leaves p(z) free of y)")}

    def __init__(
        self,
        x_dim: Shape,
        num_classes: int,
        z_dim: int = 50,
        hidden_dims: Sequence[int] = (500,),
        likelihood: Union[str, lk.Likelihood] = "bernoulli",
        beta: float = 1.0,
        *,
        aux_weight: float = 50.0,
        classifier_hidden_dims: Optional[Sequence[int]] = None,
        activation: str = "softplus",
        likelihood_kwargs: Optional[dict] = None,
        guide_flows: int = 0,
        batching: str = "balanced",
        balance_weight: float = 0.0,
        prior: priors.PriorName = "standard",
        prior_components: Optional[int] = None,
    ) -> None:
        super().__init__()
        if num_classes is None:
            raise ValueError("num_classes must be an int >= 2, got None")
        priors.check(prior, prior_components, self.refused_priors, "SemiSupervisedVAE")
        check_hparams(num_classes=num_classes, z_dim=z_dim, beta=beta, aux_weight=aux_weight,
                      balance_weight=balance_weight, guide_flows=guide_flows,
                      hidden_dims=hidden_dims)
        self._setup_likelihood(x_dim, likelihood, likelihood_kwargs)
        hidden_dims = tuple(int(h) for h in hidden_dims)
        classifier_hidden_dims = tuple(classifier_hidden_dims or hidden_dims)
        self.num_classes, self.z_dim = num_classes, z_dim
        self.beta, self.aux_weight = float(beta), float(aux_weight)
        self.balance_weight = float(balance_weight)
        if batching not in ("separate", "paired", "balanced"):
            raise ValueError(
                f"batching must be 'separate', 'paired' or 'balanced', got {batching!r}")
        self.batching = batching
        x_numel = math.prod(self.x_shape)
        self._default_decoder = True
        self.classifier = MLP(x_numel, classifier_hidden_dims, num_classes, activation)
        self.encoder = MLP(x_numel + num_classes, hidden_dims, 2 * z_dim, activation)
        self.decoder = MLP(z_dim + num_classes, hidden_dims[::-1],
                           self.likelihood.num_params * x_numel, activation)
        # IAF context: the encoder's last hidden layer (Kingma et al. 2016)
        self.posterior = GaussianPosterior(z_dim, guide_flows, self.encoder.hidden_dim)
        self.latent_prior = priors.build(prior, prior_components, z_dim=z_dim)
        self._remember(
            x_dim=list(self.x_shape), num_classes=num_classes, z_dim=z_dim,
            hidden_dims=list(hidden_dims), likelihood=self.likelihood.name,
            likelihood_kwargs=self.likelihood.hparams(), beta=self.beta,
            aux_weight=self.aux_weight, classifier_hidden_dims=list(classifier_hidden_dims),
            activation=activation, guide_flows=guide_flows, batching=batching,
            balance_weight=self.balance_weight,
            prior=prior, prior_components=self.latent_prior.num_components,
        )

    # -- pieces --------------------------------------------------------------------------------
    def classifier_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self._flat(x))

    @takes_data
    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | x): class probabilities, shape ``(N, num_classes)``; x checked as by ``fit``."""
        return torch.softmax(self.classifier_logits(x), -1)

    @takes_data
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parameters ``(z_loc, z_scale)`` of q(z | x, y); inputs checked as by ``fit``."""
        return self._encode(x, y)[:2]

    def _encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """``(z_loc, z_scale, h)``, h the encoder's last hidden layer (the IAF's context)."""
        out, h = self.encoder.with_hidden(cat_broadcast(self._flat(x),
                                                        one_hot(y, self.num_classes)))
        return (*split_loc_scale(out), h)

    def decode(self, z: torch.Tensor, y: torch.Tensor, *, mean: bool = False):
        """p(x | z, y): the distribution, or its mean with ``mean=True``."""
        params = self._likelihood_params(
            self.decoder(cat_broadcast(z, one_hot(y, self.num_classes))))
        return self.likelihood.mean(params) if mean else self.likelihood(params)

    @takes_data
    @torch.no_grad()
    def embed(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """q(z | x, y) means, with y given or (where -1 or absent) predicted."""
        guess = self.classify(x).argmax(-1)
        y = guess if y is None else torch.where(y >= 0, y, guess)
        return self.encode(x, y)[0]

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor, y) -> torch.Tensor:
        return self.decode(z, draw_labels(y, z.shape[0], self.num_classes, z.device), mean=True)

    @takes_data
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean reconstruction, with y given or (where -1 or absent) predicted by the classifier."""
        guess = self.classify(x).argmax(-1)
        y = guess if y is None else torch.as_tensor(y, device=guess.device).long()
        y = torch.where(y >= 0, y, guess)
        return self.decode(self.encode(x, y)[0], y, mean=True)

    @torch.no_grad()
    def sample(self, n: int, y=None, *, mean: bool = True) -> torch.Tensor:
        """``n`` draws, shape ``(n, *x_shape)``: for label ``y`` (one label: ``n`` draws of
        that class; ``n`` labels: one each) or uniformly random labels. Another number of
        labels, fractional labels or labels out of range raise ``ValueError``."""
        if y is None:
            y = torch.randint(self.num_classes, (n,), device=self.device)
        y = draw_labels(y, n, self.num_classes, self.device)
        z = self.pz(y.shape[0]).sample()
        px = self.decode(z, y)
        return px.mean if mean else px.sample()

    def pz(self, n: int, device: Optional[torch.device] = None):
        """p(z), the same for every label: batch shape ``(n,)`` (:mod:`pvae.priors`)."""
        return self.latent_prior((n,), device or self.device)

    # -- Pyro program ---------------------------------------------------------------------------
    @pyro_method
    def model(self, x: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None, *,
              batch_size: Optional[int] = None):
        """p(y) p(z) p(x | y, z), plus the classifier term for labelled data.

        Labelled or not is read from the sites themselves: the auxiliary terms
        use the values of sites ``"x"`` and ``"y"`` when they are observed,
        whether passed as arguments or conditioned from outside
        (``poutine.condition(model, data={"x": x})(None, y)`` scores the same as
        ``model(x, y)``; pass ``batch_size=N`` when neither argument is given).
        """
        n, device = self._batch(x, y, batch_size=batch_size)
        decoder = self.decoder
        with self.data_plate(n, device), ObservedSites() as sites:
            y_prior = dist.Categorical(logits=torch.zeros(n, self.num_classes, device=device))
            y_value = pyro.sample("y", y_prior, obs=y)
            with self.kl_scale():
                z = pyro.sample("z", self.pz(n, device))
            params = self._likelihood_params(
                decoder(cat_broadcast(z, one_hot(y_value, self.num_classes))))
            out = pyro.sample("x", self.likelihood(params), obs=x)
            if not sites.observed["x"]:  # x generated, not data: no classifier terms
                return out
            labelled = sites.observed["y"]
            if labelled and self.aux_weight > 0:
                with poutine.scale(scale=self.aux_weight):
                    pyro.sample("y_aux", dist.Categorical(logits=self.classifier_logits(out)),
                                obs=y_value, infer=auxiliary())
            if not labelled and self.balance_weight > 0:
                # the batch's mean of q(y | x) against the uniform p(y): KL(q_mean || p)
                q_mean = torch.softmax(self.classifier_logits(out), -1).mean(0)
                kl = torch.xlogy(q_mean, q_mean * self.num_classes).sum()
                balance = dist.Unit(-kl.expand(n))  # a factor per point: -n KL in all
                with poutine.scale(scale=self.balance_weight):
                    pyro.sample("y_balance", balance, obs=balance.sample(),
                                infer=auxiliary(is_auxiliary=True))
            return out

    @pyro_method
    def guide(self, x: Optional[torch.Tensor] = None, y: Optional[torch.Tensor] = None, *,
              batch_size: Optional[int] = None):
        """q(y | x) (unlabelled only) and q(z | x, y).

        Site ``"y"`` carries no enumeration mark, so every ELBO samples it as
        written; to sum it out exactly, enumerate it where you ask for it:
        ``elbo="enum"`` in :func:`pvae.fit`, or
        ``SVI(m.model, pyro.infer.config_enumerate(m.guide), optim, TraceEnum_ELBO())``.
        """
        if x is None:
            raise ValueError("the guide needs data: call guide(x) or guide(x, y)")
        with self.data_plate(*self._batch(x)):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classifier_logits(x)))
            qz = self.posterior(*self._encode(x, y))
            with self.kl_scale():
                return pyro.sample("z", qz)

    # -- data -------------------------------------------------------------------------------------
    def check_part(self, name: str, y: torch.Tensor, n: int) -> None:
        """Labels: ``n`` class ids in ``0..num_classes-1``, or -1 for unlabelled points."""
        check_labels(y, self.num_classes, n, allow_unlabelled=True)

    def _parts_message(self, given: int) -> str:
        return "SemiSupervisedVAE trains on x or on (x, y) with y == -1 unlabelled"

    def evaluation_batch(self, batch: Batch) -> Batch:
        return batch[:1]  # score log p(x), the label marginalised

    def _split(self, batch: Batch):
        x = batch[0]
        y = batch[1] if len(batch) > 1 else torch.full((x.shape[0],), -1, device=x.device)
        labelled = y >= 0
        return (torch.nonzero(~labelled).squeeze(-1), torch.nonzero(labelled).squeeze(-1), y)

    def num_steps(self, batch: Batch, batch_size: int, drop_last: bool) -> int:
        unl, lab, _ = self._split(batch)
        if self.batching == "separate":
            return sum(num_batches(len(part), batch_size, drop_last) for part in (unl, lab))
        return num_batches(len(unl) if len(unl) else len(lab), batch_size, drop_last)

    def minibatches(self, batch: Batch, batch_size: int, generator: torch.Generator,
                    drop_last: bool) -> Iterator[list[tuple[Batch, int]]]:
        unl, lab, y = self._split(batch)
        x = batch[0]
        unl = unl[torch.randperm(len(unl), generator=generator).to(x.device)]
        lab = lab[torch.randperm(len(lab), generator=generator).to(x.device)]
        if self.batching == "separate":
            yield from self._separate_batches(x, y, unl, lab, batch_size, drop_last)
            return
        lab_size = min(batch_size, len(lab))
        lab_order, pos = lab, 0
        for i in range(self.num_steps(batch, batch_size, drop_last)):
            parts = []
            if len(unl):
                idx = unl[i * batch_size : (i + 1) * batch_size]
                parts.append(((x[idx],), len(unl)))
            if len(lab):
                if pos + lab_size > len(lab_order):  # start a new pass over the labels
                    lab_order = lab[torch.randperm(len(lab), generator=generator).to(x.device)]
                    pos = 0
                idx = lab_order[pos : pos + lab_size]
                pos += lab_size
                plate_size = len(lab)
                if self.batching == "balanced" and len(unl):  # per point, weighed as unlabelled
                    plate_size = max(len(unl) * len(idx) // min(batch_size, len(unl)), len(idx))
                parts.append(((x[idx], y[idx]), plate_size))
            yield parts

    @staticmethod
    def _separate_batches(x, y, unl, lab, batch_size: int, drop_last: bool):
        """Labelled-only and unlabelled-only steps, the labelled ones spread evenly.

        Every data point has the same weight: each step's plate is sized as if
        its batch were one of ``N / batch_size`` equal batches of all N points.
        """
        n_total = len(unl) + len(lab)
        per_step = min(batch_size, n_total)  # data points a full step stands for: n_total / per_step
        n_unl = num_batches(len(unl), batch_size, drop_last)
        n_lab = num_batches(len(lab), batch_size, drop_last)
        steps = n_unl + n_lab
        # labelled step j goes at position floor((j + 1/2) * steps / n_lab)
        lab_at = {int((j + 0.5) * steps / n_lab) for j in range(n_lab)}
        iu = il = 0
        for s in range(steps):
            if s in lab_at or iu == n_unl:
                idx, il = lab[il * batch_size : (il + 1) * batch_size], il + 1
                batch = (x[idx], y[idx])
            else:
                idx, iu = unl[iu * batch_size : (iu + 1) * batch_size], iu + 1
                batch = (x[idx],)
            yield [(batch, max(round(n_total * len(idx) / per_step), len(idx)))]

