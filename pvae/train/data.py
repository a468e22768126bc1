"""The training data: in-memory tensors or a torch ``Dataset`` behind one interface."""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import torch

from pvae import distributed
from pvae.batching import as_batch_tensors, dataset_loader, loader_batch, num_batches

Batch = tuple
Transform = Optional[Callable[[torch.Tensor], torch.Tensor]]


def transformed(batch: Batch, transform: Transform) -> Batch:
    """``batch`` with ``transform`` applied to x (the first part); as is without one."""
    return (transform(batch[0]),) + tuple(batch[1:]) if transform is not None else batch


def evaluation_data(data, model, device, transform: Transform, what: str) -> Optional[Batch]:
    """Data scored as they are every epoch (validation): checked, on ``device``, and
    transformed once, so epochs are comparable; None for no data (``data`` None)."""
    if data is None:
        return None
    batch = as_batch_tensors(data, model, what)
    model.check_data(*transformed(batch, transform))
    batch = model.evaluation_batch(tuple(t.to(device) for t in batch))
    return transformed(batch, transform)


class TrainingData:
    """What ``fit`` trains on: in-memory tensors, batched by indexing them, or a torch
    ``Dataset``, read through a ``DataLoader`` (then :attr:`streamed`: each batch is
    checked as it arrives). The first batch (the whole data in memory) is checked
    against the model on construction.

    Raises
    ------
    TypeError
        For a whole ``pvae.data.Data`` (pass one split) or data of another type.
    ValueError
        For an empty ``Dataset`` or data the model cannot score.
    """

    def __init__(self, data, model, batch_size: int, transform: Transform = None) -> None:
        self.batch_size, self.drop_last, self.world, self.shard_seed = batch_size, False, 1, 0
        self.device = torch.device("cpu")  # where batches go (:meth:`to`)
        if hasattr(data, "train") and hasattr(data, "test"):
            raise TypeError("pass one split of a pvae.data.Data, e.g. pvae.fit(model, "
                            "data.train, validation=data.val)")
        self.transform = transform
        self.dataset = None
        self.tensors: Optional[Batch] = None
        if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.Tensor):
            if len(data) == 0:
                raise ValueError("the training data set is empty; pass at least one data point")
            self.dataset = data
            self.num_data = len(data)
            self.first = loader_batch(next(iter(dataset_loader(
                data, min(batch_size, 1024), False, False, None))))
            model.check_data(*transformed(self.first, transform))
        else:
            self.tensors = as_batch_tensors(data, model)
            self.num_data = self.tensors[0].shape[0]
            model.check_data(*transformed(self.tensors, transform))

    @property
    def streamed(self) -> bool:
        """Read from a ``Dataset`` batch by batch (each batch checked as it arrives)."""
        return self.tensors is None

    def to(self, device: torch.device) -> "TrainingData":
        """Move in-memory tensors to ``device`` (streamed batches move as they come)."""
        self.device = torch.device(device)
        if self.tensors is not None:
            self.tensors = tuple(t.to(device) for t in self.tensors)
        return self

    def monitor(self, model, size: int, generator: torch.Generator) -> Batch:
        """A fixed random subset of ``size`` points (the first batch when streamed), in
        the form evaluation scores, transformed once."""
        if self.tensors is not None:
            idx = torch.randperm(self.num_data, generator=generator)[:size]
            batch = tuple(t[idx.to(self.device)] for t in self.tensors)
        else:
            batch = tuple(t.to(self.device) for t in self.first)
        return transformed(model.evaluation_batch(batch), self.transform)

    def plan(self, drop_last: bool, world: int = 1, shard_seed: int = 0) -> None:
        """How epochs are cut: drop a last, smaller batch; shard over ``world`` processes,
        the shards' order drawn from ``shard_seed``."""
        self.drop_last, self.world, self.shard_seed = drop_last, world, shard_seed

    def num_steps(self, model) -> int:
        """Optimiser steps per epoch (per process when sharded)."""
        if self.world > 1:
            return distributed.num_steps(self.num_data, self.batch_size, self.drop_last)
        if self.tensors is not None:
            return model.num_steps(self.tensors, self.batch_size, self.drop_last)
        return num_batches(self.num_data, self.batch_size, self.drop_last)

    def batches(self, model, epoch: int, generator: torch.Generator) -> Iterator[list]:
        """One epoch of steps; each step a list of ``(minibatch, data-plate size)`` parts,
        untransformed (:class:`pvae.train.step.Step` transforms them)."""
        size, drop_last, sharded = self.batch_size, self.drop_last, self.world > 1
        if self.tensors is None:
            loader = (distributed.dataset_loader(self.dataset, size, epoch, self.shard_seed,
                                                 drop_last) if sharded
                      else dataset_loader(self.dataset, size, True, drop_last, generator))
            for item in loader:
                yield [(tuple(t.to(self.device) for t in loader_batch(item)), self.num_data)]
        elif sharded:
            yield from distributed.shard_batches(self.tensors, size, epoch, self.shard_seed,
                                                 drop_last)
        else:
            yield from model.minibatches(self.tensors, size, generator, drop_last)
