"""ELBOs by name: the registry ``pvae.fit`` and the command line use.

``make_elbo("trace")`` gives pvae's lean ``Trace_ELBO`` (:mod:`pvae.fast_elbo`),
``"meanfield"`` its ``TraceMeanField_ELBO``; ``"tracegraph"``, ``"enum"``,
``"renyi:ALPHA"`` and the JIT variants are Pyro's own; ``"iwae:K"`` and
``"iwae_dreg:K"`` are :class:`pvae.iwae.IWAE`. Any ``pyro.infer.ELBO``
instance passes through unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Union

from pyro.infer import (
    ELBO, JitTrace_ELBO, JitTraceMeanField_ELBO, RenyiELBO, TraceEnum_ELBO, TraceGraph_ELBO,
)
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO
from pvae.iwae import IWAE

#: ELBO names accepted by ``fit(elbo=...)``; ``renyi:ALPHA`` sets Renyi's alpha.
ELBOS: dict[str, Callable[..., ELBO]] = {
    "trace": FastTrace_ELBO,  # Trace_ELBO with a lean path (pvae.fast_elbo)
    "meanfield": FastTraceMeanField_ELBO,
    "tracegraph": TraceGraph_ELBO,
    "enum": TraceEnum_ELBO,
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
    particles per data point; default ``num_particles``).

    Raises ``ValueError`` naming the option and its valid forms for an unknown
    name, an argument that does not parse (``"iwae:abc"``, ``"renyi:x"``),
    K < 1, alpha = 1 or not finite, or ``num_particles`` < 1; ``TypeError``
    for a spec that is neither a name nor an ELBO.
    """
    if isinstance(spec, ELBO):
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


class LatentScale(Messenger):
    """Multiply the scale of every latent (unobserved) sample site: KL warm-up."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and not site_is_subsample(msg):
            msg["scale"] = msg["scale"] * self.factor


def _scale_free(elbo: ELBO) -> bool:
    """ELBOs whose estimate is not linear in site scales (the scale would enter a log-mean-exp).

    For these the data plate is left unscaled and the per-batch loss is multiplied
    by ``num_data / batch`` instead; beta and KL warm-up are refused.
    """
    return isinstance(elbo, RenyiELBO)
