"""Typed run configuration, loaded from YAML and validated by pydantic models.

A config has four sections (``data``, ``model``, ``train``, ``evaluate``), each a
pydantic model whose field descriptions say why a default is what it is.
Loading is strict: an unknown key, a value of the wrong type (no coercion: ``"5"``
is not an int, ``2.0`` is not an int, ``1`` is not a bool) or an out-of-range value
raises :class:`ConfigError` naming the dotted key (``'model.z_dim'``), the value and
what is allowed. YAML is read with ``yaml.safe_load``'s rules (no Python objects),
except that ``1e-4``, ``1.0e4`` and ``.5e3`` are numbers, as in YAML 1.2 (PyYAML follows
YAML 1.1, where a float with an exponent needs both a dot and a signed exponent,
``1.0e-4``; see :class:`_Loader`), and written back so that they read back the same.
``Config.model_json_schema()`` is the JSON schema editors use for completion
(``pvae config --schema``).
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import Field, ValidationError, model_validator

from pvae.config_base import IntList, _Section  # noqa: F401  (re-exported)
from pvae.config_errors import ConfigError, config_error
from pvae.config_eval import (  # noqa: F401  (re-exported)
    DEFAULT_TEST_POINTS, EvalConfig, check_points, points_to_score)


class DataConfig(_Section):
    """The ``data`` section: the data set, its splits and preprocessing (:func:`pvae.data.load`)."""

    name: Literal["digits", "mnist", "fashion_mnist", "array", "sequences", "gunpoint",
                  "italy_power_demand", "arrow_head", "japanese_vowels", "words",
                  "ucr_anomaly_135"] = Field(
        "digits", description="the data set; array: your .npy/.npz/.csv file (data.path); "
                              "sequences: your padded sequences (.npz with x, lengths)")
    root: str = Field("data", description="folder holding torchvision's MNIST/raw, "
                                          "FashionMNIST/raw")
    path: Optional[str] = Field(None, description="the .npy/.npz/.csv file for name: array")
    download: bool = Field(False, description="never fetch unless asked: runs must work offline")
    binarize: Optional[Literal["static", "dynamic"]] = Field(
        None, description="static: once, with data.seed; dynamic: a fresh draw every epoch")
    flatten: bool = Field(True, description="MLP models take vectors; set false for arch: conv "
                                            "(images only: sequences keep their shape)")
    val_fraction: float = Field(0.1, ge=0, lt=1,
                                description="share of the data held out for validation")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="ignored for MNIST/Fashion-MNIST "
                                                               "(own test set)")
    max_train: Optional[int] = Field(None, ge=1,
                                     description="cap the training set for quick runs")
    num_labelled: Optional[int] = Field(None, ge=0, description="ssvae: keep this many labels "
                                                                "(class-balanced), hide the rest")
    seed: int = Field(0, description="fixes the split, static binarisation and which labels "
                                     "are kept")
    features: Optional[str] = Field(None, description="a trained run folder or checkpoint: "
                                                      "train on its codes (M1+M2)")

    # -- sequences: a long series cut into windows (the anomaly series) ----------------------
    window: Optional[int] = Field(None, ge=1, description="anomaly series only: steps per "
                                                          "window; about the series' period")
    stride: int = Field(1, ge=1, description="anomaly series: steps between training windows")
    test_stride: int = Field(1, ge=1, description="anomaly series: steps between the scored "
                                                  "windows of the test series")

    @model_validator(mode="after")
    def _rules(self) -> "DataConfig":
        _require(self.name not in ("array", "sequences") or self.path, "data.path",
                 f"is needed for name: {self.name} (a .npy, .npz or .csv file)")
        for key in ("binarize", "features", "num_labelled"):
            _require(self.name not in SEQUENCE_DATA or getattr(self, key) is None, f"data.{key}",
                     "is for images and arrays: leave it unset for sequence data")
        _require(self.name not in ANOMALY_DATA or self.window, "data.window",
                 f"is needed for name: {self.name} (steps per window, about the series' period)")
        for key, unset in (("window", None), ("stride", 1), ("test_stride", 1)):
            _require(self.name in ANOMALY_DATA or getattr(self, key) == unset, f"data.{key}",
                     f"is for an anomaly series (name: {', '.join(ANOMALY_DATA)}), not "
                     f"{self.name}: leave it unset")
        _require(self.name not in ANOMALY_DATA or self.max_train is None, "data.max_train",
                 "does not apply to an anomaly series: its training windows are set by "
                 "data.window and data.stride")
        _require(self.window is None or self.test_stride <= self.window, "data.test_stride",
                 f"({self.test_stride}) must not exceed data.window ({self.window}): every step "
                 "of the test series needs a window that scores it")
        return self


#: Data names whose splits are padded sequences with lengths, and the long anomaly series.
SEQUENCE_DATA = ("sequences", "gunpoint", "italy_power_demand", "arrow_head", "japanese_vowels",
                 "words", "ucr_anomaly_135")
ANOMALY_DATA = ("ucr_anomaly_135",)


class ModelConfig(_Section):
    """The ``model`` section: the model class and its settings (:func:`pvae.models.get`)."""

    type: Literal["vae", "cvae", "ssvae", "hvae", "seqvae"] = Field(
        "vae", description="the model class (pvae.models.get); seqvae for sequence data")
    z_dim: int = Field(8, description="digits are 8x8: a few latent dimensions suffice")
    z_dims: IntList = Field((32, 16), description="hvae: latent sizes, bottom layer first")
    hidden_dims: IntList = Field((256, 128), description="hidden layer widths of encoder "
                                                         "and decoder")
    likelihood: str = Field("continuous_bernoulli",
                            description="digits are grey levels in [0, 1]")
    likelihood_kwargs: dict = Field(default_factory=dict,
                                    description="e.g. {scale: 0.1} for gaussian")
    arch: Optional[Literal["mlp", "conv"]] = Field(None,
                                                   description="null: conv for (C, H, W) data")
    activation: str = Field("relu", description="hidden activation, a torch.nn name in "
                                                "lower case")
    beta: float = Field(1.0, description="KL weight; 1 is the true ELBO")
    guide_flows: int = Field(0, description="inverse autoregressive flows on q(z|x); "
                                            "0 is mean-field")
    num_classes: Optional[int] = Field(None, description="cvae/ssvae: default from the "
                                                         "data's labels")
    y_dim: Optional[int] = Field(None, description="cvae: condition on vectors y of this "
                                                   "length, not class labels")
    learned_prior: bool = Field(True, description="cvae: p(z|y) by a network, else Normal(0, I)")
    aux_weight: float = Field(50.0, description="ssvae: classifier term per labelled point "
                                                "(Kingma et al.'s alpha)")
    batching: Literal["balanced", "separate", "paired"] = Field(
        "balanced", description="ssvae: see SemiSupervisedVAE")
    balance_weight: float = Field(0.0, description="ssvae: class-balance term per unlabelled "
                                                   "point; 0 is off")
    guide: Literal["top_down", "bottom_up"] = Field(
        "bottom_up", description='hvae guide (Burda et al.); "top_down": Ladder VAE')
    # -- learned priors (pvae.priors) ------------------------------------------------------
    prior: Literal["standard", "vamp", "mog"] = Field(
        "standard", description="p(z) of vae/hvae (top layer)/ssvae: Normal(0, I), the "
                                "VampPrior or a mixture of Gaussians")
    prior_components: Optional[int] = Field(
        None, description="K: pseudo-inputs of vamp (null: 500) or Gaussians of mog (null: 10)")
    # -- end of learned priors -------------------------------------------------------------
    norm: Optional[Literal["none", "layer"]] = Field(
        None, description='hvae: "layer" normalisation in every network, or "none"; '
                          'null: "layer" for the top_down guide, "none" for bottom_up')
    merge: Literal["precision", "residual", "joint", "joint_residual"] = Field(
        "precision", description='hvae, top_down guide: how q(z_l | z_l+1, x) combines the '
                                 'evidence with p(z_l | z_l+1): "precision" (Sonderby et al.), '
                                 '"residual" (Vahdat & Kautz), or "joint" / "joint_residual" (a '
                                 'network of the bottom-up features and the top-down state); '
                                 'see pvae.models.merges')

    # -- sequences (model.type: seqvae, pvae.SequenceVAE) -------------------------------------
    hidden_dim: int = Field(128, ge=1, description="seqvae: width of the recurrent encoder "
                                                   "and decoder")
    rnn: Literal["gru", "lstm"] = Field("gru", description="seqvae: the recurrent cell")
    num_layers: int = Field(1, ge=1, description="seqvae: stacked recurrent layers")
    bidirectional_encoder: bool = Field(True, description="seqvae: the encoder reads both ways")
    embedding_dim: Optional[int] = Field(None, ge=1, description="seqvae, tokens: embedding "
                                                                 "size; null: hidden_dim")
    word_dropout: float = Field(0.0, ge=0, lt=1, description="seqvae: decoder inputs replaced "
                                "by an unknown token in training (Bowman et al.: with "
                                "train.kl_warmup, keeps the KL from collapsing)")
    max_len: Optional[int] = Field(None, ge=1, description="seqvae: longest sample; null: the "
                                                           "data's padded length")

    @model_validator(mode="after")
    def _rules(self) -> "ModelConfig":
        from pvae import likelihoods
        from pvae.models.checks import HparamError, check_hparams

        try:  # the rules the models' constructors check, written once (pvae.models.checks)
            check_hparams(z_dim=self.z_dim, z_dims=self.z_dims, hidden_dims=self.hidden_dims,
                          beta=self.beta, guide_flows=self.guide_flows, y_dim=self.y_dim,
                          num_classes=self.num_classes, aux_weight=self.aux_weight,
                          balance_weight=self.balance_weight)
        except HparamError as e:
            raise ConfigError(f"config key 'model.{e.key}' {e.rule}, got {e.value!r}") from None
        _require(self.y_dim is None or self.type == "cvae", "model.y_dim",
                 "is for model.type cvae (a vector condition)")
        _require(self.y_dim is None or self.num_classes is None, "model.y_dim",
                 "and model.num_classes exclude each other: set one")
        _check_used(self)
        _check_prior(self)  # learned priors (pvae.priors)
        _require(self.likelihood in likelihoods.names(), "model.likelihood",
                 f"must be one of {', '.join(map(repr, likelihoods.names()))}, "
                 f"got {self.likelihood!r}")
        try:
            likelihoods.get(self.likelihood, **self.likelihood_kwargs)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"config key 'model.likelihood_kwargs': {e}") from None
        return self


def _check_used(cfg: "ModelConfig") -> None:
    """``ConfigError`` for a key set (not at its default) that ``cfg.type``'s constructor
    does not take: it would have no effect (``z_dims`` on a ``vae``, ``z_dim`` on an
    ``hvae``), so it is refused, naming the keys the type uses and the types that use it."""
    from pvae.models.registry import names, options

    taken = set(options(cfg.type))
    for key, field in type(cfg).model_fields.items():
        value = getattr(cfg, key)
        if key == "type" or key in taken or value == field.get_default(call_default_factory=True):
            continue
        sibling = _SIBLINGS.get(key)
        fix = (f"remove it{f', use model.{sibling}' if sibling in taken else ''}, or set "
               f"model.type to {' or '.join(repr(t) for t in names() if key in options(t))}")
        uses = ", ".join(k for k in type(cfg).model_fields if k in taken)
        raise ConfigError(
            f"config key 'model.{key}' ({list(value) if isinstance(value, tuple) else value!r})"
            f" has no effect with model.type {cfg.type!r} (which uses {uses}): {fix}")


#: Keys of one meaning under two names, by model type (hvae: z_dims; seqvae: hidden_dim).
_SIBLINGS = {"z_dim": "z_dims", "z_dims": "z_dim", "hidden_dim": "hidden_dims",
             "hidden_dims": "hidden_dim"}


def _check_prior(cfg: "ModelConfig") -> None:
    """``model.prior`` and ``model.prior_components`` as the model's constructor checks them."""
    from pvae import priors
    from pvae.models.registry import model_class

    try:
        priors.check(cfg.prior, cfg.prior_components,
                     getattr(model_class(cfg.type), "refused_priors", None),
                     f"model.type {cfg.type}")
    except ValueError as e:
        raise ConfigError(f"config key 'model.prior': {e}") from None


