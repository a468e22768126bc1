"""Data sets: the embedded digits, MNIST / Fashion-MNIST, and user arrays.

``load(name, ...)`` returns a :class:`Data` with ``train``, ``val`` and
``test`` splits (each a :class:`Split` of tensors ``x`` and, where known,
labels ``y``), the shape of one data point, and the image shape for plots.

============== =====================================================================
name           source
============== =====================================================================
digits         scikit-learn's 8x8 handwritten digits (1,797 images, shipped with
               scikit-learn: no download); grey levels 0..16 scaled to [0, 1]
mnist          torchvision MNIST under ``root`` (``download=True`` fetches it)
fashion_mnist  torchvision Fashion-MNIST under ``root``
array          a user file: ``.npy``, ``.npz`` (arrays ``x`` and optional ``y``: labels
               ``(N,)``, or condition vectors ``(N, D)`` for a CVAE's ``y_dim``) or
               ``.csv`` (numbers; a header row is skipped); values kept as they are
============== =====================================================================

Labels ``y`` in a user's file must be whole class ids ``0..K-1`` (``-1``:
unlabelled), shape ``(N,)`` or ``(N, 1)``; fractions, NaN, text and sparse ids
(fewer than half of ``0..max`` used) are refused with the fix
(:func:`check_labels_array`), never truncated.

Images are scaled to [0, 1]. ``binarize="static"`` samples binary images once
(with ``seed``); ``binarize="dynamic"`` keeps the grey levels in the training
split and sets :attr:`Data.transform` to :func:`binarize`, which ``pvae.fit``
applies to every batch (fresh samples each epoch, Burda et al. 2015), while
validation and test splits are binarised once so evaluation is repeatable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional, Union

import numpy as np
import torch

DATASETS = ("digits", "mnist", "fashion_mnist", "array")


@dataclass
class Split:
    """One split: data ``x`` (N, *shape) and optional labels ``y`` (N,)."""

    x: torch.Tensor
    y: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Data:
    """A data set in splits, with what plots and models need to know about it."""

    name: str
    train: Split
    val: Optional[Split]
    test: Split
    x_shape: tuple[int, ...]
    image_shape: Optional[tuple[int, int, int]] = None
    num_classes: Optional[int] = None
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = field(default=None, repr=False)
    # A data set of latent codes (pvae.latent.code_data): the model that encodes them and
    # the data set they came from, whose space decode() maps codes back to.
    encoder: Optional[torch.nn.Module] = field(default=None, repr=False)
    source: Optional["Data"] = field(default=None, repr=False)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to the source data's space (the encoder's decoder means); else as they are."""
        if self.encoder is None:
            return codes
        with torch.no_grad():
            return self.encoder.decode_mean(codes.to(self.encoder.device)).cpu()


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


