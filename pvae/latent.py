"""Latent-space tools for every pvae model and any data set.

- :func:`encode` a data set to posterior means;
- :class:`Features` turns inputs into a trained model's latent codes, as a data
  transform for training another model on them (stacked models, M1+M2);
  :func:`code_data` does it for a whole data set (``pvae train``'s ``data.features``);
- :func:`interpolate` between two inputs, linearly or spherically (slerp), decoded;
- :func:`traverse` one latent dimension at a time;
- :func:`manifold` decodes a grid over the prior's quantiles (z_dim = 2);
- :func:`embed_2d` takes latent means to 2-D: as they are, by PCA, or by t-SNE.

Every tool works for every model type (VAE, CVAE with labels or a ``y_dim``
vector, SemiSupervisedVAE, HierarchicalVAE, whose main latent is z1).
Conditional models take the condition ``y``: the inputs' labels or vectors
for encoding, and the condition to decode with; a SemiSupervisedVAE predicts
a label that is absent or -1 with its classifier.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch

from pvae.flows import GaussianPosterior
from pvae.models.base import Classifier, PVAEModel


def _conditioned(model) -> bool:
    """Whether the model's batches carry a condition y (its declared ``batch_parts``)."""
    return "y" in getattr(model, "batch_parts", ("x",))


def _sequential(model) -> bool:
    """Whether the model's batches are sequences with their lengths (``(x, lengths)``)."""
    return "lengths" in getattr(model, "batch_parts", ("x",))


def _one_sequence(x) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence as a batch of one: ``x`` of shape ``(L,)`` / ``(L, D)`` (its length is
    L), or a pair ``(x, length)`` for a padded one."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError("give one sequence as x of shape (L,) or (L, D), or as a pair "
                             "(x, length)")
        x, length = torch.as_tensor(x[0]), torch.as_tensor(x[1]).reshape(1)
    else:
        x = torch.as_tensor(x)
        length = torch.tensor([x.shape[0] if x.dim() else 0])
    return x[None], length


def _batch(model, x, y):
    if _sequential(model):
        if y is None:
            raise ValueError(f"{type(model).__name__} encodes sequences with their lengths: "
                             "pass lengths")
        return (x, y)
    if _conditioned(model):
        if y is None and not isinstance(model, Classifier):
            raise ValueError(f"{type(model).__name__} needs the condition y of the inputs")
        return (x,) if y is None else (x, y)
    return (x,)


def _point_shape(model) -> tuple[int, ...]:
    """The shape of one data point's condition: () for a label, (D,) for a vector."""
    y_dim = getattr(model, "y_dim", None)
    return (y_dim,) if y_dim else ()


def _point_condition(model, y) -> Optional[torch.Tensor]:
    """One data point's condition (a label, or a vector for ``y_dim``) as a batch of one."""
    if y is None or not _conditioned(model):
        return None
    y = torch.as_tensor(y)
    shape = _point_shape(model)
    if y.numel() != math.prod(shape):
        raise ValueError(f"{type(model).__name__} takes the condition of one data point here "
                         f"({'a vector of ' + str(shape[0]) + ' numbers' if shape else 'a label'}),"
                         f" got shape {tuple(y.shape)}")
    return y.reshape(1, *shape)


def _cond(model, y, n: int, x: Optional[torch.Tensor] = None) -> tuple:
    """The condition to decode ``n`` points with: one point's, repeated, or one per point.

    A model that classifies (SemiSupervisedVAE) decodes with the label it
    predicts for the single input ``x`` where ``y`` is absent or -1.
    """
    if not _conditioned(model):
        return ()
    y = None if y is None else torch.as_tensor(y, device=model.device)
    shape = _point_shape(model)
    if not shape and y is not None and y.numel() == 1:
        y = y.reshape(())
    unknown = y is None or (not shape and y.dim() == 0 and y.item() < 0)
    if unknown and x is not None and isinstance(model, Classifier):
        y = model.classify(x[None].to(model.device)).argmax(-1)[0]  # the label q(y|x) predicts
    elif y is None:
        raise ValueError(f"{type(model).__name__} decodes with a condition: pass y")
    if tuple(y.shape) == shape:
        y = y.expand(n, *shape)
    elif tuple(y.shape) != (n, *shape):
        raise ValueError(f"{type(model).__name__} decodes with the condition of one data point "
                         f"(shape {shape}) or one per decoded point (shape {(n, *shape)}); got "
                         f"shape {tuple(y.shape)}")
    if not shape and (y < 0).any():
        raise ValueError(f"{type(model).__name__} decodes with labels 0..C-1, not -1: pass y")
    return (y,)


