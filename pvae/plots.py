"""Figures: training curves, reconstructions, samples. Every function writes one PNG.

Image data (a known ``image_shape``) are drawn as grey-level grids; other data
(tables, counts) as per-feature comparisons, chosen from the data shape.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg
canvas, never through ``pyplot``: importing or calling this module selects no
backend and opens no window, so a notebook's inline figures are left alone.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

PathLike = Union[str, os.PathLike]
Decode = Callable[[torch.Tensor], torch.Tensor]  # codes to the source data's space


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs):
    """``(figure, axes)`` as ``pyplot.subplots`` gives them, on an Agg canvas of its own
    (no pyplot, no global figure manager, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path: PathLike) -> Path:
    """Write ``fig`` to ``path`` atomically (never a partial PNG; a full disk or read-only
    folder raises :class:`pvae.checkpoint.WriteError` naming the path)."""
    from pvae.checkpoint import atomic_write

    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png",
                                             dpi=100, bbox_inches="tight"))
    return path


def _as_images(x: torch.Tensor, image_shape: Sequence[int]) -> np.ndarray:
    """(N, ...) -> (N, H, W) or (N, H, W, 3) in [0, 1] for imshow."""
    x = torch.as_tensor(x).detach().cpu().float().reshape(-1, *image_shape)
    if x.shape[1] == 1:
        x = x[:, 0]
    elif x.shape[1] == 3:
        x = x.permute(0, 2, 3, 1)
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:  # levels or counts: rescale for display
        x = (x - lo) / max(hi - lo, 1e-8)
    return x.numpy()


