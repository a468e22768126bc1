"""Data in the training loop: tensors from what users pass, loaders, the history table."""

from __future__ import annotations

import csv
import math
import os
from typing import Union

import numpy as np
import torch

from pvae import checkpoint as ckpt

_REAL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
                torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


# -- data --------------------------------------------------------------------------------
def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Minibatches in ``n`` points: none in none, and at least one when there are any."""
    if n == 0:
        return 0
    return max(n // batch_size, 1) if drop_last else math.ceil(n / batch_size)


def as_batch_tensors(data, model, what: str = "data") -> tuple[torch.Tensor, ...]:
    """Tensors (x,) or (x, y) from a tensor, array, tuple, or pvae.data split."""
    if hasattr(data, "x") and hasattr(data, "y"):  # pvae.data.Split
        data = (data.x, data.y) if getattr(model, "takes_labels", False) else data.x
    parts = data if isinstance(data, (tuple, list)) else (data,)
    out = []
    for i, p in enumerate(parts):
        if isinstance(p, np.ndarray):
            if not (np.issubdtype(p.dtype, np.number) or p.dtype == np.bool_):
                part = "x" if i == 0 else "the labels" if i == 1 else f"part {i}"
                raise TypeError(
                    f"{what}: {part} hold {p.dtype} values, not numbers; "
                    + ("map class names to ids 0..K-1 first, e.g. "
                       "names, y = numpy.unique(y, return_inverse=True)" if i else
                       "convert them to numbers first"))
            p = torch.from_numpy(np.ascontiguousarray(p))
        if not isinstance(p, torch.Tensor):
            raise TypeError(
                f"{what} must be a tensor, a numpy array, a tuple of them or a torch Dataset, "
                f"got {type(p).__name__}"
            )
        out.append(p)
    x = out[0]
    if x.is_complex() or x.dtype not in _REAL_DTYPES:
        raise TypeError(f"{what} has dtype {x.dtype}; pvae needs real numbers "
                        "(float32, or integers/booleans, which are converted)")
    if x.dtype != torch.float32:
        x = x.float()
    out[0] = x
    n = x.shape[0] if x.dim() else 0
    for i, p in enumerate(out[1:], 1):
        if p.dim() == 2 and p.shape[1] == 1 and getattr(model, "num_classes", None):
            out[i] = p = p.squeeze(1)  # one label per row given as a column
        if p.shape[:1] != (n,):
            raise ValueError(f"{what}: x has {n} rows but a second part has shape "
                             f"{tuple(p.shape)}; every part needs one row per data point")
    return tuple(out)


def _dataset_loader(dataset, batch_size, shuffle, drop_last, generator):
    if hasattr(dataset, "__getitems__"):  # reads a whole batch at once (pvae.data.ArrayDataset)
        sampler = torch.utils.data.BatchSampler(
            torch.utils.data.RandomSampler(dataset, generator=generator) if shuffle
            else torch.utils.data.SequentialSampler(dataset), batch_size, drop_last)
        return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None,
                                           collate_fn=lambda items: items[0]
                                           if isinstance(items, list) else items)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
        generator=generator,
    )


def _batch_from(item) -> tuple[torch.Tensor, ...]:
    parts = item if isinstance(item, (tuple, list)) else (item,)
    x = parts[0]
    return (x.float() if not x.is_floating_point() or x.dtype == torch.float64 else x,
            *parts[1:])


class History(list):
    """One dict per epoch; ``history["train_elbo"]`` gives a column."""

    def __getitem__(self, key):
        if isinstance(key, str):
            return [row.get(key) for row in self]
        return super().__getitem__(key)

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        """Write the history as a table (atomically)."""
        import io

        keys: list[str] = []
        for row in self:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self)
        ckpt.atomic_write_text(path, buf.getvalue())
