"""The one training loop: every pvae model, any Pyro ELBO, one torch optimiser.

``fit`` takes the loss from ``elbo.differentiable_loss(model.model,
model.guide, *batch)`` (or, for ELBOs without it, ``loss_and_grads``) and
steps one ``torch.optim`` optimiser over ``model.parameters()``. This skips
Pyro's ``SVI``/``pyro.optim`` bookkeeping (about 1.5 ms a step on 2 cores)
while optimising exactly the same objective.

The data plate is sized to the training set (``model.num_data``) so each
minibatch loss estimates the full-data negative ELBO; the loop divides it by
the data size, so learning rates and clipping thresholds do not depend on it,
and reports nats per data point.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import pyro
import torch
from pyro.infer import ELBO
from tqdm import tqdm

from pvae import checkpoint as ckpt
from pvae import distributed, evaluate
from pvae.batching import (  # noqa: F401  (re-exported: pvae.train.History etc.)
    History, _batch_from, _dataset_loader, as_batch_tensors, num_batches,
)
from pvae.elbos import (  # noqa: F401  (re-exported)
    ELBO_NAMES, ELBOS, LatentScale, check_kl_weight, make_elbo, traits,
)
from pvae.likelihoods import Likelihood
from pvae.models.base import PVAEModel

CHECKPOINT = "checkpoint.pt"


# -- numerical failure ---------------------------------------------------------------------
def _bad_sites(model, batch) -> list[str]:
    try:
        p = evaluate.site_log_probs(model, batch, 1)
    except Exception as e:  # noqa: BLE001 - diagnosing a failure already in progress
        return [f"(tracing failed: {e})"]
    bad = []
    for part, sites in p.items():
        for name, lp in sites.items():
            if not torch.isfinite(lp).all():
                bad.append(f"{part} site {name!r}")
    return bad


def _unscaled_data_hint(model, batch) -> str:
    """A suggestion to standardise real-valued data whose features are far from unit scale."""
    likelihood = getattr(model, "likelihood", None)
    if likelihood is None or getattr(likelihood, "discrete", False):
        return ""
    if type(likelihood)._support_problem is not Likelihood._support_problem:
        return ""  # a restricted support (counts, [0, 1], ...): its scale is the data's own
    x = batch[0].detach().float()
    x = x.reshape(x.shape[0], -1)[torch.isfinite(x.reshape(x.shape[0], -1)).all(1)]
    if x.shape[0] == 0:
        return ""
    mean = x.mean(0).abs().max().item()
    std = x.std(0).max().item() if x.shape[0] > 1 else 0.0
    if max(mean, std) <= 10:
        return ""
    return (f" The data are not standardised (feature means up to {mean:.3g} in size, standard "
            f"deviations up to {std:.3g}): for a {likelihood.name} likelihood, standardise each "
            "feature with the training data's mean and standard deviation, "
            "x = (x - mean) / std.")


def _numerical_failure(model, batch, epoch, step, what,
                       checkpoint: Optional[Path] = None) -> FloatingPointError:
    sites = _bad_sites(model, batch)
    where = ", ".join(sites) if sites else "no single site (the gradient or the optimiser step)"
    if checkpoint is not None and checkpoint.exists():
        kept = (f" The last good checkpoint, {str(checkpoint)!r}, was kept: resume=True "
                "continues from it.")
    elif checkpoint is not None:
        kept = " No checkpoint had been written yet."
    else:
        kept = " Nothing was saved (pass checkpoint_dir to keep checkpoints)."
    return FloatingPointError(
        f"{what} at epoch {epoch + 1}, step {step + 1}; non-finite log density at: {where}. "
        "Try a lower learning rate (lr), gradient clipping (clip_norm=10), KL warm-up, or a "
        "likelihood with a larger/fixed scale." + _unscaled_data_hint(model, batch) + kept
    )


# -- the loop ---------------------------------------------------------------------------------
def _check_options(epochs, batch_size, lr, kl_warmup, clip_norm, checkpoint_every,
                   lr_steps=(), lr_factor=0.1):
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    steps = list(lr_steps)
    if not all(isinstance(e, int) and 1 <= e < epochs for e in steps) or steps != sorted(set(steps)):
        raise ValueError(f"lr_steps must be increasing epochs in 1..{epochs - 1} (after which "
                         f"the learning rate drops), got {tuple(steps)!r}")
    if not (isinstance(lr_factor, (int, float)) and 0 < lr_factor and math.isfinite(lr_factor)):
        raise ValueError(f"lr_factor must be a positive number, got {lr_factor!r}")
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


def _make_optimizer(name: str, params, lr: float, weight_decay: float):
    options = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if name not in options:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(options)}")
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name != "sgd":
        # One fused kernel for all parameters instead of a Python loop over them (the same
        # Adam update; about 0.9 ms a step less for a 784-400-20 VAE on 2 CPU cores).
        kwargs["fused"] = True
    return options[name](params, **kwargs)


def check_elbo(model, elbo: Union[str, ELBO], num_particles: int = 1,
               kl_warmup: float = 0) -> ELBO:
    """The ELBO ``fit`` would train ``model`` with, or the ``ValueError`` it would raise.

    Every rule on which estimator suits which model lives here, so that callers
    training several estimators (``pvae.compare``) can check them all first.
    """
    loss_elbo = make_elbo(elbo, num_particles, model=model)
    if traits(loss_elbo).needs_mean_field_guide and not getattr(model, "mean_field", True):
        raise ValueError(
            f"{type(model).__name__}'s guide is not mean-field ({model.not_mean_field_reason}), "
            "so TraceMeanField_ELBO cannot compute its KL analytically; use elbo='trace'"
        )
    check_kl_weight(loss_elbo, getattr(model, "beta", 1.0), kl_warmup)
    return loss_elbo


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


def fit(
    model,
    data,
    *,
    elbo: Union[str, ELBO] = "trace",
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    lr_steps: Sequence[int] = (),
    lr_factor: float = 0.1,
    num_particles: int = 1,
    kl_warmup: float = 0,
    clip_norm: Optional[float] = None,
    seed: Optional[int] = None,
    device: Optional[Union[str, torch.device]] = None,
    validation=None,
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    checkpoint_dir: Optional[Union[str, os.PathLike]] = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    progress: Optional[bool] = None,
    monitor_size: int = 1024,
    callback: Optional[Callable[[dict], None]] = None,
) -> History:
    """Train a pvae model by stochastic variational inference.

    Parameters
    ----------
    model
        A pvae model (``VAE``, ...).
    data
        A tensor or numpy array of x, a tuple ``(x, y)`` for models with
        labels, a :class:`pvae.data.Split`, or a ``torch.utils.data.Dataset``.
        In-memory data are batched by indexing whole tensors.
    elbo
        A name from :data:`ELBO_NAMES` (``renyi:0.5`` sets alpha, ``iwae:5`` K) or
        any ``pyro.infer.ELBO`` instance. Pyro's ``RenyiELBO`` takes its
        log-mean-exp over particles per data point while every sample site lies in
        the data plate; with any site outside it (a global latent, say) it combines
        the particles of the whole minibatch,
        and its bound loosens as the batch grows. ``iwae`` is per data point always.
    epochs, batch_size, lr
        Passes over the data, minibatch size, learning rate.
    lr_steps, lr_factor
        A step schedule: after each epoch in ``lr_steps`` the learning rate is
        multiplied by ``lr_factor`` (``lr_steps=(40,)`` with 50 epochs: 40 at
        ``lr``, then 10 at ``0.1 * lr``). Each epoch's rate is in the history.
        A resumed run uses the ``lr``, schedule and ``weight_decay`` passed now
        (the optimiser's saved moments are kept), from its next epoch on.
    num_particles
        Samples per data point in the ELBO estimate (vectorised).
    kl_warmup
        Epochs over which the weight of the latent terms rises linearly from
        near 0 to 1 (Sønderby et al. 2016); 0 for none.
    clip_norm
        Clip the gradient's global norm to this value.
    seed
        Seeds torch, Pyro and the batch order: the same model (same initial
        weights) with the same seed gives the same numbers. For the same
        initial weights too, call ``torch.manual_seed`` before building the
        model, as ``pvae train`` does.
    device
        ``"cpu"``, ``"cuda"``, ...; default: where the model is.
    validation
        Data in the same form as ``data``; its ELBO is reported per epoch.
    transform
        Applied to x of each batch, e.g. :func:`pvae.data.binarize` for
        dynamic binarisation.
    optimizer, weight_decay
        ``adam`` (default), ``adamw`` or ``sgd``. Resuming with another
        optimizer than the checkpoint's raises ``ValueError``.
    checkpoint_dir, checkpoint_every, resume
        Write ``checkpoint_dir/checkpoint.pt`` atomically every
        ``checkpoint_every`` epochs and at the end. ``resume=True`` continues
        from it if it exists (and starts afresh if none was written yet);
        without ``resume`` an existing checkpoint is never overwritten.
        ``epochs`` is the total: resuming a checkpoint with more epochs done
        raises ``ValueError``. A resumed run continues the saved random streams:
        another ``seed`` than the run's raises ``ValueError``, before any work.
    progress
        Show a tqdm bar; default: only when stderr is a terminal.
    monitor_size
        Training points (a fixed random subset) on which the reconstruction
        and KL parts are measured at the end of each epoch.
    callback
        Called with each epoch's history row.

    Returns
    -------
    History
        One row per epoch: ``epoch``, ``train_elbo`` (mean minibatch
        objective, nats per data point), ``recon`` and ``kl`` (measured on the
        monitor subset at the epoch's end; ``recon - kl`` is its ELBO),
        ``val_elbo`` (with validation data), ``kl_weight`` (with warm-up),
        ``lr`` (the learning rate the epoch's steps used), ``seconds``.

    Raises
    ------
    FloatingPointError
        When the loss, a gradient, a parameter or a monitored value becomes
        non-finite: names the step and the sites, suggests fixes (standardising
        unscaled real-valued data among them), and says whether a checkpoint
        was kept.
    """
    # ---- every check before any work -------------------------------------------------
    _check_options(epochs, batch_size, lr, kl_warmup, clip_norm, checkpoint_every, lr_steps,
                   lr_factor)
    loss_elbo = check_elbo(model, elbo, num_particles, kl_warmup)
    rank, world = distributed.context()
    if world > 1:
        if not hasattr(loss_elbo, "differentiable_loss"):
            raise ValueError(f"distributed training needs an ELBO with differentiable_loss; "
                             f"{type(loss_elbo).__name__} has none (use trace, meanfield, enum "
                             "or iwae)")
        if type(model).minibatches is not PVAEModel.minibatches:
            raise ValueError(f"{type(model).__name__} batches its data its own way, which "
                             "distributed training does not shard yet; train it in one process")
    if hasattr(data, "train") and hasattr(data, "test"):
        raise TypeError("pass one split of a pvae.data.Data, e.g. pvae.fit(model, data.train, "
                        "validation=data.val)")
    is_dataset = isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.Tensor)
    if is_dataset:
        if len(data) == 0:
            raise ValueError("the training data set is empty; pass at least one data point")
        tensors = None
        first = _batch_from(next(iter(_dataset_loader(data, min(batch_size, 1024), False,
                                                      False, None))))
        model.check_data(*(transform(first[0]),) + first[1:] if transform else first)
        num_data = len(data)
    else:
        tensors = as_batch_tensors(data, model)
        model.check_data(*((transform(tensors[0]),) + tensors[1:] if transform else tensors))
        num_data = tensors[0].shape[0]
    val = None
    if validation is not None:
        val = as_batch_tensors(validation, model, "validation data")
        model.check_data(*((transform(val[0]),) + val[1:] if transform else val))
    # Rank 0 decides where checkpoints go and whether one exists; every rank follows it.
    ckpt_path = distributed.broadcast(
        Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None)
    record = None
    if ckpt_path is not None and distributed.broadcast(ckpt_path.exists()):
        if not resume:
            raise FileExistsError(
                f"{str(ckpt_path)!r} already exists; pass resume=True to continue that run, "
                "or choose another checkpoint_dir"
            )
        record = resume_record(ckpt_path, model, optimizer=optimizer, seed=seed, epochs=epochs)

    # ---- set-up -------------------------------------------------------------------------------
    device = torch.device(device) if device is not None else model.device
    model.to(device)
    if seed is not None:
        pyro.set_rng_seed(seed + rank)  # ranks draw different z; batches come from the sampler
    gen = torch.Generator()
    gen.manual_seed(int(seed) if seed is not None else int(torch.randint(2**62, ())))
    shard_seed = int(seed) if seed is not None else 0
    if tensors is not None:
        tensors = tuple(t.to(device) for t in tensors)
        monitor_idx = torch.randperm(num_data, generator=gen)[:monitor_size]
        monitor = tuple(t[monitor_idx.to(device)] for t in tensors)
    else:
        monitor = tuple(t.to(device) for t in first)
    monitor = model.evaluation_batch(monitor)
    if transform is not None:  # one fixed transformed copy, so epochs are comparable
        monitor = (transform(monitor[0]),) + monitor[1:]
    if val is not None:
        val = model.evaluation_batch(tuple(t.to(device) for t in val))
        if transform is not None:
            val = (transform(val[0]),) + val[1:]
    params = list(model.parameters())
    opt = _make_optimizer(optimizer, params, lr, weight_decay)
    history = History()
    start_epoch = 0
    if record is not None:
        train_state = record["training"]
        opt.load_state_dict(train_state["optimizer"])
        for group in opt.param_groups:  # the saved state keeps its own; use the one asked for
            group["weight_decay"] = weight_decay
        history = History(train_state["history"])
        start_epoch = int(train_state["epoch"])
        per_rank = train_state.get("torch_rng_per_rank") or []
        if world == 1:
            torch.set_rng_state(train_state["torch_rng"])
            if train_state.get("cuda_rng") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(train_state["cuda_rng"])
        elif len(per_rank) == world:
            cpu_state, cuda_state = per_rank[rank]
            torch.set_rng_state(cpu_state)
            if cuda_state is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(cuda_state)
        else:  # a different number of processes: fresh, distinct streams per rank
            pyro.set_rng_seed((seed or 0) + 1000 * int(train_state["epoch"]) + rank)
        gen.set_state(train_state["batch_rng"])
        monitor = tuple(t.to(device) for t in train_state["monitor"])
    drop_last = traits(loss_elbo).jit and num_data > batch_size
    if world > 1:
        steps_per_epoch = distributed.num_steps(num_data, batch_size, drop_last)
    elif tensors is not None:
        steps_per_epoch = model.num_steps(tensors, batch_size, drop_last)
    else:
        steps_per_epoch = num_batches(num_data, batch_size, drop_last)
    ddp = distributed.wrap(model, loss_elbo, device) if world > 1 else None
    warmup_steps = kl_warmup * steps_per_epoch
    differentiable = hasattr(loss_elbo, "differentiable_loss")
    scale_free = not traits(loss_elbo).linear_in_plate_scale
    show = progress if progress is not None else sys.stderr.isatty()

    def save_checkpoint(epoch: int) -> None:
        if ckpt_path is None:
            return
        if not all(torch.isfinite(p).all() for p in params):
            raise _numerical_failure(model, monitor, epoch - 1, steps_per_epoch - 1,
                                     "a parameter became non-finite", ckpt_path)
        rng_per_rank = distributed.gather_rng()
        if rank != 0:  # rank 0 writes; the others wait until the file is complete
            distributed.barrier()
            return
        rec = ckpt.model_record(model)
        rec["training"] = {
            "epoch": epoch,
            "optimizer": opt.state_dict(),
            "optimizer_name": optimizer,
            "seed": record["training"].get("seed", seed) if record is not None else seed,
            "history": list(history),
            "torch_rng": torch.get_rng_state(),
            "torch_rng_per_rank": [list(r) for r in rng_per_rank] if world > 1 else [],
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "batch_rng": gen.get_state(),
            "monitor": tuple(t.cpu() for t in monitor),
        }
        ckpt.atomic_save(rec, ckpt_path)
        distributed.barrier()

    def batches(epoch: int):
        """Each step: a list of (minibatch, data-plate size) parts."""
        if tensors is None:
            loader = (distributed.dataset_loader(data, batch_size, epoch, shard_seed, drop_last)
                      if world > 1 else _dataset_loader(data, batch_size, True, drop_last, gen))
            for item in loader:
                yield [(tuple(t.to(device) for t in _batch_from(item)), num_data)]
            return
        if world > 1:
            yield from distributed.shard_batches(tensors, batch_size, epoch, shard_seed, drop_last)
            return
        yield from model.minibatches(tensors, batch_size, gen, drop_last)

    def step_loss(parts, epoch, i) -> tuple[float, int]:
        """Loss of one step (per data point), gradients left in the parameters."""
        opt.zero_grad(set_to_none=True)
        total, size, loss = 0.0, 0, None
        for batch, n_part in parts:
            if transform is not None:
                batch = (transform(batch[0]),) + batch[1:]
            if tensors is None:  # streamed data: check each batch as it arrives
                problem = None
                try:
                    model.check_data(*batch)
                except (ValueError, TypeError) as e:
                    problem = e
                if not distributed.all_ok(problem is None):
                    raise problem or ValueError("a batch on another process failed its data check")
            b = batch[0].shape[0]
            size += b
            # Linear ELBOs: the plate scales the batch to n_part. Scale-free ones: scale after.
            factor = n_part / b if scale_free else 1.0
            with model.scaled_to(None if scale_free else n_part):
                if differentiable:
                    part = (ddp(*batch) if ddp is not None
                            else loss_elbo.differentiable_loss(model.model, model.guide, *batch))
                    loss = part * factor if loss is None else loss + part * factor
                    continue
                saved = [p.grad for p in params]
                for p in params:
                    p.grad = None
                value = loss_elbo.loss_and_grads(model.model, model.guide, *batch) * factor
                if not math.isfinite(value):
                    raise _numerical_failure(model, batch, epoch, i, f"the loss became {value}",
                                             ckpt_path)
                for p, g in zip(params, saved):
                    if p.grad is not None and factor != 1.0:
                        p.grad.mul_(factor)
                    if g is not None:
                        p.grad = g if p.grad is None else p.grad + g
                total += value
        if differentiable:
            loss = loss / num_data
            value = loss.item()
            if not distributed.all_ok(math.isfinite(value)):  # all ranks stop together
                raise _numerical_failure(model, batch, epoch, i,
                                         f"the loss became {value}" if not math.isfinite(value)
                                         else "the loss became non-finite on another process",
                                         ckpt_path)
            loss.backward()
            return value, size
        for p in params:
            if p.grad is not None:
                p.grad.div_(num_data)
        return total / num_data, size

    # ---- train ---------------------------------------------------------------------------------
    bar = tqdm(range(start_epoch, epochs), initial=start_epoch, total=epochs, disable=not show,
               desc=f"training {type(model).__name__}", unit="epoch")
    step = start_epoch * steps_per_epoch
    # Pyro's own ELBOs find trainable parameters through param sites; pvae's lean ones need none.
    lean = traits(loss_elbo).lean_path
    with pyro.validation_enabled(False), model.unregistered() if lean else contextlib.nullcontext():
        for epoch in bar:
            model.train()
            # Set from ``lr`` and the schedule each epoch, so a resumed run uses the rate asked
            # for now, not the one saved with the optimiser's state.
            rate = lr * lr_factor ** sum(epoch >= e for e in lr_steps)
            for group in opt.param_groups:
                group["lr"] = rate
            t0 = time.perf_counter()
            total, seen = 0.0, 0
            for i, parts in enumerate(batches(epoch)):
                weight = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
                with contextlib.nullcontext() if weight == 1.0 else LatentScale(weight):
                    value, size = step_loss(parts, epoch, i)
                if clip_norm is not None:
                    norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
                    if not torch.isfinite(norm):
                        raise _numerical_failure(model, parts[0][0], epoch, i,
                                                 "the gradient became non-finite", ckpt_path)
                opt.step()
                total += value * size
                seen += size
                step += 1
            seconds = time.perf_counter() - t0
            total, seen = distributed.all_sum(total, seen)
            row: dict[str, Any] = {"epoch": epoch + 1, "train_elbo": -total / seen}
            with model.scaled_to(None):
                p = evaluate.parts(model, monitor)
                row["recon"] = p["recon"].mean().item()
                row["kl"] = p["kl"].mean().item()
                site_kls = [k for k in p if k.startswith("kl_")]
                if len(site_kls) > 1:  # per latent site (hierarchical layers, labels)
                    row.update({k: p[k].mean().item() for k in site_kls})
                if val is not None:
                    row["val_elbo"] = evaluate.elbo(model, val).mean().item()
            if warmup_steps:
                row["kl_weight"] = weight
            row["lr"] = opt.param_groups[0]["lr"]  # the rate this epoch's steps used
            row["seconds"] = seconds
            bad = [k for k in ("train_elbo", "recon", "kl", "val_elbo")
                   if k in row and not math.isfinite(row[k])]
            if not distributed.all_ok(not bad):
                raise _numerical_failure(model, monitor, epoch, i,
                                         f"{bad[0]} became {row[bad[0]]}" if bad
                                         else "a monitored value became non-finite elsewhere",
                                         ckpt_path)
            history.append(row)
            bar.set_postfix(elbo=f"{row['train_elbo']:.2f}")
            if (epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs:
                save_checkpoint(epoch + 1)
            if callback is not None:
                callback(row)
    model.eval()
    return history
