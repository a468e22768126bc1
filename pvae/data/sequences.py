"""Padded sequences with their lengths: the container, padding, and users' files.

A :class:`Sequences` holds ``x`` of shape ``(N, T, D)`` (real-valued series,
float32) or ``(N, T)`` (token ids, int64), padded to a common length ``T``,
and ``lengths`` of shape ``(N,)``: sequence ``i`` is ``x[i, :lengths[i]]`` and
what lies beyond is padding, which no pvae model reads (the mask is
``arange(T) < lengths[:, None]``). Padding may hold anything, NaN included;
the values of the real steps must be finite.

:func:`load_sequences` reads a user's file:

======== ======================================================================
``.npz`` arrays ``x`` (or the first array), ``lengths`` (optional: all ``T``
         when absent) and optional labels ``y`` (N,)
``.npy`` one array ``x``; ``lengths=`` gives the lengths (an array or a
         ``.npy`` file), else every sequence is ``T`` long
``.csv`` long format, one row per time step: sequence id, time step, then one
         column per dimension of a step (``D`` columns). An optional header
         row names the columns; a column named ``y`` or ``label`` holds the
         sequence's class id (the same on all its rows). Ids may be any text;
         sequences keep the order of their first row; the steps of one
         sequence are consecutive whole numbers, in any row order.
======== ======================================================================

Integer ``(N, T)`` arrays are token ids; float ``(N, T)`` arrays are refused
(add the step axis, ``x[..., None]``, for a univariate series); ``(N, T, D)``
arrays are series (float32). Loaded padding is set to 0, so that no NaN
travels on into statistics or plots.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from pvae.data.arrays import check_labels_array

PathLike = Union[str, os.PathLike]


@dataclass
class Sequences:
    """Padded sequences ``x`` with their ``lengths`` and optional labels ``y``.

    Parameters
    ----------
    x
        ``(N, T, D)`` real-valued series (stored as float32; integer or boolean
        values are converted), or ``(N, T)`` integer token ids (stored as int64);
        ``N = 0`` (an empty split) is allowed.
    lengths
        ``(N,)`` whole numbers in ``1..T`` (stored as int64).
    y
        Optional ``(N,)`` class ids (int64; ``-1``: unlabelled).

    Raises
    ------
    ValueError
        On construction, naming the sequence at fault and the fix: wrong shapes,
        float ``(N, T)`` data, a length of 0 or above ``T``, NaN or infinite
        values (series) or negative ids (tokens) inside the real steps. Padding
        is not checked: any value, NaN included, is allowed there.
    """

    x: torch.Tensor
    lengths: torch.Tensor
    y: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        self.x, self.lengths, self.y = _checked(self.x, self.lengths, self.y)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def max_len(self) -> int:
        """The padded length ``T``."""
        return self.x.shape[1]

    @property
    def is_tokens(self) -> bool:
        """Whether ``x`` holds token ids ``(N, T)`` rather than series ``(N, T, D)``."""
        return not self.x.is_floating_point()

    @property
    def mask(self) -> torch.Tensor:
        """``(N, T)`` booleans, True on the real steps."""
        return step_mask(self.lengths, self.max_len)

    @classmethod
    def from_list(cls, seqs: Sequence, y=None, max_len: Optional[int] = None) -> "Sequences":
        """Pad a list of ``(T_i,)`` token-id or ``(T_i, D)`` series arrays to ``max_len``
        (default: the longest), with 0 as padding. ``ValueError`` for an empty list,
        an empty sequence, mixed step sizes or a sequence longer than ``max_len``."""
        if len(seqs) == 0:
            raise ValueError("Sequences.from_list needs at least one sequence")
        arrays = [np.asarray(s) for s in seqs]
        lengths = np.array([a.shape[0] if a.ndim else 0 for a in arrays], dtype=np.int64)
        if lengths.min() < 1:
            raise ValueError(f"sequence {int(np.argmin(lengths))} is empty; every sequence "
                             "needs at least one step: drop the empty ones")
        tail = {a.shape[1:] for a in arrays}
        if len(tail) > 1:
            raise ValueError(f"the sequences' steps have different shapes {sorted(tail)}; every "
                             "step needs the same number D of values")
        t = int(lengths.max()) if max_len is None else max_len
        if lengths.max() > t:
            raise ValueError(f"sequence {int(np.argmax(lengths))} has {int(lengths.max())} steps, "
                             f"more than max_len={t}; raise max_len or shorten it")
        first = arrays[0]
        out = np.zeros((len(arrays), t, *first.shape[1:]), dtype=np.result_type(*arrays))
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a
        return cls(torch.from_numpy(out), torch.from_numpy(lengths), y)


def step_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(N, T)`` booleans, True where step ``t < lengths[n]``."""
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def _as_tensor(a, what: str) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise ValueError(f"Sequences: {what} holds {a.dtype} values, not numbers; convert "
                             "them first (text: pvae.data.Vocabulary(...).encode)")
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, torch.Tensor):
        a = torch.as_tensor(a)
    if a.is_complex():
        raise ValueError(f"Sequences: {what} holds complex numbers; give real numbers")
    return a