@torch.no_grad()
def encode(model, x: torch.Tensor, y: Optional[torch.Tensor] = None, *,
           lengths: Optional[torch.Tensor] = None, batch_size: int = 1000) -> torch.Tensor:
    """Posterior means of the main latent for every row of ``x``, shape (N, D).

    Sequence models (:class:`pvae.SequenceVAE`) take the sequences' ``lengths``
    (shape (N,)), as a keyword or in place of ``y``.

    ``y``: the inputs' conditions for conditional models, one per row (labels
    of shape (N,), or (N, y_dim) vectors; -1 for a SemiSupervisedVAE's
    unknown labels, which its classifier predicts). Raises ``ValueError``
    when a CVAE gets no ``y`` or ``y`` has another number of rows than ``x``.
    ``x`` (and ``y``) are checked and cast as ``pvae.fit`` checks them
    (``ValueError`` / ``TypeError`` naming the problem), before any work;
    values outside the likelihood's support are encoded as they are.
    """
    if _sequential(model) and lengths is not None:
        y = lengths
    if y is not None and (_conditioned(model) or _sequential(model)) and len(y) != len(x):
        raise ValueError(f"y has {len(y)} rows for {len(x)} inputs; pass one condition per row")
    batch = model.checked_batch(*_batch(model, x, y), support=False)
    x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    was = model.training
    model.eval()
    try:
        out = [model.embed(*_batch(model, x[i : i + batch_size],
                                   None if y is None else y[i : i + batch_size]))
               for i in range(0, len(x), batch_size)]
    finally:
        model.train(was)
    return torch.cat(out)


def _has_flows(model) -> bool:
    """Whether any of the model's posteriors has flows (then q(z | x) has no closed-form mean)."""
    return any(not p.mean_field for p in model.modules() if isinstance(p, GaussianPosterior))


