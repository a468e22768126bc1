"""What ``fit`` reports each epoch beyond its History: TensorBoard event files.

:func:`open_logger` turns ``fit``'s ``logger`` / ``log_dir`` arguments into a logger
and checks them before any work. A logger is called once per epoch with the
history row, the model and a batch to show (the validation data, else the
training monitor batch), and is a context manager that closes its files. Only
process 0 writes; nothing here draws from the training's random streams, so a
run gives the same numbers with or without a logger.

:class:`TensorBoardLogger` writes, through ``torch.utils.tensorboard.SummaryWriter``:

- every epoch, the row's numbers as scalars (:data:`TAGS`; ``kl_SITE`` as ``kl/SITE``);
- every ``log_images_every`` epochs and at the last, for image data, originals
  above their reconstructions and samples from the prior;
- at the last epoch, the latent means of up to ``embedding_points`` shown points
  in the embedding projector, with their labels where the data have labels;
- once, ``fit``'s options (and ``hparams``, e.g. a run's config) as hyperparameters
  and as a text table.

Open it with ``tensorboard --logdir DIR``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from pvae import distributed

#: TensorBoard tags of the History columns; ``kl_SITE`` (one latent site) goes to ``kl/SITE``,
#: any other column under its own name.
TAGS = {"train_elbo": "elbo/train", "val_elbo": "elbo/validation", "recon": "elbo/recon",
        "kl": "kl/total", "lr": "train/lr", "kl_weight": "train/kl_weight",
        "seconds": "train/seconds"}

INSTALL = "pip install pvae[tensorboard]"


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a History column."""
    if key in TAGS:
        return TAGS[key]
    return "kl/" + key[3:] if key.startswith("kl_") else key


