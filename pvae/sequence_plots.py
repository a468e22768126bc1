"""Figures of sequences: series as lines, text as a table, anomaly scores over time.

The drawing functions take plain tensors (padded values and their lengths), so
they draw any sequence data, a model's or not; :mod:`pvae.figures` chooses them
from the data's shape for a run. Like :mod:`pvae.plots`, every function writes
one PNG on a figure of its own (no ``pyplot``, no backend switch).

Padding is never drawn: a series of length ``L`` shows its steps ``0..L-1``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from pvae.plots import PathLike, _save, _subplots


def _series(x, lengths, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as a float array (N, T, D) and ``lengths`` as ints (N,), checked."""
    x = torch.as_tensor(x).detach().cpu().float()
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(f"{what} must have shape (N, T) or (N, T, D) with N >= 1, got "
                         f"{tuple(x.shape)}")
    n, t = x.shape[:2]
    lengths = torch.as_tensor(lengths).detach().cpu()
    if lengths.shape != (n,):
        raise ValueError(f"lengths must have shape ({n},), one per sequence of {what}, got "
                         f"{tuple(lengths.shape)}")
    if lengths.is_floating_point() and not torch.equal(lengths, lengths.round()):
        raise ValueError("lengths must be whole numbers of steps")
    lengths = lengths.long()
    if (lengths < 1).any() or (lengths > t).any():
        raise ValueError(f"lengths must lie in 1..{t} (the padded length of {what}), got "
                         f"{lengths.min().item()}..{lengths.max().item()}")
    return x.numpy(), lengths.numpy()


