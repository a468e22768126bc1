"""What every pvae model shares: the data plate, save/load, data checks.

A pvae model is a :class:`pyro.nn.PyroModule` with ``model(*batch)`` and
``guide(*batch)`` methods of the same signature. Its parameters live on the
module (the training loop optimises ``module.parameters()`` directly); the
module also has a unique Pyro name, so that several models in one process
never share entries in Pyro's global parameter store when used with
``pyro.infer.SVI`` and ``pyro.optim``.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, ClassVar, Iterator, Optional

import pyro
import torch
from pyro.nn import PyroModule

_COUNTER = itertools.count()
MODEL_CLASSES: dict[str, type["PVAEModel"]] = {}


class PVAEModel(PyroModule):
    """Base class of pvae models (not used directly).

    Subclasses define ``model`` and ``guide``, call :meth:`_remember` with the
    constructor arguments needed to rebuild them (for :func:`pvae.load`), and
    list their latent sites in :attr:`latent_sites`.
    """

    #: Sample sites that are latent in the guide (for diagnostics).
    latent_sites: ClassVar[tuple[str, ...]] = ("z",)
    #: Plates nested inside each other in model and guide (just "data").
    max_plate_nesting: ClassVar[int] = 1
    #: Whether the model's data are (x, y) pairs rather than x alone.
    takes_labels: ClassVar[bool] = False
    #: Whether the guide is mean-field (each latent site's q is a plain distribution).
    mean_field: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        MODEL_CLASSES[cls.__name__] = cls

    def __init__(self) -> None:
        super().__init__(name=f"{type(self).__name__.lower()}{next(_COUNTER)}")
        self.num_data: Optional[int] = None
        self._hparams: dict[str, Any] = {}
        self._rebuildable = True

    # -- construction record, for save/load -------------------------------------
    def _remember(self, rebuildable: bool = True, **hparams: Any) -> None:
        self._hparams = hparams
        self._rebuildable = rebuildable

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model (plain Python values)."""
        return dict(self._hparams)

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

    @contextlib.contextmanager
    def scaled_to(self, num_data: Optional[int]) -> Iterator[None]:
        """Temporarily set :attr:`num_data` (the data plate's full size)."""
        old, self.num_data = self.num_data, num_data
        try:
            yield
        finally:
            self.num_data = old

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    # -- data -------------------------------------------------------------------------
    def check_data(self, *batch: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``batch`` cannot be modelled (shape, support)."""
        raise NotImplementedError

    # -- save / load --------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the model (class, constructor arguments, weights) to ``path`` atomically."""
        from pvae.checkpoint import save_model

        save_model(self, path)
