"""ELBOs by name: the registry ``pvae.fit`` and the command line use.

``make_elbo("trace")`` gives pvae's lean ``Trace_ELBO`` (:mod:`pvae.fast_elbo`),
``"meanfield"`` its ``TraceMeanField_ELBO``; ``"enum"`` is
:class:`ParallelEnum_ELBO` (Pyro's ``TraceEnum_ELBO`` with the guide's discrete
sites enumerated); ``"tracegraph"`` and ``"renyi:ALPHA"`` are Pyro's own;
``"jit_trace"`` and ``"jit_meanfield"`` are :class:`JitTrace_ELBO` and
:class:`JitTraceMeanField_ELBO` below (Pyro's, compiled once per signature and
with the KL warm-up weight as an input); ``"iwae:K"`` and ``"iwae_dreg:K"`` are
:class:`pvae.iwae.IWAE`. Any other ``pyro.infer.ELBO`` instance passes through
unchanged; Pyro's own JIT ELBOs are refused (they bake the data plate's size,
beta and the warm-up weight into their compiled loss).

Free bits (``fit(free_bits=...)``) is :class:`pvae.free_bits.FreeBits`, built by
:func:`pvae.train.checks.with_free_bits` from ``"trace"`` or ``"meanfield"``.

What each class can do (linear in the plate scale, needs a mean-field guide,
takes a KL weight, takes free bits, ...) is declared once, in :data:`TRAITS`, and read through
:func:`traits`; ``pvae.fit`` asks nothing else of an ELBO's class. Adding an
ELBO is its class, its name in :data:`ELBOS` and its line in :data:`TRAITS`.
"""

from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import pyro.infer
import torch
from pyro.infer import (
    ELBO, RenyiELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO, config_enumerate,
)
from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO
from pvae.program_key import LatentScale, latent_weight
from pvae.program_key import keywords as _keywords
from pvae.program_key import module_tree as _module_tree
from pvae.program_key import program_constants as _program_constants
from pvae.program_key import signature as _signature
from pvae.free_bits import FreeBits
from pvae.kl_balance import KLBalance
from pvae.iwae import IWAE
from pvae.weights import IWAE_AS_WRITTEN, kl_weight_error


class ParallelEnum_ELBO(TraceEnum_ELBO):
    """``TraceEnum_ELBO`` that sums out every discrete latent guide site exactly.

    pvae's guides carry no enumeration marks, so that every other ELBO samples
    their discrete sites (the semi-supervised model's ``"y"``) without Pyro's
    warnings; this class applies ``pyro.infer.config_enumerate(guide, "parallel")``
    itself, which is where enumeration is asked for. Sites already marked keep
    their marks. In your own SVI loop the same is
    ``SVI(model, config_enumerate(guide), optim, TraceEnum_ELBO())``.
    """

    def _get_traces(self, model, guide, args, kwargs):
        # the mark goes inside Pyro's enumeration handler, which wraps the guide here
        return super()._get_traces(model, config_enumerate(guide, "parallel"), args, kwargs)


# -- JIT-compiled ELBOs ------------------------------------------------------------------------
class FixedJitTraceMeanField_ELBO(pyro.infer.JitTraceMeanField_ELBO):
    """Pyro's ``JitTraceMeanField_ELBO`` with its cache working.

    Pyro's class looks for its compiled loss under one attribute name and stores it
    under another, so it compiles afresh on every call; here the lookup finds it.
    """

    @property
    def _loss_and_surrogate_loss(self):
        return self.__dict__.get("_differentiable_loss")


def _weighted(fn: Callable, weight0: float) -> Callable:
    """``fn`` taking the warm-up weight as a tensor first argument: compiled while the
    weight was ``weight0`` (which the handlers around it applied as a constant), it
    rescales every latent site by ``weight / weight0`` so the graph follows the input."""

    def run(weight, *args, **kwargs):
        if weight0 == 0.0:
            return fn(*args, **kwargs)
        with LatentScale(weight / weight0):
            return fn(*args, **kwargs)

    return run