def sequence_lines(x, lengths, path: PathLike, *, reconstruction=None, title: str = "",
                   max_series: int = 8, max_dims: int = 4,
                   labels: Optional[Sequence] = None,
                   names: Optional[Sequence[str]] = None) -> Path:
    """One panel per series: its values over time (up to its length), and where given its
    reconstruction dashed on top (original vs reconstruction); samples without one.

    Parameters
    ----------
    x : tensor (N, T) or (N, T, D)
        Padded real-valued series; the first ``max_series`` are drawn, the first
        ``max_dims`` of their D variables each in its own colour.
    lengths : tensor (N,)
        Each series' length in steps (1..T).
    reconstruction : tensor of x's shape, optional
        What a model made of each series (e.g. decoder means), drawn dashed.
    labels : sequence, optional
        A label per series (its class), shown in the panel's title.
    names : sequence of str, optional
        A title per panel in place of ``series i`` (e.g. the steps of an interpolation).

    Raises
    ------
    ValueError
        Shapes that do not match, lengths outside ``1..T``, or fewer ``names`` than panels.
    """
    xs, lens = _series(x, lengths, "x")
    rec = None
    if reconstruction is not None:
        rec = torch.as_tensor(reconstruction).detach().cpu().float().reshape(-1).numpy()
        if rec.size != xs.size:
            raise ValueError(f"reconstruction has shape {tuple(reconstruction.shape)}, x has "
                             f"{tuple(torch.as_tensor(x).shape)}: they must match")
        rec = rec.reshape(xs.shape)
    n, d = min(len(xs), max_series), min(xs.shape[2], max_dims)
    if names is not None and len(names) < n:
        raise ValueError(f"names must give a title to each of the {n} panels drawn, got "
                         f"{len(names)}")
    ncol = min(n, 4)
    nrow = math.ceil(n / ncol)
    fig, axes = _subplots(nrow, ncol, figsize=(3.4 * ncol, 2.3 * nrow + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        steps = np.arange(lens[i])
        for j in range(d):
            ax.plot(steps, xs[i, : lens[i], j], color=f"C{j}", lw=1.2,
                    label="data" if j == 0 else None)
            if rec is not None:
                ax.plot(steps, rec[i, : lens[i], j], color="k" if d == 1 else f"C{j}", lw=1.0,
                        ls="--", alpha=0.8,
                        label="reconstruction" if j == 0 else None)
        name = names[i] if names is not None else f"series {i}"
        name += f", class {labels[i]}" if labels is not None else ""
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if i == 0 and rec is not None:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    # fixed spacing: tight_layout measures every tick label, seconds on a busy machine
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14 / nrow + 0.04,
                        top=1 - 0.5 / (2.3 * nrow + 0.6), wspace=0.25, hspace=0.55)
    return _save(fig, path)


def text_table(columns: Mapping[str, Sequence[str]], path: PathLike, *, title: str = "",
               max_rows: int = 16) -> Path:
    """Text as a table in a PNG: one column per entry of ``columns`` (e.g. ``original``,
    ``reconstruction``, ``samples``), one string per cell, the first ``max_rows`` rows.

    Columns of unequal lengths are padded with empty cells. Raises ``ValueError``
    for no columns or a column that is not a sequence of strings.
    """
    if not columns:
        raise ValueError("text_table needs at least one column, e.g. {'samples': [...]}")
    for name, col in columns.items():
        if isinstance(col, str) or not all(isinstance(s, str) for s in col):
            raise ValueError(f"column {name!r} must be a list of strings (decoded text), got "
                             f"{type(col).__name__}")
    rows = min(max(len(c) for c in columns.values()), max_rows)
    cells = [[(list(c)[r] if r < len(c) else "") for c in columns.values()] for r in range(rows)]
    widest = max([len(s) for row in cells for s in row] + [len(k) for k in columns] + [4])
    width = max(4.0, 0.11 * widest * len(columns) + 0.6)
    fig, ax = _subplots(figsize=(width, 0.28 * (rows + 1) + (0.5 if title else 0.1)))
    ax.axis("off")
    table = ax.table(cellText=cells or [[""] * len(columns)], colLabels=list(columns),
                     loc="center", cellLoc="left", colLoc="left")
    table.auto_set_font_size(False)
    for (r, _), cell in table.get_celld().items():
        cell.get_text().set_fontfamily("monospace")
        cell.get_text().set_fontsize(9)
        cell.set_height(1.0 / (rows + 1))
        if r == 0:
            cell.get_text().set_fontweight("bold")
    if title:
        ax.set_title(title)
    return _save(fig, path)


def anomaly_timeline(series, scores, path: PathLike, *,
                     region: Optional[tuple[int, int]] = None, margin: int = 100,
                     title: str = "Anomaly scores over time",
                     score_label: str = "anomaly score (nats)") -> Path:
    """A long series (top) and its per-step anomaly score (bottom), with the labelled
    anomaly ``region`` shaded, the region widened by ``margin`` steps each side shaded
    lightly (the UCR archive's tolerance), and the highest-scoring step marked.

    Parameters
    ----------
    series : tensor (T,) or (T, D)
        The series that was scored.
    scores : tensor (T,)
        One score per step; NaN where a step was not scored (a window's edge).
    region : (start, stop), optional
        The labelled anomaly, steps ``start..stop-1``.

    Raises
    ------
    ValueError
        ``scores`` not one per step, every score NaN, or a region outside the series.
    """
    s = torch.as_tensor(series).detach().cpu().float()
    s = s.unsqueeze(-1) if s.dim() == 1 else s
    sc = torch.as_tensor(scores).detach().cpu().double().reshape(-1).numpy()
    if s.dim() != 2 or len(sc) != len(s):
        raise ValueError(f"scores must hold one value per step of the series ({len(s)} steps), "
                         f"got {len(sc)}")
    if np.isnan(sc).all():
        raise ValueError("every score is NaN: nothing to draw")
    if region is not None and not 0 <= region[0] < region[1] <= len(s):
        raise ValueError(f"region {tuple(region)} must satisfy 0 <= start < stop <= {len(s)}")
    top = int(np.nanargmax(sc))
    fig, axes = _subplots(2, 1, figsize=(12, 5), sharex=True)
    steps = np.arange(len(s))
    for j in range(min(s.shape[1], 4)):
        axes[0].plot(steps, s[:, j].numpy(), lw=0.6, color=f"C{j}")
    axes[1].plot(steps, sc, lw=0.7, color="C3")
    for ax in axes:
        if region is not None:
            ax.axvspan(region[0] - margin, region[1] - 1 + margin, color="C1", alpha=0.12,
                       label=f"labelled region ±{margin}")
            ax.axvspan(region[0], region[1] - 1, color="C1", alpha=0.45,
                       label="labelled anomaly")
        ax.axvline(top, color="k", ls=":", lw=1, label=f"top score, step {top}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("value")
    axes[1].set_ylabel(score_label)
    axes[1].set_xlabel("step")
    axes[0].legend(fontsize=8, loc="upper left")
    hit = ""
    if region is not None:
        inside = region[0] - margin <= top <= region[1] - 1 + margin
        hit = " (inside the widened region)" if inside else " (outside the widened region)"
    axes[0].set_title(title + f": top step {top}{hit}")
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.1, top=0.92, hspace=0.12)
    return _save(fig, path)
