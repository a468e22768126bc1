"""Models by name: the registry that builds them from a config and rebuilds them from files.

Each model class carries a config name (``"vae"``, ``"cvae"``, ``"ssvae"``,
``"hvae"``) and registers itself with :func:`register`; :func:`get` builds one
by name, checking keyword arguments against the constructor's signature as
:func:`pvae.likelihoods.get` does. :func:`load` rebuilds a saved model from the
plain record :mod:`pvae.checkpoint` reads (which itself knows no model class).
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Optional, Union

import torch

from pvae import checkpoint as ckpt
from pvae.models.base import MODEL_CLASSES, PVAEModel

_REGISTRY: dict[str, type[PVAEModel]] = {}


def register(cls: type[PVAEModel]) -> type[PVAEModel]:
    """Class decorator: make ``cls`` buildable by its ``config_name`` (``get``, configs)."""
    name = getattr(cls, "config_name", None)
    if not name:
        raise ValueError(f"{cls.__name__} has no config_name to register under")
    _REGISTRY[name] = cls
    return cls


def names() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def options(name: str) -> list[str]:
    """The keyword arguments model ``name``'s constructor takes."""
    return [p for p in inspect.signature(_class(name).__init__).parameters if p != "self"]


def model_class(name: str) -> type[PVAEModel]:
    """The class registered as ``name`` (to read its declared traits); ``ValueError`` for an
    unknown name, naming the valid ones."""
    return _class(name)


def _class(name: str) -> type[PVAEModel]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names are: {', '.join(names())}")
    return _REGISTRY[name]


def get(name: str, **kwargs: Any) -> PVAEModel:
    """A new model by config name; ``kwargs`` go to its constructor.

    Raises
    ------
    ValueError
        For an unknown name, a keyword the constructor does not take (naming
        the valid ones), or a value its checks refuse.
    """
    cls = _class(name)
    valid = options(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options are: {', '.join(valid)}")
    return cls(**kwargs)


def config_kwargs(model_cfg, x_shape: tuple[int, ...],
                  num_classes: Optional[int] = None) -> dict[str, Any]:
    """The constructor arguments of the model ``model_cfg`` (a ``ModelConfig``) describes.

    Only the fields the chosen model's constructor takes are passed; ``num_classes``
    from the data is used when the config leaves it unset. Raises ``ValueError``
    when a labelled model has no number of classes.
    """
    name = model_cfg.type
    fields = dict(vars(model_cfg))
    fields["x_dim"] = tuple(x_shape)
    if "lengths" in _class(name).batch_parts:  # sequences: x_shape is (T, D), or (T,) for ids
        fields["x_dim"] = _sequence_x_dim(name, tuple(x_shape), fields.get("vocab_size"))
    if name == "cvae" and model_cfg.y_dim:  # a vector condition, not labels
        fields["num_classes"] = None
    else:
        fields["y_dim"] = None
        fields["num_classes"] = model_cfg.num_classes or num_classes
        if "y" in _class(name).batch_parts and not fields["num_classes"]:
            raise ValueError(f"model.type {name} needs labels: set model.num_classes, "
                             "or use a data set with labels")
    taken = set(options(name))
    return {k: v for k, v in fields.items() if k in taken}


def _sequence_x_dim(name: str, x_shape: tuple[int, ...], vocab_size) -> Optional[int]:
    """A sequence model's ``x_dim`` from one padded sequence's shape: D of ``(T, D)``
    series, None for token ids ``(T,)`` (which need ``vocab_size``)."""
    if vocab_size:
        if len(x_shape) != 1:
            raise ValueError(f"model.type {name} with model.vocab_size takes token ids of "
                             f"shape (N, T), but the data's sequences have shape {x_shape}")
        return None
    if len(x_shape) != 2:
        raise ValueError(f"model.type {name} takes series of shape (N, T, D) or, with "
                         f"model.vocab_size, token ids (N, T); the data's sequences have shape "
                         f"{x_shape}: set model.vocab_size for token ids")
    return x_shape[1]


def from_config(model_cfg, x_shape: tuple[int, ...],
                num_classes: Optional[int] = None) -> PVAEModel:
    """The model a ``ModelConfig`` describes, for data points of shape ``x_shape``.

    ``num_classes``: the data's number of classes, used when the config sets
    none. Raises ``ValueError`` as :func:`get` and :func:`config_kwargs` do.
    """
    return get(model_cfg.type, **config_kwargs(model_cfg, x_shape, num_classes))


def rebuild(record: dict, path: Union[str, os.PathLike]) -> PVAEModel:
    """A model of the class and settings a checkpoint record holds (weights not loaded).

    Raises
    ------
    pvae.checkpoint.CheckpointError
        When the record's model has custom parts, an unknown class, or settings
        that do not build it.
    """
    if not record.get("rebuildable", True):
        why = " and ".join(record.get("custom") or ["custom networks"])
        raise ckpt.CheckpointError(
            f"{str(path)!r} holds a {record['class']} with custom networks or likelihood "
            f"({why}), which cannot be rebuilt from the file; build it as before and call "
            "pvae.load(path, model=...)"
        )
    cls = MODEL_CLASSES.get(record["class"])
    if cls is None:
        raise ckpt.CheckpointError(
            f"{str(path)!r} holds an unknown model class {record['class']!r}")
    try:
        return cls(**record["hparams"])
    except ValueError as e:  # e.g. a likelihood name this process has not registered
        raise ckpt.CheckpointError(
            f"{str(path)!r} holds a {record['class']} that cannot be rebuilt here ({e}); "
            "build it as before and call pvae.load(path, model=...)"
        ) from None
    except TypeError as e:  # a damaged file: constructor arguments that do not exist
        raise ckpt.CheckpointError(
            f"{str(path)!r} is a damaged pvae checkpoint: its saved settings do not build "
            f"a {record['class']} ({e}); use an earlier checkpoint or retrain"
        ) from None


def load(path: Union[str, os.PathLike], model: Optional[PVAEModel] = None, *,
         device: Optional[Union[str, torch.device]] = None) -> PVAEModel:
    """Load a model saved by ``model.save(path)`` or written by ``pvae.fit``.

    Models with default networks are rebuilt from the saved constructor
    arguments, each with its own Pyro name (so two loads of one file train
    independently). A model with custom encoder/decoder networks or a
    likelihood not in pvae's registry cannot be rebuilt from data alone: build
    it as before and pass it as ``model``; its weights are then replaced by
    the saved ones. Returns the model in eval mode, on ``device`` if given.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    pvae.checkpoint.CheckpointError
        A file that is not a pvae checkpoint, is damaged or unsafe, holds a
        model that cannot be rebuilt without ``model=``, or does not fit ``model``.
    """
    record = ckpt.read(path)
    cls, saved = MODEL_CLASSES.get(record["class"]), record["hparams"]
    if cls is not None:  # settings of files saved before an option existed, as then built
        record["hparams"] = cls.saved_hparams(dict(saved))
    if model is None:
        model = rebuild(record, path)
    # filled-in options are compared as the model records them (ckpt.saved_settings)
    record["hparams"] = saved
    ckpt.restore_weights(model, record, path)
    if device is not None:
        model.to(device)
    return model.eval()