class _StableJit:
    """Mixin over Pyro's JIT ELBOs: one compiled loss per distinct signature.

    Pyro keys its compiled loss on ``id(model)``, and ``vae.model`` is a new bound
    method object at every access, so a loop that passes ``vae.model`` recompiles
    nearly every step; Pyro also bakes into the graph every Python number the program
    reads (the data plate's size ``num_data``, ``beta``, the KL warm-up weight), and
    reuses the first model's graph for any later model. Here each distinct
    ``(model, guide, argument shapes, keyword arguments, the model's declared program
    constants, the networks' tree and settings)``
    (:meth:`pvae.models.base.PVAEModel.program_constants`,
    :func:`pvae.program_key.module_tree`) gets
    its own Pyro ELBO of the same options, compiled once; a change of ``num_data`` or
    ``beta`` compiles a new graph, and the warm-up weight (the :class:`LatentScale`
    handlers around the call) enters the graph as a tensor input, so it may change
    every step without a recompile.
    """

    _inner_class: type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._options = (args, dict(kwargs))  # each signature's Pyro ELBO gets the same
        self._compiled: dict = {}

    @property
    def num_compiled(self) -> int:
        """Distinct compiled losses so far (one per signature)."""
        return len(self._compiled)

    def _call(self, method: str, model, guide, args, kwargs):
        weight = latent_weight()
        key = (model, guide, _signature(args), _keywords(kwargs), _program_constants(model),
               _program_constants(guide), _module_tree(model), _module_tree(guide), weight == 0.0)
        entry = self._compiled.get(key)
        if entry is None:
            entry = (self._inner_class(*self._options[0], **self._options[1]),
                     _weighted(model, weight),
                     _weighted(guide, weight))
            self._compiled[key] = entry
        inner, wmodel, wguide = entry
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
        w = torch.tensor(weight, device=device)
        return getattr(inner, method)(wmodel, wguide, w, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        return self._call("differentiable_loss", model, guide, args, kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        return self._call("loss_and_grads", model, guide, args, kwargs)

    def loss(self, model, guide, *args, **kwargs):
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()


class JitTrace_ELBO(_StableJit, pyro.infer.JitTrace_ELBO):
    """Pyro's ``JitTrace_ELBO`` compiled once per signature, with the warm-up weight as
    an input (see :class:`_StableJit`). Losses are negative ELBOs in nats (scalars)."""

    _inner_class = pyro.infer.JitTrace_ELBO


class JitTraceMeanField_ELBO(_StableJit, pyro.infer.JitTraceMeanField_ELBO):
    """Pyro's ``JitTraceMeanField_ELBO`` (analytic KL) compiled once per signature,
    with the warm-up weight as an input (see :class:`_StableJit`)."""

    _inner_class = FixedJitTraceMeanField_ELBO


#: Pyro's own JIT ELBOs, whose compiled losses go stale when num_data, beta or the
#: warm-up weight change; pvae refuses them unless they are the classes above.
PYRO_JIT_ELBOS = tuple(getattr(pyro.infer, n) for n in dir(pyro.infer) if n.startswith("Jit"))


#: ELBO names accepted by ``fit(elbo=...)``; ``renyi:ALPHA`` sets Renyi's alpha.
ELBOS: dict[str, Callable[..., ELBO]] = {
    "trace": FastTrace_ELBO,  # Trace_ELBO with a lean path (pvae.fast_elbo)
    "meanfield": FastTraceMeanField_ELBO,
    "tracegraph": TraceGraph_ELBO,
    "enum": ParallelEnum_ELBO,  # TraceEnum_ELBO, the guide's discrete sites enumerated
    "renyi": RenyiELBO,
    "jit_trace": JitTrace_ELBO,
    "jit_meanfield": JitTraceMeanField_ELBO,
}
#: Every name ``make_elbo`` takes.
ELBO_NAMES = (*ELBOS, "iwae", "iwae_dreg")


#: How each name that takes an argument is written, for error messages.
_FORMS = {
    "renyi": "write 'renyi' or 'renyi:ALPHA' with ALPHA a number, e.g. 'renyi:0.5'",
    "iwae": "write 'iwae' or 'iwae:K' with K a positive whole number, e.g. 'iwae:5'",
    "iwae_dreg": "write 'iwae_dreg' or 'iwae_dreg:K' with K a positive whole number, "
                 "e.g. 'iwae_dreg:5'",
}


def _parse(spec: str, name: str, arg: str, kind: type):
    """``arg`` of ``elbo=spec`` as ``kind``, or a ValueError naming the option and its forms."""
    try:
        return kind(arg)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"elbo {spec!r}: {arg!r} is not {what}; {_FORMS[name]}") from None


def make_elbo(spec: Union[str, ELBO], num_particles: int = 1, *, model=None) -> ELBO:
    """An ELBO from a name or an ``ELBO`` instance (returned as is).

    Names: ``trace``, ``meanfield``, ``tracegraph``, ``enum``, ``renyi[:alpha]``,
    ``jit_trace``, ``jit_meanfield``, ``iwae[:K]`` and ``iwae_dreg[:K]`` (K
    particles per data point; default ``num_particles``). ``enum`` enumerates
    every discrete guide site (:class:`ParallelEnum_ELBO`); a ``TraceEnum_ELBO``
    instance of your own enumerates only the sites its guide marks.

    Raises ``ValueError`` naming the option and its valid forms for an unknown
    name, an argument that does not parse (``"iwae:abc"``, ``"renyi:x"``),
    K < 1, alpha = 1 or not finite, or ``num_particles`` < 1, and for an instance
    of Pyro's own JIT ELBOs (``JitTrace_ELBO``, ``JitTraceMeanField_ELBO``,
    ``JitTraceGraph_ELBO``, ``JitTraceEnum_ELBO``), whose compiled loss keeps the
    ``num_data``, ``beta`` and warm-up weight it was compiled with; ``TypeError``
    for a spec that is neither a name nor an ELBO.
    """
    if isinstance(spec, ELBO):
        refusal = traits(spec).refusal
        if refusal is not None:
            raise ValueError(refusal.format(name=type(spec).__name__))
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"elbo must be a name or a pyro.infer.ELBO, got {type(spec).__name__}")
    name, colon, arg = spec.partition(":")
    nesting = int(getattr(model, "max_plate_nesting", 1))
    if name not in ELBOS and name not in ("iwae", "iwae_dreg"):
        raise ValueError(f"unknown elbo {spec!r}; valid names are: {', '.join(ELBO_NAMES)} "
                         "(renyi:ALPHA, iwae:K), or pass a pyro.infer.ELBO")
    if not (isinstance(num_particles, int) and not isinstance(num_particles, bool)
            and num_particles >= 1):
        raise ValueError(f"num_particles must be a positive int, got {num_particles!r}")
    if colon and not arg.strip():
        raise ValueError(f"elbo {spec!r} has an empty argument after ':'; "
                         + _FORMS.get(name, f"write {name!r} alone"))
    if name in ("iwae", "iwae_dreg"):
        k = _parse(spec, name, arg, int) if arg else num_particles
        if k < 1:
            raise ValueError(f"elbo {spec!r}: K, the number of importance samples per data "
                             f"point, must be at least 1; {_FORMS[name]}")
        return IWAE(num_particles=k, dreg=name == "iwae_dreg", max_plate_nesting=nesting)
    kwargs: dict[str, Any] = {"num_particles": num_particles,
                              "vectorize_particles": num_particles > 1,
                              "max_plate_nesting": nesting}
    if name == "renyi":
        kwargs["alpha"] = _parse(spec, name, arg, float) if arg else 0.0
        if not math.isfinite(kwargs["alpha"]) or kwargs["alpha"] == 1.0:
            raise ValueError(f"elbo {spec!r}: alpha must be a finite number other than 1 "
                             f"(alpha = 1 is the plain ELBO: use 'trace'); {_FORMS[name]}")
        if num_particles < 2:
            raise ValueError("renyi needs num_particles >= 2 (with one particle it is the "
                             "plain ELBO); e.g. num_particles=5")
    elif arg:
        raise ValueError(f"elbo {name!r} takes no argument, got {spec!r}")
    if name.startswith("jit"):
        kwargs["ignore_jit_warnings"] = True
    return ELBOS[name](**kwargs)


