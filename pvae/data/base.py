"""The containers every data set is returned in, and the splitting they share.

:class:`Split` holds fixed-size data (images, vectors); :class:`Sequences`
(:mod:`pvae.data.sequences`) holds padded sequences with their lengths. A
:class:`Data` holds the train/validation/test splits of either kind with what
models and plots need to know about them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Union

import torch

if TYPE_CHECKING:  # annotations only: no import at run time
    from pvae.data.sequences import Sequences
    from pvae.data.vocab import Vocabulary


@dataclass
class Split:
    """One split: data ``x`` (N, *shape) and optional labels ``y`` (N,)."""

    x: torch.Tensor
    y: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Data:
    """A data set in splits, with what plots and models need to know about it.

    Fixed-size data sets have :class:`Split` splits. Sequence data sets have
    :class:`pvae.data.Sequences` splits, all padded to the same length ``T``, and
    ``x_shape`` is the shape of one padded sequence: ``(T, D)`` for real-valued
    series (then ``step_dim == D``) or ``(T,)`` for token ids (then ``vocab`` is
    the :class:`pvae.data.Vocabulary` that maps them to text). :attr:`kind` tells
    the four apart.
    """

    name: str
    train: Union[Split, "Sequences"]
    val: Optional[Union[Split, "Sequences"]]
    test: Union[Split, "Sequences"]
    x_shape: tuple[int, ...]
    image_shape: Optional[tuple[int, int, int]] = None
    num_classes: Optional[int] = None
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = field(default=None, repr=False)
    # A data set of latent codes (pvae.latent.code_data): the model that encodes them and
    # the data set they came from, whose space decode() maps codes back to.
    encoder: Optional[torch.nn.Module] = field(default=None, repr=False)
    source: Optional["Data"] = field(default=None, repr=False)
    # Sequences: the vocabulary of token data (text), and the size D of one step of a
    # real-valued series (x of shape (N, T, D)).
    vocab: Optional["Vocabulary"] = field(default=None, repr=False)
    step_dim: Optional[int] = None

    @property
    def kind(self) -> str:
        """``"tokens"``, ``"series"``, ``"image"`` or ``"vector"``: what one data point is."""
        if hasattr(self.train, "lengths"):
            return "series" if self.train.x.is_floating_point() else "tokens"
        return "image" if self.image_shape is not None else "vector"

    @property
    def max_len(self) -> Optional[int]:
        """The padded length ``T`` of sequence data; ``None`` for other data."""
        return self.x_shape[0] if hasattr(self.train, "lengths") else None

    @property
    def vocab_size(self) -> Optional[int]:
        """Token data: the number of ids, ``len(vocab)`` or else the largest id in any split
        plus one; ``None`` for other data."""
        if self.kind != "tokens":
            return None
        if self.vocab is not None:
            return len(self.vocab)
        parts = [s for s in (self.train, self.val, self.test) if s is not None and len(s)]
        return max(int(s.x[s.mask].max()) for s in parts) + 1

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to the source data's space (the encoder's decoder means); else as they are."""
        if self.encoder is None:
            return codes
        with torch.no_grad():
            return self.encoder.decode_mean(codes.to(self.encoder.device)).cpu()


def binarize(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample binary values with P(1) = x, for intensities ``x`` in [0, 1]."""
    return torch.bernoulli(x, generator=generator)


def hide_labels(y: Optional[torch.Tensor], keep: int, seed: int = 0) -> torch.Tensor:
    """Copy of labels ``y`` with all but ``keep`` of them (class-balanced) set to -1."""
    if y is None:
        raise ValueError("num_labelled needs labelled data")
    if not 0 <= keep <= len(y):
        raise ValueError(f"num_labelled must be in 0..{len(y)}, got {keep}")
    g = torch.Generator().manual_seed(seed + 2)
    classes = y.unique()
    chosen = []
    for i, c in enumerate(classes.tolist()):
        idx = torch.nonzero(y == c).squeeze(-1)
        share = keep // len(classes) + (1 if i < keep % len(classes) else 0)
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:share]])
    out = torch.full_like(y, -1)
    idx = torch.cat(chosen)
    out[idx] = y[idx]
    return out


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Validation and test sizes for ``n`` points; ``ValueError`` for fractions that
    leave a requested split empty or no training data."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    n_val, n_test = int(round(n * val_fraction)), int(round(n * test_fraction))
    for name, f, k in (("test_fraction", test_fraction, n_test), ("val_fraction", val_fraction,
                                                                    n_val)):
        if f > 0 and k == 0:  # asked for a split, got none: refuse now, not at evaluation
            raise ValueError(
                f"{name}={f:g} of {n} data points rounds the {name[:-9]} split to 0 points; "
                f"set {name} (config key data.{name}) to at least {1 / n:.3g} for one point, "
                + ("or use more data (pvae train scores a test split)" if name == "test_fraction"
                   else "or 0 for no such split, or use more data"))
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} data points leave no training data after the splits "
                         f"(val_fraction={val_fraction:g}, test_fraction={test_fraction:g}; "
                         "config keys data.val_fraction, data.test_fraction): lower them or "
                         "use more data")
    return n_val, n_test


def split(data, n_val: int, n_test: int, seed: int):
    """Shuffle ``data`` (a :class:`Split` or :class:`Sequences`) with ``seed`` and cut it
    into (train, val or None, test); each part is the same type as ``data``."""
    n = len(data)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    data = take(data, perm)
    test = take(data, slice(n - n_test, n))
    val = take(data, slice(n - n_test - n_val, n - n_test)) if n_val else None
    return take(data, slice(0, n - n_test - n_val)), val, test


def take(data, index):
    """Rows ``index`` (a slice or index tensor) of a :class:`Split` or :class:`Sequences`."""
    y = data.y[index] if data.y is not None else None
    if hasattr(data, "lengths"):  # Sequences, and Windows with their starts
        extra = {"starts": data.starts[index]} if getattr(data, "starts", None) is not None else {}
        return dataclasses.replace(data, x=data.x[index], lengths=data.lengths[index], y=y,
                                   **extra)
    return Split(data.x[index], y)
