"""The IAF posterior can express what a diagonal Gaussian cannot (``pvae.flows``).

Fitted by reverse KL (as the ELBO fits a guide) to a correlated 2-D Gaussian, a
diagonal Gaussian cannot get below its closed-form optimum
0.5 * (sum_i log L_ii - log det L) (L the target's precision: 1.20 nats at rho = 0.95),
while pvae's default flows (gate bias 4, outputs x 0.1, near the identity at start)
reach below it in 600 Adam steps at the VAE's learning rate.
"""

import torch
import torch.distributions as dist

from pvae.flows import GaussianPosterior

RHO = 0.95


def _target():
    cov = torch.tensor([[1.0, RHO], [RHO, 1.0]])
    lam = torch.linalg.inv(cov)
    best_diagonal = 0.5 * (lam.diagonal().log().sum() - torch.logdet(lam)).item()
    return dist.MultivariateNormal(torch.zeros(2), cov), best_diagonal


def _fit_kl(num_flows: int, steps: int = 600) -> float:
    """KL(q || p) (nats, 4,000 draws) after ``steps`` of Adam (lr 1e-3) on q's parameters."""
    torch.manual_seed(0)
    p, _ = _target()
    post = GaussianPosterior(2, num_flows, context_dim=4, hidden_dims=[16, 16])
    loc = torch.zeros(2, requires_grad=True)
    log_scale = torch.zeros(2, requires_grad=True)
    ctx = torch.ones(4)
    opt = torch.optim.Adam([loc, log_scale, *post.parameters()], lr=1e-3)
    for _ in range(steps):
        q = post(loc, log_scale.exp(), ctx)
        z = q.rsample((128,))
        loss = (q.log_prob(z) - p.log_prob(z)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = post(loc, log_scale.exp(), ctx)
        z = q.sample((4000,))
        return (q.log_prob(z) - p.log_prob(z)).mean().item()


def test_two_flows_fit_a_correlated_target_below_the_best_diagonal_gaussian():
    _, best_diagonal = _target()
    assert abs(best_diagonal - 1.164) < 0.01  # -0.5 log(1 - rho^2)
    flows = _fit_kl(2)  # 0.52 nats when written; 4,000 draws: Monte Carlo error ~0.02
    assert flows < 0.75 * best_diagonal, (flows, best_diagonal)
