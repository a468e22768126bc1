"""Sliding windows over a long series, and window scores mapped back to its time steps.

A long series (a sensor recording, an ECG) is cut into overlapping windows of
``length`` steps every ``stride`` steps (:func:`windows`); a sequence model
scores each window (:func:`pvae.evaluate.window_scores`); each time step then
gets the mean, or the maximum, of the scores of the windows that cover it
(:func:`window_steps`). :func:`ucr_hit` is the UCR anomaly archive's test of a
detector (Wu & Keogh 2021): does the single highest-scoring time step lie in
the labelled anomaly, widened by 100 steps on each side?
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch

from pvae.data.sequences import Sequences


@dataclass
class Windows(Sequences):
    """:class:`Sequences` of windows of one series, with where each window starts.

    ``x`` is ``(W, length, D)``, ``lengths`` all ``length``; ``starts`` ``(W,)``
    int64 gives the step of the series where window ``w`` starts, and
    ``series_length`` the length ``T`` of the series.
    """

    starts: Optional[torch.Tensor] = None
    series_length: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.starts = torch.as_tensor(self.starts).long() if self.starts is not None else None
        if self.starts is None or self.starts.shape != (len(self),):
            raise ValueError(f"Windows: starts must have one entry per window, shape ({len(self)},)")
        if len(self) and (self.starts.min() < 0
                          or (self.starts + self.lengths).max() > self.series_length):
            raise ValueError(f"Windows: a window reaches outside the series of "
                             f"{self.series_length} steps")


def windows(series, length: int, stride: int = 1) -> Windows:
    """Cut a series into windows of ``length`` steps, one every ``stride`` steps.

    Windows start at ``0, stride, 2 * stride, ...``; when ``stride`` does not
    divide ``T - length``, one more window, ending at the last step, is added
    so that every step is covered.

    Parameters
    ----------
    series
        ``(T,)`` (univariate) or ``(T, D)`` real values, a tensor or array;
        finite.
    length
        Steps per window, ``1 <= length <= T``.
    stride
        Steps between the starts of consecutive windows, ``>= 1``.

    Returns
    -------
    Windows
        ``x`` of shape ``(W, length, D)`` (``D = 1`` for a univariate series),
        float32, ``lengths`` all ``length``, ``starts`` ``(W,)``,
        ``series_length = T``.

    Raises
    ------
    ValueError
        Before any work: a series of another shape, NaN or infinite values, a
        ``length`` outside ``1..T`` or a ``stride`` below 1.
    """
    s = torch.as_tensor(np.asarray(series) if not isinstance(series, torch.Tensor) else series)
    if s.dim() == 1:
        s = s[:, None]
    if s.dim() != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"windows takes a series of shape (T,) or (T, D), got {tuple(s.shape)}; "
                         "for several series, call it once per series")
    s = s.float()
    t = s.shape[0]
    if not torch.isfinite(s).all():
        first = int(torch.nonzero(~torch.isfinite(s).all(1))[0])
        raise ValueError(f"the series holds NaN or infinite values (first at step {first}); "
                         "impute them before cutting windows")
    if not (isinstance(length, (int, np.integer)) and 1 <= length <= t):
        raise ValueError(f"window length must be a whole number in 1..{t} (the series' length), "
                         f"got {length!r}")
    if not (isinstance(stride, (int, np.integer)) and stride >= 1):
        raise ValueError(f"stride must be a whole number >= 1, got {stride!r}")
    starts = torch.arange(0, t - length + 1, stride)
    if starts[-1] + length < t:
        starts = torch.cat([starts, torch.tensor([t - length])])
    x = s.unfold(0, length, 1)[starts].transpose(1, 2).contiguous()  # (W, length, D)
    return Windows(x, torch.full((len(starts),), length, dtype=torch.long), None,
                   starts=starts, series_length=t)


def window_steps(scores, windows: Windows, reduce: Literal["mean", "max"] = "mean") -> torch.Tensor:
    """Per-window scores ``(W,)`` to per-step scores ``(T,)`` of the windowed series.

    Each time step gets the mean (``reduce="mean"``) or the maximum
    (``reduce="max"``) of the scores of the windows that cover it, in the
    scores' unit (e.g. nats of -ELBO per window). The mean smooths a score over
    a window's length; the max keeps a short anomaly's peak where any window
    holding it scored high. A step no window covers (only with hand-made
    ``starts``) gets NaN.

    Raises
    ------
    ValueError
        ``scores`` not of shape ``(W,)``, NaN scores, or another ``reduce``.
    """
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    scores = torch.as_tensor(scores).detach().double().cpu()
    if scores.shape != (len(windows),):
        raise ValueError(f"{tuple(scores.shape)} scores for {len(windows)} windows; give one "
                         "score per window, shape (W,)")
    if torch.isnan(scores).any():
        raise ValueError("window scores hold NaN; check the model and the windows that gave them")
    steps = windows.starts[:, None] + torch.arange(windows.max_len)  # (W, length)
    steps = steps[windows.mask].cpu()
    values = scores[:, None].expand(-1, windows.max_len)[windows.mask.cpu()]
    t = windows.series_length
    count = torch.zeros(t, dtype=torch.float64).index_add_(0, steps, torch.ones_like(values))
    if reduce == "mean":
        out = torch.zeros(t, dtype=torch.float64).index_add_(0, steps, values) / count
    else:
        out = torch.full((t,), -torch.inf, dtype=torch.float64).scatter_reduce_(
            0, steps, values, "amax", include_self=True)
    return out.masked_fill(count == 0, torch.nan)


def ucr_hit(step_scores, region_start: int, region_end: int, *, slack: int = 100) -> bool:
    """The UCR anomaly archive's criterion (Wu & Keogh 2021): whether the single
    highest-scoring time step lies in ``[region_start - slack, region_end + slack)``.

    Parameters
    ----------
    step_scores
        ``(T,)`` per-step anomaly scores (higher: more anomalous), e.g. from
        :func:`window_steps`. With ties the first highest step counts.
    region_start, region_end
        The labelled anomaly, 0-based steps ``region_start <= t < region_end``.
    slack
        Steps of tolerance on each side; the archive uses 100.

    Raises
    ------
    ValueError
        Scores not of shape ``(T,)``, NaN scores, or a region that is empty or
        outside ``0..T``.
    """
    s = torch.as_tensor(step_scores).detach().double().flatten().cpu()
    t = s.numel()
    if t == 0 or torch.as_tensor(step_scores).dim() != 1:
        raise ValueError("ucr_hit takes one score per time step, shape (T,)")
    if torch.isnan(s).any():
        raise ValueError(f"{int(torch.isnan(s).sum())} step score(s) are NaN (steps no window "
                         "covers?); give every step a score")
    if not 0 <= region_start < region_end <= t or slack < 0:
        raise ValueError(f"the region [{region_start}, {region_end}) must be a non-empty part of "
                         f"the {t} steps, and slack >= 0 (got {slack})")
    top = int(torch.argmax(s))
    return region_start - slack <= top < region_end + slack