@dataclass(frozen=True)
class ELBOTraits:
    """What an ELBO class can do, declared once (:data:`TRAITS`) and read by ``fit``.

    Attributes
    ----------
    linear_in_plate_scale
        The estimate is linear in site scales, so the data plate may scale a
        minibatch to the data size. ``False`` (Renyi): the scale would enter a
        log-mean-exp, so ``fit`` leaves the plate unscaled and multiplies the
        minibatch loss by ``num_data / batch`` instead.
    needs_mean_field_guide
        The KL is taken analytically per site, which needs a mean-field guide.
    kl_weight_refusal
        Why beta != 1 and KL warm-up cannot be used with it (``None``: they can).
    lean_path
        Finds its parameters without Pyro's param store (:mod:`pvae.fast_elbo`),
        so ``fit`` may train the model unregistered.
    jit
        Compiled per input shape: ``fit`` drops a last, smaller batch.
    enumerates
        Sums out the guide's discrete sites.
    refusal
        Why ``make_elbo`` and ``fit`` refuse the class, a message with ``{name}`` for
        the class's name (``None``: they take it).
    free_bits_refusal
        Why ``fit(free_bits=...)`` cannot train with it (``None``: it can, through
        :class:`pvae.free_bits.FreeBits`, which is itself declared not linear in the
        plate scale: each dimension's KL is averaged over the minibatch).
    differentiable
        Gives its loss as a tensor to differentiate (``differentiable_loss``), which
        ``fit``'s one optimiser and distributed training use; otherwise ``fit``
        takes its gradients through ``loss_and_grads``. Read from the class by
        :func:`traits`, not declared in the table.
    """

    linear_in_plate_scale: bool = True
    needs_mean_field_guide: bool = False
    kl_weight_refusal: Optional[str] = None
    lean_path: bool = False
    jit: bool = False
    enumerates: bool = False
    refusal: Optional[str] = None
    free_bits_refusal: Optional[str] = (
        "free bits is built on pvae's one-particle 'trace' and 'meanfield' ELBOs only")
    differentiable: bool = True

    @property
    def allows_kl_weight(self) -> bool:
        """Whether beta != 1 and KL warm-up may be used."""
        return self.kl_weight_refusal is None