class TrainConfig(_Section):
    """The ``train`` section: the settings of :func:`pvae.fit` and of the run."""

    elbo: str = Field("trace", description="trace, meanfield, tracegraph, enum, renyi[:alpha], "
                                           "iwae[:K], iwae_dreg[:K], jit_*")
    epochs: int = Field(100, ge=1, description="enough for the digits job to converge")
    batch_size: int = Field(128, ge=1, description="data points per step (per process when "
                                                   "distributed)")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="the optimiser's learning rate")
    lr_steps: IntList = Field((), description="epochs after which the learning rate is "
                                              "multiplied by lr_factor (a step schedule; "
                                              "none by default)")
    lr_factor: float = Field(0.1, gt=0, allow_inf_nan=False,
                             description="the step schedule's factor")
    num_particles: int = Field(1, ge=1, description="samples of z per data point and step")
    kl_warmup: float = Field(0.0, ge=0, description="epochs of linear KL warm-up")
    # -- free bits (Kingma et al. 2016; pvae.free_bits) ----------------------------------
    free_bits: float = Field(0.0, ge=0, allow_inf_nan=False,
                             description="nats: the floor on each latent dimension's KL "
                                         "averaged over the minibatch (free bits); 0: none. "
                                         "elbo trace or meanfield, one particle")
    # -- end free bits ----------------------------------------------------------------------
    kl_balance: bool = Field(False, description="during KL warm-up, weight each latent "
                                                "site's KL by its share of the KL per "
                                                "dimension (KL balancing, pvae.kl_balance); "
                                                "needs kl_warmup > 0, elbo trace or meanfield")
    clip_norm: Optional[float] = Field(None, gt=0, description="clip the gradient's norm to "
                                                               "this; null: no clipping")
    seed: int = Field(0, description="same seed, same numbers")
    device: str = Field("cpu", description="a torch device: cpu, cuda, cuda:1, ...")
    num_threads: Optional[int] = Field(
        1, ge=1, description="torch intra-op threads (null: torch's default); tiny nets gain "
                             "nothing from more, and extra threads contend for the cores of a "
                             "busy machine")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="the torch "
                                                                          "optimiser")
    adam_eps: float = Field(  # the default is pvae.train.state.ADAM_EPS (a test checks)
        1e-8, gt=0, allow_inf_nan=False,
        description="Adam's (and AdamW's) epsilon: torch's 1e-8; Burda et al. 2015 used 1e-4")
    checkpoint_every: int = Field(10, ge=1, description="epochs between atomic checkpoints")
    keep_every: int = Field(0, ge=0, description="also keep a copy checkpoint-eEPOCH.pt every "
                                                 "this many epochs, for a long run's curve "
                                                 "(0: none)")
    logger: Literal["tensorboard", "none"] = Field(
        "none", description="write TensorBoard event files into the run folder "
                            "(pip install pvae[tensorboard])")

    #: The fields that are keyword arguments of :func:`pvae.fit`, under the same names.
    FIT_KEYS: typing.ClassVar[tuple[str, ...]] = (
        "elbo", "epochs", "batch_size", "lr", "lr_steps", "lr_factor", "num_particles",
        "kl_warmup", "clip_norm", "seed", "device", "optimizer", "adam_eps", "checkpoint_every",
        "keep_every", "free_bits", "kl_balance")

    def fit_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`pvae.fit` this section sets:
        ``pvae.fit(model, data, **cfg.train.fit_kwargs(), validation=...)``.
        ``num_threads`` is not among them (it sets torch's threads for the process)."""
        return {k: getattr(self, k) for k in self.FIT_KEYS}

    @model_validator(mode="after")
    def _rules(self) -> "TrainConfig":
        from pvae.elbos import ELBO_NAMES, make_elbo
        from pvae.train.checks import with_free_bits, with_kl_balance
        from pvae.train.schedules import idle_lr_factor, valid_lr_steps
        from pvae.train.state import ADAM_EPS

        _require(valid_lr_steps(self.lr_steps), "train.lr_steps",
                 "must be strictly increasing whole epochs >= 1 (steps at or after "
                 "train.epochs are kept for a continued run and warned of)")
        _require(not idle_lr_factor(self.lr_steps, self.lr_factor), "train.lr_factor",
                 f"({self.lr_factor:g}) multiplies the learning rate at the epochs in "
                 f"train.lr_steps, and train.lr_steps is empty, so it would change nothing: "
                 f"give train.lr_steps (e.g. [60, 85]) or drop train.lr_factor")
        _require(self.elbo.partition(":")[0] in ELBO_NAMES, "train.elbo",
                 f"must be one of {', '.join(map(repr, ELBO_NAMES))} (renyi:ALPHA, iwae:K), "
                 f"got {self.elbo!r}")
        try:  # its argument (iwae:K, renyi:ALPHA) and particles, by the parser fit uses
            make_elbo(self.elbo, self.num_particles)
        except ValueError as e:
            raise ConfigError(f"config key 'train.elbo' ({self.elbo!r}, with train.num_particles="
                              f"{self.num_particles}): {e}") from None
        try:  # free bits: the ELBOs it can be built on (pvae.train.checks.with_free_bits)
            with_free_bits(make_elbo(self.elbo, self.num_particles), self.free_bits)
        except ValueError as e:
            raise ConfigError(f"config key 'train.free_bits' ({self.free_bits:g}, with "
                              f"train.elbo={self.elbo!r}): {e}") from None
        _require(self.optimizer != "sgd" or self.adam_eps == ADAM_EPS, "train.adam_eps",
                 f"({self.adam_eps:g}) applies to train.optimizer 'adam' or 'adamw', and "
                 f"train.optimizer is 'sgd' (which has no epsilon): drop train.adam_eps or "
                 f"choose 'adam' or 'adamw'")
        _require(not (self.kl_balance and self.free_bits), "train.kl_balance",
                 "and train.free_bits both reweight the latent terms: use one of them")
        try:  # KL balancing (pvae.train.checks.with_kl_balance)
            with_kl_balance(make_elbo(self.elbo, self.num_particles), self.kl_balance,
                            self.kl_warmup)
        except ValueError as e:
            raise ConfigError(f"config key 'train.kl_balance' ({self.kl_balance}, with "
                              f"train.elbo={self.elbo!r}, train.kl_warmup={self.kl_warmup:g}): "
                              f"{e}") from None
        return self


class Config(_Section):
    """A whole run's configuration: ``data``, ``model``, ``train`` and ``evaluate``.

    Build it with :func:`load_config` or :func:`from_dict` (they raise
    :class:`ConfigError`); ``Config.model_json_schema()`` gives its JSON schema.
    """

    data: DataConfig = Field(default_factory=DataConfig, description="the data set and its splits")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the model's class and "
                                                                        "settings")
    train: TrainConfig = Field(default_factory=TrainConfig, description="pvae.fit's settings")
    evaluate: EvalConfig = Field(default_factory=EvalConfig, description="the test evaluation "
                                                                         "after training")

    @model_validator(mode="after")
    def _rules(self) -> "Config":
        _require(self.data.num_labelled is None or self.model.type == "ssvae",
                 "data.num_labelled", f"({self.data.num_labelled}) is for model.type ssvae, "
                 f"which learns from labelled and unlabelled points; model.type "
                 f"{self.model.type!r} would "
                 + ("fail on the hidden labels" if self.model.type == "cvae" else
                    "ignore it") + ": leave it unset")
        _require(self.data.name in ANOMALY_DATA or self.evaluate.anomaly_samples
                 == EvalConfig.model_fields["anomaly_samples"].default,
                 "evaluate.anomaly_samples", f"({self.evaluate.anomaly_samples}) is for an "
                 f"anomaly series (data.name: {', '.join(ANOMALY_DATA)}), not "
                 f"{self.data.name}: leave it unset")
        return self

    def to_dict(self) -> dict:
        """The config as plain nested dicts and lists (what YAML and :func:`from_dict` take)."""
        def plain(v):
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return plain(self.model_dump())

    def to_yaml(self) -> str:
        """The config as YAML text, sections and keys in their declared order."""
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False)


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads YAML 1.2's exponent floats that YAML 1.1
    (PyYAML's rules: a dot and a signed exponent, ``1.0e-4``) leaves as strings:
    ``1e-4``, ``3E5``, ``1.0e4``, ``.5e3``; so ``lr: 3e-4`` is the number its writer
    meant (PyYAML issue #173)."""


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes the strings :class:`_Loader` would read as
    numbers (``root: '1e5'``), so a written config reads back as it was."""


#: The floats of :class:`_Loader` beyond YAML 1.1's (underscores as YAML 1.1 allows).
_EXPONENT_FLOAT = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT,
                               list("-+.0123456789"))


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _require(ok: Any, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} {message}")


def from_dict(values: Any) -> Config:
    """A validated :class:`Config` from nested dicts (strict: unknown keys are errors).

    Parameters
    ----------
    values : dict or None
        ``{section: {key: value}}``; a missing section or key keeps its default,
        None is all defaults.

    Raises
    ------
    ConfigError
        An unknown section or key, a value of the wrong type or out of range, or
        a model setting the model's constructor would refuse; the message names
        the dotted key (e.g. ``'model.z_dim'``), the value and what is allowed.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"a config must be a mapping of sections (data, model, train, "
                          f"evaluate), got {values!r}")
    try:
        return Config.model_validate(values)
    except ValidationError as e:
        raise config_error(e, Config) from None


def load_config(path: Optional[Union[str, os.PathLike]] = None,
                overrides: Optional[list[str]] = None) -> Config:
    """Read a YAML config (defaults when ``path`` is None) and apply ``key=value`` overrides.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A YAML file of sections (``configs/*.yaml``); None: the defaults (the digits job).
    overrides : list of str, optional
        ``"section.key=value"`` items, the value read as YAML (``train.clip_norm=null``).

    Raises
    ------
    ConfigError
        The file is missing or not YAML, an override is malformed, or the result
        is refused by :func:`from_dict`.
    """
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {str(path)!r} does not exist; check the path "
                              "(shipped configs are in configs/)")
        try:
            values = _load_yaml(path.read_text()) or {}
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
            value = _load_yaml(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: cannot parse the value ({e})") from None
        section = values.setdefault(parts[0], {})
        if section is None:  # an empty section in the file
            section = values[parts[0]] = {}
        if not isinstance(section, dict):
            raise ConfigError(f"config section {parts[0]!r} must be a mapping")
        section[parts[1]] = value
    return from_dict(values)
