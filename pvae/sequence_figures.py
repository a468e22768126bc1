"""The figures of a run on sequence data, chosen from the data's shape.

Text (token ids with a vocabulary) is drawn as tables of strings, real-valued
series as line plots (:mod:`pvae.sequence_plots`); an anomaly series gets its
score over time. :mod:`pvae.figures` calls these for the plot kinds
``reconstructions``, ``samples``, ``latent``, ``interpolation`` and ``anomaly``
when the run's data are sequences (``view.lengths`` is set).
"""

from __future__ import annotations

from pathlib import Path

import torch

from pvae import sequence_plots

ROWS = 12  # strings in a text table, series in a line plot (at most 8 are drawn)


def is_text(view) -> bool:
    """Whether the run's sequences are token ids (integers), not real-valued series."""
    return not view.x.is_floating_point()


def texts(view, x: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    """Token sequences as strings: the data's vocabulary decodes them where it has one,
    else the ids are written out, space-separated."""
    vocab = getattr(view.data, "vocab", None)
    x, lengths = x.cpu(), lengths.cpu()
    if vocab is not None:
        return list(vocab.decode(x, lengths))
    return [" ".join(str(int(t)) for t in row[:n]) for row, n in zip(x, lengths)]


def reconstructions(view, path: Path) -> Path:
    """Test sequences beside their greedy reconstructions (decoded from the posterior means)."""
    x, lengths = view.x[:ROWS], view.lengths[:ROWS]
    xr, lr = view.model.reconstruct(x.to(view.model.device), lengths.to(view.model.device))
    if is_text(view):
        return sequence_plots.text_table(
            {"test sequence": texts(view, x, lengths), "reconstruction": texts(view, xr, lr)},
            path, title=f"{view.data.name}: reconstructions (greedy, from the posterior mean)")
    labels = view.y[:ROWS].tolist() if view.y is not None and view.y.dim() == 1 else None
    return sequence_plots.sequence_lines(x, lengths, path, reconstruction=xr.cpu(),
                                         labels=labels, title=f"{view.data.name}: test series "
                                                              "(solid) and reconstructions")


def samples(view, path: Path) -> Path:
    """Sequences generated from the prior: a table of strings, or line plots of series."""
    model = view.model
    if is_text(view):
        xs, ls = model.sample(2 * ROWS)
        words = texts(view, xs, ls)
        return sequence_plots.text_table({"sample": words[:ROWS], "sample ": words[ROWS:]},
                                         path, title=f"{view.data.name}: samples from the prior")
    xs, ls = model.sample(8)
    return sequence_plots.sequence_lines(xs.cpu(), ls.cpu(), path,
                                         title=f"{view.data.name}: samples from the prior")


@torch.no_grad()
def codes(view, batch_size: int = 1000) -> torch.Tensor:
    """Posterior means of the test sequences, ``(N, z_dim)``."""
    model, device = view.model, view.model.device
    return torch.cat([model.embed(view.x[i:i + batch_size].to(device),
                                  view.lengths[i:i + batch_size].to(device)).cpu()
                      for i in range(0, len(view.x), batch_size)])


@torch.no_grad()
def interpolation(view, path: Path, steps: int = 8) -> Path:
    """Greedy decodings along the line between the latent means of the first two test
    sequences (Bowman et al. 2016's homotopy)."""
    from pvae import latent

    ends = [(view.x[i], view.lengths[i]) for i in (0, 1)]
    _, (xs, ls) = latent.interpolate(view.model, *ends, steps=steps)
    if is_text(view):
        ends = texts(view, view.x[:2], view.lengths[:2])
        return sequence_plots.text_table(
            {f"{ends[0]} → {ends[1]}": texts(view, xs, ls)}, path,
            title="Interpolation between two test sequences' latent means")
    names = [f"{i / (steps - 1):.2f} of the way" for i in range(steps)]
    names[0], names[-1] = "from test series 0", "to test series 1"
    return sequence_plots.sequence_lines(xs.cpu(), ls.cpu(), path, max_series=steps, names=names,
                                         title="Greedy decodings between two test series' latent "
                                               "means (left to right, top to bottom)")


def anomaly(view, path: Path) -> Path:
    """The anomaly series' per-step scores over time, the labelled region shaded: the
    scores ``pvae train`` drew (the run's ``evaluate.anomaly_samples`` and seed, in
    ``view.anomaly``)."""
    from pvae.run_sequences import anomaly_report, draw_anomaly

    _, scores = anomaly_report(view.model, view.data, *view.anomaly)
    return draw_anomaly(view.data, scores, path)