def _checked(x, lengths, y):
    """``(x, lengths, y)`` converted to their dtypes and checked (see :class:`Sequences`)."""
    x, lengths = _as_tensor(x, "x"), _as_tensor(lengths, "lengths")
    if x.dim() == 2 and x.is_floating_point():
        raise ValueError(f"Sequences: x of shape {tuple(x.shape)} holds floats; token ids must "
                         "be integers, and a univariate series needs its step axis: x[..., None] "
                         "(shape (N, T, 1))")
    if x.dim() not in (2, 3) or x.shape[1] == 0 or (x.dim() == 3 and x.shape[2] == 0):
        raise ValueError(f"Sequences: x has shape {tuple(x.shape)}; expected (N, T, D) series or "
                         "(N, T) token ids, with T >= 1 and D >= 1")
    x = x.float() if x.dim() == 3 else x.long()
    n, t = x.shape[:2]
    if lengths.shape != (n,):
        raise ValueError(f"Sequences: lengths has shape {tuple(lengths.shape)}; give one length "
                         f"per sequence, shape ({n},)")
    if lengths.is_floating_point() and not (torch.isfinite(lengths).all()
                                            and (lengths == lengths.round()).all()):
        raise ValueError("Sequences: lengths must be whole numbers of steps")
    lengths = lengths.long()
    bad = torch.nonzero((lengths < 1) | (lengths > t)).flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"Sequences: sequence {i} has length {int(lengths[i])}, outside 1..{t} "
                         f"(T = x.shape[1] = {t}); {len(bad)} length(s) are out of range: a "
                         "sequence needs at least one step and no more than the padded size")
    real = step_mask(lengths, t)
    if x.is_floating_point():
        inside = (~torch.isfinite(x)).any(-1) & real
        what = "NaN or infinite value(s)"
    else:
        inside = (x < 0) & real
        what = "negative token id(s)"
    if inside.any():
        i, s = (int(v) for v in torch.nonzero(inside)[0])
        raise ValueError(f"Sequences: {int(inside.sum())} step(s) hold {what} inside the real "
                         f"steps (first: sequence {i}, step {s} < its length "
                         f"{int(lengths[i])}); fix or impute them (padding beyond a length may "
                         "hold anything)")
    if y is not None:
        y = _as_tensor(y, "y")
        if y.shape != (n,):
            raise ValueError(f"Sequences: labels y have shape {tuple(y.shape)}; give one class id "
                             f"per sequence, shape ({n},)")
        if y.is_floating_point() and not (torch.isfinite(y).all() and (y == y.round()).all()):
            raise ValueError("Sequences: labels y must be whole class ids 0..K-1 (-1: unlabelled)")
        y = y.long()
    return x, lengths, y


def zero_padding(seqs: Sequences) -> Sequences:
    """A copy of ``seqs`` whose padding holds 0."""
    mask = seqs.mask if seqs.x.dim() == 2 else seqs.mask[..., None]
    return Sequences(torch.where(mask, seqs.x, torch.zeros((), dtype=seqs.x.dtype)),
                     seqs.lengths, seqs.y)


