"""The saved state of a training run: optimiser, random streams, history, monitor batch.

A training checkpoint is the model's record (:func:`pvae.checkpoint.model_record`)
with a ``"training"`` entry holding :meth:`TrainState.record`; a resumed run
restores it with :meth:`TrainState.restore` and continues where it stopped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pyro
import torch

from pvae import checkpoint as ckpt
from pvae import distributed
from pvae.train.history import History


#: torch's default epsilon of Adam and AdamW (Burda et al. 2015 used 1e-4).
ADAM_EPS = 1e-8
#: The optimiser settings a resumed run takes as given now (the rate follows the schedule).
NEW_ON_RESUME = ("weight_decay", "eps")


def make_optimizer(name: str, params, lr: float, weight_decay: float,
                   adam_eps: float = ADAM_EPS) -> torch.optim.Optimizer:
    """``adam``, ``adamw`` or ``sgd`` over ``params``; ``adam_eps`` is Adam's and AdamW's
    epsilon (the term added to the root of the second moment). ``ValueError`` for another
    name, or for ``adam_eps`` other than the default with ``sgd`` (which has none)."""
    options = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if name not in options:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(options)}")
    check_adam_eps(name, adam_eps)
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name != "sgd":
        kwargs["eps"] = adam_eps
        # One fused kernel for all parameters instead of a Python loop over them.
        kwargs["fused"] = True
    return options[name](params, **kwargs)


def check_adam_eps(optimizer: str, adam_eps: float) -> None:
    """``ValueError`` unless ``adam_eps`` is a positive number, and the default with ``sgd``."""
    if not (isinstance(adam_eps, (int, float)) and 0 < adam_eps < math.inf):
        raise ValueError(f"adam_eps must be a positive number (Adam's epsilon; torch's "
                         f"default {ADAM_EPS}), got {adam_eps!r}")
    if optimizer == "sgd" and adam_eps != ADAM_EPS:
        raise ValueError(f"adam_eps={adam_eps!r} applies to optimizer 'adam' or 'adamw', and "
                         f"optimizer is 'sgd' (which has no epsilon); drop adam_eps or choose "
                         f"'adam' or 'adamw'")


def batch_generator(seed: Optional[int], rank: int) -> torch.Generator:
    """Seed torch and Pyro (ranks draw different z) and return the batch-order stream."""
    if seed is not None:
        pyro.set_rng_seed(seed + rank)  # batches come from the sampler, the same on all ranks
    gen = torch.Generator()
    gen.manual_seed(int(seed) if seed is not None else int(torch.randint(2**62, ())))
    return gen


@dataclass
class TrainState:
    """What a run needs to continue: the optimiser and its name, the batch-order
    generator, the monitor batch, the run's seed, the history and the epochs done."""

    optimizer: torch.optim.Optimizer
    optimizer_name: str
    generator: torch.Generator
    monitor: tuple
    seed: Optional[int]
    history: History = field(default_factory=History)
    epoch: int = 0

    def restore(self, saved: dict, *, rank: int, world: int, device: torch.device) -> None:
        """Continue from a checkpoint's ``"training"`` entry (``saved``).

        The optimiser keeps its moments but takes the settings of
        :data:`NEW_ON_RESUME` from the optimiser it was built with now; the
        random streams continue (per rank when the number of processes is the same,
        fresh distinct ones per rank when it is not).
        """
        now = [{k: g[k] for k in NEW_ON_RESUME if k in g} for g in self.optimizer.param_groups]
        self.optimizer.load_state_dict(saved["optimizer"])  # the saved groups keep their own
        for group, settings in zip(self.optimizer.param_groups, now):
            group.update(settings)
        self.history = History(saved["history"])
        self.epoch = int(saved["epoch"])
        per_rank = saved.get("torch_rng_per_rank") or []
        if world == 1:
            torch.set_rng_state(saved["torch_rng"])
            if saved.get("cuda_rng") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
        elif len(per_rank) == world:
            cpu_state, cuda_state = per_rank[rank]
            torch.set_rng_state(cpu_state)
            if cuda_state is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state(cuda_state)
        else:  # a different number of processes: fresh, distinct streams per rank
            pyro.set_rng_seed((self.seed or 0) + 1000 * self.epoch + rank)
        self.seed = saved.get("seed", self.seed)
        self.generator.set_state(saved["batch_rng"])
        self.monitor = tuple(t.to(device) for t in saved["monitor"])

    def record(self, epoch: int, rng_per_rank: list) -> dict:
        """The ``"training"`` entry of a checkpoint after ``epoch`` epochs."""
        return {
            "epoch": epoch,
            "optimizer": self.optimizer.state_dict(),
            "optimizer_name": self.optimizer_name,
            "seed": self.seed,
            "history": list(self.history),
            "torch_rng": torch.get_rng_state(),
            "torch_rng_per_rank": [list(r) for r in rng_per_rank] if len(rng_per_rank) > 1
            else [],
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "batch_rng": self.generator.get_state(),
            "monitor": tuple(t.cpu() for t in self.monitor),
        }

    def save(self, model, path: Path, epoch: int, rank: int) -> None:
        """Write ``model`` and this state to ``path`` atomically (rank 0 writes; the
        other ranks wait until the file is complete)."""
        rng_per_rank = distributed.gather_rng()
        if rank != 0:
            distributed.barrier()
            return
        rec = ckpt.model_record(model)
        rec["training"] = self.record(epoch, rng_per_rank)
        ckpt.atomic_save(rec, path)
        distributed.barrier()