def binarize(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample binary values with P(1) = x, for intensities ``x`` in [0, 1]."""
    return torch.bernoulli(x, generator=generator)


_binary = binarize  # ``load`` has an argument of the same name


def hide_labels(y: Optional[torch.Tensor], keep: int, seed: int = 0) -> torch.Tensor:
    """Copy of labels ``y`` with all but ``keep`` of them (class-balanced) set to -1."""
    if y is None:
        raise ValueError("num_labelled needs labelled data")
    if not 0 <= keep <= len(y):
        raise ValueError(f"num_labelled must be in 0..{len(y)}, got {keep}")
    g = torch.Generator().manual_seed(seed + 2)
    classes = y.unique()
    chosen = []
    for i, c in enumerate(classes.tolist()):
        idx = torch.nonzero(y == c).squeeze(-1)
        share = keep // len(classes) + (1 if i < keep % len(classes) else 0)
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:share]])
    out = torch.full_like(y, -1)
    idx = torch.cat(chosen)
    out[idx] = y[idx]
    return out


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    n_val, n_test = int(round(n * val_fraction)), int(round(n * test_fraction))
    for name, f, k in (("test_fraction", test_fraction, n_test), ("val_fraction", val_fraction,
                                                                    n_val)):
        if f > 0 and k == 0:  # asked for a split, got none: refuse now, not at evaluation
            raise ValueError(
                f"{name}={f:g} of {n} data points rounds the {name[:-9]} split to 0 points; "
                f"set {name} (config key data.{name}) to at least {1 / n:.3g} for one point, "
                + ("or use more data (pvae train scores a test split)" if name == "test_fraction"
                   else "or 0 for no such split, or use more data"))
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} data points leave no training data after the splits "
                         f"(val_fraction={val_fraction:g}, test_fraction={test_fraction:g}; "
                         "config keys data.val_fraction, data.test_fraction): lower them or "
                         "use more data")
    return n_val, n_test


def _split(x, y, n_val, n_test, seed) -> tuple[Split, Optional[Split], Split]:
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], (y[perm] if y is not None else None)

    def part(a, b):
        return Split(x[a:b], y[a:b] if y is not None else None)

    n = x.shape[0]
    test = part(n - n_test, n)
    val = part(n - n_test - n_val, n - n_test) if n_val else None
    return part(0, n - n_test - n_val), val, test


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.long)


def _torchvision(name: str, root: Union[str, os.PathLike], download: bool):
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    out = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=download)
        except RuntimeError as e:
            folder = Path(root) / cls.__name__ / "raw"
            raise FileNotFoundError(
                f"{name} was not found under {str(root)!r} (torchvision looks for the raw IDX "
                f"files in {str(folder)!r}: {e}). Set root to the folder that holds "
                f"{cls.__name__}/raw, or pass download=True on a machine with network access"
            ) from None
        out.append((ds.data.unsqueeze(1).float() / 255.0, ds.targets.long()))
    return out


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


def load(
    name: Literal["digits", "mnist", "fashion_mnist", "array"] = "digits",
    *,
    root: Union[str, os.PathLike] = "data",
    path: Optional[Union[str, os.PathLike]] = None,
    download: bool = False,
    binarize: Optional[Literal["static", "dynamic"]] = None,
    flatten: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.15,
    max_train: Optional[int] = None,
    num_labelled: Optional[int] = None,
    seed: int = 0,
) -> Data:
    """Load a data set in train/validation/test splits.

    Parameters
    ----------
    name
        ``digits`` (default, embedded), ``mnist``, ``fashion_mnist`` or ``array``.
    root
        Folder holding torchvision's ``MNIST/raw`` or ``FashionMNIST/raw``.
    path
        The file for ``name="array"``.
    download
        Let torchvision download MNIST / Fashion-MNIST if missing.
    binarize
        ``None``, ``"static"`` or ``"dynamic"`` (images only).
    flatten
        Flatten images to vectors (for MLP models with an int ``x_dim``).
    val_fraction, test_fraction
        Parts held out. MNIST and Fashion-MNIST keep their own 10,000-image
        test set, and ``val_fraction`` is taken from their training set. A
        fraction above 0 that rounds its split to no points (a small file) is
        refused with a ``ValueError`` naming it.
    max_train
        Keep at most this many training points (quick runs).
    num_labelled
        Keep the labels of only this many training points, as equal a number
        per class as possible, and mark the rest ``-1`` (unlabelled), for
        semi-supervised training.
    seed
        Seeds the split and static binarisation.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}")
    if binarize not in (None, "static", "dynamic"):
        raise ValueError(f"binarize must be None, 'static' or 'dynamic', got {binarize!r}")
    if max_train is not None and max_train < 1:
        raise ValueError(f"max_train must be a positive int or None, got {max_train}")
    num_classes = 10
    if name == "array":
        if path is None:
            raise ValueError("name='array' needs path= a .npy, .npz or .csv file")
        x, y = load_array(path)
        num_classes = int(y.max()) + 1 if y is not None and y.dim() == 1 else None
        n_val, n_test = _split_sizes(x.shape[0], val_fraction, test_fraction)
        train, val, test = _split(x, y, n_val, n_test, seed)
    elif name == "digits":
        x, y = _digits()
        n_val, n_test = _split_sizes(x.shape[0], val_fraction, test_fraction)
        train, val, test = _split(x, y, n_val, n_test, seed)
    else:
        (x, y), (xt, yt) = _torchvision(name, root, download)
        n_val, _ = _split_sizes(x.shape[0], val_fraction, 0.0)
        train, val, _ = _split(x, y, n_val, 0, seed)
        test = Split(xt, yt)
    if max_train is not None:
        train = Split(train.x[:max_train], train.y[:max_train] if train.y is not None else None)
    if num_labelled is not None:
        train = Split(train.x, hide_labels(train.y, num_labelled, seed))
    image_shape = tuple(train.x.shape[1:]) if name != "array" else None
    transform = None
    if binarize is not None:
        if image_shape is None and (train.x.min() < 0 or train.x.max() > 1):
            raise ValueError("binarize needs values in [0, 1]; scale the data first")
        g = torch.Generator().manual_seed(seed + 1)
        val = Split(_binary(val.x, g), val.y) if val is not None else None
        test = Split(_binary(test.x, g), test.y)
        if binarize == "static":
            train = Split(_binary(train.x, g), train.y)
        else:
            transform = _binary
    if flatten:
        def flat(s: Optional[Split]) -> Optional[Split]:
            return None if s is None else Split(s.x.flatten(1), s.y)  # (0, ...) too

        train, val, test = flat(train), flat(val), flat(test)
    return Data(
        name=name, train=train, val=val, test=test, x_shape=tuple(train.x.shape[1:]),
        image_shape=image_shape, num_classes=num_classes, transform=transform,
    )
