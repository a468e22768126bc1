"""Sequence data that ships inside packages, read with those packages' own loaders.

Nothing is downloaded: the UCR/UEA series come with ``aeon`` (``aeon.datasets``)
and the English words with ``wordfreq``; both are the optional extra
``pip install pvae[sequences]``.

===================== ===========================================================
name                  what
===================== ===========================================================
gunpoint              GunPoint (UCR): 50 train + 150 test univariate series of
                      150 steps, 2 classes (gun drawn / pointed)
italy_power_demand    ItalyPowerDemand (UCR): 67 + 1,029 daily series of 24
                      hourly loads, 2 classes (winter / summer)
arrow_head            ArrowHead (UCR): 36 + 175 outlines of 251 steps, 3 classes
japanese_vowels       JapaneseVowels (UEA): 270 + 370 utterances, 12 LPC
                      cepstrum coefficients per step, 7..29 steps (variable
                      length, padded), 9 speakers
words                 the most frequent English words from wordfreq
                      (``top_n_list("en", 20000)``) made of the letters a-z only,
                      19,572 words of 1..18 characters, as character ids
ucr_anomaly_135       InternalBleeding16 of the UCR anomaly archive (KDD 2021):
                      an :class:`AnomalySeries`, not splits
===================== ===========================================================

Series keep aeon's values (the UCR sets are z-normalised per series by the
archive; JapaneseVowels is not normalised). Class labels (aeon gives strings)
are mapped to ``0..K-1`` in the order of their sorted values (numerically when
all are numbers). aeon's own train/test split is kept and the validation split
is drawn from the training series with ``seed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from pvae.data.base import Data, split, split_sizes
from pvae.data.sequences import Sequences
from pvae.data.windowing import ucr_hit, windows

#: Class-labelled series sets and the aeon loader of each.
AEON_SETS = {"gunpoint": "load_gunpoint", "italy_power_demand": "load_italy_power_demand",
             "arrow_head": "load_arrow_head", "japanese_vowels": "load_japanese_vowels"}
#: How many of wordfreq's most frequent English words ``words`` starts from.
WORDS_TOP_N = 20000
#: The UCR anomaly archive's slack around the labelled region (Wu & Keogh 2021).
UCR_SLACK = 100


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this data set needs the package {module.split('.')[0]!r}, which is "
                          "not installed: pip install pvae[sequences] (or pip install "
                          "'aeon>=1.0' 'wordfreq>=3.0')") from None


def class_ids(*label_arrays) -> tuple[list[torch.Tensor], list]:
    """String (or any) labels of several splits to ids 0..K-1 over their union, and the
    class names in id order (sorted numerically when every label is a number)."""
    names = sorted(set(np.concatenate([np.asarray(a).astype(str) for a in label_arrays])))
    try:
        names = sorted(names, key=float)
    except ValueError:
        pass
    index = {n: i for i, n in enumerate(names)}
    return [torch.tensor([index[v] for v in np.asarray(a).astype(str)], dtype=torch.long)
            for a in label_arrays], names


def aeon_series(name: str) -> tuple[Sequences, Sequences, list]:
    """(train, test, class names) of a labelled aeon set, padded to one common length."""
    datasets = _require("aeon.datasets")
    loader: Callable = getattr(datasets, AEON_SETS[name])
    (xa, ya), (xb, yb) = loader(split="train"), loader(split="test")
    (ia, ib), names = class_ids(ya, yb)
    # aeon gives (N, D, T) arrays, or a list of (D, T_i) arrays for unequal lengths
    steps_a = [np.asarray(s, dtype=np.float32).T for s in xa]
    steps_b = [np.asarray(s, dtype=np.float32).T for s in xb]
    t = max(len(s) for s in steps_a + steps_b)
    return (Sequences.from_list(steps_a, ia, max_len=t), Sequences.from_list(steps_b, ib, max_len=t),
            names)


def english_words() -> list[str]:
    """wordfreq's ``top_n_list("en", WORDS_TOP_N)`` kept to words of the letters a-z,
    in wordfreq's order (most frequent first)."""
    wordfreq = _require("wordfreq")
    return [w for w in wordfreq.top_n_list("en", WORDS_TOP_N) if re.fullmatch("[a-z]+", w)]


