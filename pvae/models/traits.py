"""What a model declares about itself: the classifier mixin, checked methods."""

from __future__ import annotations

import functools
import inspect

import torch


def takes_data(method):
    """Check a public method's data arguments as ``fit`` does, then call it.

    The data arguments (``x``, then ``y`` where the method has it) go through
    :meth:`PVAEModel.checked_batch`: cast to float32 or refused with a clear
    error before any work (shape, NaN, labels; not the likelihood's support,
    since these methods encode data without scoring it). Calls from inside the
    model's own Pyro program (the guide calling ``encode``) and nested calls
    skip the check: their data were checked already.
    """
    sig = inspect.signature(method)
    names = [n for n in ("x", "y") if n in sig.parameters]

    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        if self._pyro_context.active or self.__dict__.get("_checking_inputs"):
            return method(self, *args, **kwargs)
        bound = sig.bind(self, *args, **kwargs)
        given = [bound.arguments[n] for n in names if bound.arguments.get(n) is not None]
        batch = self.checked_batch(*given, support=False)
        for n, value in zip(names, batch):
            bound.arguments[n] = value
        self.__dict__["_checking_inputs"] = True
        try:
            return method(*bound.args, **bound.kwargs)
        finally:
            self.__dict__["_checking_inputs"] = False

    return checked


class Classifier:
    """Mixin of a model that classifies its inputs (scvi-tools' ``SupervisedModuleClass``).

    ``isinstance(model, Classifier)`` tells evaluation, the latent tools and the
    command line that ``model.classify(x)`` gives class probabilities of shape
    ``(N, num_classes)``.
    """

    #: Number of classes.
    num_classes: int

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """q(y | x): class probabilities, shape ``(N, num_classes)``."""
        raise NotImplementedError
