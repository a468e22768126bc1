"""ELBOs by name: the registry ``pvae.fit`` and the command line use.

``make_elbo("trace")`` gives pvae's lean ``Trace_ELBO`` (:mod:`pvae.fast_elbo`),
``"meanfield"`` its ``TraceMeanField_ELBO``; ``"enum"`` is
:class:`ParallelEnum_ELBO` (Pyro's ``TraceEnum_ELBO`` with the guide's discrete
sites enumerated); ``"tracegraph"``, ``"renyi:ALPHA"`` and the JIT variants are
Pyro's own; ``"iwae:K"`` and ``"iwae_dreg:K"`` are :class:`pvae.iwae.IWAE`. Any
``pyro.infer.ELBO`` instance passes through unchanged.
"""

from __future__ import annotations

from typing import Any, Callable, Union

from pyro.infer import (
    ELBO, JitTrace_ELBO, JitTraceMeanField_ELBO, RenyiELBO, TraceEnum_ELBO, TraceGraph_ELBO,
    config_enumerate,
)
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO
from pvae.iwae import IWAE


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


def make_elbo(spec: Union[str, ELBO], num_particles: int = 1, *, model=None) -> ELBO:
    """An ELBO from a name or an ``ELBO`` instance (returned as is).

    Names: ``trace``, ``meanfield``, ``tracegraph``, ``enum``, ``renyi[:alpha]``,
    ``jit_trace``, ``jit_meanfield``, ``iwae[:K]`` and ``iwae_dreg[:K]`` (K
    particles per data point; default ``num_particles``). ``enum`` enumerates
    every discrete guide site (:class:`ParallelEnum_ELBO`); a ``TraceEnum_ELBO``
    instance of your own enumerates only the sites its guide marks.
    """
    if isinstance(spec, ELBO):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"elbo must be a name or a pyro.infer.ELBO, got {type(spec).__name__}")
    name, _, arg = spec.partition(":")
    nesting = int(getattr(model, "max_plate_nesting", 1))
    if name in ("iwae", "iwae_dreg"):
        k = int(arg) if arg else num_particles
        return IWAE(num_particles=k, dreg=name == "iwae_dreg", max_plate_nesting=nesting)
    if name not in ELBOS:
        raise ValueError(f"unknown elbo {spec!r}; valid names are: {', '.join(ELBO_NAMES)} "
                         "(renyi:ALPHA, iwae:K), or pass a pyro.infer.ELBO")
    if not (isinstance(num_particles, int) and num_particles >= 1):
        raise ValueError(f"num_particles must be a positive int, got {num_particles!r}")
    kwargs: dict[str, Any] = {"num_particles": num_particles,
                              "vectorize_particles": num_particles > 1,
                              "max_plate_nesting": nesting}
    if name == "renyi":
        kwargs["alpha"] = float(arg) if arg else 0.0
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
