"""One optimisation step: loss, backward, clipping, the optimiser's step, failure checks."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Optional

import torch
from pyro.infer import ELBO

from pvae import distributed
from pvae.elbos import LatentScale, traits
from pvae.train.data import Transform, transformed
from pvae.train.failure import numerical_failure


class Step:
    """One optimisation step of ``model`` with ``elbo`` and ``optimizer``.

    The loss is reported per data point (nats): the minibatch loss, whose data plate
    is sized to the part's data size (or, for ELBOs not linear in the plate scale,
    left unscaled and the loss multiplied by ``num_data / batch``), divided by
    ``num_data``. ELBOs with ``differentiable_loss`` give a loss tensor (through
    ``ddp``, a DistributedDataParallel wrapper, when given); others their own
    ``loss_and_grads``, whose gradients are summed over the step's parts.

    Raises
    ------
    FloatingPointError
        When the loss or the clipped gradient's norm is non-finite (every process
        stops together), naming the step and sites (:func:`numerical_failure`).
    ValueError, TypeError
        When a streamed batch fails the model's data check.
    """

    def __init__(self, model, elbo: ELBO, optimizer: torch.optim.Optimizer, num_data: int, *,
                 transform: Transform = None, streamed: bool = False,
                 clip_norm: Optional[float] = None, ddp=None,
                 checkpoint: Optional[Path] = None) -> None:
        self.model, self.elbo, self.optimizer = model, elbo, optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.num_data, self.transform, self.streamed = num_data, transform, streamed
        self.clip_norm, self.ddp, self.checkpoint = clip_norm, ddp, checkpoint
        self.linear = traits(elbo).linear_in_plate_scale
        self.differentiable = traits(elbo).differentiable

    def __call__(self, parts: list, epoch: int, i: int, weight: float = 1.0) -> tuple[float, int]:
        """Take step ``i`` of ``epoch`` on ``parts`` (``(minibatch, num_data)`` pairs) with
        the latent terms weighted by ``weight``; returns (loss per data point, points)."""
        with contextlib.nullcontext() if weight == 1.0 else LatentScale(weight):
            value, size = self._loss(parts, epoch, i)
        if self.clip_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
            if not torch.isfinite(norm):
                raise self._failure(parts[0][0], epoch, i, "the gradient became non-finite")
        self.optimizer.step()
        return value, size

    def _failure(self, batch, epoch: int, i: int, what: str) -> FloatingPointError:
        return numerical_failure(self.model, batch, epoch, i, what, self.checkpoint)

    def _loss(self, parts: list, epoch: int, i: int) -> tuple[float, int]:
        """Loss of one step (per data point), gradients left in the parameters."""
        self.optimizer.zero_grad(set_to_none=True)
        total, size, loss = 0.0, 0, None
        for batch, n_part in parts:
            batch = transformed(batch, self.transform)
            if self.streamed:
                self._check_streamed(batch)
            b = batch[0].shape[0]
            size += b
            factor = 1.0 if self.linear else n_part / b
            with self.model.scaled_to(n_part if self.linear else None):
                if self.differentiable:
                    part = (self.ddp(*batch) if self.ddp is not None else
                            self.elbo.differentiable_loss(self.model.model, self.model.guide,
                                                         *batch))
                    part = part * factor if factor != 1.0 else part  # one op less
                    loss = part if loss is None else loss + part
                else:
                    total += self._loss_and_grads(batch, factor, epoch, i)
        if not self.differentiable:
            for p in self.params:
                if p.grad is not None:
                    p.grad.div_(self.num_data)
            return total / self.num_data, size
        loss = loss / self.num_data
        value = loss.item()
        if not distributed.all_ok(math.isfinite(value)):  # all ranks stop together
            raise self._failure(batch, epoch, i, f"the loss became {value}"
                                if not math.isfinite(value)
                                else "the loss became non-finite on another process")
        loss.backward()
        return value, size

    def _check_streamed(self, batch) -> None:
        """Check a streamed batch as it arrives; every process stops if one fails."""
        problem = None
        try:
            self.model.check_data(*batch)
        except (ValueError, TypeError) as e:
            problem = e
        if not distributed.all_ok(problem is None):
            raise problem or ValueError("a batch on another process failed its data check")

    def _loss_and_grads(self, batch, factor: float, epoch: int, i: int) -> float:
        """The ELBO's own ``loss_and_grads`` on one part, its gradients (times ``factor``)
        added to those of the step's earlier parts."""
        saved = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        value = self.elbo.loss_and_grads(self.model.model, self.model.guide, *batch) * factor
        if not math.isfinite(value):
            raise self._failure(batch, epoch, i, f"the loss became {value}")
        for p, g in zip(self.params, saved):
            if p.grad is not None and factor != 1.0:
                p.grad.mul_(factor)
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return value
