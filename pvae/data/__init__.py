"""Data sets: images, user arrays, sequences (series and text), and long series to window.

``load(name, ...)`` returns a :class:`Data` with ``train``, ``val`` and
``test`` splits, the shape of one data point, and what models and plots need
to know about it. Fixed-size data come in :class:`Split` splits (tensors
``x`` and, where known, labels ``y``); sequence data in :class:`Sequences`
splits (padded ``x``, ``lengths`` and, where known, ``y``).

================== =================================================================
name               source
================== =================================================================
digits             scikit-learn's 8x8 handwritten digits (1,797 images, shipped with
                   scikit-learn: no download); grey levels 0..16 scaled to [0, 1]
mnist              torchvision MNIST under ``root`` (``download=True`` fetches it)
fashion_mnist      torchvision Fashion-MNIST under ``root``
array              a user file: ``.npy``, ``.npz`` (arrays ``x`` and optional ``y``:
                   labels ``(N,)``, or condition vectors ``(N, D)`` for a CVAE's
                   ``y_dim``) or ``.csv`` (numbers; a header row is skipped); values
                   kept as they are
sequences          a user file of sequences: ``.npz`` (``x``, ``lengths``, ``y``),
                   ``.npy`` or long-format ``.csv`` (:func:`load_sequences`)
gunpoint,          UCR/UEA series shipped with aeon (:mod:`pvae.data.shipped`):
italy_power_demand (N, T, D) float32 series with lengths and class ids; aeon's
arrow_head,        test split is kept, validation is drawn from its training split
japanese_vowels
words              English words from wordfreq as character ids ``(N, T)`` with a
                   character :class:`Vocabulary` (``Data.vocab``)
ucr_anomaly_135    the UCR anomaly series InternalBleeding16: an
                   :class:`AnomalySeries` (train series, test series, labels), not
                   splits
================== =================================================================

The packaged sets need ``pip install pvae[sequences]`` (aeon, wordfreq); without
them ``load`` raises an ``ImportError`` that says so. Nothing is downloaded.

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

import dataclasses
import os
from typing import Literal, Optional, Union

import torch

from pvae.data.base import Data, Split, binarize, hide_labels, split, split_sizes, take
from pvae.data.arrays import ArrayDataset, check_labels_array, load_array
from pvae.data.images import digits as _digits, torchvision_set as _torchvision
from pvae.data.sequences import Sequences, load_sequences, step_mask
from pvae.data.vocab import SPECIALS, Vocabulary
from pvae.data.shipped import (
    AEON_SETS, ANOMALY_SETS, AnomalySeries, aeon_series, english_words,
)
from pvae.data.windowing import Windows, ucr_hit, window_steps, windows

__all__ = [
    "DATASETS", "SEQUENCE_DATASETS", "ANOMALY_DATASETS", "Data", "Split", "Sequences", "Windows",
    "Vocabulary", "SPECIALS", "AnomalySeries", "ArrayDataset", "load", "load_array",
    "load_sequences", "check_labels_array", "binarize", "hide_labels", "windows", "window_steps",
    "ucr_hit", "step_mask",
]

#: Sequence data sets ``load`` returns as :class:`Sequences` splits.
SEQUENCE_DATASETS = (*AEON_SETS, "words", "sequences")
#: Long series with a labelled anomaly, returned as an :class:`AnomalySeries`.
ANOMALY_DATASETS = tuple(ANOMALY_SETS)
#: Every name :func:`load` knows.
DATASETS = ("digits", "mnist", "fashion_mnist", "array", *SEQUENCE_DATASETS, *ANOMALY_DATASETS)

_binary = binarize  # ``load`` has an argument of the same name


DataName = Literal["digits", "mnist", "fashion_mnist", "array", "sequences", "gunpoint",
                   "italy_power_demand", "arrow_head", "japanese_vowels", "words",
                   "ucr_anomaly_135"]


def load(
    name: DataName = "digits",
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
) -> Union[Data, AnomalySeries]:
    """Load a data set in train/validation/test splits (an anomaly series: as such).

    Parameters
    ----------
    name
        One of :data:`DATASETS` (the table in the module docstring): ``digits``
        (default, embedded), ``mnist``, ``fashion_mnist``, ``array``,
        ``sequences``, ``gunpoint``, ``italy_power_demand``, ``arrow_head``,
        ``japanese_vowels``, ``words``, ``ucr_anomaly_135``.
    root
        Folder holding torchvision's ``MNIST/raw`` or ``FashionMNIST/raw``.
    path
        The file for ``name="array"`` or ``name="sequences"``.
    download
        Let torchvision download MNIST / Fashion-MNIST if missing.
    binarize
        ``None``, ``"static"`` or ``"dynamic"`` (images and arrays only).
    flatten
        Flatten images to vectors (for MLP models with an int ``x_dim``); not
        for sequences.
    val_fraction, test_fraction
        Parts held out. MNIST, Fashion-MNIST and the aeon series keep their own
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

    Returns
    -------
    Data
        For every name but ``ucr_anomaly_135``, which returns an
        :class:`AnomalySeries` (the split arguments do not apply to it).

    Raises
    ------
    ValueError
        An unknown name (the valid ones are listed), or arguments that do not
        apply to the data set (``binarize``/``flatten`` for sequences; for
        ``ucr_anomaly_135`` also ``path``, ``max_train``, ``num_labelled``; the
        split fractions and ``seed`` do not apply to it and are ignored).
    ImportError
        A packaged sequence set without its package: ``pip install pvae[sequences]``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}")
    if binarize not in (None, "static", "dynamic"):
        raise ValueError(f"binarize must be None, 'static' or 'dynamic', got {binarize!r}")
    if max_train is not None and max_train < 1:
        raise ValueError(f"max_train must be a positive int or None, got {max_train}")
    if name in ANOMALY_SETS:
        given = [k for k, v in (("path", path), ("binarize", binarize), ("flatten", flatten),
                                ("max_train", max_train), ("num_labelled", num_labelled))
                 if v is not None and v is not False]
        if given:
            raise ValueError(f"{name!r} is one long series, returned as an AnomalySeries: "
                             f"{', '.join(given)} do(es) not apply; leave them unset, and cut "
                             "training windows with its .windowed(length, stride)")
        return ANOMALY_SETS[name]()
    if name in SEQUENCE_DATASETS:
        if binarize is not None or flatten:
            raise ValueError(f"{name!r} is sequence data: binarize and flatten are for images and "
                             "fixed-size arrays; leave them unset")
        data = _sequence_data(name, path, val_fraction, test_fraction, seed)
    else:
        data = _fixed_size_data(name, root, path, download, val_fraction, test_fraction, seed)
    train = data.train
    if max_train is not None:
        train = take(train, slice(0, max_train))
    if num_labelled is not None:
        train = dataclasses.replace(train, y=hide_labels(train.y, num_labelled, seed))
    data.train = train
    if binarize is not None:
        data = _binarized(data, binarize, seed)
    return _flat(data) if flatten else data


