"""Every check ``fit`` makes before any work: its options, the ELBO, a resumed run."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

from pyro.infer import ELBO, TraceMeanField_ELBO

from pvae import checkpoint as ckpt
from pvae import elbos
from pvae.elbos import check_kl_weight, traits
from pvae.free_bits import FreeBits, check_free_bits
from pvae.kl_balance import KLBalance, check_kl_balance
from pvae.train.schedules import LR_FACTOR, idle_lr_factor, late_lr_steps, valid_lr_steps
from pvae.train.state import ADAM_EPS, check_adam_eps


def check_options(epochs: int, batch_size: int, lr: float, kl_warmup: float,
                  clip_norm: Optional[float], checkpoint_every: int,
                  lr_steps: Sequence[int] = (), lr_factor: float = LR_FACTOR,
                  keep_every: int = 0, optimizer: str = "adam",
                  adam_eps: float = ADAM_EPS) -> None:
    """Raise ``ValueError`` naming the first of ``fit``'s numeric options out of range
    (``lr_steps`` past the last epoch are allowed: :func:`warn_late_lr_steps`), an
    ``lr_factor`` with no ``lr_steps`` to act at, or an ``adam_eps`` the optimiser has no
    use for (:func:`check_adam_eps`)."""
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if not valid_lr_steps(lr_steps):
        raise ValueError(f"lr_steps must be strictly increasing whole epochs >= 1 (after "
                         f"which the learning rate drops), got {tuple(lr_steps)!r}")
    if not (isinstance(lr_factor, (int, float)) and 0 < lr_factor and math.isfinite(lr_factor)):
        raise ValueError(f"lr_factor must be a positive number, got {lr_factor!r}")
    if idle_lr_factor(lr_steps, lr_factor):
        raise ValueError(f"lr_factor={lr_factor!r} multiplies the learning rate at the epochs "
                         f"in lr_steps, and lr_steps is empty, so it would change nothing: "
                         f"give lr_steps (e.g. lr_steps=(60, 85)) or drop lr_factor")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not kl_warmup >= 0:
        raise ValueError(f"kl_warmup must be >= 0 epochs, got {kl_warmup!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be positive or None, got {clip_norm!r}")
    if not (isinstance(checkpoint_every, int) and checkpoint_every >= 1):
        raise ValueError(f"checkpoint_every must be a positive int, got {checkpoint_every!r}")
    if not (isinstance(keep_every, int) and keep_every >= 0):
        raise ValueError(f"keep_every must be an int >= 0 (0: keep no copies), got {keep_every!r}")
    check_adam_eps(optimizer, adam_eps)



def check_elbo(model, elbo: Union[str, ELBO], num_particles: int = 1,
               kl_warmup: float = 0, free_bits: float = 0, kl_balance: bool = False) -> ELBO:
    """The ELBO ``fit`` would train ``model`` with, or the ``ValueError`` it would raise.

    Every rule on which estimator suits which model lives here, read from the
    ELBO's declared traits (:func:`pvae.elbos.traits`), so that callers
    training several estimators (``pvae.compare``) can check them all first.

    Raises
    ------
    ValueError
        For an unknown or malformed ``elbo`` (:func:`pvae.elbos.make_elbo`), an
        analytic-KL ELBO on a guide that is not mean-field, beta != 1 /
        ``kl_warmup`` with an ELBO that cannot weight its latent terms, or
        ``free_bits`` with an ELBO that cannot take it
        (:func:`with_free_bits`; the ELBO returned is then
        :class:`pvae.free_bits.FreeBits`), or ``kl_balance`` that cannot apply
        (:func:`with_kl_balance`; the ELBO returned is then
        :class:`pvae.kl_balance.KLBalance`).
    """
    loss_elbo = elbos.make_elbo(elbo, num_particles, model=model)
    if traits(loss_elbo).needs_mean_field_guide and not getattr(model, "mean_field", True):
        raise ValueError(
            f"{type(model).__name__}'s guide is not mean-field ({model.not_mean_field_reason}), "
            "so TraceMeanField_ELBO cannot compute its KL analytically; use elbo='trace'"
        )
    check_kl_weight(loss_elbo, getattr(model, "beta", 1.0), kl_warmup)
    warn_monte_carlo_kl(model, loss_elbo)
    if check_kl_balance(kl_balance):
        if check_free_bits(free_bits):
            raise ValueError("kl_balance and free_bits both reweight the latent terms; use one "
                             "of them (free_bits=0 or kl_balance=False)")
        return with_kl_balance(loss_elbo, kl_balance, kl_warmup)
    return with_free_bits(loss_elbo, free_bits)


def with_kl_balance(elbo: ELBO, kl_balance: bool, kl_warmup: float) -> ELBO:
    """``elbo`` trained with KL balancing during warm-up (:mod:`pvae.kl_balance`):
    :class:`pvae.kl_balance.KLBalance`; ``elbo`` itself when ``kl_balance`` is False.

    Raises
    ------
    ValueError
        For ``kl_balance`` not a bool, ``kl_warmup`` 0 (balancing acts only during
        warm-up), an ELBO that cannot take it (those that refuse free bits: Renyi,
        IWAE, enum, tracegraph, JIT), or several particles.
    """
    if not check_kl_balance(kl_balance):
        return elbo
    if not kl_warmup > 0:
        raise ValueError("kl_balance weights the layers' KL only during KL warm-up, and "
                         f"kl_warmup is {kl_warmup!r}: set kl_warmup > 0 epochs, or "
                         "kl_balance=False")
    _check_reweighting(elbo, "kl_balance", "each site's KL", "kl_balance=False")
    return KLBalance(analytic=isinstance(elbo, TraceMeanField_ELBO),
                     max_plate_nesting=elbo.max_plate_nesting)


def _check_reweighting(elbo: ELBO, option: str, what: str, off: str) -> None:
    """``ValueError`` when ``option`` (free bits, KL balancing: objectives built on one
    recorded run, averaging ``what`` over the minibatch) cannot be built on ``elbo``."""
    refusal = traits(elbo).free_bits_refusal
    if refusal is not None:
        raise ValueError(f"{option} cannot be used with {type(elbo).__name__}: {refusal}; "
                         f"use elbo='trace' or 'meanfield' (one particle), or {off}")
    if elbo.num_particles != 1:
        raise ValueError(f"{option} averages {what} over the minibatch, one sample per "
                         f"point; got num_particles={elbo.num_particles}: use "
                         f"num_particles=1, or {off}")


def with_free_bits(elbo: ELBO, free_bits: float) -> ELBO:
    """``elbo`` trained with free bits ``free_bits`` (nats per latent dimension):
    :class:`pvae.free_bits.FreeBits`; ``elbo`` itself when ``free_bits`` is 0.

    Raises
    ------
    ValueError
        For ``free_bits`` negative or not finite, an ELBO whose traits refuse free bits
        (:attr:`ELBOTraits.free_bits_refusal`: Renyi, IWAE, enum, tracegraph, JIT), or
        several particles.
    """
    free_bits = check_free_bits(free_bits)
    if not free_bits:
        return elbo
    _check_reweighting(elbo, "free_bits", "each dimension's KL", "free_bits=0")
    return FreeBits(free_bits, analytic=isinstance(elbo, TraceMeanField_ELBO),
                    max_plate_nesting=elbo.max_plate_nesting)


def warn_monte_carlo_kl(model, loss_elbo: ELBO) -> None:
    """Warn that an analytic-KL ELBO takes the KL of a learned prior's sites by Monte Carlo
    (pyro's ``TraceMeanField_ELBO`` and pvae's lean one fall back to log q - log p at the
    guide's sample where ``kl_divergence`` has no closed form: correct, not analytic)."""
    sites = getattr(model, "monte_carlo_kl_sites", ())
    if traits(loss_elbo).needs_mean_field_guide and sites:
        prior = type(model.latent_prior).__name__
        warnings.warn(
            f"{type(loss_elbo).__name__}: the KL of site(s) {', '.join(map(repr, sites))} "
            f"from {type(model).__name__}'s {prior} (a learned mixture) has no closed form, "
            "so it is estimated by Monte Carlo at the guide's sample, as Trace_ELBO does; "
            "only the other sites' KL is analytic", stacklevel=3)


def check_distributed(model, loss_elbo: ELBO, world: int) -> None:
    """Raise ``ValueError`` when ``world > 1`` processes cannot train this pair."""
    if world <= 1:
        return
    if not traits(loss_elbo).differentiable:
        raise ValueError(f"distributed training needs an ELBO with differentiable_loss; "
                         f"{type(loss_elbo).__name__} has none (use trace, meanfield, enum "
                         "or iwae)")
    if not getattr(model, "shardable", True):
        raise ValueError(f"{type(model).__name__} batches its data its own way, which "
                         "distributed training does not shard yet; train it in one process")


def warn_late_lr_steps(lr_steps: Sequence[int], epochs: int, resumable: bool,
                       stacklevel: int = 2) -> None:
    """Warn (``UserWarning``, ``stacklevel`` frames up) of the steps of ``lr_steps`` at or
    after the last epoch: the rate does not drop at them in this run. Steps of a staged
    schedule may outlast a shortened run, and take effect when a checkpointed run is
    continued past them (``resume=True`` with more ``epochs``; ``pvae train --resume``)."""
    if late := late_lr_steps(lr_steps, epochs):
        later = (" (they do when this checkpointed run is continued past them: resume=True "
                 "with more epochs, or pvae train --resume)" if resumable else "")
        warnings.warn(f"lr_steps {late} are at or after the last epoch ({epochs}): the "
                      f"learning rate does not drop at them in this run{later}",
                      UserWarning, stacklevel=stacklevel + 1)


def resume_record(path: Union[str, os.PathLike], model, *, optimizer: str = "adam",
                  seed: Optional[int] = None, epochs: Optional[int] = None) -> dict:
    """The checkpoint at ``path`` that a resumed :func:`fit` continues, checked against it.

    Loads the saved weights into ``model`` and returns the record. Raises,
    before any training: ``pvae.checkpoint.CheckpointError`` for a checkpoint
    without training state or from another model; ``ValueError`` for another
    ``optimizer`` than the run's (its saved state cannot continue as another)
    or another ``seed`` (the run's random streams are restored, so a new seed
    would do nothing), and for ``epochs`` fewer than the run has done (``epochs``
    is the total to reach). ``pvae train --resume`` calls it before writing anything.
    """
    path = Path(path)
    record = ckpt.read(path)
    if "training" not in record:
        raise ckpt.CheckpointError(f"{str(path)!r} holds no training state to resume")
    saved_seed = record["training"].get("seed")
    if seed is not None and "seed" in record["training"] and seed != saved_seed:
        raise ValueError(
            f"{str(path)!r} continues the random streams of seed={saved_seed}, saved "
            f"with it, so seed={seed} would have no effect; resume with seed={saved_seed} "
            "(or None), or start a new run in another checkpoint_dir"
        )
    saved_optimizer = record["training"].get("optimizer_name")
    if saved_optimizer is not None and saved_optimizer != optimizer:
        raise ValueError(
            f"{str(path)!r} was trained with optimizer={saved_optimizer!r}, whose state "
            f"cannot continue as {optimizer!r}; resume with optimizer={saved_optimizer!r}, "
            "or start a new run in another checkpoint_dir"
        )
    done = int(record["training"]["epoch"])
    if epochs is not None and done > epochs:
        raise ValueError(
            f"{str(path)!r} has {done} epochs done, more than epochs={epochs}; epochs "
            f"is the total to reach, not how many more: pass epochs > {done} to train on, "
            "or load the model with pvae.load to use it as it is"
        )
    ckpt.restore_weights(model, record, path)
    return record
