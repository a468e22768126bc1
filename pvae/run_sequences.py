"""Sequence data in runs: the sequence VAE built from its data, anomaly series as windows,
and the anomaly report of a trained run.

``pvae train`` on a sequence data set (``data.name: words``, ``gunpoint``, ...)
needs ``model.type: seqvae``; the model's ``vocab_size`` (text) or ``x_dim``
(series: values per step) and its default ``max_len`` come from the data.
An anomaly series (``data.name: ucr_anomaly_135``) is standardised by its
anomaly-free training part and cut into windows of ``data.window`` steps
(:func:`load_windowed`): the model trains on the training part's windows
(every ``data.stride`` steps) and the test split is the test series' windows
(every ``data.test_stride`` steps). :func:`anomaly_report` scores those
windows (-ELBO, nats), maps them to time steps, and applies the UCR archive's
criterion (Wu & Keogh 2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from pvae.config import ANOMALY_DATA, SEQUENCE_DATA, ConfigError
from pvae.data import Data


@dataclass
class WindowedSeries(Data):
    """A :class:`pvae.data.Data` of windows of one long series, with the series itself.

    ``train`` and ``val``: windows of the standardised training series; ``test``:
    windows of the standardised test series, in order
    (:meth:`pvae.data.AnomalySeries.windowed`). ``series`` is the
    :class:`pvae.data.AnomalySeries` as loaded (original units).
    """

    series: Any = None
    window: int = 0


def load_sequence_data(d):
    """The sequence data set a ``DataConfig`` ``d`` names: splits of padded sequences
    (:func:`pvae.data.load`), or an anomaly series as windows (:func:`load_windowed`)."""
    from pvae import data

    if d.name in ANOMALY_DATA:
        return load_windowed(d)
    return data.load(d.name, path=d.path, val_fraction=d.val_fraction,
                     test_fraction=d.test_fraction, max_train=d.max_train, seed=d.seed)


def load_windowed(d) -> WindowedSeries:
    """The anomaly series ``d.name`` (a ``DataConfig``) as training, validation and test
    windows: ``data.window`` steps, every ``data.stride`` steps of the training series
    (``data.val_fraction`` of them for validation) and every ``data.test_stride`` of the
    test series. Raises :class:`ConfigError` when a window is longer than the training series.
    """
    from pvae import data

    a = data.load(d.name)
    if d.window > len(a.train):
        raise ConfigError(f"config key 'data.window' ({d.window}) is longer than the training "
                          f"series ({len(a.train)} steps): use fewer steps per window")
    fit = a.windowed(d.window, d.stride, val_fraction=d.val_fraction, seed=d.seed)
    test = a.windowed(d.window, d.test_stride, val_fraction=0.0).test
    return WindowedSeries(name=a.name, train=fit.train, val=fit.val, test=test,
                          x_shape=fit.x_shape, step_dim=fit.step_dim, series=a, window=d.window)


def check_model_for_data(cfg, data_name: str) -> None:
    """``ConfigError`` unless sequence data go with ``model.type: seqvae`` and the rest
    with another model."""
    sequences, seqvae = data_name in SEQUENCE_DATA, cfg.model.type == "seqvae"
    if sequences and not seqvae:
        raise ConfigError(f"data.name {data_name} is sequence data: set model.type: seqvae "
                          f"(model.type {cfg.model.type} takes fixed-size data points)")
    if seqvae and not sequences:
        raise ConfigError(f"model.type seqvae takes sequence data (data.name one of "
                          f"{', '.join(SEQUENCE_DATA)}), not {data_name}")


def seqvae_kwargs(m, x_shape: tuple[int, ...], vocab_size: Optional[int],
                  excluded_ids: tuple[int, ...] = ()) -> dict:
    """The :class:`pvae.SequenceVAE` arguments a ``ModelConfig`` ``m`` describes for padded
    sequences of shape ``x_shape`` (``(T,)`` token ids with ``vocab_size``, the ids in
    ``excluded_ids`` given probability 0; or ``(T, D)``)."""
    kwargs = dict(z_dim=m.z_dim, hidden_dim=m.hidden_dim, rnn=m.rnn, num_layers=m.num_layers,
                  bidirectional_encoder=m.bidirectional_encoder, word_dropout=m.word_dropout,
                  beta=m.beta, guide_flows=m.guide_flows, max_len=m.max_len or x_shape[0])
    if len(x_shape) == 1:
        if vocab_size is None:
            raise ConfigError("model.type seqvae on token sequences of shape (N, T) needs the "
                              "vocabulary's size: use data with a vocabulary (data.name: words)")
        if m.likelihood != "categorical":
            raise ConfigError(f"config key 'model.likelihood' must be categorical for text "
                              f"(token ids), got {m.likelihood}")
        return {**kwargs, "vocab_size": vocab_size, "embedding_dim": m.embedding_dim,
                "excluded_ids": tuple(excluded_ids)}
    if len(x_shape) != 2:
        raise ConfigError(f"model.type seqvae takes sequences of shape (T,) or (T, D), got data "
                          f"points of shape {x_shape}")
    if m.embedding_dim is not None:
        raise ConfigError("config key 'model.embedding_dim' is for text (token ids); set it to "
                          "null for real-valued series")
    return {**kwargs, "x_dim": x_shape[1], "likelihood": m.likelihood,
            "likelihood_kwargs": dict(m.likelihood_kwargs) or None}


def build_seqvae(m, x_shape: tuple[int, ...], vocab_size: Optional[int] = None,
                 excluded_ids: tuple[int, ...] = ()):
    """:class:`pvae.SequenceVAE` from a ``ModelConfig``; its ``ValueError`` as a ConfigError."""
    from pvae.models import get

    kwargs = seqvae_kwargs(m, x_shape, vocab_size, excluded_ids)
    try:
        return get("seqvae", **kwargs)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def is_windowed(data) -> bool:
    return isinstance(data, WindowedSeries)


@torch.no_grad()
def anomaly_scores(model, data: WindowedSeries, num_samples: int,
                   seed: int = 0) -> torch.Tensor:
    """Per-step scores ``(T_test,)`` of the test series: each window's -ELBO (nats,
    ``num_samples`` draws, from torch's generator seeded with ``seed`` and restored
    after, so ``pvae train`` and ``pvae plot`` draw the same scores), the mean over the
    windows covering a step."""
    from pvae import evaluate

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return evaluate.step_scores(model, data.test, num_samples=num_samples)


def anomaly_report(model, data: WindowedSeries, num_samples: int,
                   seed: int = 0) -> tuple[dict, torch.Tensor]:
    """The run's anomaly figures: ``top_step``, ``ucr_hit`` (the archive's criterion),
    ``roc_auc`` over the steps, the ``region`` and the window; and the per-step scores
    (:func:`anomaly_scores`, with ``seed``)."""
    from pvae import evaluate

    a = data.series
    scores = anomaly_scores(model, data, num_samples, seed)
    report = evaluate.step_report(scores, a.labels)
    out = {"series": a.name, "region": [a.region_start, a.region_end], "window": data.window,
           "test_windows": len(data.test), "num_samples": num_samples,
           "top_step": report["top_step"], "ucr_hit": report["ucr_hit"],
           "roc_auc": report["roc_auc"]}
    return out, scores


def draw_anomaly(data: WindowedSeries, scores: torch.Tensor, path) -> Any:
    """The anomaly-score figure (:func:`pvae.sequence_plots.anomaly_timeline`)."""
    from pvae import sequence_plots

    a = data.series
    return sequence_plots.anomaly_timeline(
        a.test, scores, path, region=(a.region_start, a.region_end),
        title=f"{a.name}: -ELBO per step (mean over windows of {data.window})")


__all__ = ["WindowedSeries", "load_sequence_data", "load_windowed", "check_model_for_data", "seqvae_kwargs",
           "build_seqvae", "anomaly_report", "draw_anomaly", "ANOMALY_DATA"]
