"""Typed run configuration, loaded from YAML.

A config has four sections, each a dataclass whose field comments say why a
default is what it is. Loading is strict: an unknown key, a value of the wrong
type or an out-of-range value raises ``ConfigError`` naming the key and the
fix. YAML is read with ``yaml.safe_load`` (no Python objects).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml


class ConfigError(ValueError):
    """A configuration that cannot be used."""


@dataclass
class DataConfig:
    name: Literal["digits", "mnist", "fashion_mnist", "array"] = "digits"
    root: str = "data"  # folder holding torchvision's MNIST/raw, FashionMNIST/raw
    path: Optional[str] = None  # the .npy/.npz/.csv file for name: array
    download: bool = False  # never fetch unless asked: runs must work offline
    binarize: Optional[Literal["static", "dynamic"]] = None
    flatten: bool = True  # MLP models take vectors; set false for arch: conv
    val_fraction: float = 0.1
    test_fraction: float = 0.15  # ignored for MNIST/Fashion-MNIST (own test set)
    max_train: Optional[int] = None  # cap the training set for quick runs
    num_labelled: Optional[int] = None  # ssvae: keep this many labels (class-balanced), hide the rest
    seed: int = 0  # fixes the split, static binarisation and which labels are kept
    features: Optional[str] = None  # a trained run folder or checkpoint: train on its codes (M1+M2)

    def validate(self) -> None:
        _require(0 <= self.val_fraction < 1, "data.val_fraction", "must be in [0, 1)")
        _require(0 <= self.test_fraction < 1, "data.test_fraction", "must be in [0, 1)")
        _require(self.max_train is None or self.max_train >= 1, "data.max_train",
                 "must be a positive int or null")
        _require(self.name != "array" or self.path, "data.path",
                 "is needed for name: array (a .npy, .npz or .csv file)")
        _require(self.num_labelled is None or self.num_labelled >= 0, "data.num_labelled",
                 "must be >= 0 or null")


@dataclass
class ModelConfig:
    type: Literal["vae", "cvae", "ssvae", "hvae"] = "vae"
    z_dim: int = 8  # digits are 8x8: a few latent dimensions suffice
    z_dims: tuple[int, ...] = (32, 16)  # hvae: latent sizes, bottom layer first
    hidden_dims: tuple[int, ...] = (256, 128)
    likelihood: str = "continuous_bernoulli"  # digits are grey levels in [0, 1]
    likelihood_kwargs: dict = field(default_factory=dict)  # e.g. {scale: 0.1} for gaussian
    arch: Optional[Literal["mlp", "conv"]] = None  # None: conv for (C, H, W) data
    activation: str = "relu"
    beta: float = 1.0  # KL weight; 1 is the true ELBO
    guide_flows: int = 0  # inverse autoregressive flows on q(z|x); 0 is mean-field
    num_classes: Optional[int] = None  # cvae/ssvae: default from the data's labels
    y_dim: Optional[int] = None  # cvae: condition on vectors y of this length, not class labels
    learned_prior: bool = True  # cvae: p(z|y) by a network, else Normal(0, I)
    aux_weight: float = 50.0  # ssvae: classifier term per labelled point (Kingma et al.'s alpha)
    batching: Literal["balanced", "separate", "paired"] = "balanced"  # ssvae: see SemiSupervisedVAE
    balance_weight: float = 0.0  # ssvae: class-balance term per unlabelled point; 0 is off
    guide: Literal["top_down", "bottom_up"] = "bottom_up"  # hvae guide (Burda et al.); "top_down": Ladder VAE

    def validate(self) -> None:
        from pvae import likelihoods
        from pvae.models.checks import HparamError, check_hparams

        try:  # the rules the models' constructors check, written once (pvae.models.checks)
            check_hparams(z_dim=self.z_dim, z_dims=self.z_dims, hidden_dims=self.hidden_dims,
                          beta=self.beta, guide_flows=self.guide_flows, y_dim=self.y_dim,
                          num_classes=self.num_classes, aux_weight=self.aux_weight,
                          balance_weight=self.balance_weight)
        except HparamError as e:
            raise ConfigError(f"config key 'model.{e.key}' {e.rule}") from None
        _require(self.y_dim is None or self.type == "cvae", "model.y_dim",
                 "is for model.type cvae (a vector condition)")
        _require(self.y_dim is None or self.num_classes is None, "model.y_dim",
                 "and model.num_classes exclude each other: set one")
        _require(self.likelihood in likelihoods.names(), "model.likelihood",
                 f"must be one of {', '.join(likelihoods.names())}")
        try:
            likelihoods.get(self.likelihood, **self.likelihood_kwargs)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"config key 'model.likelihood_kwargs': {e}") from None


@dataclass
class TrainConfig:
    elbo: str = "trace"  # trace, meanfield, tracegraph, enum, renyi[:alpha], iwae[:K], iwae_dreg[:K], jit_*
    epochs: int = 100  # enough for the digits job to converge
    batch_size: int = 128
    lr: float = 1e-3
    lr_steps: tuple[int, ...] = ()  # epochs after which the learning rate is multiplied by
    lr_factor: float = 0.1  # lr_factor (a step schedule; none by default)
    num_particles: int = 1
    kl_warmup: float = 0.0  # epochs of linear KL warm-up
    clip_norm: Optional[float] = None
    seed: int = 0  # same seed, same numbers
    device: str = "cpu"
    num_threads: Optional[int] = 1  # torch intra-op threads (null: torch's default); tiny nets
    # gain nothing from more, and extra threads contend for the cores of a busy machine
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    checkpoint_every: int = 10  # epochs between atomic checkpoints
    logger: Literal["tensorboard", "none"] = "none"  # tensorboard: event files in the run
    # folder's tensorboard/ (pip install pvae[tensorboard]); metrics.json/csv are written either way

    #: The fields that are keyword arguments of :func:`pvae.fit`, under the same names.
    FIT_KEYS: typing.ClassVar[tuple[str, ...]] = (
        "elbo", "epochs", "batch_size", "lr", "lr_steps", "lr_factor", "num_particles",
        "kl_warmup", "clip_norm", "seed", "device", "optimizer", "checkpoint_every")

    def fit_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`pvae.fit` this section sets:
        ``pvae.fit(model, data, **cfg.train.fit_kwargs(), validation=...)``.
        ``num_threads`` is not among them (it sets torch's threads for the process)."""
        return {k: getattr(self, k) for k in self.FIT_KEYS}

    def validate(self) -> None:
        from pvae.elbos import ELBO_NAMES

        _require(self.epochs >= 1, "train.epochs", "must be a positive int")
        _require(self.batch_size >= 1, "train.batch_size", "must be a positive int")
        _require(self.lr > 0, "train.lr", "must be positive")
        _require(all(1 <= e < self.epochs for e in self.lr_steps)
                 and list(self.lr_steps) == sorted(set(self.lr_steps)), "train.lr_steps",
                 f"must be increasing epochs in 1..{self.epochs - 1} (train.epochs - 1)")
        _require(self.lr_factor > 0, "train.lr_factor", "must be positive")
        _require(self.num_particles >= 1, "train.num_particles", "must be a positive int")
        _require(self.kl_warmup >= 0, "train.kl_warmup", "must be >= 0")
        _require(self.clip_norm is None or self.clip_norm > 0, "train.clip_norm",
                 "must be positive or null")
        _require(self.checkpoint_every >= 1, "train.checkpoint_every", "must be a positive int")
        _require(self.num_threads is None or self.num_threads >= 1, "train.num_threads",
                 "must be a positive int or null")
        _require(self.elbo.partition(":")[0] in ELBO_NAMES, "train.elbo",
                 f"must be one of {', '.join(ELBO_NAMES)} (renyi:ALPHA, iwae:K)")


