"""Active units of each layer of a hierarchy, measured on q(z_l | x) alone.

Burda et al. (2015) call latent dimension d of layer l active when
``A_d = Cov_x(E_{q(z_l | x)}[z_ld]) > threshold`` (0.01). In a hierarchy q(z_l | x) is
a mixture over the guide's draws of the other layers (the layer above, in a Ladder
guide; the layer below, in a bottom-up one), so E_q[z_l | x] is an average over those
draws. :func:`layer_active_units` draws every other layer ``num_draws`` times per point,
takes the conditional mean of z_l at each draw (the Gaussian's mean; a flow's draw
where the mean has no closed form), and estimates the covariance over x of their average
without the Monte Carlo noise: with S draws per point, m_hat(x) their mean and s^2(x)
their sample variance (ddof 1),

    A_d = Var_x(m_hat_d(x)) - mean_x(s_d^2(x)) / S,

an unbiased estimate of Cov_x(E_q[z_ld | x]): Var_x(m_hat) alone carries the noise
E_x[s^2] / S, which reaches the 0.01 threshold at S = 100 for a layer that ignores x
but whose conditional mean moves by about 1 with the draws of the layer above.
"""

from __future__ import annotations

import torch
from pyro import poutine


def draw_moments(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(m_hat, s^2 / S)`` over the first dimension of ``draws`` ``(S, N, D)``: the
    average of S conditional means per point and its Monte Carlo variance (0 for S = 1)."""
    s = draws.shape[0]
    noise = draws.var(0) / s if s > 1 else torch.zeros_like(draws[0])
    return draws.mean(0), noise


def corrected_variance(moments: list) -> torch.Tensor:
    """``Var_x(m_hat) - mean_x(s^2 / S)`` over the points of every ``(m_hat, s^2 / S)`` pair
    of :func:`draw_moments` in ``moments``: the unbiased estimate of Cov_x E_q[z | x]
    (module docstring), shape (D,)."""
    return (torch.cat([m for m, _ in moments]).var(0)
            - torch.cat([n for _, n in moments]).mean(0))


def _check(model, x, num_draws, threshold) -> None:
    if not hasattr(model, "latent_sites") or not hasattr(model, "guide"):
        raise TypeError(f"layer_active_units needs a pvae model with latent_sites (such as "
                        f"HierarchicalVAE), got {type(model).__name__}")
    if isinstance(num_draws, bool) or not isinstance(num_draws, int) or num_draws < 2:
        raise ValueError(f"num_draws must be an int >= 2 (a variance over the draws), "
                         f"got {num_draws!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            threshold >= 0):
        raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
    if not isinstance(x, torch.Tensor) or x.dim() < 1 or len(x) < 2:
        raise ValueError("layer_active_units needs a tensor of at least 2 data points (a "
                         "variance over the data); pass more data")


@torch.no_grad()
def _draws(model, x: torch.Tensor, num_draws: int) -> dict[str, torch.Tensor]:
    """Conditional means of every latent site at each of ``num_draws`` guide runs:
    ``{site: (num_draws, N, D)}``."""
    n = x.shape[0]
    xr = x.repeat(num_draws, *([1] * (x.dim() - 1)))
    with model.unregistered(), poutine.trace() as tr:
        model.guide(xr)
    out = {}
    for name in model.latent_sites:
        node = tr.trace.nodes[name]
        try:
            mean = node["fn"].mean
        except NotImplementedError:  # a flow: its draw is an unbiased estimate of the mean
            mean = node["value"]
        out[name] = mean.reshape(num_draws, n, -1)
    return out


def layer_active_units(model, x: torch.Tensor, *, num_draws: int = 50, threshold: float = 0.01,
                       batch_size: int = 500) -> dict[str, dict]:
    """Active units of each latent site with the other layers averaged out (module docstring).

    Parameters
    ----------
    model
        A pvae model with ``latent_sites`` and a guide ``guide(x)`` (HierarchicalVAE).
    x
        Data, shape (N, *x_shape), N >= 2 (checked as ``pvae.fit`` checks it).
    num_draws
        Guide runs per point (S >= 2).
    threshold
        A dimension is active when its estimated Cov_x E_q[z | x] exceeds this.
    batch_size
        Points per guide run (each run holds ``batch_size * num_draws`` rows).

    Returns
    -------
    ``{site: {"active": count, "dims": D, "variance": tensor(D)}}``, the variance being
    the noise-corrected estimate A_d (it can be slightly negative for a dead unit).

    Raises
    ------
    TypeError, ValueError
        A model without latent sites, ``num_draws`` < 2, a negative ``threshold``,
        fewer than two data points, or data the model cannot take.
    """
    _check(model, x, num_draws, threshold)
    x = model.checked_batch(x, support=False)[0].to(model.device)
    was = model.training
    model.eval()
    moments: dict[str, list] = {}
    try:
        for chunk in x.split(batch_size):
            for name, m in _draws(model, chunk, num_draws).items():
                moments.setdefault(name, []).append(draw_moments(m))
    finally:
        model.train(was)
    out = {}
    for name in model.latent_sites:
        variance = corrected_variance(moments[name])
        out[name] = {"active": int((variance > threshold).sum()), "dims": variance.numel(),
                     "variance": variance}
    return out
