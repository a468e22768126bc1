"""Training across processes with PyTorch's DistributedDataParallel.

``pvae.fit`` switches to data-parallel training when a ``torch.distributed``
process group is initialised (``torchrun`` sets one up for ``pvae train``):

- each rank reads its shard of every epoch through
  :class:`torch.utils.data.DistributedSampler` (same permutation on all ranks,
  disjoint shards), in batches of ``batch_size`` per rank;
- the data plate keeps the *global* data size, so each rank's minibatch loss
  estimates the same full-data ELBO, and DDP averages the ranks' gradients:
  one step equals a single-process step on the union of the ranks' batches,
  up to the ranks' independent draws of z;
- the loss is computed inside a small module wrapped in DDP, so parameters are
  broadcast from rank 0 at the start and gradients all-reduced in backward;
- only rank 0 writes checkpoints (the others wait at a barrier) and figures.
"""

from __future__ import annotations

import math
import os
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

from pvae.batching import num_batches


def context() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: str = "cpu") -> bool:
    """Initialise the process group from torchrun's environment (if launched by it).

    ``gloo`` on CPU, ``nccl`` on CUDA (each rank on ``cuda:LOCAL_RANK``).
    Returns whether this process is part of a multi-process run.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        cuda = str(device).startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


class LossModule(nn.Module):
    """The ELBO loss as a module's forward, so DDP can wrap it."""

    def __init__(self, model, elbo) -> None:
        super().__init__()
        self.model = model
        self.elbo = elbo

    def forward(self, *batch):
        return self.elbo.differentiable_loss(self.model.model, self.model.guide, *batch)


def wrap(model, elbo, device: torch.device):
    """``DistributedDataParallel`` around the loss of ``model`` under ``elbo``."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device] if device.type == "cuda" else None
    return DDP(LossModule(model, elbo), device_ids=ids, find_unused_parameters=False)


def shard_batches(batch: tuple, batch_size: int, epoch: int, seed: int,
                  drop_last: bool) -> Iterator[list]:
    """This rank's steps of an epoch over in-memory ``batch`` (DistributedSampler shards)."""
    rank, world = context()
    n = batch[0].shape[0]
    sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=world, rank=rank,
                                                  shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    idx = torch.tensor(list(sampler), device=batch[0].device)
    steps = len(idx) // batch_size if drop_last else math.ceil(len(idx) / batch_size)
    for i in range(max(steps, 1)):
        part = idx[i * batch_size : (i + 1) * batch_size]
        yield [(tuple(t[part] for t in batch), n)]


def num_steps(n: int, batch_size: int, drop_last: bool) -> int:
    _, world = context()
    return num_batches(math.ceil(n / world), batch_size, drop_last)


def dataset_loader(dataset, batch_size: int, epoch: int, seed: int, drop_last: bool):
    rank, world = context()
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank,
                                                  shuffle=True, seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                       drop_last=drop_last)


def all_sum(*values: float) -> list[float]:
    """Sum numbers over ranks (returns them unchanged in a single process)."""
    if context()[1] == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def broadcast(obj):
    """Rank 0's value of ``obj`` on every rank (``obj`` itself in a single process)."""
    if context()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_ok(ok: bool) -> bool:
    """True only if ``ok`` holds on every rank, so all ranks stop together on a failure."""
    if context()[1] == 1:
        return ok
    t = torch.tensor([1.0 if ok else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def barrier() -> None:
    if context()[1] > 1:
        dist.barrier()


def gather_rng() -> list:
    """Every rank's (CPU, current CUDA device) RNG states, in rank order."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None
    state = (torch.get_rng_state(), cuda)
    if context()[1] == 1:
        return [state]
    out: list = [None] * context()[1]
    dist.all_gather_object(out, state)
    return out
