"""Scores of predictions and of per-point values: pure tensor functions, no models.

Accuracy of a classifier on its labelled points, bits per dimension (and per
sequence step) from nats,
and for anomaly detection a calibrated threshold and the ROC AUC. Re-exported
by :mod:`pvae.evaluate`, which computes the values these take.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch


def bits_per_dim(nats: Union[torch.Tensor, float], x_dim: Union[int, Sequence[int]]):
    """Convert nats per data point to bits per dimension (for discrete data: -log2 p / D)."""
    d = x_dim if isinstance(x_dim, int) else math.prod(x_dim)
    return nats / (d * math.log(2))


def bits_per_step(nats: Union[torch.Tensor, Sequence[float]],
                  lengths: Union[torch.Tensor, Sequence[int]], *, end_event: bool = False) -> float:
    """Bits per step (per character, for character-level text) over a set of sequences.

    ``nats``: the negative log-likelihood of each sequence in nats, shape ``(N,)``
    (e.g. ``-pvae.evaluate.log_likelihood(model, (x, lengths))``); ``lengths``:
    the sequences' lengths, shape ``(N,)``. Returns the total in bits divided by
    the total number of steps, ``sum(nats) / (ln 2 * sum(lengths + end_event))``.
    ``end_event=True`` counts the end-of-sequence event of token models as one
    more step per sequence, as language-model bits per character do when the
    model scores the end of each word or sentence (:class:`pvae.SequenceVAE` with
    ``vocab_size`` scores it; series are modelled given their length, so False).

    Raises ``ValueError`` for shapes that differ or a length below 1.
    """
    nats = torch.as_tensor(nats, dtype=torch.float64).reshape(-1)
    lengths = torch.as_tensor(lengths).reshape(-1)
    if nats.shape != lengths.shape:
        raise ValueError(f"nats has {nats.numel()} values for {lengths.numel()} lengths; pass "
                         "one of each per sequence")
    if lengths.numel() == 0 or (lengths < 1).any():
        raise ValueError("lengths must be at least 1 for every sequence (and there must be one)")
    steps = (lengths.double() + float(end_event)).sum()
    return float(nats.sum() / (steps * math.log(2)))


def accuracy(probs: torch.Tensor, y: torch.Tensor) -> dict:
    """Classification accuracy on the labelled points only.

    Parameters
    ----------
    probs
        Class probabilities or scores, shape ``(N, C)`` (e.g. ``model.classify(x)``),
        or predicted labels, shape ``(N,)``.
    y
        True labels, shape ``(N,)``; ``-1`` marks an unlabelled point, which is
        not scored (neither right nor wrong).

    Returns
    -------
    dict
        ``{"accuracy": float | None, "num_labelled": int}``: the share of
        labelled points whose most probable class is their label, and how many
        labelled points there were; ``accuracy`` is ``None`` when none is.

    Raises
    ------
    ValueError
        If ``probs`` and ``y`` have different numbers of rows, or ``y`` holds
        anything but whole numbers ``>= -1``.
    """
    probs, y = torch.as_tensor(probs), torch.as_tensor(y)
    if probs.dim() not in (1, 2) or y.dim() != 1 or probs.shape[0] != y.shape[0]:
        raise ValueError(f"accuracy needs predictions of shape (N, C) or (N,) and labels of shape "
                         f"(N,); got {tuple(probs.shape)} and {tuple(y.shape)}")
    if y.is_floating_point() and not (torch.isfinite(y).all() and (y == y.round()).all()):
        raise ValueError("labels must be whole numbers (class indices, -1 for unlabelled)")
    if y.numel() and y.min() < -1:
        raise ValueError(f"labels must be class indices or -1 (unlabelled); found {y.min().item():g}")
    predicted = probs.argmax(-1) if probs.dim() == 2 else probs
    labelled = y >= 0
    n = int(labelled.sum())
    if n == 0:
        return {"accuracy": None, "num_labelled": 0}
    right = predicted.to(y.device)[labelled].long() == y[labelled].long()
    return {"accuracy": right.double().mean().item(), "num_labelled": n}


def calibrate_threshold(normal_scores, false_positive_rate: float = 0.05) -> float:
    """The score above which only ``false_positive_rate`` of normal (validation) data lies.

    ``normal_scores``: shape (N,), a tensor, array or list. Raises ``ValueError``
    for no scores, NaN scores, or a rate outside (0, 1).
    """
    if not 0 < false_positive_rate < 1:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate}")
    normal_scores = torch.as_tensor(normal_scores).double().flatten()
    if normal_scores.numel() == 0 or torch.isnan(normal_scores).any():
        raise ValueError("calibrate_threshold needs at least one score and no NaN scores; "
                         "check the model and the data that gave them")
    return torch.quantile(normal_scores, 1 - false_positive_rate).item()


def roc_auc(scores, is_anomaly) -> float:
    """Area under the ROC curve: P(score of an anomaly > score of a normal point), ties half.

    Computed by :func:`sklearn.metrics.roc_auc_score`, which counts a tie between an
    anomaly and a normal point as half a correct ordering (the Mann-Whitney U over
    ``n_anomalies * n_normal``). The area depends only on the order of the scores, so
    they are passed as their ranks among the distinct values: infinite scores (a
    likelihood of 0) keep their place, where scikit-learn would refuse them.

    Parameters
    ----------
    scores
        Shape ``(N,)``, higher for more anomalous points (e.g. -ELBO in nats); a
        tensor, array or list; ``inf`` allowed, NaN not.
    is_anomaly
        ``N`` labels, 1 (or True) for an anomaly and 0 (False) for a normal point.
        Unlike scikit-learn, other label values (-1/+1, 1/2) are refused rather than
        guessed.

    Returns
    -------
    float
        The area, in [0, 1]; 0.5 for scores that do not separate the two kinds.

    Raises
    ------
    ValueError
        Before computing: the lengths differ, a label is not 0/1, a score is NaN,
        or only one kind of point is present.
    """
    from sklearn.metrics import roc_auc_score

    scores = torch.as_tensor(scores).double().flatten()
    labels = torch.as_tensor(is_anomaly).flatten()
    if labels.shape != scores.shape:
        raise ValueError(f"roc_auc: {labels.numel()} labels for {scores.numel()} scores; give "
                         "one label (1: anomaly, 0: normal) per score")
    if torch.isnan(scores).any():
        raise ValueError(f"roc_auc: {int(torch.isnan(scores).sum())} score(s) are NaN; "
                         "check the model and the data that gave them")
    if labels.dtype != torch.bool:
        values = sorted(set(torch.unique(labels).tolist()))
        if not set(values) <= {0, 1}:
            raise ValueError(f"roc_auc: labels must be 0 (normal) or 1 (anomaly), found the "
                             f"values {values[:10]}; e.g. pass (labels == ANOMALY_VALUE)")
    is_anomaly = labels.bool()
    if is_anomaly.all() or not is_anomaly.any():
        raise ValueError("roc_auc needs both anomalies and normal points")
    order = torch.unique(scores, return_inverse=True)[1]  # same order, ties kept, inf finite
    return float(roc_auc_score(is_anomaly.numpy(), order.numpy()))