def load_sequences(path: PathLike, lengths=None) -> Sequences:
    """Read padded sequences from a ``.npz``, ``.npy`` or long-format ``.csv`` file.

    The formats are in the module docstring. Values of the real steps are kept
    as they are; padding is set to 0.

    Parameters
    ----------
    path
        The file.
    lengths
        For ``.npy`` files only: the lengths, an array ``(N,)`` or a ``.npy`` file.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        An unreadable file or another type, and every :class:`Sequences` error
        (lengths of 0 or above ``T``, wrong shapes, NaN in the real steps), naming
        the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist; check the path")
    suffix = path.suffix.lower()
    if lengths is not None and suffix != ".npy":
        raise ValueError(f"lengths= is for .npy files; a {suffix} file carries its own lengths")
    try:
        if suffix == ".npy":
            x = np.load(path, allow_pickle=False)
            if isinstance(lengths, (str, os.PathLike)):
                lengths = np.load(lengths, allow_pickle=False)
            seqs = _from_arrays(x, lengths, None)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if not f.files:
                    raise ValueError("the archive holds no arrays")
                x = f["x"] if "x" in f.files else f[f.files[0]]
                got = {k: f[k] for k in ("lengths", "y") if k in f.files}
            seqs = _from_arrays(x, got.get("lengths"), got.get("y"))
        elif suffix == ".csv":
            seqs = _read_long_csv(path)
        else:
            raise ValueError(f"unsupported file type {suffix!r}; use .npz, .npy or .csv")
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"cannot read sequences from {str(path)!r}: {e}") from None
    return zero_padding(seqs)


def _from_arrays(x, lengths, y) -> Sequences:
    x = np.asarray(x)
    if lengths is None and x.ndim >= 2:
        lengths = np.full(x.shape[0], x.shape[1], dtype=np.int64)
    elif lengths is None:
        raise ValueError(f"x has shape {x.shape}; expected (N, T, D) or (N, T)")
    if y is not None:
        y = check_labels_array(y, "sequences")
    return Sequences(x, np.asarray(lengths), y)


def _read_long_csv(path: Path) -> Sequences:
    """Long format (id, step, values...) to padded :class:`Sequences`."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError("the file is empty")
    header = None
    try:
        [float(c) for c in rows[0][1:]]
    except ValueError:
        header, rows = [c.strip().lower() for c in rows[0]], rows[1:]
    width = len(header) if header else len(rows[0]) if rows else 0
    label_col = next((i for i, c in enumerate(header or []) if c in ("y", "label")), None)
    value_cols = [i for i in range(2, width) if i != label_col]
    if not rows or not value_cols:
        raise ValueError("long format needs rows of: sequence id, time step, then at least one "
                         "value column")
    steps, ids, labels = {}, [], {}
    for k, r in enumerate(rows, start=2 if header else 1):
        if len(r) != width:
            raise ValueError(f"line {k} has {len(r)} columns, the others {width}")
        try:
            step = float(r[1])
            values = [float(r[i]) for i in value_cols]
            label = float(r[label_col]) if label_col is not None else None
        except ValueError as e:
            raise ValueError(f"line {k}: {e}") from None
        if step != round(step):
            raise ValueError(f"line {k}: time step {r[1]!r} is not a whole number")
        sid = r[0].strip()
        if sid not in steps:
            ids.append(sid)
            steps[sid] = {}
        if int(step) in steps[sid]:
            raise ValueError(f"line {k}: sequence {sid!r} has step {int(step)} twice")
        steps[sid][int(step)] = values
        if label_col is not None and labels.setdefault(sid, label) != label:
            raise ValueError(f"line {k}: sequence {sid!r} has two labels, {labels[sid]:g} and "
                             f"{label:g}; a label belongs to the whole sequence")
    arrays = []
    for sid in ids:
        t = sorted(steps[sid])
        if t[-1] - t[0] + 1 != len(t):
            gap = next(a + 1 for a, b in zip(t, t[1:]) if b != a + 1)
            raise ValueError(f"sequence {sid!r} misses time step {gap} (its steps run from "
                             f"{t[0]} to {t[-1]}); give every step, or impute the missing ones")
        arrays.append(np.array([steps[sid][s] for s in t], dtype=np.float32))
    y = np.array([labels[s] for s in ids]) if label_col is not None else None
    if y is not None:
        y = check_labels_array(y, "sequences")
    return Sequences.from_list(arrays, y)