@dataclass
class EvalConfig:
    num_samples: int = 100  # importance samples for the test log-likelihood after training

    def validate(self) -> None:
        _require(self.num_samples >= 1, "evaluate.num_samples", "must be a positive int")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "Config":
        for section in (self.data, self.model, self.train, self.evaluate):
            section.validate()
        return self

    def to_dict(self) -> dict:
        def plain(v):
            if isinstance(v, tuple):
                return list(v)
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {s: {k: plain(v) for k, v in dataclasses.asdict(getattr(self, s)).items()}
                for s in ("data", "model", "train", "evaluate")}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _require(ok: Any, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} {message}")


# -- strict conversion --------------------------------------------------------------------
def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"config key {key!r}: {value!r} fits none of the allowed types")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key {key!r} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} must be a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r}")  # pragma: no cover


def _unknown(key: str, valid: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {where}{key!r}{hint} Valid keys: {', '.join(valid)}")


def _build(cls, values: Any, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"config section {where.rstrip('.')!r} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown(str(key), names, where)
        sub = hints[key]
        if dataclasses.is_dataclass(sub):
            kwargs[key] = _build(sub, value, f"{where}{key}.")
        else:
            kwargs[key] = _convert(value, sub, f"{where}{key}")
    return cls(**kwargs)


def from_dict(values: Any) -> Config:
    """A validated :class:`Config` from nested dicts (strict: unknown keys are errors)."""
    return _build(Config, values, "").validate()


def load_config(path: Optional[Union[str, os.PathLike]] = None,
                overrides: Optional[list[str]] = None) -> Config:
    """Read a YAML config (defaults when ``path`` is None) and apply ``key=value`` overrides."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist; check the path "
                              "(shipped configs are in configs/)")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {e}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) != 2 or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value, "
                              "e.g. train.epochs=5")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse the value ({e})") from None
        section = values.setdefault(parts[0], {})
        if not isinstance(section, dict):
            raise ConfigError(f"config section {parts[0]!r} must be a mapping")
        section[parts[1]] = value
    return from_dict(values)
