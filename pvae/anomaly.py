"""Anomaly scores from a model: per data point, per window of a long series, per time step.

A point's anomaly score is its negative ELBO or its negative importance-sampled
log-likelihood, in nats: the less probable under the model trained on normal
data, the more anomalous. A long series is cut into windows
(:func:`pvae.data.windows`), each window scored (:func:`window_scores`), and
the window scores mapped back to the time steps (:func:`pvae.data.window_steps`:
each step gets the mean or max over the windows covering it). Per-step scores
are then judged against step labels with the calibrated threshold and ROC AUC
of :mod:`pvae.scores`, and with the UCR anomaly archive's top-step criterion
(:func:`pvae.data.ucr_hit`, Wu & Keogh 2021) in :func:`step_report`.

Everything here is re-exported by :mod:`pvae.evaluate`.
"""

from __future__ import annotations

from typing import Callable, Literal, Union

import torch

from pvae.data.windowing import Windows, ucr_hit, window_steps
from pvae.estimates import elbo, log_likelihood
from pvae.scores import calibrate_threshold, roc_auc

Score = Literal["elbo", "log_likelihood"]


def anomaly_scores(model, data, *, score: Score = "elbo", num_samples: int = 10,
                   batch_size: int = 500) -> torch.Tensor:
    """Per data point: ``-ELBO`` (``score="elbo"``) or ``-log p(x)``
    (``score="log_likelihood"``, importance-sampled with ``num_samples``), in nats,
    shape ``(N,)``; higher means more anomalous. ``data`` is anything
    :func:`pvae.evaluate.elbo` takes. ``ValueError`` for another ``score``."""
    if score == "elbo":
        return -elbo(model, data, num_samples, batch_size=batch_size)
    if score == "log_likelihood":
        return -log_likelihood(model, data, num_samples, batch_size=batch_size)
    raise ValueError(f"score must be 'elbo' or 'log_likelihood', got {score!r}")


def _is_scorer(model) -> bool:
    """A plain callable ``f(x, lengths) -> scores``, not a model or a model/guide pair."""
    return callable(model) and not isinstance(model, (torch.nn.Module, tuple, list))


def window_scores(model: Union[torch.nn.Module, tuple, Callable], windows: Windows, *,
                  score: Score = "elbo", num_samples: int = 10,
                  batch_size: int = 500) -> torch.Tensor:
    """Anomaly scores of the windows of a series, in nats per window, shape ``(W,)``.

    Parameters
    ----------
    model
        What scores the windows:

        - a sequence model whose batches are ``(x, lengths)`` (``"lengths"`` in its
          ``batch_parts``, such as :class:`pvae.SequenceVAE`), or a model/guide
          pair of callables taking ``(x, lengths)``: scored by
          :func:`anomaly_scores` on the batch ``(windows.x, windows.lengths)``;
        - any other pvae model (e.g. an MLP :class:`pvae.VAE` trained on
          windows of the same length): scored on the windows reshaped to its
          ``x_shape``;
        - a plain callable ``f(x, lengths) -> (W,)`` scores, used as it is.
    windows
        From :func:`pvae.data.windows`.
    score, num_samples, batch_size
        As :func:`anomaly_scores`.

    Raises
    ------
    ValueError
        Windows that do not fit the model, or scores of another shape than
        ``(W,)``; as :func:`anomaly_scores`.
    """
    if not isinstance(windows, Windows):
        raise TypeError(f"window_scores takes the Windows of pvae.data.windows(series, length, "
                        f"stride), got {type(windows).__name__}")
    x, lengths = windows.x, windows.lengths
    if _is_scorer(model):
        out = torch.as_tensor(model(x, lengths))
    else:
        parts = getattr(model, "batch_parts", None)
        if parts is None or "lengths" in parts:
            data = (x, lengths)
        else:
            shape = tuple(getattr(model, "x_shape", ()))
            if torch.Size(shape).numel() != x[0].numel():
                raise ValueError(f"{type(model).__name__} takes data points of shape {shape}, "
                                 f"but a window holds {tuple(x.shape[1:])}: cut windows of the "
                                 "length the model was trained on")
            data = x.reshape(len(x), *shape)
        out = anomaly_scores(model, data, score=score, num_samples=num_samples,
                             batch_size=batch_size)
    if out.shape != (len(windows),):
        raise ValueError(f"the scorer returned shape {tuple(out.shape)} for {len(windows)} "
                         "windows; it must give one score per window, shape (W,)")
    return out.detach().cpu()


def step_scores(model, windows: Windows, *, reduce: Literal["mean", "max"] = "mean",
                score: Score = "elbo", num_samples: int = 10,
                batch_size: int = 500) -> torch.Tensor:
    """Per-step anomaly scores ``(T,)`` of the windowed series: :func:`window_scores`
    mapped back by :func:`pvae.data.window_steps` (each step: the ``reduce`` of the
    scores of the windows covering it), in nats per window."""
    return window_steps(window_scores(model, windows, score=score, num_samples=num_samples,
                                      batch_size=batch_size), windows, reduce)


def step_report(scores, labels, *, normal_scores=None, false_positive_rate: float = 0.05,
                slack: int = 100) -> dict:
    """Per-step scores judged against per-step labels.

    Parameters
    ----------
    scores
        ``(T,)`` per-step anomaly scores (e.g. :func:`step_scores`).
    labels
        ``(T,)`` 1 on anomalous steps, 0 on normal ones (both kinds present).
    normal_scores
        Per-step scores of normal data (e.g. the training series), to calibrate
        a threshold with :func:`pvae.scores.calibrate_threshold`; optional.
    false_positive_rate
        The share of ``normal_scores`` above the threshold.
    slack
        Steps of tolerance for the UCR criterion.

    Returns
    -------
    dict
        ``roc_auc`` (:func:`pvae.scores.roc_auc` over the steps), ``top_step``
        (the highest-scoring step), ``ucr_hit`` (:func:`pvae.data.ucr_hit` on the
        labelled region, when the labels mark one contiguous region, else
        ``None``); with ``normal_scores`` also ``threshold``, ``recall`` (the
        share of anomalous steps above it) and ``false_alarm_rate`` (the share
        of normal steps above it).

    Raises
    ------
    ValueError
        Scores and labels of different lengths, NaN scores, labels other than
        0/1 or of one kind only (as :func:`pvae.scores.roc_auc`).
    """
    s = torch.as_tensor(scores).detach().double().cpu().flatten()
    y = torch.as_tensor(labels).cpu().flatten()
    out = {"roc_auc": roc_auc(s, y), "top_step": int(torch.argmax(s))}
    where = torch.nonzero(y.bool()).flatten()
    contiguous = int(where[-1] - where[0]) + 1 == len(where)
    out["ucr_hit"] = (ucr_hit(s, int(where[0]), int(where[-1]) + 1, slack=slack)
                      if contiguous else None)
    if normal_scores is not None:
        threshold = calibrate_threshold(normal_scores, false_positive_rate)
        flagged = s > threshold
        out.update(threshold=threshold, recall=flagged[y.bool()].double().mean().item(),
                   false_alarm_rate=flagged[~y.bool()].double().mean().item())
    return out


__all__ = ["anomaly_scores", "window_scores", "step_scores", "step_report", "window_steps",
           "ucr_hit"]
