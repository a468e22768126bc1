"""Conventions of pvae's Pyro programs: auxiliary sites, observed sites, model/guide pairs."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, Union, runtime_checkable

from pyro.poutine.messenger import Messenger

#: ``infer`` key marking a sample site as a training-only term outside the model's
#: joint density (the semi-supervised classifier term): importance weights and
#: log-likelihoods leave such sites out (:mod:`pvae.weights`).
AUXILIARY = "pvae_auxiliary"


def auxiliary(**infer: Any) -> dict:
    """The ``infer`` dict of an auxiliary site: ``pyro.sample(..., infer=auxiliary())``."""
    return {AUXILIARY: True, **infer}


def is_auxiliary(site: dict) -> bool:
    """Whether a trace site is marked :data:`AUXILIARY`."""
    return bool(site.get("infer", {}).get(AUXILIARY))


@runtime_checkable
class ModelGuidePair(Protocol):
    """What evaluation takes: a Pyro ``model`` and ``guide`` of one signature.

    A pvae model is one; so is :class:`Pair`, which wraps two plain callables.
    """

    def model(self, *batch: Any, **kwargs: Any) -> Any: ...

    def guide(self, *batch: Any, **kwargs: Any) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Pair:
    """Two callables ``(model_fn, guide_fn)`` as a :class:`ModelGuidePair`."""

    model: Callable
    guide: Callable
    max_plate_nesting: int = 1


def as_pair(model: Union[ModelGuidePair, tuple, list]) -> Pair:
    """``model`` as one :class:`Pair`: a pvae model (or any :class:`ModelGuidePair`) or a
    ``(model_fn, guide_fn)`` tuple, with its plate nesting (1 unless it declares more).

    Raises ``TypeError`` for anything else.
    """
    if isinstance(model, (tuple, list)):
        if len(model) != 2 or not all(callable(f) for f in model):
            raise TypeError("a model/guide pair is two callables (model_fn, guide_fn)")
        return Pair(model[0], model[1])
    if not isinstance(model, ModelGuidePair):
        raise TypeError(f"expected a pvae model or a (model_fn, guide_fn) pair, got "
                        f"{type(model).__name__}")
    return Pair(model.model, model.guide, int(getattr(model, "max_plate_nesting", 1)))


class ObservedSites(Messenger):
    """Record, for each sample site inside it, whether the site was observed.

    Used inside a model to tell whether a site's value is data, however it
    arrived: as the ``obs=`` argument or from a handler outside the model
    (``poutine.condition``); ``poutine.uncondition`` makes it latent.
    ``observed[name]`` is read after the site.
    """

    def __init__(self) -> None:
        super().__init__()
        self.observed: dict[str, bool] = {}

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample":
            self.observed[msg["name"]] = bool(msg["is_observed"])
