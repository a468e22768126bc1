"""Importance weights per data point, read from Pyro traces.

The machinery behind :mod:`pvae.evaluate` and the IWAE objective
(:class:`pvae.iwae.IWAE`). For a model/guide pair whose local sample sites sit
in ``pyro.plate("data")``:

- :class:`LocalParticles` gives every *local* site (inside the data plate)
  ``K`` particles at a batch dimension left of the model's plates, while
  *global* sites (outside it) keep a single draw shared by all particles and
  data points. The bound stays per data point whatever else the model holds:
  unlike ``RenyiELBO``, particles of different data points are never mixed.
- Discrete guide sites (labels; any site whose distribution has enumerable
  support, via ``pyro.infer.config_enumerate``) are summed out exactly inside
  each particle when ``enumerate=True``: the weight
  of particle k is ``sum_y p(x, y, z_ky) / q(z_ky | x, y)``, an unbiased
  estimate of p(x) with no variance from y.
- Log densities are taken as written (``poutine.scale`` factors, from beta,
  KL warm-up or plate subsampling, are not applied); :func:`log_weights`
  returns the data plate's subsampling factor separately.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from pyro import poutine
from pyro.infer import config_enumerate
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pvae.models.sites import is_auxiliary

DATA_PLATE = "data"

#: Why an importance-weighted bound refuses beta != 1 and KL warm-up.
IWAE_AS_WRITTEN = "the importance-weighted bound takes the model as written"


def kl_weight_error(name: str, reason: str, where: str = "") -> ValueError:
    """The one refusal of beta != 1 and KL warm-up for an estimator that cannot weight
    its latent terms: ``name`` is the estimator, ``reason`` why, ``where`` what was seen."""
    return ValueError(f"{where}beta != 1 and kl_warmup cannot be used with "
                      f"{name}: {reason}; use elbo='trace'")


def in_data_plate(msg) -> bool:
    return any(f.name == DATA_PLATE for f in msg["cond_indep_stack"])


def _data_frame(msg):
    for f in msg["cond_indep_stack"]:
        if f.name == DATA_PLATE:
            return f
    return None


class LocalParticles(Messenger):
    """Expand the distribution of every sample site inside the data plate to
    ``num_particles`` at batch dim ``dim`` (global sites are left alone)."""

    def __init__(self, num_particles: int, dim: int) -> None:
        super().__init__()
        self.num_particles, self.dim = num_particles, dim

    def _process_message(self, msg) -> None:
        if msg["type"] != "sample" or site_is_subsample(msg) or not in_data_plate(msg):
            return
        fn = msg["fn"]
        shape = list(fn.batch_shape)
        need = -self.dim
        shape = [1] * (need - len(shape)) + shape
        if shape[self.dim] == 1:
            shape[self.dim] = self.num_particles
        msg["fn"] = fn.expand(torch.Size(shape))


@dataclass
class Weights:
    """Log importance weights of one draw.

    ``local``: shape ``(K, N)``, log p(x_n, z_nk) - log q(z_nk | x_n) summed over
    local sites (enumerated sites summed out). ``global_``: the global sites'
    log p - log q (a scalar). ``sites``: per-site ``(K, N)`` log densities for
    diagnostics (``model``, ``guide``, ``observed``), when asked for.
    ``scale``: the data plate's subsampling factor ``num_data / batch``.
    """

    local: torch.Tensor
    global_: torch.Tensor
    scale: float = 1.0
    num_global_sites: int = 0
    #: Scaled log q of auxiliary sites (``infer={"pvae_auxiliary": True}``, e.g. the
    #: semi-supervised classifier term): no part of log p(x), but of the training loss.
    auxiliary: torch.Tensor = field(default_factory=lambda: torch.zeros(()))
    num_enumerated_sites: int = 0
    sites: dict = field(default_factory=dict)
    guide_trace: Optional[object] = None
    model_trace: Optional[object] = None


def _reduce(lp: torch.Tensor, msg, sdim: int, k: int, n: int) -> torch.Tensor:
    """Bring a local site's log density to shape (E..., K, N): keep enumeration dims
    (left of the particle dim), the particle dim and the data dim; sum other plates."""
    data_dim = _data_frame(msg).dim
    while lp.dim() < -sdim:
        lp = lp.unsqueeze(0)
    lp = lp.movedim(data_dim, -1)  # data -> last
    # the particle dim, counted from the right before the move, is unaffected (sdim < data_dim)
    lp = lp.movedim(sdim, -2) if sdim != -2 else lp
    enum_ndim = lp.dim() + sdim  # dims left of the particle dim
    mid = lp.shape[enum_ndim:-2]
    if len(mid):
        lp = lp.reshape(*lp.shape[:enum_ndim], -1, *lp.shape[-2:]).sum(enum_ndim)
    return lp.expand(*lp.shape[:-2], k, n)


def log_weights(model_fn: Callable, guide_fn: Callable, batch: tuple, num_particles: int, *,
                max_plate_nesting: int = 1, enumerate: bool = True, keep_sites: bool = False,
                detach_guide_params: bool = False, strict_scale: bool = False,
                block: bool = True) -> Weights:
    """Trace the guide (``num_particles`` per data point) and replay the model.

    ``detach_guide_params``: log q is computed with the guide distributions'
    parameters detached, z still reparameterised (for DReG, Tucker et al. 2018).
    ``strict_scale``: refuse local sites scaled by anything but the data plate's
    subsampling (beta, KL warm-up), which a bound taken as written would ignore.
    ``block``: hide the sites from handlers outside this call (evaluation);
    ``False`` lets them act, as in Pyro's own ELBOs.
    Gradients flow unless called under ``torch.no_grad``.
    """
    sdim = -(max_plate_nesting + 1)
    n = batch[0].shape[0]
    guide = guide_fn
    if enumerate:
        guide = poutine.enum(config_enumerate(guide, "parallel"), first_available_dim=sdim - 1)
    with poutine.block() if block else contextlib.nullcontext(), \
            LocalParticles(num_particles, sdim):
        guide_tr = poutine.trace(guide).get_trace(*batch)
        model_tr = poutine.trace(poutine.replay(model_fn, trace=guide_tr)).get_trace(*batch)
    local = torch.zeros(())
    global_ = torch.zeros(())
    scale = None
    num_global = num_enumerated = 0
    auxiliary = torch.zeros(())
    sites: dict = {"model": {}, "guide": {}, "observed": {}}
    for name, site in model_tr.nodes.items():
        if (site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
                and name not in guide_tr.nodes):
            raise ValueError(
                f"model site {name!r} is latent but the guide has no site of that name; "
                "importance weights need the guide to propose every latent site"
            )
    for part, tr in (("model", model_tr), ("guide", guide_tr)):
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if is_auxiliary(site):
                lp = site["fn"].log_prob(site["value"])
                auxiliary = auxiliary + (lp * site["scale"]).sum()
                continue
            enumerated = site["infer"].get("_enumerate_dim") is not None
            if part == "guide" and enumerated:
                num_enumerated += 1
                continue  # summed out exactly: no 1/q(y) factor
            fn = site["fn"]
            if part == "guide" and detach_guide_params:
                fn = _detached(fn)
            lp = fn.log_prob(site["value"])
            mask = site["mask"]
            if isinstance(mask, torch.Tensor):
                lp = lp.masked_fill(~mask, 0.0)
            elif mask is False:
                lp = torch.zeros_like(lp)
            sign = 1.0 if part == "model" else -1.0
            if in_data_plate(site):
                frame = _data_frame(site)
                plate_scale = (frame.full_size / frame.size) if frame.full_size else 1.0
                scale = plate_scale if scale is None else scale
                if strict_scale and not math.isclose(float(site["scale"]), plate_scale):
                    raise kl_weight_error(
                        "an importance-weighted bound", IWAE_AS_WRITTEN,
                        f"site {name!r} is scaled by {float(site['scale']):g} beyond the data "
                        "plate's subsampling: ")
                lp = _reduce(lp, site, sdim, num_particles, n)
                local = local + sign * lp
                if keep_sites:
                    key = "observed" if (part == "model" and site["is_observed"]) else part
                    sites[key][name] = lp
            else:
                global_ = global_ + sign * lp.sum()
                num_global += 1
    while local.dim() < 2:
        local = local.unsqueeze(0)
    local = local.expand(*local.shape[:-2], num_particles, n)
    if local.dim() > 2:  # enumeration dims: sum the weights exactly
        local = torch.logsumexp(local.reshape(-1, num_particles, n), 0)
    return Weights(local=local, global_=global_, scale=scale or 1.0, num_global_sites=num_global,
                   auxiliary=auxiliary, num_enumerated_sites=num_enumerated,
                   sites=sites if keep_sites else {}, guide_trace=guide_tr, model_trace=model_tr)


def _detached(fn):
    """The same distribution with its parameters detached (for DReG's log q)."""
    import pyro.distributions as dist

    base, reinterpreted = fn, 0
    while isinstance(base, dist.Independent):
        reinterpreted += base.reinterpreted_batch_ndims
        base = base.base_dist
    if isinstance(base, dist.Normal):
        out = dist.Normal(base.loc.detach(), base.scale.detach())
    else:
        raise ValueError(
            f"DReG needs Gaussian guide sites (got {type(base).__name__}); "
            "use dreg=False, or a guide without flows"
        )
    return out.to_event(reinterpreted) if reinterpreted else out


def check_per_point(weights: Weights) -> None:
    """Raise if the model has global sites: then log p(x) does not split per data point."""
    if weights.num_global_sites:
        names = [n for tr in (weights.model_trace, weights.guide_trace)
                 for n, s in tr.nodes.items() if s["type"] == "sample"
                 and not site_is_subsample(s) and not in_data_plate(s)]
        raise ValueError(
            f"sample site {names[0]!r} is outside pyro.plate('data'); per-data-point "
            "evaluation needs every sample site inside the data plate (log p(x) of a model "
            "with global latents does not split into one term per data point)"
        )


def iwae_bound(local: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k per data point, from log weights of shape (K, N)."""
    return torch.logsumexp(local, 0) - math.log(local.shape[0])
