"""The importance-weighted bound (IWAE, Burda et al. 2015), per data point, with DReG.

``IWAE(num_particles=K)`` is a ``pyro.infer.ELBO`` whose loss is

    - [ (N / B) * sum_{n in batch} log (1/K) sum_k w_nk  +  (global sites' log p - log q) ]

with ``w_nk = p(x_n, z_nk) / q(z_nk | x_n)``: the logsumexp runs over the
particles of each data point separately, whatever else the model holds.
Pyro's ``RenyiELBO(alpha=0)`` computes the same bound only while every sample
site lies in the data plate; with a global site it combines particles across
the whole batch. Global sites here get one draw shared by all particles and
data points (an ordinary ELBO term), so the objective stays a lower bound on
log p(x). Discrete guide sites (with enumerable support) are summed out
exactly in each particle; other sites must be reparameterised. Auxiliary sites
(``infer={"pvae_auxiliary": True}``, the semi-supervised model's classifier
term) are added outside the bound, as in the ELBO; note that with the label
enumerated, the unlabelled bound does not involve q(y | x), so the classifier
then learns from the labelled term alone.

``dreg=True`` uses the doubly reparameterised gradient of Tucker et al. (2018)
for the guide's parameters: sum_k w~_k^2 d log w_k / dz_k dz_k / dphi, with
log q taken at detached guide parameters, which removes the high-variance
score-function term (see pyro-ppl/pyro issue 3104). Model parameters get the
ordinary IWAE gradient sum_k w~_k d log w_k / dtheta. DReG is refused for models
with global or enumerated sites, for which these weights would be biased.
"""

from __future__ import annotations

import torch
from pyro.infer import ELBO

from pvae.weights import iwae_bound, log_weights


def _leaf(value: torch.Tensor) -> torch.Tensor:
    return value.unconstrained() if hasattr(value, "unconstrained") and not value.is_leaf else value


def _params(trace) -> list[torch.Tensor]:
    out, seen = [], set()
    for site in trace.nodes.values():
        if site["type"] == "param":
            p = _leaf(site["value"])
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


class IWAE(ELBO):
    """Importance-weighted bound, per data point, for ``pyro.infer.SVI`` or ``pvae.fit``.

    Parameters
    ----------
    num_particles
        K, the number of importance samples per data point (vectorised).
    dreg
        Use the doubly reparameterised gradient (Tucker et al. 2018) for the
        guide's parameters. Needs Gaussian guide sites and no parameters shared
        between model and guide.
    max_plate_nesting
        Plates nested in the model (1 for pvae's models: just "data").
    enumerate
        Sum out discrete guide sites exactly (``config_enumerate``; sites marked
        ``infer={"enumerate": None}`` are sampled).
    """

    def __init__(self, num_particles: int = 5, dreg: bool = False, max_plate_nesting: int = 1,
                 enumerate: bool = True) -> None:
        if not (isinstance(num_particles, int) and num_particles >= 1):
            raise ValueError(f"num_particles must be a positive int, got {num_particles!r}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.dreg = dreg
        self.enumerate = enumerate

    def _weights(self, model, guide, args, detach: bool):
        return log_weights(model, guide, args, self.num_particles,
                           max_plate_nesting=self.max_plate_nesting, enumerate=self.enumerate,
                           detach_guide_params=detach, strict_scale=True, block=False)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        if kwargs:
            raise ValueError("IWAE passes positional data only to model and guide")
        w = self._weights(model, guide, args, detach=self.dreg)
        loss = -(w.scale * iwae_bound(w.local).sum() + w.global_ + w.auxiliary)
        if not self.dreg or not torch.is_grad_enabled():
            return loss
        if w.num_global_sites or w.num_enumerated_sites:
            raise ValueError(
                "dreg=True is derived for local, non-enumerated latent sites: with global "
                "sites or enumerated labels its squared weights bias the guide's gradient; "
                "use dreg=False (elbo='iwae:K')"
            )
        # DReG: different weights on the paths into guide and model parameters.
        guide_params = _params(w.guide_trace)
        guide_ids = {id(p) for p in guide_params}
        model_params = [p for p in _params(w.model_trace) if id(p) not in guide_ids]
        shared = [p for p in _params(w.model_trace) if id(p) in guide_ids]
        if shared:
            raise ValueError("dreg=True needs separate model and guide parameters; this pair "
                             "shares some (e.g. a top-down Ladder guide): use dreg=False")
        wt = torch.softmax(w.local, 0).detach()
        theta_obj = -(w.scale * (wt * w.local).sum() + w.auxiliary)
        phi_obj = -(w.scale * (wt.pow(2) * w.local).sum() + w.auxiliary)
        g_theta = torch.autograd.grad(theta_obj, model_params, retain_graph=True,
                                      allow_unused=True) if model_params else ()
        g_phi = torch.autograd.grad(phi_obj, guide_params, allow_unused=True) if guide_params else ()
        # A surrogate with the loss's value whose gradient is (g_theta, g_phi).
        surrogate = loss.detach()
        for p, g in list(zip(model_params, g_theta)) + list(zip(guide_params, g_phi)):
            if g is not None:
                surrogate = surrogate + (p * g).sum() - (p * g).sum().detach()
        return surrogate

    def _get_trace(self, model, guide, args, kwargs):  # pragma: no cover - not used
        raise NotImplementedError("IWAE computes its weights with pvae.weights.log_weights")

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            w = self._weights(model, guide, args, detach=False)
            return -(w.scale * iwae_bound(w.local).sum() + w.global_ + w.auxiliary).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()
