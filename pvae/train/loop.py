"""The one training loop: every pvae model, any Pyro ELBO, one torch optimiser.

``fit`` takes the loss from ``elbo.differentiable_loss(model.model,
model.guide, *batch)`` (or, for ELBOs without it, ``loss_and_grads``) and
steps one ``torch.optim`` optimiser over ``model.parameters()``. This skips
Pyro's ``SVI``/``pyro.optim`` bookkeeping (a fixed cost per step)
while optimising exactly the same objective.

The data plate is sized to the training set (``model.num_data``) so each
minibatch loss estimates the full-data negative ELBO; the loop divides it by
the data size, so learning rates and clipping thresholds do not depend on it,
and reports nats per data point.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import pyro
import torch
from pyro.infer import ELBO
from tqdm import tqdm

from pvae import checkpoint as ckpt
from pvae import distributed, estimates
from pvae.elbos import traits
from pvae.train.checks import (check_distributed, check_elbo, check_options, resume_record,
                               warn_late_lr_steps)
from pvae.train.data import TrainingData, evaluation_data
from pvae.train.failure import numerical_failure
from pvae.train.history import History
from pvae.train.logging import Logger, open_logger
from pvae.train.schedules import Schedule
from pvae.train.state import ADAM_EPS, TrainState, batch_generator, make_optimizer
from pvae.train.step import Step

_Dir = Optional[Union[str, os.PathLike]]

#: The checkpoint's file name in ``checkpoint_dir``.
CHECKPOINT = "checkpoint.pt"


def fit(
    model, data, *, elbo: Union[str, ELBO] = "trace", epochs: int = 10, batch_size: int = 128,
    lr: float = 1e-3, lr_steps: Sequence[int] = (), lr_factor: float = 0.1, num_particles: int = 1,
    kl_warmup: float = 0, free_bits: float = 0, clip_norm: Optional[float] = None,
    seed: Optional[int] = None, device: Optional[Union[str, torch.device]] = None,
    validation=None, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    optimizer: str = "adam", weight_decay: float = 0.0, adam_eps: float = ADAM_EPS,
    checkpoint_dir: _Dir = None, checkpoint_every: int = 1, keep_every: int = 0, resume=False,
    progress: Optional[bool] = None, monitor_size: int = 1024, log_dir: _Dir = None,
    callback: Optional[Callable[[dict], None]] = None, logger: Union[None, str, Logger] = None,
    kl_balance: bool = False,
) -> History:
    """Train a pvae model by stochastic variational inference; one torch optimiser.

    Parameters
    ----------
    model : a pvae model (``VAE``, ...).
    data : x (tensor or numpy array), ``(x, y)`` for models with labels, a
        :class:`pvae.data.Split`, or a ``torch.utils.data.Dataset``.
    elbo : a name (:data:`pvae.elbos.ELBO_NAMES`) or a ``pyro.infer.ELBO`` (:func:`make_elbo`).
        ``renyi`` is per data point while every site is in the data plate; ``iwae`` always.
    epochs, batch_size, lr : passes over the data, minibatch size, learning rate.
    lr_steps, lr_factor : after each epoch in ``lr_steps`` the rate is multiplied by ``lr_factor``
        (:func:`pvae.train.learning_rate`; steps from ``epochs`` on warn and apply if continued;
        an ``lr_factor`` alone is refused); a resumed run takes the new lr, schedule, decay, eps.
    num_particles : samples per data point in the ELBO estimate (vectorised).
    kl_warmup : epochs over which the latent terms' weight rises linearly to 1
        (:func:`pvae.train.kl_weight`, Sønderby et al. 2016); 0 for none.
    free_bits : nats, a floor on each latent dimension's minibatch KL (:mod:`pvae.free_bits`).
    kl_balance : during KL warm-up, weight each latent site's KL by its share of the KL per
        dimension (:mod:`pvae.kl_balance`; Vahdat & Kautz 2020); the plain ELBO after it.
    clip_norm : clip the gradient's global norm to this value.
    seed : seeds torch, Pyro and the batch order: same model, same seed, same numbers.
    device : ``"cpu"``, ``"cuda"``, ...; default: where the model is.
    validation : data as ``data``; its ELBO is reported per epoch.
    transform : applied to x of each batch, e.g. :func:`pvae.data.binarize`.
    optimizer, weight_decay, adam_eps : ``adam`` (default), ``adamw`` or ``sgd``, its decay, and
        Adam's (AdamW's) epsilon (torch's 1e-8 by default; Burda et al. 2015 used 1e-4).
    checkpoint_dir, checkpoint_every, keep_every, resume : ``checkpoint_dir/checkpoint.pt``
        is written atomically every ``checkpoint_every`` epochs and at the end, and a copy
        ``checkpoint-eEPOCH.pt`` kept every ``keep_every`` epochs (0: none; a long run's
        curve, :func:`pvae.load` reads them); ``resume=True`` continues it with its random
        streams (``epochs`` is the total to reach; :func:`resume_record` says what must
        match); without ``resume`` an existing checkpoint is never overwritten.
    progress : show a tqdm bar; default: only when stderr is a terminal.
    monitor_size : training points (a fixed subset) where ``recon``/``kl`` are measured.
    callback : called with each epoch's history row.
    logger, log_dir : ``"tensorboard"`` (:mod:`pvae.train.logging`; files in ``log_dir``,
        default ``checkpoint_dir``), ``None`` (none) or a :class:`Logger`.

    Returns
    -------
    History : per epoch ``epoch``, ``train_elbo`` (nats per point; not the free-bits objective),
        ``recon``, ``kl``, ``val_elbo``, ``kl_weight``, ``lr`` (the rate used), ``seconds``.

    Raises
    ------
    ValueError, TypeError, FileExistsError : every check before any work: a bad option, an
        ELBO that does not suit the model (:func:`check_elbo`), bad data, a checkpoint it
        cannot resume, or (``FileExistsError``) one in ``checkpoint_dir`` without ``resume``.
    ImportError : ``logger="tensorboard"`` without the package (``pip install pvae[tensorboard]``).
    FloatingPointError : a non-finite loss, gradient or parameter, naming the sites.
    """
    log = open_logger(logger, log_dir, checkpoint_dir, dict(locals()))  # fit's arguments
    check_options(epochs, batch_size, lr, kl_warmup, clip_norm, checkpoint_every, lr_steps,
                  lr_factor, keep_every, optimizer, adam_eps)
    loss_elbo = check_elbo(model, elbo, num_particles, kl_warmup, free_bits, kl_balance)
    rank, world = distributed.context()
    check_distributed(model, loss_elbo, world)
    device = torch.device(device) if device is not None else model.device
    train = TrainingData(data, model, batch_size, transform)
    val = evaluation_data(validation, model, device, transform, "validation data")
    path, record = _checkpoint(checkpoint_dir, resume, model, optimizer, seed, epochs, lr_steps)

    model.to(device)
    gen = batch_generator(seed, rank)
    state = TrainState(make_optimizer(optimizer, model.parameters(), lr, weight_decay, adam_eps),
                       optimizer, gen, train.to(device).monitor(model, monitor_size, gen), seed)
    if record is not None:
        state.restore(record["training"], rank=rank, world=world, device=device)
    train.plan(traits(loss_elbo).jit and train.num_data > batch_size, world,
               int(seed) if seed is not None else 0)
    schedule = Schedule(lr, tuple(lr_steps), lr_factor, kl_warmup, train.num_steps(model))
    step = Step(model, loss_elbo, state.optimizer, train.num_data, transform=transform,
                streamed=train.streamed, clip_norm=clip_norm, checkpoint=path,
                ddp=distributed.wrap(model, loss_elbo, device) if world > 1 else None)

    bar = _progress(progress, state.epoch, epochs, model)
    lean = traits(loss_elbo).lean_path  # pvae's lean ELBOs need no param sites, Pyro's do
    with pyro.validation_enabled(False), model.unregistered() if lean else nullcontext(), log:
        for epoch in bar:
            row = _epoch(model, train, step, state, schedule, epoch, val, path)
            bar.set_postfix(elbo=f"{row['train_elbo']:.2f}")
            _save(model, state, epoch, epochs, (checkpoint_every, keep_every), schedule,
                  path, rank)
            if callback is not None:
                callback(row)
            log(row, model, val or state.monitor)
    model.eval()
    return state.history


def _progress(progress: Optional[bool], start: int, epochs: int, model) -> tqdm:
    """The epochs as a tqdm bar, shown when ``progress`` (default: stderr is a terminal)."""
    show = progress if progress is not None else sys.stderr.isatty()
    return tqdm(range(start, epochs), initial=start, total=epochs, disable=not show,
                desc=f"training {type(model).__name__}", unit="epoch")


def _checkpoint(checkpoint_dir, resume: bool, model, optimizer: str, seed: Optional[int],
                epochs: int, lr_steps: Sequence[int]) -> tuple[Optional[Path], Optional[dict]]:
    """Where checkpoints go, and the record a resumed run continues (``None``: a new run).

    Rank 0 decides where checkpoints go and whether one exists; every rank follows it.
    Raises ``FileExistsError`` for an existing checkpoint without ``resume``. Rank 0 then
    warns of ``lr_steps`` the run will not reach, unless no epoch is left to run
    (:func:`warn_late_lr_steps`).
    """
    path = distributed.broadcast(
        Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None)
    record = None
    if path is not None and distributed.broadcast(path.exists()):
        if not resume:
            raise FileExistsError(f"{str(path)!r} already exists; pass resume=True to continue "
                                  "that run, or choose another checkpoint_dir")
        record = resume_record(path, model, optimizer=optimizer, seed=seed, epochs=epochs)
    start = record["training"]["epoch"] if record is not None else 0
    if distributed.context()[0] == 0 and start < epochs:
        warn_late_lr_steps(lr_steps, epochs, resumable=path is not None, stacklevel=3)
    return path, record


def _epoch(model, train: TrainingData, step: Step, state: TrainState, schedule: Schedule,
           epoch: int, val: Optional[tuple], ckpt_path: Optional[Path]) -> dict[str, Any]:
    """Train one epoch and append its history row (returned): ``epoch``, ``train_elbo``
    (the mean minibatch objective over every process, nats per data point), the monitored
    values (:func:`_monitor`), ``kl_weight`` (with warm-up), ``lr``, ``seconds``.

    The learning rate is set from the schedule each epoch, so a resumed run uses the rate
    asked for now, not the one saved with the optimiser's state.
    """
    rate = schedule.rate(epoch)
    for group in state.optimizer.param_groups:
        group["lr"] = rate
    t0 = time.perf_counter()
    total, seen, i = 0.0, 0, 0
    for i, parts in enumerate(train.batches(model, epoch, state.generator)):
        value, size = step(parts, epoch, i, schedule.weight(epoch, i))
        total += value * size
        seen += size
    seconds = time.perf_counter() - t0
    total, seen = distributed.all_sum(total, seen)
    row: dict[str, Any] = {"epoch": epoch + 1, "train_elbo": -total / seen}
    row.update(_monitor(model, state.monitor, val))
    if schedule.warms_up:
        row["kl_weight"] = schedule.weight(epoch, i)
    row["lr"] = rate  # the rate this epoch's steps used
    row["seconds"] = seconds
    _check_row(row, model, state.monitor, epoch, i, ckpt_path)
    state.history.append(row)
    return row


def _monitor(model, monitor: tuple, val: Optional[tuple]) -> dict[str, float]:
    """``recon`` and ``kl`` on the monitor batch (per latent site too where there are
    several) and ``val_elbo`` on the validation data, nats per data point."""
    row = {}
    with model.scaled_to(None):
        p = estimates.parts(model, monitor, checked=True)  # checked once, before training
        row["recon"] = p["recon"].mean().item()
        row["kl"] = p["kl"].mean().item()
        site_kls = [k for k in p if k.startswith("kl_")]
        if len(site_kls) > 1:  # per latent site (hierarchical layers, labels)
            row.update({k: p[k].mean().item() for k in site_kls})
        if val is not None:
            row["val_elbo"] = estimates.elbo(model, val, checked=True).mean().item()
    return row


def _check_row(row: dict, model, monitor: tuple, epoch: int, i: int,
               ckpt_path: Optional[Path]) -> None:
    """Raise ``FloatingPointError`` (on every process) when an epoch's value is not finite."""
    bad = [k for k in ("train_elbo", "recon", "kl", "val_elbo")
           if k in row and not math.isfinite(row[k])]
    if not distributed.all_ok(not bad):
        raise numerical_failure(model, monitor, epoch, i,
                                f"{bad[0]} became {row[bad[0]]}" if bad
                                else "a monitored value became non-finite elsewhere", ckpt_path)


def _save(model, state: TrainState, epoch: int, epochs: int, every: tuple[int, int],
          schedule: Schedule, ckpt_path: Optional[Path], rank: int) -> None:
    """After every ``every[0]``-th epoch and the last, check the parameters
    (:func:`_check_params`) and save the checkpoint (none without ``ckpt_path``); after
    every ``every[1]``-th epoch (when positive) also keep a copy ``checkpoint-eEPOCH.pt``."""
    if ckpt_path is None:
        return
    done = epoch + 1
    keep = every[1] > 0 and done % every[1] == 0
    if done % every[0] == 0 or done == epochs or keep:
        _check_params(model, state.monitor, epoch, schedule.steps_per_epoch, ckpt_path)
        state.save(model, ckpt_path, done, rank)
    if keep and rank == 0:
        ckpt.copy_file(ckpt_path, ckpt_path.with_name(f"{ckpt_path.stem}-e{done}.pt"))


def _check_params(model, monitor: tuple, epoch: int, epoch_steps: int,
                  ckpt_path: Path) -> None:
    """Raise ``FloatingPointError`` before saving parameters that are not finite."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise numerical_failure(model, monitor, epoch, epoch_steps - 1,
                                "a parameter became non-finite", ckpt_path)
