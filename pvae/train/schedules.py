"""Pure schedules of the training loop: the KL warm-up weight and the learning rate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


def kl_weight(epoch: int, step: int, steps_per_epoch: int, kl_warmup: float) -> float:
    """The weight of the latent terms at ``step`` (0-based, within ``epoch``, 0-based).

    Rises linearly from ``1 / (kl_warmup * steps_per_epoch)`` at the first step to 1
    after ``kl_warmup`` epochs (Sønderby et al. 2016); 1 throughout when
    ``kl_warmup`` is 0.
    """
    warmup_steps = kl_warmup * steps_per_epoch
    if not warmup_steps:
        return 1.0
    return min(1.0, (epoch * steps_per_epoch + step + 1) / warmup_steps)


def valid_lr_steps(lr_steps: Sequence[int]) -> bool:
    """Whether ``lr_steps`` are strictly increasing whole epochs, each at least 1."""
    steps = list(lr_steps)
    return (all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in steps)
            and steps == sorted(set(steps)))


def late_lr_steps(lr_steps: Sequence[int], epochs: int) -> tuple[int, ...]:
    """The steps of ``lr_steps`` at or after ``epochs``: the rate does not drop at them
    in a run of ``epochs`` epochs (it does once the run is continued past them)."""
    return tuple(e for e in lr_steps if e >= epochs)


#: fit's and the config's default ``lr_factor`` (it acts only at the epochs in ``lr_steps``)
LR_FACTOR = 0.1


def idle_lr_factor(lr_steps: Sequence[int], lr_factor: float) -> bool:
    """Whether ``lr_factor`` was set to something other than :data:`LR_FACTOR` with no
    ``lr_steps`` to apply it at (it would change nothing)."""
    return not tuple(lr_steps) and lr_factor != LR_FACTOR


def learning_rate(epoch: int, lr: float, lr_steps: Sequence[int] = (),
                  lr_factor: float = LR_FACTOR) -> float:
    """The learning rate of ``epoch`` (0-based): ``lr`` times ``lr_factor`` for each
    epoch in ``lr_steps`` already passed (``lr_steps=(40,)``: epochs 40, 41, ... at
    ``lr * lr_factor``)."""
    return lr * lr_factor ** sum(epoch >= e for e in lr_steps)


@dataclass(frozen=True)
class Schedule:
    """The learning rate and KL weight of a run, by epoch and step (see the functions)."""

    lr: float
    lr_steps: Sequence[int] = ()
    lr_factor: float = LR_FACTOR
    kl_warmup: float = 0
    steps_per_epoch: int = 1

    @property
    def warms_up(self) -> bool:
        """Whether the KL weight rises (and the history records it)."""
        return bool(self.kl_warmup * self.steps_per_epoch)

    def rate(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (:func:`learning_rate`)."""
        return learning_rate(epoch, self.lr, self.lr_steps, self.lr_factor)

    def weight(self, epoch: int, step: int) -> float:
        """The KL weight at ``step`` of ``epoch`` (:func:`kl_weight`)."""
        return kl_weight(epoch, step, self.steps_per_epoch, self.kl_warmup)
