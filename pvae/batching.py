"""Batches from what users pass: tuples of tensors, loaders over a torch ``Dataset``.

A batch is a tuple of tensors with one row per data point: ``(x,)``, ``(x, y)``
for models with labels or conditions, or ``(x, lengths)`` for sequences; x is
float32 (token ids of a model declaring ``x_dtype = torch.int64`` stay exact). This module reads models
only through their attributes (``batch_parts``, ``num_classes``,
``evaluation_batch``, ``check_data``) and imports nothing else of pvae."""

from __future__ import annotations

import math

import numpy as np
import torch

_REAL_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
                torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)


# -- data --------------------------------------------------------------------------------
def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    """Minibatches in ``n`` points: none in none, and at least one when there are any."""
    if n == 0:
        return 0
    return max(n // batch_size, 1) if drop_last else math.ceil(n / batch_size)


def _x_dtype(model):
    """The dtype a model's x travels in: its declared ``x_dtype`` (token ids: int64), else
    float32."""
    return getattr(model, "x_dtype", None) or torch.float32


def as_batch_tensors(data, model, what: str = "data") -> tuple[torch.Tensor, ...]:
    """Tensors (x,), (x, y) or (x, lengths) from a tensor, array, tuple, pvae.data split
    or any object with ``x`` and ``lengths`` attributes (sequences, e.g. pvae.data.Sequences).

    x becomes float32, except for a model that declares ``x_dtype = torch.int64`` (token
    ids): integer ids become int64 and float ids stay floats (exact; the model checks that
    the real steps hold whole ids and converts them)."""
    if hasattr(data, "x") and hasattr(data, "lengths"):  # padded sequences with their lengths
        parts = getattr(model, "batch_parts", None)
        if parts is not None and "lengths" not in parts:
            raise ValueError(
                f"{what}: {type(model).__name__} takes fixed-size data points, but got padded "
                "sequences with their lengths; train pvae.SequenceVAE on them, or, when every "
                "length is the padded size T, pass the sequences as fixed-size points "
                "(seqs.x, or seqs.x.flatten(1) for an MLP)")
        data = (data.x, data.lengths)
    elif hasattr(data, "x") and hasattr(data, "y"):  # pvae.data.Split
        data = (data.x, data.y) if "y" in getattr(model, "batch_parts", ("x",)) else data.x
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
    if _x_dtype(model) == torch.int64:
        x = x if x.is_floating_point() else x.long()
    elif x.dtype != torch.float32:
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


def as_batch(data, model=None, what: str = "data") -> tuple[torch.Tensor, ...]:
    """A batch from ``data``, checked against ``model`` when it is a pvae model.

    ``data`` is anything :func:`as_batch_tensors` takes. A pvae model (one that
    declares its ``batch_parts``) checks the batch as ``fit`` does, and of a
    ``pvae.data.Split`` takes the part it scores in evaluation
    (``model.evaluation_batch``); a pair of callables gets the tensors as they are.

    Raises
    ------
    TypeError, ValueError
        As :func:`as_batch_tensors`, or ``model.check_data``.
    """
    batch = as_batch_tensors(data, model, what)
    if getattr(model, "batch_parts", None) is None:  # a pair of callables: nothing declared
        return batch
    if hasattr(data, "x") and hasattr(data, "y") and not hasattr(data, "lengths"):
        # a pvae.data.Split: score what fit scores
        batch = model.evaluation_batch(batch)
    model.check_data(*batch)
    return batch


def dataset_loader(dataset, batch_size: int, shuffle: bool, drop_last: bool,
                   generator) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` over a torch ``Dataset`` (whole batches at once where it can)."""
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


def loader_batch(item) -> tuple[torch.Tensor, ...]:
    """A batch from one item of a ``DataLoader``: x as a float tensor, other parts as they are."""
    parts = item if isinstance(item, (tuple, list)) else (item,)
    x = parts[0]
    return (x.float() if not x.is_floating_point() or x.dtype == torch.float64 else x,
            *parts[1:])