def _fixed_size_data(name, root, path, download, val_fraction, test_fraction, seed) -> Data:
    num_classes = 10
    if name == "array":
        if path is None:
            raise ValueError("name='array' needs path= a .npy, .npz or .csv file")
        x, y = load_array(path)
        num_classes = int(y.max()) + 1 if y is not None and y.dim() == 1 else None
        n_val, n_test = split_sizes(x.shape[0], val_fraction, test_fraction)
        train, val, test = split(Split(x, y), n_val, n_test, seed)
    elif name == "digits":
        x, y = _digits()
        n_val, n_test = split_sizes(x.shape[0], val_fraction, test_fraction)
        train, val, test = split(Split(x, y), n_val, n_test, seed)
    else:
        (x, y), (xt, yt) = _torchvision(name, root, download)
        n_val, _ = split_sizes(x.shape[0], val_fraction, 0.0)
        train, val, _ = split(Split(x, y), n_val, 0, seed)
        test = Split(xt, yt)
    return Data(name=name, train=train, val=val, test=test, x_shape=tuple(train.x.shape[1:]),
                image_shape=tuple(train.x.shape[1:]) if name != "array" else None,
                num_classes=num_classes)


def _binarized(data: Data, how: str, seed: int) -> Data:
    if data.image_shape is None and (data.train.x.min() < 0 or data.train.x.max() > 1):
        raise ValueError("binarize needs values in [0, 1]; scale the data first")
    g = torch.Generator().manual_seed(seed + 1)
    data.val = Split(_binary(data.val.x, g), data.val.y) if data.val is not None else None
    data.test = Split(_binary(data.test.x, g), data.test.y)
    if how == "static":
        data.train = Split(_binary(data.train.x, g), data.train.y)
    else:
        data.transform = _binary
    return data


def _flat(data: Data) -> Data:
    def flat(s: Optional[Split]) -> Optional[Split]:
        return None if s is None else Split(s.x.flatten(1), s.y)  # (0, ...) too

    data.train, data.val, data.test = flat(data.train), flat(data.val), flat(data.test)
    data.x_shape = tuple(data.train.x.shape[1:])
    return data


def _sequence_data(name, path, val_fraction, test_fraction, seed) -> Data:
    """A sequence data set in splits (see the module docstring)."""
    vocab, num_classes = None, None
    if name in AEON_SETS:
        train, test, classes = aeon_series(name)
        n_val, _ = split_sizes(len(train), val_fraction, 0.0)
        train, val, _ = split(train, n_val, 0, seed)
        num_classes = len(classes)
    else:
        if name == "words":
            words = english_words()
            vocab = Vocabulary.build(words, "char")
            seqs = Sequences(*vocab.encode(words))
        else:
            if path is None:
                raise ValueError("name='sequences' needs path= a .npz, .npy or .csv file")
            seqs = load_sequences(path)
            if seqs.y is not None:
                num_classes = int(seqs.y.max()) + 1
        n_val, n_test = split_sizes(len(seqs), val_fraction, test_fraction)
        train, val, test = split(seqs, n_val, n_test, seed)
    return Data(name=name, train=train, val=val, test=test, x_shape=tuple(train.x.shape[1:]),
                num_classes=num_classes, vocab=vocab,
                step_dim=train.x.shape[2] if train.x.dim() == 3 else None)
