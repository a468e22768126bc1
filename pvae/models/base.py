"""What every pvae model shares: declared traits, the data plate, save/load, data checks.

:class:`PVAEModel` declares what a model is (``batch_parts``, ``config_name``,
``code_dim``, ``num_classes``, ``mean_field``) so that training, evaluation and
the command line read it instead of guessing. Its pieces live next to it:
:mod:`pvae.models.checks` (argument and data rules), :mod:`pvae.models.heads`
(the likelihood head), :mod:`pvae.models.sites` (site conventions, model/guide
pairs), :mod:`pvae.models.traits` (the classifier mixin, checked methods).

A pvae model is a :class:`pyro.nn.PyroModule` with ``model(*batch)`` and
``guide(*batch)`` methods of the same signature. Its parameters live on the
module (the training loop optimises ``module.parameters()`` directly); the
module also has a unique Pyro name, so that several models in one process
never share entries in Pyro's global parameter store when used with
``pyro.infer.SVI`` and ``pyro.optim``. A deep copy (``copy.deepcopy``), an
unpickled copy and a loaded model each get a fresh name, so each trains on its
own. ``copy.copy`` is a shallow copy: by Python's definition it shares the
networks and their parameters with the original, so training either trains
both.

Every public method that takes data checks it with :meth:`PVAEModel.checked_batch`,
the check ``pvae.fit`` uses: floats and integers are cast to float32, and a wrong
shape, NaN or bad labels raise one ``ValueError`` naming the problem and the
fix (values outside the likelihood's support too, where data are scored:
``fit`` and :mod:`pvae.evaluate`). Custom networks' outputs are
checked against what the likelihood needs at their first call.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
from typing import Any, ClassVar, Iterator, Optional

import pyro
import torch
from pyro import poutine
from pyro.nn import PyroModule

from pvae import checkpoint as ckpt
from pvae import likelihoods as lk
from pvae.flows import GaussianPosterior
from pvae.models.checks import (  # noqa: F401  (shared by every model, re-exported)
    Shape, as_shape, check_labels, check_x, num_draws)
from pvae.models.heads import LikelihoodHead
from pvae.models.sites import (  # noqa: F401  (re-exported)
    AUXILIARY, ModelGuidePair, ObservedSites, Pair, as_pair, auxiliary, is_auxiliary)
from pvae.models.traits import Classifier, takes_data  # noqa: F401

Batch = tuple  # of tensors: (x,) or (x, y)

_COUNTER = itertools.count()
MODEL_CLASSES: dict[str, type["PVAEModel"]] = {}


def _fresh_name(model: "PVAEModel") -> str:
    return f"{type(model).__name__.lower()}{next(_COUNTER)}"


class PVAEModel(LikelihoodHead, PyroModule):
    """Base class of pvae models (not used directly).

    Copies: ``copy.deepcopy(model)``, a pickle round trip and ``pvae.load``
    give an independent model with its own Pyro name, which Pyro's ``SVI``
    trains without touching the original. ``copy.copy(model)`` is shallow: it
    shares the networks and parameters with the original (Python's
    definition), so training one trains the other.

    Subclasses define ``model`` and ``guide``, call :meth:`_remember` with the
    constructor arguments needed to rebuild them (for :func:`pvae.load`), and
    list their latent sites in :attr:`latent_sites`.

    The plate name ``"data"`` and its dim (-1, the rightmost batch dim) are
    reserved: ``model`` and ``guide`` take ``x`` of shape ``(N, *x_shape)``
    (one data set) and open ``pyro.plate("data", dim=-1)`` over its N points.
    Inside a plate of your own, give yours another name and a dim left of -1
    (``dim=-2``); data with an extra leading axis, such as ``(S, N, *x_shape)``
    for S data sets, is refused with a ``ValueError`` at the call (flatten the
    data sets into one batch, or call the model once per data set).
    """

    #: Sample sites that are latent in the guide (for diagnostics).
    latent_sites: ClassVar[tuple[str, ...]] = ("z",)
    #: Plates nested inside each other in model and guide (just "data").
    max_plate_nesting: ClassVar[int] = 1
    #: What one batch holds, in the order ``model``/``guide`` take it: ``("x",)``;
    #: ``("x", "y")`` with a label or condition per point; ``("x", "lengths")`` for sequences.
    #: The training data, evaluation and the command line read this.
    batch_parts: ClassVar[tuple[str, ...]] = ("x",)
    #: The parts a batch may leave out (the semi-supervised model's labels).
    optional_parts: ClassVar[tuple[str, ...]] = ()
    #: The name :func:`pvae.models.get` and configs (``model.type``) know the class by.
    config_name: ClassVar[Optional[str]] = None
    #: Number of classes of a labelled model; None for others.
    num_classes: Optional[int] = None
    #: Why the guide is not mean-field, for the error TraceMeanField_ELBO users get.
    not_mean_field_reason: str = "it has normalising flows"

    #: Whether distributed training can shard the data: the model's steps are the
    #: default shuffled slices of :meth:`minibatches` (a model that forms its own
    #: steps, like the semi-supervised one's labelled/unlabelled pairs, sets False).
    shardable: ClassVar[bool] = True

    @property
    def needs_condition(self) -> bool:
        """Whether generating needs a given condition ``y`` (a CVAE, with labels or
        vectors): ``y`` is a required part of its batches. A model whose ``y`` is
        optional (the semi-supervised one) draws its label from p(y) itself."""
        return "y" in self.batch_parts and "y" not in self.optional_parts

    @classmethod
    def saved_hparams(cls, hparams: dict) -> dict:
        """A checkpoint's settings as this version's constructor takes them. An option
        added after a file was saved is missing from it: it takes the constructor's
        default (an option's default keeps the earlier behaviour). A class whose new
        option's default differs from what earlier files were built with overrides this
        and fills in that value first."""
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name not in hparams and p.default is not inspect.Parameter.empty and p.kind in (
                    p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                hparams[name] = p.default
        return hparams

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        MODEL_CLASSES[cls.__name__] = cls

    @property
    def mean_field(self) -> bool:
        """Whether the guide is mean-field: every posterior of the model says it is
        (no normalising flows); read from the model's :class:`GaussianPosterior` s."""
        return all(p.mean_field for p in self.modules() if isinstance(p, GaussianPosterior))

    @property
    def monte_carlo_kl_sites(self) -> tuple[str, ...]:
        """Latent sites whose KL(q || p) has no closed form because p is a learned prior
        (:mod:`pvae.priors`, at the top latent site): ``TraceMeanField_ELBO`` estimates
        those terms by Monte Carlo. Empty with the standard prior."""
        prior = self._modules.get("latent_prior")
        return () if getattr(prior, "analytic_kl", True) else (self.latent_sites[-1],)

    @property
    def code_dim(self) -> int:
        """Size of the main latent code (``"z"``; ``"z1"``, the bottom layer, for hierarchies):
        the width of :meth:`embed`'s output and of :meth:`decode_mean`'s input."""
        return self.z_dim

    def __init__(self) -> None:
        super().__init__(name=_fresh_name(self))
        self.num_data: Optional[int] = None
        self._hparams: dict[str, Any] = {}
        self._rebuildable = True

    # -- identity ------------------------------------------------------------------------
    def __setstate__(self, state: dict) -> None:
        # copy.deepcopy, copy.copy and pickle rebuild a model through here. Give the copy
        # its own Pyro name: under the original's name, Pyro's parameter store would hand
        # the copy the original's parameters, and SVI on the copy would train nothing.
        super().__setstate__(state)
        self._pyro_name = _fresh_name(self)
        self.__dict__["_checking_inputs"] = False

    # -- Pyro parameter registration ---------------------------------------------------
    def __getattr__(self, name: str):
        # While pvae.fit trains (which optimises module.parameters() directly), skip the
        # pyro.module registration that PyroModule performs on every submodule access
        # (a fixed cost per step, large next to a small VAE's). Outside fit, models
        # register as usual, so SVI with pyro.optim sees every parameter.
        if not self.__dict__.get("_register_params", True):
            modules = self.__dict__["_modules"]
            if name in modules:
                return modules[name]
        return super().__getattr__(name)

    @contextlib.contextmanager
    def unregistered(self) -> Iterator[None]:
        """Skip Pyro's parameter registration (for loops that optimise parameters directly)."""
        old = self.__dict__.get("_register_params", True)
        self.__dict__["_register_params"] = False
        try:
            yield
        finally:
            self.__dict__["_register_params"] = old

    # -- construction record, for save/load -------------------------------------
    def _remember(self, rebuildable: bool = True, **hparams: Any) -> None:
        self._hparams = hparams
        self._rebuildable = rebuildable

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model (plain Python values)."""
        return dict(self._hparams)

    def custom_parts(self) -> list[str]:
        """What of this model its saved constructor arguments cannot rebuild, in words
        (custom networks, a likelihood not in pvae's registry); empty when none."""
        parts = [f"a custom {net}" for net in ("encoder", "decoder")
                 if not getattr(self, f"_default_{net}", True)]
        lik = getattr(self, "likelihood", None)
        if isinstance(lik, lk.Likelihood) and not lk.is_registered(lik):
            parts.append(f"a likelihood not in pvae's registry ({type(lik).__name__})")
        if not parts and not self._rebuildable:
            parts.append("custom networks")
        return parts

    # -- the data plate ------------------------------------------------------------
    def data_plate(self, batch_size: int, device: torch.device) -> pyro.plate:
        """``pyro.plate("data")`` sized to :attr:`num_data`, subsampled to the batch.

        With ``num_data`` unset (``None``) the plate is the batch itself, so log
        densities are per batch; the training loop sets ``num_data`` to the
        training-set size so that the minibatch ELBO estimates the full-data ELBO.
        """
        n = self.num_data
        if n is None or n == batch_size:
            return pyro.plate("data", batch_size, dim=-1)
        if n < batch_size:
            raise ValueError(
                f"num_data={n} is smaller than the batch ({batch_size}); set model.num_data "
                "to the size of the whole data set, or None"
            )
        return pyro.plate(
            "data", size=n, subsample=torch.arange(batch_size, device=device), dim=-1
        )

    def _batch(self, *data: Optional[torch.Tensor], batch_size: Optional[int] = None):
        """``(n, device)`` of a model or guide call: from the first tensor given, else
        ``batch_size``. Raises ``ValueError`` if x (``data[0]``) has a leading axis
        beyond ``(N, *x_shape)``, e.g. from an enclosing plate over data sets."""
        x = data[0] if data else None
        x_shape = getattr(self, "x_shape", None)
        if isinstance(x, torch.Tensor) and x_shape is not None and x.dim() > 1 + len(x_shape):
            shape = ", ".join(map(str, x_shape))
            raise ValueError(
                f"x has shape {tuple(x.shape)}, but {type(self).__name__}.model and .guide take "
                f"x of shape (N, {shape}): one data set of N points. Outer batch dimensions "
                "(e.g. S data sets inside your own pyro.plate) are not supported: the plate "
                "name 'data' and its dim -1 are reserved for the model's plate over the N "
                f"points. Flatten the data sets into one batch (x.reshape(-1, {shape})) or "
                "call the model once per data set."
            )
        for t in data:
            if t is not None:
                return t.shape[0], t.device
        return (1 if batch_size is None else int(batch_size)), self.device

    @contextlib.contextmanager
    def scaled_to(self, num_data: Optional[int]) -> Iterator[None]:
        """Temporarily set :attr:`num_data` (the data plate's full size)."""
        # a plain attribute, set in the instance's __dict__: PyroModule.__setattr__'s cost
        # shows in a small model's training step, which enters this every step
        d = self.__dict__
        old, d["num_data"] = d["num_data"], num_data
        try:
            yield
        finally:
            d["num_data"] = old

    def program_constants(self) -> tuple:
        """The Python settings ``model``/``guide`` read when they run: ``num_data``,
        train/eval mode and every public plain number, flag or string attribute
        (``beta``, ``aux_weight``, ...). A JIT-compiled loss bakes them in as constants,
        so pvae's JIT ELBOs compile one graph per distinct value of this tuple."""
        plain = (bool, int, float, str, type(None))
        return tuple((k, v) for k, v in vars(self).items()
                     if isinstance(v, plain) and not k.startswith("_"))

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def kl_scale(self):
        """``poutine.scale(beta)`` for latent sites (a no-op when beta is 1)."""
        beta = getattr(self, "beta", 1.0)
        return poutine.scale(scale=beta) if beta != 1.0 else contextlib.nullcontext()

    # -- data -------------------------------------------------------------------------
    def check_data(self, x: torch.Tensor, *rest: torch.Tensor, support: bool = True) -> None:
        """Raise ``ValueError`` if a batch cannot be modelled (parts, shape, labels, NaN, support).

        The one data check of every model: the batch's parts against
        :attr:`batch_parts`, ``x`` of shape ``(N, *x_shape)``, each further part
        by :meth:`check_part`, then the values. ``support=False`` skips the
        likelihood's support check (for methods that only encode data and never
        score it). ``TypeError`` for what is not a tensor.
        """
        parts = self.batch_parts
        least = len(parts) - len(self.optional_parts)
        if not least <= 1 + len(rest) <= len(parts):
            raise ValueError(self._parts_message(1 + len(rest)))
        check_x(x, self.x_shape)
        for name, value in zip(parts[1:], rest):
            self.check_part(name, value, x.shape[0])
        self._check_values(x, support)

    def _parts_message(self, given: int) -> str:
        """Why a batch of ``given`` parts does not fit :attr:`batch_parts`."""
        name = type(self).__name__
        if self.batch_parts == ("x",):
            return (f"{name} takes x alone, but the data has {given} parts; pass only x "
                    "(labels are for CVAE / SemiSupervisedVAE)")
        want = "(" + ", ".join(self.batch_parts) + ")"
        if self.optional_parts:
            return f"{name} trains on x or on {want}"
        return f"{name} trains on {want}, one of each per row; got {given} part(s)"

    def check_part(self, name: str, value: torch.Tensor, n: int) -> None:
        """Check batch part ``name`` (beyond x) for ``n`` data points; ``ValueError`` if bad."""
        raise NotImplementedError(f"{type(self).__name__} does not check part {name!r}")

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        """x as the default MLP encoders see it: the likelihood's encoder input, flattened
        to shape ``(..., prod(x_shape))``."""
        x = self._encoder_input(x)
        return x.reshape(*x.shape[: x.dim() - len(self.x_shape)], -1)

    def _check_values(self, x: torch.Tensor, support: bool = True) -> None:
        """NaN or infinite values always; the likelihood's support where x will be scored."""
        if support:
            self._modules["likelihood"].check_support(x)
        elif x.is_floating_point() and not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"data holds {bad} NaN or infinite value(s); remove or impute them")

    def checked_batch(self, *batch, what: str = "data", support: bool = True) -> Batch:
        """``batch`` as ``pvae.fit`` takes it: tensors, x cast to float32, then checked.

        The one input check of every public method that takes data (``fit``,
        ``evaluate``, ``encode``, ``reconstruct``, ``classify``, ``pvae.latent``):
        arrays become tensors, x is cast to float32, labels of shape ``(N, 1)``
        become ``(N,)``, and :meth:`check_data` raises ``ValueError`` (or
        ``TypeError`` for what is not a tensor or array) naming the problem and
        the fix. Methods that only encode pass ``support=False``: they take
        values outside the likelihood's support (grey levels for a Bernoulli
        model, say), which only scoring refuses.
        """
        from pvae.batching import as_batch_tensors  # the data layer reads models' traits

        batch = as_batch_tensors(tuple(batch), self, what)
        self.check_data(*batch, support=support)
        return batch

    def embed(self, *batch: torch.Tensor) -> torch.Tensor:
        """Posterior mean of the main latent (``"z"``; ``"z1"`` for hierarchies), shape (N, D).

        With ``guide_flows`` it is the mean of the base Gaussian, before the flows.
        """
        raise NotImplementedError

    def decode_mean(self, z: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
        """E[x | z] (and the condition, for conditional models)."""
        raise NotImplementedError

    def evaluation_batch(self, batch: Batch) -> Batch:
        """The part of a training batch that evaluation (ELBO, log-likelihood) scores."""
        return batch

    def num_steps(self, batch: Batch, batch_size: int, drop_last: bool) -> int:
        """Optimiser steps per epoch over in-memory data ``batch``."""
        from pvae.batching import num_batches

        return num_batches(batch[0].shape[0], batch_size, drop_last)

    def minibatches(self, batch: Batch, batch_size: int, generator: torch.Generator,
                    drop_last: bool) -> Iterator[list[tuple[Batch, int]]]:
        """One epoch of steps; each step is a list of ``(minibatch, num_data)`` parts.

        The loss of a step is the sum over its parts, each part's data plate
        sized to ``num_data``. The default: one part per step, a shuffled
        slice of all the data.
        """
        n = batch[0].shape[0]
        perm = torch.randperm(n, generator=generator).to(batch[0].device)
        for i in range(self.num_steps(batch, batch_size, drop_last)):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            # the rows ``t[idx]`` gives, gathered several times faster on the CPU (85 against
            # 8 µs for 128 MNIST images: advanced indexing takes a slower, general kernel)
            yield [(tuple(t.index_select(0, idx) for t in batch), n)]

    # -- save / load --------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the model (class, constructor arguments, weights) to ``path`` atomically.

        ``pvae.load(path)`` rebuilds it, unless it has custom networks or a
        likelihood not in pvae's registry: then build it as before and pass it,
        ``pvae.load(path, model=...)`` (without it, load says so).
        """
        ckpt.save_model(self, path)