_LOG_MEAN_EXP = "the weight would enter its log-mean-exp"
_STALE_JIT = ELBOTraits(jit=True, refusal=(
    "Pyro's {name} bakes the data plate's size (num_data), beta and the KL warm-up weight into its "
    "compiled loss, which then goes stale (and it recompiles for every new model callable); "
    "pass elbo='jit_trace' or 'jit_meanfield' (pvae.elbos.JitTrace_ELBO / "
    "JitTraceMeanField_ELBO), which keep them right, or an uncompiled ELBO"))
_MEAN_FIELD = ELBOTraits(needs_mean_field_guide=True)

#: Every ELBO class pvae knows, with its traits; a subclass inherits its nearest
#: registered base's (``ELBO`` itself: the defaults). Adding an ELBO is one line here.
TRAITS: dict[type, ELBOTraits] = {
    ELBO: ELBOTraits(),
    TraceMeanField_ELBO: _MEAN_FIELD,
    TraceEnum_ELBO: ELBOTraits(enumerates=True, free_bits_refusal=(
        "it sums out discrete latent sites exactly, and free bits is defined here for "
        "reparameterised continuous sites only")),
    RenyiELBO: ELBOTraits(linear_in_plate_scale=False, kl_weight_refusal=_LOG_MEAN_EXP,
                          free_bits_refusal="its latent terms enter a log-mean-exp over "
                                            "particles, with no KL per dimension to floor"),
    FastTrace_ELBO: ELBOTraits(lean_path=True, free_bits_refusal=None),
    FastTraceMeanField_ELBO: ELBOTraits(needs_mean_field_guide=True, lean_path=True,
                                        free_bits_refusal=None),
    # Free bits: the minibatch-averaged KL per dimension is not linear in the plate scale.
    FreeBits: ELBOTraits(linear_in_plate_scale=False, lean_path=True,
                         free_bits_refusal="it is already the free-bits objective"),
    # KL balancing: its coefficients are minibatch averages, as free bits' KL_j.
    KLBalance: ELBOTraits(linear_in_plate_scale=False, lean_path=True,
                          free_bits_refusal="it is the KL-balancing objective; use one of "
                                            "kl_balance and free_bits"),
    JitTrace_ELBO: ELBOTraits(jit=True),
    JitTraceMeanField_ELBO: ELBOTraits(needs_mean_field_guide=True, jit=True),
    IWAE: ELBOTraits(kl_weight_refusal=IWAE_AS_WRITTEN, enumerates=True,
                     free_bits_refusal="its latent terms enter a log-mean-exp over the K "
                                       "importance samples, with no KL per dimension to floor"),
    **{cls: _STALE_JIT for cls in PYRO_JIT_ELBOS},  # Pyro's own; pvae's above are their subclasses
}


def traits(elbo: Union[ELBO, type]) -> ELBOTraits:
    """The declared :class:`ELBOTraits` of an ELBO instance or class.

    Looked up along the class's method resolution order: the nearest class in
    :data:`TRAITS` decides (any ``pyro.infer.ELBO`` has at least the defaults).
    """
    cls = elbo if isinstance(elbo, type) else type(elbo)
    found = next((TRAITS[base] for base in cls.__mro__ if base in TRAITS), ELBOTraits())
    return dataclasses.replace(found, differentiable=callable(
        getattr(cls, "differentiable_loss", None)))


def check_kl_weight(elbo: ELBO, beta: float = 1.0, kl_warmup: float = 0) -> None:
    """Refuse beta != 1 or KL warm-up for an ELBO that cannot weight its latent terms.

    Raises
    ------
    ValueError
        When ``beta != 1`` or ``kl_warmup`` is set and the ELBO's traits refuse them.
    """
    refusal = traits(elbo).kl_weight_refusal
    if refusal is not None and (kl_warmup or beta != 1.0):
        raise kl_weight_error(type(elbo).__name__, refusal)