def image_grid(x: torch.Tensor, image_shape: Sequence[int], path: PathLike, *,
               title: str = "", ncol: Optional[int] = None,
               row_labels: Optional[Sequence[str]] = None) -> Path:
    """A grid of images (grey levels, 0 = black), ``ncol`` per row."""
    imgs = _as_images(x, image_shape)
    n = imgs.shape[0]
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    fig, axes = _subplots(nrow, ncol, figsize=(ncol * 0.9, nrow * 0.9 + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        if i < n:
            ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if row_labels is not None and i % ncol == 0 and i // ncol < len(row_labels):
            ax.set_ylabel(row_labels[i // ncol], rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def training_curves(history: Sequence[dict], path: PathLike, *, title: str = "Training") -> Path:
    """ELBO (train and validation), reconstruction term and KL per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, axes = _subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    ax.plot(epochs, [r["train_elbo"] for r in history],
            label="train objective (minibatch mean)")
    ax.plot(epochs, [r["recon"] - r["kl"] for r in history], label="train ELBO (monitor subset)")
    if any("val_elbo" in r for r in history):
        ax.plot(epochs, [r.get("val_elbo", np.nan) for r in history], label="validation")
    ax.set_title("ELBO")
    ax.set_ylabel("nats per data point")
    ax.legend()
    axes[1].plot(epochs, [r["recon"] for r in history], color="C2")
    axes[1].set_title("reconstruction  E_q[log p(x|z)]")
    axes[1].set_ylabel("nats per data point")
    axes[2].plot(epochs, [r["kl"] for r in history], color="C3")
    axes[2].set_title("KL(q(z|x) || p(z))")
    axes[2].set_ylabel("nats per data point")
    for a in axes:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _rows(t: torch.Tensor) -> np.ndarray:
    return torch.as_tensor(t).detach().cpu().reshape(len(t), -1).numpy()


def _feature_axes(num_features: int, max_features: int, height: float):
    """A grid of one axis per feature (up to ``max_features``); unused axes hidden."""
    d = min(num_features, max_features)
    ncol = min(d, 4)
    nrow = math.ceil(d / ncol)
    fig, axes = _subplots(nrow, ncol, figsize=(3 * ncol, height * nrow), squeeze=False)
    for ax in axes.flat[d:]:
        ax.axis("off")
    return fig, list(axes.flat[:d])


def feature_comparison(x: torch.Tensor, xhat: torch.Tensor, path: PathLike, *,
                       title: str = "Reconstructions", max_features: int = 12) -> Path:
    """Non-image data: each feature's value against its reconstruction."""
    x, xhat = _rows(x), _rows(xhat)
    fig, axes = _feature_axes(x.shape[1], max_features, 2.8)
    for j, ax in enumerate(axes):
        ax.scatter(x[:, j], xhat[:, j], s=6, alpha=0.5)
        lo, hi = float(min(x[:, j].min(), xhat[:, j].min())), float(max(x[:, j].max(),
                                                                          xhat[:, j].max()))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.set_title(f"feature {j}")
        ax.set_xlabel("data")
        ax.set_ylabel("reconstruction")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def feature_histograms(x: torch.Tensor, samples: torch.Tensor, path: PathLike, *,
                       title: str = "Data vs samples from the model",
                       max_features: int = 12) -> Path:
    """Non-image data: per-feature histograms of data and of model samples."""
    x, s = _rows(x), _rows(samples)
    fig, axes = _feature_axes(x.shape[1], max_features, 2.6)
    for j, ax in enumerate(axes):
        bins = np.histogram_bin_edges(np.concatenate([x[:, j], s[:, j]]), bins=20)
        ax.hist(x[:, j], bins=bins, alpha=0.6, density=True, label="data")
        ax.hist(s[:, j], bins=bins, alpha=0.6, density=True, label="model")
        ax.set_title(f"feature {j}")
        ax.set_xlabel("value")
        if j == 0:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def reconstructions(model, x: torch.Tensor, path: PathLike, *,
                    image_shape: Optional[Sequence[int]] = None, n: int = 8,
                    y: Optional[torch.Tensor] = None, decode: Optional[Decode] = None,
                    originals: Optional[torch.Tensor] = None) -> Path:
    """Originals (odd rows) above their mean reconstructions (even rows); tables: scatter.

    ``y``: the labels/conditions, for models that reconstruct given them (CVAE).
    ``decode``, ``originals``: for a model of another model's codes ``x``, maps
    its reconstructions to the space of ``originals``, the inputs those codes
    came from (:func:`pvae.latent.code_data`).
    """
    keep = n * n // 2 if image_shape else 500
    x = x[:keep]
    args = (x.to(model.device),) + ((y[:keep].to(model.device),) if y is not None else ())
    xhat = model.reconstruct(*args).cpu()
    if decode is not None:
        xhat, x = decode(xhat), originals[:keep]
    if image_shape is None:
        return feature_comparison(x, xhat, path, title="Data vs mean reconstruction")
    x = x[: (len(x) // n) * n] if len(x) >= n else x
    rows = []
    for i in range(0, len(x), n):
        rows += [x[i : i + n].reshape(-1, *image_shape), xhat[i : i + n].reshape(-1, *image_shape)]
    grid = torch.cat(rows)
    labels = ["data", "recon."] * (len(rows) // 2)
    return image_grid(grid, image_shape, path, ncol=min(n, len(x)), row_labels=labels,
                      title="Originals and mean reconstructions")


def prior_samples(model, path: PathLike, *, image_shape: Optional[Sequence[int]] = None,
                  n: int = 64, data: Optional[torch.Tensor] = None,
                  decode: Optional[Decode] = None, y: Optional[torch.Tensor] = None) -> Path:
    """Decoder means for z drawn from the prior; tables: histograms against ``data``.

    ``decode``: maps samples of a model of codes to its source's space.
    ``y``: for a model that generates for a condition (CVAE), one condition per
    sample, shape ``(n,)`` (labels) or ``(n, y_dim)``; ``n`` is then ``len(y)``."""
    decode = decode or (lambda t: t)

    def draw(k: int, mean: bool) -> torch.Tensor:
        if y is None:
            return model.sample(k, mean=mean)
        return model.sample(len(y), y=y, mean=mean)

    if image_shape is None:
        samples = decode(draw(max(n, 500), mean=False).cpu())
        ref = data if data is not None else samples
        return feature_histograms(ref, samples, path)
    return image_grid(decode(draw(n, mean=True).cpu()), image_shape, path,
                      title="Samples from the prior (decoder means)"
                      + (", for test-set conditions" if y is not None else ""))


def conditional_samples(model, path: PathLike, *, image_shape: Sequence[int], num_classes: int,
                        per_class: int = 10, decode: Optional[Decode] = None) -> Path:
    """One row per label: decoder means of samples generated for that label.

    ``decode``: maps samples of a model of codes to its source's space."""
    rows = [model.sample(per_class, y=k).cpu() for k in range(num_classes)]
    if decode is not None:
        rows = [decode(r) for r in rows]
    return image_grid(torch.cat(rows), image_shape, path, ncol=per_class,
                      row_labels=[f"y={k}" for k in range(num_classes)],
                      title="Samples for each label (decoder means)")


def layer_kl(history: Sequence[dict], path: PathLike, *,
             title: str = "KL per stochastic layer") -> Path:
    """Hierarchical models: each latent site's KL per epoch (nats per data point)."""
    keys = sorted(k for k in history[-1] if k.startswith("kl_"))
    epochs = [r["epoch"] for r in history]
    fig, ax = _subplots(figsize=(6, 3.6))
    for k in keys:
        ax.plot(epochs, [r.get(k, np.nan) for r in history], label=k[3:])
    ax.set_xlabel("epoch")
    ax.set_ylabel("KL, nats per data point")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(title="site")
    return _save(fig, path)


def estimator_curves(histories: dict, path: PathLike, *,
                     title: str = "ELBO estimators compared") -> Path:
    """Per estimator: its training objective and the (comparable) ELBO per epoch."""
    fig, axes = _subplots(1, 2, figsize=(11, 3.8))
    for i, (name, h) in enumerate(histories.items()):
        epochs = [r["epoch"] for r in h]
        axes[0].plot(epochs, [r["train_elbo"] for r in h], label=name, color=f"C{i}")
        axes[1].plot(epochs, [r["recon"] - r["kl"] for r in h], label=name, color=f"C{i}")
    axes[0].set_title("training objective (each estimator's own bound)")
    axes[1].set_title("ELBO on a fixed training subset (comparable)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per data point")
        ax.grid(alpha=0.3)
        if histories:  # none yet when the first estimator failed
            ax.legend(title="estimator")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def anomaly_histogram(normal: torch.Tensor, anomalous: Optional[torch.Tensor], threshold: float,
                      path: PathLike, *, title: str = "Anomaly scores",
                      xlabel: str = "score (-ELBO, nats)") -> Path:
    """Histograms of normal and anomalous scores with the calibrated threshold."""
    fig, ax = _subplots(figsize=(6.5, 3.8))
    data = [torch.as_tensor(normal).cpu().numpy()]
    if anomalous is not None:
        data.append(torch.as_tensor(anomalous).cpu().numpy())
    bins = np.histogram_bin_edges(np.concatenate(data), bins=40)
    ax.hist(data[0], bins=bins, alpha=0.6, density=True, label="normal")
    if anomalous is not None:
        ax.hist(data[1], bins=bins, alpha=0.6, density=True, label="anomalous")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.1f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def latent_scatter(coords: torch.Tensor, path: PathLike, *, labels: Optional[torch.Tensor] = None,
                   method: str = "latent", title: str = "Latent space") -> Path:
    """Latent means in 2-D, coloured by label (a categorical colour map) where given."""
    c = torch.as_tensor(coords).cpu().numpy()
    fig, ax = _subplots(figsize=(6.2, 5.4))
    if labels is not None:
        lab = torch.as_tensor(labels).cpu().numpy()
        classes = np.unique(lab)
        from matplotlib import colormaps

        cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
        for i, k in enumerate(classes):
            sel = lab == k
            ax.scatter(c[sel, 0], c[sel, 1], s=6, alpha=0.7, color=cmap(i % cmap.N), label=str(k))
        ax.legend(title="label", markerscale=3, fontsize=8, loc="best", ncol=2)
    else:
        ax.scatter(c[:, 0], c[:, 1], s=6, alpha=0.6)
    names = {"latent": ("z1", "z2"), "PCA": ("PC 1", "PC 2"), "t-SNE": ("t-SNE 1", "t-SNE 2"),
             "1-D": ("z1", "")}
    xl, yl = names.get(method, ("dim 1", "dim 2"))
    ax.set_xlabel(xl)
    ax.set_ylabel(yl)
    ax.set_title(f"{title} ({method})")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def feature_heatmap(values: torch.Tensor, path: PathLike, *, title: str,
                    ylabel: str = "step") -> Path:
    """Non-image data: rows of decoded feature vectors as a heat map."""
    v = torch.as_tensor(values).detach().cpu().reshape(len(values), -1).numpy()
    fig, ax = _subplots(figsize=(min(12, 1 + 0.35 * v.shape[1]), 0.4 * len(v) + 1.5))
    im = ax.imshow(v, aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label="decoded mean")
    ax.set_xlabel("feature")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, path)


def interpolation_strip(decoded: torch.Tensor, path: PathLike, *,
                        image_shape: Optional[Sequence[int]] = None,
                        title: str = "Interpolation in latent space") -> Path:
    """Decoded points between two inputs, left to right (tables: a heat map)."""
    if image_shape is None:
        return feature_heatmap(decoded, path, title=title)
    return image_grid(decoded, image_shape, path, ncol=len(decoded), title=title)


def traversal_grid(decoded: torch.Tensor, path: PathLike, *, dims: Sequence[int],
                   image_shape: Optional[Sequence[int]] = None,
                   title: str = "Latent traversals (one dimension per row, -2.5 to +2.5 sd)") -> Path:
    """One row per latent dimension, its value varying along the row."""
    rows, steps = decoded.shape[:2]
    if image_shape is None:
        return feature_heatmap(decoded.reshape(rows * steps, -1), path, title=title,
                               ylabel="dimension x step")
    return image_grid(decoded.reshape(rows * steps, -1), image_shape, path, ncol=steps,
                      row_labels=[f"z{d + 1}" for d in dims], title=title)


def manifold_grid(decoded: torch.Tensor, n: int, path: PathLike, *,
                  image_shape: Sequence[int], title: str = "2-D latent manifold "
                  "(prior quantiles 0.05-0.95; z1 to the right, z2 up)") -> Path:
    """The decoded n x n grid of :func:`pvae.latent.manifold`."""
    return image_grid(decoded, image_shape, path, ncol=n, title=title)
