"""User arrays of fixed-size data: ``.npy`` / ``.npz`` / ``.csv`` files read whole
(:func:`load_array`) or streamed from a memory map (:class:`ArrayDataset`), and the
check of the labels they carry (:func:`check_labels_array`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch


class ArrayDataset(torch.utils.data.Dataset):
    """Rows of a ``.npy`` file (memory-mapped: nothing is loaded up front) or an array.

    Batches are read with one fancy index per batch (``__getitems__``), not a
    Python call per row, so ``pvae.fit`` streams large files at close to
    in-memory speed while memory stays flat as the file grows. Optional
    labels come from a second file or array of the same length.
    """

    def __init__(self, x, y=None, *, dtype=np.float32) -> None:
        if isinstance(x, (str, os.PathLike)):
            path = Path(x)
            if not path.exists():
                raise FileNotFoundError(f"data file {str(path)!r} does not exist; check the path")
            if path.suffix.lower() != ".npy":
                raise ValueError(f"ArrayDataset streams .npy files, got {path.suffix!r}; convert "
                                 "it with numpy.save, or load it with pvae.data.load_array")
            try:
                x = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read data file {str(path)!r}: {e}") from None
        if isinstance(y, (str, os.PathLike)):
            y = np.load(y, mmap_mode="r", allow_pickle=False)
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"expected an array of shape (N, features...) with N >= 1, got "
                             f"{x.shape}")
        if y is not None and len(y) != len(x):
            raise ValueError(f"y has {len(y)} rows but x has {len(x)}")
        if y is not None:
            y = check_labels_array(y, "ArrayDataset")
        self.x, self.y, self.dtype = x, y, dtype

    def __len__(self) -> int:
        return self.x.shape[0]

    def _rows(self, idx):
        x = torch.from_numpy(np.asarray(self.x[idx], dtype=self.dtype))
        if self.y is None:
            return x
        return x, torch.from_numpy(np.asarray(self.y[idx])).long()

    def __getitem__(self, i):
        return self._rows(i)

    def __getitems__(self, indices):
        order = np.argsort(indices)  # sorted reads are sequential on a memory map
        idx = np.asarray(indices)[order]
        batch = self._rows(idx)
        back = torch.from_numpy(np.argsort(order))
        return [tuple(t[back] for t in batch) if isinstance(batch, tuple) else batch[back]]


def check_labels_array(y, where: str) -> np.ndarray:
    """Class labels read from a user's file, checked: an int64 array of shape (N,).

    Accepts whole numbers ``0..K-1`` (and ``-1`` for unlabelled points), as any
    numeric dtype, in shape ``(N,)`` or ``(N, 1)`` (squeezed). Raises
    ``ValueError`` naming the problem and the fix, before anything is trained,
    for strings, other shapes, NaN or infinite values, fractions, negative
    labels other than -1, and sparse ids (fewer than half of ``0..max`` used,
    e.g. 1000, 2000, 3000, which would make 3,001 classes).
    """
    y = np.asarray(y)
    reindex = "classes, y = numpy.unique(y, return_inverse=True)"
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise ValueError(f"{where}: labels y hold {y.dtype} values, not class ids; map them to "
                         f"ids 0..K-1 first, e.g. {reindex}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{where}: labels y have shape {y.shape}; give one class id per row, "
                         "shape (N,) (for one-hot labels, y.argmax(1))")
    if np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.complexfloating):
        if np.iscomplexobj(y):
            raise ValueError(f"{where}: labels y are complex numbers; give class ids 0..K-1")
        bad = ~np.isfinite(y)
        if bad.any():
            raise ValueError(f"{where}: labels y hold {int(bad.sum())} NaN or infinite "
                             "value(s); remove those rows, or mark them -1 (unlabelled)")
        frac = y != np.round(y)
        if frac.any():
            raise ValueError(f"{where}: labels y must be whole class ids, found {y[frac][0]:g} "
                             f"({int(frac.sum())} fractional label(s)); they are not rounded "
                             "or truncated: fix the labels")
    y = y.astype(np.int64)
    if (y < -1).any():
        raise ValueError(f"{where}: labels y must be class ids 0..K-1 (or -1: unlabelled), found "
                         f"{int(y.min())}; re-index them, e.g. {reindex}")
    known = np.unique(y[y >= 0])
    if len(known) and len(known) < (known[-1] + 1) / 2:
        raise ValueError(
            f"{where}: labels y take {len(known)} distinct value(s) but range up to "
            f"{int(known[-1])}, which would make {int(known[-1]) + 1} classes; re-index them to "
            f"0..{len(known) - 1} first, e.g. {reindex}")
    return y


def load_array(path: Union[str, os.PathLike]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Read x (and y, if present) from ``.npy``, ``.npz`` or ``.csv``; values unchanged."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist; check the path")
    suffix = path.suffix.lower()
    y = None
    try:
        if suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if not f.files:
                    raise ValueError("the archive holds no arrays")
                x = f["x"] if "x" in f.files else f[f.files[0]]
                y = f["y"] if "y" in f.files else None
        elif suffix == ".csv":
            with open(path) as f:
                first = f.readline()
            try:
                [float(v) for v in first.strip().split(",") if v.strip()]
                skip = 0
            except ValueError:
                skip = 1
            x = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
        else:
            raise ValueError(f"unsupported file type {suffix!r}; use .npy, .npz or .csv")
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read data file {str(path)!r}: {e}") from None
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise ValueError(f"data file {str(path)!r} holds {x.dtype} values, not numbers")
    xt = torch.as_tensor(np.ascontiguousarray(x)).float()
    if xt.dim() < 2 or xt.shape[0] == 0:
        raise ValueError(
            f"data file {str(path)!r} has shape {tuple(x.shape)}; expected (N, features...) "
            "with N >= 1"
        )
    if not torch.isfinite(xt).all():
        bad = int((~torch.isfinite(xt)).sum())
        raise ValueError(f"data file {str(path)!r} holds {bad} NaN or infinite value(s); "
                         "remove or impute them first")
    yt = None
    if y is not None:
        y = np.asarray(y)
        # (N, D) with D > 1: condition vectors (a CVAE's y_dim), kept as numbers; else labels
        if y.ndim == 2 and y.shape[1] > 1:
            if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y.astype(float)).all():
                raise ValueError(f"data file {str(path)!r}: condition vectors y must be finite "
                                 "numbers; remove or impute NaN and infinite values first")
            yt = torch.as_tensor(y.astype(np.float32))
        else:
            yt = torch.as_tensor(check_labels_array(y, f"data file {str(path)!r}"))
        if yt.shape[:1] != xt.shape[:1]:
            raise ValueError(f"data file {str(path)!r}: y has {yt.shape[0]} rows but x has "
                             f"{xt.shape[0]}")
    return xt, yt
