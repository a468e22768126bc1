"""Image data sets: scikit-learn's embedded digits and torchvision's MNIST / Fashion-MNIST."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch


def digits():
    """scikit-learn's 8x8 digits: images (1797, 1, 8, 8) in [0, 1] and labels (1797,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target, dtype=torch.long)


def torchvision_set(name: str, root: Union[str, os.PathLike], download: bool):
    """MNIST or Fashion-MNIST from torchvision: [(train x, y), (test x, y)], x in [0, 1]."""
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    out = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=download)
        except RuntimeError as e:
            folder = Path(root) / cls.__name__ / "raw"
            raise FileNotFoundError(
                f"{name} was not found under {str(root)!r} (torchvision looks for the raw IDX "
                f"files in {str(folder)!r}: {e}). Set root to the folder that holds "
                f"{cls.__name__}/raw, or pass download=True on a machine with network access"
            ) from None
        out.append((ds.data.unsqueeze(1).float() / 255.0, ds.targets.long()))
    return out
