"""The training history: one row (a dict) per epoch."""

from __future__ import annotations

import csv
import io
import os
from typing import Union

from pvae import checkpoint as ckpt


class History(list):
    """One dict per epoch; ``history["train_elbo"]`` gives a column.

    Rows hold ``epoch``, ``train_elbo``, ``recon``, ``kl`` (nats per data
    point), ``val_elbo``, ``kl_weight``, ``lr`` and ``seconds`` where they apply
    (see :func:`pvae.train.fit`); a column lists ``None`` for rows without it.
    """

    def __getitem__(self, key):
        if isinstance(key, str):
            return [row.get(key) for row in self]
        return super().__getitem__(key)

    def to_csv(self, path: Union[str, os.PathLike]) -> None:
        """Write the history as a table (atomically); columns in order of first use.

        Raises
        ------
        pvae.checkpoint.WriteError
            When the file cannot be written (full disk, read-only folder).
        """
        keys: list[str] = []
        for row in self:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self)
        ckpt.atomic_write_text(path, buf.getvalue())