@dataclass
class AnomalySeries:
    """One series of the UCR anomaly archive: a normal training part and a test series
    with one labelled anomaly (Wu & Keogh 2021).

    Attributes
    ----------
    name
        The archive's name of the series.
    train
        ``(T_train,)`` float32: the anomaly-free training series.
    test
        ``(T_test,)`` float32: the series to score. In the archive the training
        part is the start of the same recording, so ``test[:T_train]`` equals
        ``train`` (aeon returns it so).
    labels
        ``(T_test,)`` int64: 1 on the labelled anomaly, 0 elsewhere.
    region_start, region_end
        The labelled anomaly, 0-based steps ``region_start <= t < region_end``.
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    labels: torch.Tensor
    region_start: int
    region_end: int

    def windowed(self, length: int, stride: int = 1, *, val_fraction: float = 0.1,
                 seed: int = 0, standardize: bool = True) -> Data:
        """The series as windows to train and score a sequence model on, as a
        :class:`pvae.data.Data`.

        ``train`` and ``val`` are windows of the anomaly-free training series
        (every ``stride`` steps, split at random with ``seed``); ``test`` holds
        the :class:`pvae.data.Windows` of the whole test series, in order, whose
        ``starts`` map window scores back to its steps
        (:func:`pvae.data.window_steps`). With ``standardize``, both series are
        shifted and scaled by the training series' mean and standard deviation
        (a model's scores then do not depend on the sensor's units). Errors as
        :func:`pvae.data.windows`.
        """
        train, test = self.train, self.test
        if standardize:
            mean, std = train.mean(), train.std()
            train, test = (train - mean) / std, (test - mean) / std
        cut = windows(train, length, stride)
        n_val, _ = split_sizes(len(cut), val_fraction, 0.0)
        fit, val, _ = split(cut, n_val, 0, seed)
        return Data(name=self.name, train=fit, val=val, test=windows(test, length, stride),
                    x_shape=(length, 1), step_dim=1)

    def hit(self, step_scores, slack: int = UCR_SLACK) -> bool:
        """The archive's criterion on per-step scores ``(T_test,)``:
        :func:`pvae.evaluate.ucr_hit`."""
        return ucr_hit(step_scores, self.region_start, self.region_end, slack=slack)


def ucr_anomaly_135() -> AnomalySeries:
    """InternalBleeding16 (KDD-TSAD 135) from ``aeon.datasets.load_kdd_tsad_135``: 1,200
    training points and a 7,501-point test series whose labels mark steps 4187..4198."""
    datasets = _require("aeon.datasets")
    train, train_labels = datasets.load_kdd_tsad_135(split="train")
    test, labels = datasets.load_kdd_tsad_135(split="test")
    if np.asarray(train_labels).any():
        raise ValueError("aeon's InternalBleeding16 training part holds labelled anomalies; "
                         "this aeon version differs from the one pvae was written for")
    where = np.flatnonzero(np.asarray(labels))
    if len(where) == 0 or where[-1] - where[0] + 1 != len(where):
        raise ValueError("aeon's InternalBleeding16 labels do not mark one contiguous region; "
                         "this aeon version differs from the one pvae was written for")
    return AnomalySeries(
        name="InternalBleeding16", train=torch.as_tensor(np.asarray(train, dtype=np.float32)),
        test=torch.as_tensor(np.asarray(test, dtype=np.float32)),
        labels=torch.as_tensor(np.asarray(labels, dtype=np.int64)),
        region_start=int(where[0]), region_end=int(where[-1]) + 1)


#: The anomaly series by name, for :func:`pvae.data.load`.
ANOMALY_SETS: dict[str, Callable[[], AnomalySeries]] = {"ucr_anomaly_135": ucr_anomaly_135}