class Features:
    """A data transform: inputs to a trained model's latent codes, for stacking models.

    ``pvae.fit(m2, (x, y), transform=Features(m1))`` trains ``m2`` on the
    latent codes ``z ~ q(z | x)`` of a trained model ``m1``, drawn afresh each
    step (Kingma et al. 2014's M1+M2: a semi-supervised M2 on the codes of a
    VAE M1). ``m1`` stays fixed: it is put in eval mode and draws are made
    without gradients. ``sample=False`` gives the posterior means of the main
    latent (``m1.embed``) instead, for classifying: ``m2.classify(Features(m1,
    sample=False)(x_test))``. ``transform`` is applied to the inputs first
    (binarisation, say). ``site`` names the latent site to draw; default the
    main one (``"z"``, or ``"z1"``, the layer the decoder reads, for
    :class:`pvae.HierarchicalVAE`).
    """

    def __init__(self, model, *, sample: bool = True, transform=None,
                 site: Optional[str] = None, batch_size: int = 10000) -> None:
        if not isinstance(model, PVAEModel):
            raise TypeError(f"Features needs a trained pvae model, got {type(model).__name__}")
        if _conditioned(model):
            raise ValueError(f"Features takes an unconditional model (q(z | x)); "
                             f"{type(model).__name__} encodes with a condition y")
        if _sequential(model):
            raise ValueError(f"Features and code_data stack models on fixed-size inputs; "
                             f"{type(model).__name__} encodes sequences with their lengths: "
                             "take its codes with pvae.latent.encode(model, x, lengths=lengths) "
                             "and train the next model on them")
        self.model, self.sample, self.transform = model, sample, transform
        self.batch_size = batch_size
        model.eval()
        names = list(model.latent_sites)  # the main latent first (z1, which the decoder reads)
        if site is not None and site not in names:
            raise ValueError(f"{type(model).__name__} has no latent site {site!r}; "
                             f"its latent sites are {names}")
        self.site = site or names[0]
        if not sample:
            if self.site != names[0]:
                raise ValueError(f"sample=False gives the means of the main latent site "
                                 f"{names[0]!r}; for {self.site!r} use sample=True")
            if _has_flows(model):
                raise ValueError("this guide has flows, so q(z | x) has no closed-form mean: "
                                 "use Features(model, sample=True)")

    @torch.no_grad()
    def _draw(self, x: torch.Tensor) -> torch.Tensor:
        if not self.sample:
            return self.model.embed(x)
        from pyro import poutine

        with self.model.unregistered():  # no Pyro parameter registration for a fixed model
            return poutine.trace(self.model.guide).get_trace(x).nodes[self.site]["value"]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of inputs ``x`` (N, *x_shape), shape (N, D); x is checked as ``fit`` checks it."""
        if self.transform is not None:
            x = self.transform(x)
        if len(x):
            x = self.model.checked_batch(x, support=False)[0]
        x = x.to(self.model.device)
        if len(x) == 0:  # a plate cannot be empty: draw for one dummy row, keep none
            return self._draw(x.new_zeros(1, *x.shape[1:]))[:0]
        return torch.cat([self._draw(chunk) for chunk in x.split(self.batch_size)])


def code_data(data, model, *, batch_size: int = 10000):
    """``data`` (a :class:`pvae.data.Data`) as a trained model's latent codes, for stacking.

    Training inputs stay as they are, with a transform (:class:`Features`) that
    draws codes z ~ q(z | x) afresh each step after the data's own transform;
    validation and test inputs become their posterior means (repeatable
    evaluation). The result keeps the labels, holds ``model`` as ``encoder``
    and ``data`` as ``source``, and its ``decode`` maps codes back to
    ``data``'s space, for figures. ``pvae train`` uses it for ``data.features``;
    there the per-epoch ``val_elbo`` is on validation codes drawn once from
    q(z | x), like the training objective, while ``pvae evaluate`` scores the
    means, which have a higher density.
    """
    from pvae.data import Data, Split

    if _has_flows(model):
        raise ValueError(f"the {type(model).__name__} has guide flows, so its codes have no "
                         "closed-form mean to evaluate on; stack on a model trained without "
                         "guide_flows")
    features = Features(model, transform=data.transform, batch_size=batch_size)
    expected = tuple(getattr(model, "x_shape", ()))
    if expected and tuple(data.x_shape) != expected:
        raise ValueError(f"the {type(model).__name__} encodes data of shape {expected}, but "
                         f"{data.name} has shape {tuple(data.x_shape)}; load the data as it "
                         "was trained on (data.flatten, data.name)")
    means = Features(model, sample=False, batch_size=batch_size)

    def coded(split):
        return None if split is None else Split(means(split.x).cpu(), split.y)

    test = coded(data.test)
    return Data(name=data.name, train=data.train, val=coded(data.val), test=test,
                x_shape=tuple(test.x.shape[1:]), image_shape=None,
                num_classes=data.num_classes, transform=features, encoder=model, source=data)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    if so.abs() < 1e-6:  # (anti)parallel: fall back to a straight line
        return (1 - t)[:, None] * a + t[:, None] * b
    return (torch.sin((1 - t) * omega) / so)[:, None] * a + (torch.sin(t * omega) / so)[:, None] * b


@torch.no_grad()
def interpolate(model, x_a: torch.Tensor, x_b: torch.Tensor, *, steps: int = 8,
                method: Literal["linear", "slerp"] = "linear", y=None,
                y_a=None, y_b=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``steps`` points between the latent means of two inputs.

    ``x_a``, ``x_b``: single data points (shape ``x_shape``). Returns
    ``(z, decoded)`` of shapes (steps, D) and (steps, *x_shape). The ends decode
    to the inputs' mean reconstructions. For a sequence model each input is one
    sequence, of shape ``(L,)`` or ``(L, D)`` or a pair ``(x, length)``, and
    ``decoded`` is the pair ``(x, lengths)`` of greedy decodings (Bowman et al. 2016),
    series as long as the longer input, tokens until their end event. ``y_a``/``y_b``: their conditions (for
    encoding with conditional models: a label, or a vector of ``y_dim``
    numbers); ``y``: the condition to decode with, one point's or one per step
    (default ``y_a``; a SemiSupervisedVAE predicts ``x_a``'s label where it is
    absent or -1). Raises ``ValueError`` for a missing or misshapen condition.
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if method not in ("linear", "slerp"):
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    options: dict = {}
    if _sequential(model):  # Bowman et al. 2016's homotopies between two sequences
        (xa, la), (xb, lb) = _one_sequence(x_a), _one_sequence(x_b)
        za, zb = encode(model, xa, la)[0], encode(model, xb, lb)[0]
        cond: tuple = ()
        if not getattr(model, "tokens", False):  # series: as long as the longer input
            options["max_len"] = int(max(la.max(), lb.max()))
    else:
        ya, yb = _point_condition(model, y_a), _point_condition(model, y_b)
        za = encode(model, torch.as_tensor(x_a)[None], ya)[0]
        zb = encode(model, torch.as_tensor(x_b)[None], yb)[0]
        cond = _cond(model, y if y is not None else y_a, steps, torch.as_tensor(x_a))
    t = torch.linspace(0, 1, steps)
    z = (1 - t)[:, None] * za + t[:, None] * zb if method == "linear" else _slerp(za, zb, t)
    return z, model.decode_mean(z, *cond, **options)


@torch.no_grad()
def traverse(model, x: torch.Tensor, *, dims: Optional[list[int]] = None, steps: int = 8,
             span: float = 2.5, y=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Vary one latent dimension at a time around ``x``'s posterior mean.

    For each of ``dims`` (default: all), dimension d takes ``steps`` absolute
    values from -span to +span (standard deviations of a standard normal
    prior; for learned or hierarchical priors, just latent units) while the
    others keep their posterior-mean values. Returns ``(z, decoded)``: shapes
    (len(dims), steps, D) and (len(dims), steps, *x_shape). ``y``: ``x``'s
    condition for conditional models (a label, or a vector of ``y_dim``
    numbers), used to encode and to decode; a SemiSupervisedVAE predicts it
    where absent or -1. Raises ``ValueError`` for a missing or misshapen
    condition, or dims outside 0..D-1. For a sequence model ``x`` is one sequence
    (as for :func:`interpolate`) and ``decoded`` the pair ``(x, lengths)``.
    """
    if _sequential(model):
        z0 = encode(model, *_one_sequence(x))[0]
        x, y = torch.zeros(0), None
    else:
        x = torch.as_tensor(x)
        z0 = encode(model, x[None], _point_condition(model, y))[0]
    dims = list(range(z0.shape[0])) if dims is None else [int(d) for d in dims]
    if not all(0 <= d < z0.shape[0] for d in dims):
        raise ValueError(f"dims must be latent dimensions in 0..{z0.shape[0] - 1}, got {dims}")
    values = torch.linspace(-span, span, steps)
    z = z0.repeat(len(dims), steps, 1)
    for i, d in enumerate(dims):
        z[i, :, d] = values
    flat = z.reshape(-1, z0.shape[0])
    decoded = model.decode_mean(flat, *_cond(model, y, flat.shape[0], x))
    if isinstance(decoded, tuple):  # sequences: (x, lengths)
        return z, tuple(d.reshape(len(dims), steps, *d.shape[1:]) for d in decoded)
    return z, decoded.reshape(len(dims), steps, *decoded.shape[1:])


