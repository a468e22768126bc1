"""The Normal log-density in fewer operations, for the lean ELBO path (:mod:`pvae.fast_elbo`).

torch writes ``Normal(loc, scale).log_prob(x)`` as
``-(x - loc)**2 / (2 * scale**2) - log(scale) - log(2 pi) / 2``: nine tensor operations,
each a node of the backward graph. On a small model (a table VAE's step is about 40
operations) that is a measurable part of a step. Two rewrites, equal in value and gradient
up to the order of floating-point operations (``tests/test_fast_normal.py``, and the
agreement with Pyro's ELBOs in ``tests/test_fast_elbo.py``):

- any value: ``d = (x - loc) / scale``, ``addcmul(-log(2 pi)/2 - log(scale), d, d, -1/2)``,
  five operations (fewer where loc and scale are constants: a standard Normal prior is one);
- the distribution's own reparameterised draw ``z = loc + eps * scale``
  (Kingma & Welling 2014): ``(z - loc) / scale`` is ``eps``, so
  ``log q(z) = -eps**2 / 2 - log(scale) - log(2 pi) / 2``, three operations, as a
  hand-written VAE computes it. :func:`draw` samples a guide's Normal site exactly as
  ``Normal.rsample`` does (the same noise from the same random stream) and keeps ``eps``
  on the site's message; :func:`log_density` uses it only while the site's value and
  distribution are still those objects and neither ``eps``, the value, ``loc`` nor
  ``scale`` has been changed in place (their version counters). An observed site, a value
  set by another handler, a value transformed in place, or a subclass of ``Normal`` gets
  torch's own ``log_prob``. With argument validation on (its support check), or in half or
  bfloat16 precision (autocast), torch's ``log_prob`` runs. Not seen: a change written
  through ``.data`` (``loc.data.add_(1)`` in the guide after the draw moves no version
  counter; torch's ``log_prob`` would read the new ``loc``, this form keeps the draw's
  noise: write such changes under ``torch.no_grad()`` instead, which the counters see).
  Where ``scale`` is below the rounding step of ``loc`` (``loc = 1000``, ``scale = 1e-4``
  in float32) ``(z - loc) / scale`` is rounded away from ``eps``: torch's value differs
  there by more than rounding (27 nats on one draw of 1000 such dimensions), this one is
  the density of the draw as made.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import pyro.distributions as dist
import torch
from pyro.poutine.runtime import _PYRO_STACK
from torch.distributions.utils import _standard_normal, _sum_rightmost

from pvae.program_key import LatentScale

#: log(sqrt(2 pi)), written as torch's ``Normal.log_prob`` computes it.
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))
#: Where :func:`draw` keeps a draw's noise on the site's message.
NOISE = "_pvae_normal_noise"


def _normal(fn: Any) -> Optional[tuple]:
    """``(Normal, event dims)`` when ``fn`` is exactly Pyro's ``Normal`` or an
    ``Independent`` of one (no subclass, whose density or sampling may differ)."""
    if type(fn) is dist.Normal:
        return fn, 0
    if type(fn) is dist.Independent and type(fn.base_dist) is dist.Normal:
        return fn.base_dist, fn.reinterpreted_batch_ndims
    return None


_FULL = (torch.float32, torch.float64)


def _torchs(fn: Any, base: Any, value: Any) -> bool:
    """Whether torch's own ``log_prob`` must run: argument validation on (its support check),
    or a value or parameter in half or bfloat16 precision (autocast), where another order of
    operations would differ by more than rounding in full precision."""
    return bool(getattr(fn, "_validate_args", False) or getattr(base, "_validate_args", False)
                or not isinstance(value, torch.Tensor) or value.dtype not in _FULL
                or base.loc.dtype not in _FULL or base.scale.dtype not in _FULL)


def draw(msg: dict, recorder: Any) -> None:
    """Sample a latent Normal site of a guide as Pyro would (``Normal.rsample``: the same
    operations on the same random stream) and keep its noise for :func:`log_density`.

    Does nothing (Pyro samples as usual) unless the message is an unobserved sample site
    without a value, with no sample-shape arguments, whose distribution is a Normal
    (:func:`_normal`), and ``recorder`` (the handler calling this) has only
    :class:`~pvae.program_key.LatentScale` handlers below it: another handler there (a
    ``replay`` or ``condition`` around the call) could still set the value, and the noise
    drawn here would then shift the random stream."""
    if (msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None
            or msg["done"] or msg["args"] or msg["kwargs"]):
        return
    normal = _normal(msg["fn"])
    if normal is None:
        return
    stack = _PYRO_STACK[:_PYRO_STACK.index(recorder)] if recorder in _PYRO_STACK else None
    if stack is None or not all(isinstance(h, LatentScale) for h in stack):
        return
    base = normal[0]
    loc, scale = base.loc, base.scale
    eps = _standard_normal(base._extended_shape(), dtype=loc.dtype, device=loc.device)
    value = loc + eps * scale
    msg["value"] = value
    msg[NOISE] = (eps, value, msg["fn"], (eps._version, value._version, loc._version,
                                          scale._version))


def _own_noise(msg: dict) -> Optional[torch.Tensor]:
    """The noise of the site's value when it is still the distribution's own draw."""
    noise = msg.get(NOISE)
    if noise is None:
        return None
    eps, value, fn, versions = noise
    if msg["value"] is not value or msg["fn"] is not fn:
        return None
    base = _normal(fn)[0]
    if (eps._version, value._version, base.loc._version, base.scale._version) != versions:
        return None
    return eps


def log_density(msg: dict) -> torch.Tensor:
    """``msg["fn"].log_prob(msg["value"])`` (nats, the distribution's batch shape), in the
    closed forms of the module docstring for a Normal, torch's otherwise."""
    fn, value = msg["fn"], msg["value"]
    normal = _normal(fn)
    if normal is None or _torchs(fn, normal[0], value):
        return fn.log_prob(value)
    base, event_dims = normal
    scale = base.scale
    eps = _own_noise(msg)
    if eps is None:
        eps = (value - base.loc) / scale
    lp = torch.addcmul(torch.rsub(scale.log(), -_LOG_SQRT_2PI), eps, eps, value=-0.5)
    return _sum_rightmost(lp, event_dims) if event_dims else lp
