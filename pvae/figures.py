"""The figures of a trained run, as a registry of plot kinds.

Each kind is a small function ``draw(view, path) -> path`` with the rule that
says whether it applies to a model and its data (:class:`Kind`). ``pvae train``
draws the ``basic`` kinds that apply; ``pvae plot`` draws any kind that applies
(:func:`pvae.results.plot_run`). Adding a figure is one function and one entry in
:data:`KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

import torch

from pvae import latent, plots
from pvae import sequence_figures as seq


def needs_condition(model) -> bool:
    """Whether ``model`` generates only for a given condition ``y``
    (:attr:`pvae.models.PVAEModel.needs_condition`)."""
    return model.needs_condition


class View:
    """What every figure of a run reads: the model, the data and the training history.

    Parameters
    ----------
    model
        The trained model (on the CPU).
    data
        The run's :class:`pvae.data.Data` (for a stacked run, the codes, with
        ``data.source`` and ``data.decode`` to draw in the source's space).
    history
        The per-epoch history, or a callable that reads it (only when a figure
        needs it), or ``None`` when the run has none.
    points
        How many test points a figure uses at most (``None``: all).
    method
        The 2-D embedding of the latent scatter (``auto``, ``pca``, ``tsne``).
    anomaly
        ``(num_samples, seed)`` of an anomaly series' per-step scores: the run's
        ``evaluate.anomaly_samples`` and ``train.seed``, as ``pvae train`` drew them.
    """

    def __init__(self, model, data, history=None, *, points: Optional[int] = None,
                 method: str = "auto", anomaly: tuple[int, int] = (10, 0)) -> None:
        self.model, self.data, self.points, self.method = model, data, points, method
        self.anomaly = anomaly
        self._history = history
        self.src, self.decode = data.source or data, data.decode
        self.image = self.src.image_shape
        self.num_classes = getattr(model, "num_classes", None)
        self.z_dim = model.code_dim
        self.title = f"{data.name}: {type(model).__name__} training"
        self.x = data.test.x[:points]
        self.y = data.test.y[:points] if data.test.y is not None else None
        # sequences: each test sequence's length; None for fixed-size data
        lengths = getattr(data.test, "lengths", None)
        self.lengths = lengths[:points] if lengths is not None else None
        self.cond = self.y if "y" in model.batch_parts else None
        self.first_label = None
        if "y" in model.batch_parts and self.y is not None:  # a label, or a condition vector (y_dim)
            self.first_label = int(self.y[0]) if self.num_classes else self.y[0]

    @property
    def has_history(self) -> bool:
        return self._history is not None

    @cached_property
    def history(self):
        return self._history() if callable(self._history) else self._history


def _curves(v: View, path: Path) -> Path:
    return plots.training_curves(v.history, path, title=v.title)


def _reconstructions(v: View, path: Path) -> Path:
    if v.lengths is not None:
        return seq.reconstructions(v, path)
    return plots.reconstructions(v.model, v.x, path, image_shape=v.image, y=v.cond,
                                 decode=v.decode, originals=v.src.test.x[:v.points])


def _samples(v: View, path: Path) -> Path:
    """Samples as the data's shape suits: one row per label for a model with class labels
    on images; otherwise samples of p(x), against the test data for tables. A model that
    needs a condition (a CVAE) is given conditions drawn from the test set's (so the
    samples follow p(x) = E_y p(x | y), comparable with the data)."""
    model, data = v.model, v.data
    if v.lengths is not None:
        return seq.samples(v, path)
    if "y" in model.batch_parts and v.num_classes and v.image is not None:
        return _conditional(v, path)
    y = None
    if needs_condition(model):
        if data.test.y is None:
            raise ValueError(f"{type(model).__name__} samples for a condition, and the run's "
                             "test data have none")
        n = 64 if v.image is not None else 500
        pick = torch.randint(len(data.test.y), (n,), generator=torch.Generator().manual_seed(0))
        y = data.test.y[pick]
    return plots.prior_samples(model, path, image_shape=v.image, data=v.src.test.x[:v.points],
                               decode=v.decode, y=y)


def _conditional(v: View, path: Path) -> Path:
    return plots.conditional_samples(v.model, path, image_shape=v.image,
                                     num_classes=v.num_classes, decode=v.decode)


def _latent(v: View, path: Path) -> Path:
    z = seq.codes(v) if v.lengths is not None else latent.encode(v.model, v.x, v.cond)
    coords, used = latent.embed_2d(z, v.method)
    labels = v.y if v.y is not None and v.y.dim() == 1 else None  # not condition vectors
    return plots.latent_scatter(coords, path, labels=labels, method=used,
                                title=f"{v.data.name}: test set in latent space")


def _interpolation(v: View, path: Path) -> Path:
    if v.lengths is not None:
        return seq.interpolation(v, path)
    x, cond = v.x, v.cond
    ya, yb = (cond[0], cond[1]) if cond is not None else (None, None)
    rows = []
    for how in ("linear", "slerp"):
        _, dec = latent.interpolate(v.model, x[0], x[1], steps=10, method=how, y_a=ya, y_b=yb,
                                    y=v.first_label if ya is None else ya)
        rows.append(v.decode(dec))
    grid = torch.cat(rows)
    if v.image is None:
        return plots.feature_heatmap(grid, path, title="Interpolation: linear (top), slerp")
    return plots.image_grid(grid, v.image, path, ncol=10, row_labels=["linear", "slerp"],
                            title="Interpolation between two test inputs")


def _traversal(v: View, path: Path) -> Path:
    dims = list(range(min(v.z_dim, 10)))
    _, dec = latent.traverse(v.model, v.x[0], dims=dims, steps=9,
                             y=v.cond[0] if v.cond is not None else v.first_label)
    dec = v.decode(dec.flatten(0, 1)).unflatten(0, dec.shape[:2])
    return plots.traversal_grid(dec, path, dims=dims, image_shape=v.image)


def _manifold(v: View, path: Path) -> Path:
    n = 15
    _, dec = latent.manifold(v.model, n=n, y=v.first_label)
    dec = v.decode(dec)
    if v.image is None:
        return plots.feature_heatmap(dec, path, title="Decoded 2-D latent grid",
                                     ylabel="grid point")
    return plots.manifold_grid(dec, n, path, image_shape=v.image)


def _layer_kl(v: View, path: Path) -> Path:
    return plots.layer_kl(v.history, path)


@dataclass(frozen=True)
class Kind:
    """A plot kind: how to draw it, when it applies, what it needs.

    Attributes
    ----------
    draw
        ``draw(view, path) -> path``: writes one PNG.
    applies
        ``applies(view) -> bool``: whether the figure means anything for this
        model and data.
    min_points
        Test points the figure needs (two to interpolate between, two to
        spread in a plane).
    basic
        Drawn by ``pvae train`` into every run folder (where it applies).
    """

    draw: Callable[[View, Path], Path]
    applies: Callable[[View], bool] = lambda v: True
    min_points: int = 0
    basic: bool = False


def _many_layers(v: View) -> bool:
    return len(getattr(v.model, "latent_sites", ())) > 1


def _fixed_size(v: View) -> bool:
    return v.lengths is None


def _windowed(v: View) -> bool:
    from pvae.run_sequences import is_windowed

    return is_windowed(v.data)


#: Every plot kind, in the order ``pvae plot`` draws them.
KINDS: dict[str, Kind] = {
    "curves": Kind(_curves, lambda v: v.has_history, basic=True),
    "reconstructions": Kind(_reconstructions, min_points=1, basic=True),
    "samples": Kind(_samples, basic=True),
    "conditional": Kind(_conditional, lambda v: bool("y" in v.model.batch_parts and v.num_classes)
                        and v.image is not None),
    "latent": Kind(_latent, min_points=2),
    "interpolation": Kind(_interpolation, min_points=2),
    "traversal": Kind(_traversal, _fixed_size, min_points=1),
    "manifold": Kind(_manifold, lambda v: v.z_dim == 2 and _fixed_size(v)),
    "layer_kl": Kind(_layer_kl, lambda v: _many_layers(v) and v.has_history, basic=True),
    # an anomaly series: per-step scores of its test series (pvae train writes it itself,
    # with the scores it reports)
    "anomaly": Kind(seq.anomaly, _windowed),
}
PLOT_KINDS = tuple(KINDS)
#: Test points a figure needs: two inputs to interpolate between, two to spread in a plane.


def applicable(view: View, *, basic: bool = False) -> list[str]:
    """The kinds that apply to ``view``'s model and data (only the ``basic`` ones if asked)."""
    return [name for name, k in KINDS.items() if (k.basic or not basic) and k.applies(view)]


def figure_name(kind: str, method: str = "auto") -> str:
    """The file a figure of ``kind`` is written to (the latent scatter by method)."""
    return f"latent-{method}.png" if kind == "latent" and method != "auto" else f"{kind}.png"


def draw(view: View, kind: str, path: Path) -> Path:
    """Write the figure ``kind`` of ``view`` to ``path``; raises ``KeyError`` for an unknown kind."""
    return KINDS[kind].draw(view, path)