@torch.no_grad()
def manifold(model, *, n: int = 15, y=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an n x n grid over the prior's quantiles 0.05 .. 0.95 (models with z_dim 2;
    each dimension's quantiles of samples for a learned prior, :mod:`pvae.priors`).

    Returns ``(z, decoded)`` of shapes (n*n, 2) and (n*n, *x_shape); row-major,
    with z_2 decreasing down the rows and z_1 increasing along them.
    Conditional models decode with ``y`` (one point's condition, or one per
    grid point); hierarchical models grid their bottom layer z1; sequence models
    (:class:`pvae.SequenceVAE`) give ``decoded`` as the pair ``(x, lengths)`` of
    greedy decodings.
    """
    z_dim = model.code_dim
    if z_dim != 2:
        raise ValueError(f"a manifold grid needs a 2-D latent space; this model has z_dim={z_dim}")
    levels = torch.linspace(0.05, 0.95, n)
    prior = getattr(model, "latent_prior", None)
    if prior is not None and not prior.analytic_kl and hasattr(model, "pz"):
        # a learned prior (pvae.priors): each dimension's quantiles of 20,000 draws of p(z)
        draws = model.pz(20000).sample().cpu()
        q1, q2 = (torch.quantile(draws[:, d], levels) for d in (0, 1))
    else:
        q1 = q2 = torch.distributions.Normal(0.0, 1.0).icdf(levels)
    z1, z2 = torch.meshgrid(q1, q2.flip(0), indexing="xy")
    z = torch.stack([z1.reshape(-1), z2.reshape(-1)], -1)
    return z, model.decode_mean(z, *_cond(model, y, z.shape[0]))


def embed_2d(z: torch.Tensor, method: Literal["auto", "pca", "tsne"] = "auto",
             seed: int = 0) -> tuple[torch.Tensor, str]:
    """2-D coordinates of latent means: as they are (D = 2), PCA, or t-SNE (scikit-learn).

    Parameters
    ----------
    z : latent means, shape ``(N, D)``.
    method : ``auto`` (as they are for D <= 2, else PCA), ``pca``
        (:class:`sklearn.decomposition.PCA`: the two leading principal components,
        centred; each component's sign is scikit-learn's deterministic choice, so the
        same ``z`` gives the same picture, but a mirror image of another tool's PCA is
        as right) or ``tsne`` (:class:`sklearn.manifold.TSNE`, seeded by ``seed``).

    Returns
    -------
    ``(coords, method_used)``: shape ``(N, 2)``, and ``"latent"``, ``"1-D"``, ``"PCA"``
    or ``"t-SNE"``.

    Raises
    ------
    ValueError : an unknown ``method``, or PCA / t-SNE asked of fewer than 2 points.
    """
    z = torch.as_tensor(z).float()
    if method not in ("auto", "pca", "tsne"):
        raise ValueError(f"method must be 'auto', 'pca' or 'tsne', got {method!r}")
    if z.shape[1] == 1:
        return torch.cat([z, torch.zeros_like(z)], 1), "1-D"
    if z.shape[1] == 2 and method == "auto":
        return z, "latent"
    if len(z) < 2:
        raise ValueError(f"a 2-D embedding of {z.shape[1]}-D codes needs at least 2 points, "
                         f"got {len(z)}")
    if method in ("auto", "pca"):
        from sklearn.decomposition import PCA

        coords = PCA(n_components=2).fit_transform(z.detach().cpu().double().numpy())
        return torch.as_tensor(coords).float(), "PCA"
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(2.0, (len(z) - 1) / 3))
    coords = TSNE(n_components=2, perplexity=perplexity, init="pca",
                  random_state=seed).fit_transform(z.numpy())
    return torch.as_tensor(coords).float(), "t-SNE"
