"""Checks of what models are given: data shapes, labels, draw counts, constructor arguments.

Every model and :func:`pvae.models.get` use these, so a rule is written once and
its message reads the same wherever it is broken.
"""

from __future__ import annotations

import math
import operator
from typing import Sequence, Union

import torch

Shape = Union[int, Sequence[int]]


def _shape(t) -> str:
    return str(tuple(t.shape)) if isinstance(t, torch.Tensor) else f"a {type(t).__name__}"


def returned(out) -> str:
    """What a network returned, in words: 'one tensor of shape (8, 199)', 'a tuple of 2 ...'."""
    if isinstance(out, (tuple, list)):
        return (f"a {type(out).__name__} of {len(out)} ("
                + ", ".join(_shape(t) for t in out) + ")")
    if isinstance(out, torch.Tensor):
        return f"one tensor of shape {tuple(out.shape)}"
    return f"a {type(out).__name__}"


def per_point(shape: tuple[int, ...]) -> str:
    return "(N, " + ", ".join(str(s) for s in shape) + ")"


def num_draws(n) -> int:
    """``n`` as a number of draws: a positive whole number, else ``ValueError``."""
    try:
        k = operator.index(n)
    except TypeError:
        k = None
    if k is None or k < 1:
        raise ValueError(f"n must be a positive int (the number of draws), got {n!r}")
    return k


def as_shape(x_dim: Shape) -> tuple[int, ...]:
    """``784 -> (784,)``; ``(1, 28, 28)`` stays; sizes must be positive integers."""
    shape = (x_dim,) if isinstance(x_dim, int) else tuple(x_dim)
    if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"x_dim must be a positive int or a tuple of them, got {x_dim!r}")
    return shape


def check_x(x: torch.Tensor, x_shape: tuple[int, ...], what: str = "data") -> None:
    """Raise ``ValueError`` unless ``x`` is a non-empty tensor of shape ``(N, *x_shape)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"{what} is empty (shape {tuple(x.shape)}); pass at least one data point")
    if tuple(x.shape[1:]) != x_shape:
        want = ", ".join(str(d) for d in x_shape)
        got, size = tuple(x.shape[1:]), math.prod(x_shape)
        as_x_dim = got[0] if len(got) == 1 else got  # as x_dim is written
        if got[len(got) - len(x_shape):] == x_shape:  # an outer axis: several data sets
            hint = f"; flatten the data sets into one batch with x.reshape(-1, {want})"
        elif not got and size == 1:
            hint = f"; one value per point: x.reshape(len(x), {want})"
        elif not got and len(x) == size:
            hint = f"; one data point? pass x[None] (shape (1, {want}))"
        elif not got:
            hint = f"; pass a batch of points, one per row (shape (N, {want}))"
        elif math.prod(got) == 0:
            hint = f"; each data point must hold {size} values, these hold none"
        elif math.prod(got) == size:
            hint = (f"; reshape it with x.reshape(len(x), {want}) or build the model "
                    f"with x_dim={as_x_dim}")
        else:
            hint = (f"; each data point must hold {size} values: build the model for this "
                    f"data (x_dim={as_x_dim})")
        raise ValueError(
            f"{what} has shape {tuple(x.shape)} but the model expects (N, {want}){hint}"
        )


def check_labels(y: torch.Tensor, num_classes: int, n: int, allow_unlabelled: bool = False) -> None:
    """Raise ``ValueError`` unless ``y`` holds ``n`` whole labels in ``0..num_classes-1``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"labels y must be a tensor, got {type(y).__name__}")
    if y.dim() == 2 and y.shape[1] > 1:
        raise ValueError(
            f"labels have shape {tuple(y.shape)}, but the model takes one class label per data "
            f"point, shape ({n},); for one-hot labels pass y.argmax(-1)"
        )
    if y.reshape(-1).shape[0] != n:
        raise ValueError(f"there are {y.reshape(-1).shape[0]} labels for {n} data points")
    if y.is_floating_point() and not torch.isfinite(y).all():
        raise ValueError("labels hold NaN or infinite values; remove those points or mark "
                         "them unlabelled (-1, for SemiSupervisedVAE)")
    if y.is_floating_point() and (y != y.round()).any():
        bad = y[y != y.round()].reshape(-1)[0].item()
        raise ValueError(f"labels must be whole numbers (class indices 0..{num_classes - 1}), "
                         f"found {bad:g}; pass integer class ids, not fractions or scores")
    low = -1 if allow_unlabelled else 0
    if y.numel() and (y.min() < low or y.max() >= num_classes):
        what = "-1 (unlabelled) or " if allow_unlabelled else ""
        found = y.max().item() if y.max() >= num_classes else y.min().item()
        raise ValueError(
            f"labels out of range: found {found:g}, but with num_classes={num_classes} labels "
            f"must be {what}0..{num_classes - 1}; check num_classes or the labels"
        )


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _positive_ints(v) -> bool:
    try:
        return len(v) >= 1 and all(_positive_int(h) for h in v)
    except TypeError:
        return False


#: The rules on constructor arguments that more than one model takes, each written once:
#: every model's constructor and the config (``model.*`` keys) check them here. Each is
#: ``(check, rule)``, or ``(check, rule, wording)`` where the constructor says it at length.
HPARAM_RULES: dict[str, tuple] = {
    "z_dim": (_positive_int, "must be a positive int"),
    "z_dims": (_positive_ints, "must be a list of positive ints, bottom layer first"),
    "hidden_dims": (lambda v: _positive_ints(v) or v in ((), []), "must be positive ints"),
    "beta": (lambda v: v > 0, "must be positive"),
    "guide_flows": (lambda v: isinstance(v, int) and v >= 0, "must be >= 0"),
    "num_classes": (lambda v: isinstance(v, int) and v >= 2, "must be an int >= 2"),
    "y_dim": (_positive_int, "must be a positive int"),
    "aux_weight": (lambda v: v >= 0, "must be >= 0"),
    "balance_weight": (lambda v: v >= 0, "must be >= 0 (0 is off)",
                       "must be non-negative (0 turns the class-balance term off)"),
}


class HparamError(ValueError):
    """A constructor argument that breaks its rule; ``key`` and ``rule`` name which."""

    def __init__(self, key: str, rule: str, value, wording: str = "") -> None:
        super().__init__(f"{key} {wording or rule}, got {value!r}")
        self.key, self.rule, self.value = key, rule, value


def check_hparams(**values) -> None:
    """Check constructor arguments against :data:`HPARAM_RULES` (``None`` values skipped).

    Raises
    ------
    HparamError
        (a ``ValueError``) for the first argument that breaks its rule, e.g.
        ``"z_dim must be a positive int, got 0"``.
    """
    for key, value in values.items():
        ok, *words = HPARAM_RULES[key]
        if value is not None and not ok(value):
            raise HparamError(key, words[0], value, *words[1:])