class Logger:
    """A logger that writes nothing: the interface ``fit`` calls.

    ``bind(options)`` once before training (``fit``'s arguments); ``logger(row, model,
    batch)`` after each epoch; ``close()`` (or leaving a ``with`` block) at the end.
    """

    def bind(self, options: dict[str, Any]) -> "Logger":
        return self

    def __call__(self, row: dict[str, Any], model, batch: Sequence[torch.Tensor]) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardLogger(Logger):
    """Scalars, images, the latent embedding and the options of a run, in TensorBoard's files.

    Parameters
    ----------
    log_dir : the folder of the event files (created at the first epoch's end).
    image_shape : ``(C, H, W)`` of one data point, to draw flat images (e.g. ``(1, 8, 8)``
        for the flattened digits); default: the model's ``x_shape`` when it has 3 axes.
        Other data (tables, counts, sequences) get no images.
    log_images_every : epochs between images (and at the last epoch); a positive int.
    num_images : how many reconstructions and prior samples each time; a positive int.
    embedding_points : how many shown points the projector embeds; a positive int.
    hparams : more hyperparameters to record with ``fit``'s options (names to numbers,
        strings or booleans), e.g. a run's config flattened to ``section.key``.

    Raises
    ------
    ImportError : the ``tensorboard`` package is missing (``pip install pvae[tensorboard]``).
    ValueError : a bad option.
    """

    def __init__(self, log_dir: Union[str, os.PathLike], *,
                 image_shape: Optional[Sequence[int]] = None, log_images_every: int = 10,
                 num_images: int = 16, embedding_points: int = 500,
                 hparams: Optional[dict[str, Any]] = None) -> None:
        if importlib.util.find_spec("tensorboard") is None:
            raise ImportError(f"logger='tensorboard' needs the tensorboard package: {INSTALL}")
        for name, value in [("log_images_every", log_images_every), ("num_images", num_images),
                            ("embedding_points", embedding_points)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if image_shape is not None and (len(image_shape) != 3 or min(image_shape) < 1):
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
        self.log_dir = Path(log_dir)
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.every, self.num_images, self.points = log_images_every, num_images, embedding_points
        self.hparams = dict(hparams or {})
        self.options: dict[str, Any] = {}
        self.writer = None

    def bind(self, options: dict[str, Any]) -> "TensorBoardLogger":
        self.options = options
        return self

    def __call__(self, row: dict[str, Any], model, batch: Sequence[torch.Tensor]) -> None:
        if distributed.context()[0] != 0:
            return
        step = int(row["epoch"])
        if self.writer is None:
            self._open(step)
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(scalar_tag(key), value, step)
        last = step == self.options.get("epochs")
        shape = self.image_shape or _image_shape(model)
        with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices(model)):
            torch.manual_seed(0)  # the same prior draws every time; training's streams untouched
            if shape is not None and (step % self.every == 0 or last):
                self._images(model, batch, shape, step)
            if last:
                self._embedding(model, batch, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # ---- the parts ---------------------------------------------------------------------------
    def _open(self, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # A resumed run rewrites the epochs after its checkpoint: TensorBoard drops the old ones.
        self.writer = SummaryWriter(str(self.log_dir), purge_step=step)
        params = {**_scalars(self.options), **_scalars(self.hparams)}
        metrics = {TAGS["train_elbo"]: 0.0, TAGS["val_elbo"]: 0.0}  # read from those scalars
        for summary in hparams(params, metrics):
            self.writer.file_writer.add_summary(summary)
        table = "\n".join(["| option | value |", "| --- | --- |"]
                          + [f"| {k} | {v} |" for k, v in params.items()])
        self.writer.add_text("options", table, step)

    def _images(self, model, batch: Sequence[torch.Tensor], shape: tuple, step: int) -> None:
        n = min(self.num_images, len(batch[0]))
        part = [t[:n] for t in batch]
        x = part[0].reshape(n, *shape).float()
        recon = model.reconstruct(*part).reshape(n, *shape).float()
        pairs = torch.cat([x, recon], dim=2)  # each original above its reconstruction
        self.writer.add_images("images/reconstructions", pairs.clamp(0, 1).cpu(), step)
        draws = (model.sample(n, part[1]) if model.needs_condition
                 else model.sample(self.num_images))
        self.writer.add_images("images/prior_samples",
                               draws.reshape(len(draws), *shape).float().clamp(0, 1).cpu(), step)

    def _embedding(self, model, batch: Sequence[torch.Tensor], step: int) -> None:
        part = [t[:self.points] for t in batch]
        z = model.embed(*part).detach().cpu()
        labels = _labels(batch, self.options.get("validation"), len(z))
        self.writer.add_embedding(z, metadata=labels, global_step=step, tag="latent_means")


def open_logger(logger: Union[None, str, Logger], log_dir, checkpoint_dir,
                options: dict[str, Any]) -> Logger:
    """``fit``'s logger from its arguments, checked before any work.

    ``logger``: ``None`` (none), ``"tensorboard"`` (a :class:`TensorBoardLogger` in
    ``log_dir``, default ``checkpoint_dir``) or a :class:`Logger`; ``options``: ``fit``'s
    arguments, recorded as hyperparameters.

    Raises
    ------
    ValueError : another ``logger``, or ``"tensorboard"`` with neither folder given.
    ImportError : ``"tensorboard"`` without the tensorboard package.
    """
    if logger is None or isinstance(logger, Logger):
        return (logger or Logger()).bind(options)
    if logger != "tensorboard":
        raise ValueError(f"logger must be 'tensorboard', None or a pvae.train.logging.Logger, "
                         f"got {logger!r}")
    folder = log_dir if log_dir is not None else checkpoint_dir
    if folder is None:
        raise ValueError("logger='tensorboard' needs a folder for its event files: pass "
                         "log_dir=DIR (or checkpoint_dir=DIR, which it then shares)")
    return TensorBoardLogger(folder).bind(options)


def _scalars(options: dict[str, Any]) -> dict[str, Union[int, float, str, bool]]:
    """The options TensorBoard can show as hyperparameters: numbers, strings, booleans;
    ``None`` and tuples as text; objects (data, callables, ELBO objects) by type name."""
    out: dict[str, Union[int, float, str, bool]] = {}
    for key, value in options.items():
        if key in ("data", "validation", "model", "callback", "transform", "logger"):
            continue
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif value is None or isinstance(value, (tuple, list, Path)):
            out[key] = str(value)
        else:  # a torch.device by name, other objects (an ELBO) by type
            out[key] = str(value) if isinstance(value, torch.device) else type(value).__name__
    return out


def _labels(batch: Sequence[torch.Tensor], validation, n: int) -> Optional[list]:
    """Labels of the first ``n`` points of ``batch``, or ``None``: the batch's own (models
    that train on labels), else the validation data's when they are one per batch row."""
    if len(batch) > 1 and batch[1].dim() == 1:
        return batch[1][:n].tolist()
    y = getattr(validation, "y", None)
    if y is None and isinstance(validation, (tuple, list)) and len(validation) > 1:
        y = validation[1]
    if y is not None and torch.as_tensor(y).dim() == 1 and len(y) == len(batch[0]):
        return torch.as_tensor(y)[:n].tolist()
    return None


def _image_shape(model) -> Optional[tuple]:
    """The model's ``x_shape`` when it is an image's ``(C, H, W)``."""
    shape = tuple(getattr(model, "x_shape", ()))
    return shape if len(shape) == 3 else None


def _cuda_devices(model) -> list[int]:
    """CUDA devices whose random streams drawing images would touch (none on the CPU)."""
    device = model.device
    return [device.index or 0] if device.type == "cuda" else []
