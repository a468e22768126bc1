"""Can pvae's IAF posterior express a correlated q(z), and how fast does Adam get it there?

    python benchmarks/iaf_toy.py [--steps 500,2000,5000]
    python benchmarks/iaf_toy.py --smoke [--out DIR]   # a few steps; iaf_toy.json in DIR

Fits ``GaussianPosterior`` (a learnt base Normal and N gated IAFs, a constant context) to a
known target p(z) by minimising KL(q || p) = E_q[log q(z) - log p(z)] (reverse KL, as the
ELBO does), with Adam at the VAE's learning rate 1e-3, and reports the KL (nats, 4,000
draws) after each checkpoint of steps, beside the best diagonal Gaussian's KL in closed
form (for a Gaussian target with precision L: 0.5 * (sum_i log L_ii - log det L)).
Targets: a 4-D Gaussian with two pairs correlated at rho = 0.95; a 2-D banana
(z1 ~ N(0, 1), z2 ~ N(z1^2 / 2 - 1/2, 0.25^2)), whose best diagonal Gaussian is fitted.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.distributions as dist

from common import add_smoke_options, output_dir

from pvae.flows import GaussianPosterior


def gauss4(rho: float = 0.95):
    c = torch.eye(4)
    c[0, 1] = c[1, 0] = c[2, 3] = c[3, 2] = rho
    p = dist.MultivariateNormal(torch.zeros(4), c)
    lam = torch.linalg.inv(c)
    best = 0.5 * (lam.diagonal().log().sum() - torch.logdet(lam)).item()
    return p.log_prob, 4, best


def banana():
    def log_p(z):
        return (dist.Normal(0., 1.).log_prob(z[..., 0])
                + dist.Normal(0.5 * z[..., 0] ** 2 - 0.5, 0.25).log_prob(z[..., 1]))
    return log_p, 2, None


def fit(log_p, d: int, flows: int, steps: list[int], **kw) -> list[float]:
    torch.manual_seed(0)
    post = GaussianPosterior(d, flows, 8, [32, 32], **kw)
    loc = torch.zeros(d, requires_grad=True)
    log_scale = torch.zeros(d, requires_grad=True)
    ctx = torch.ones(8)
    opt = torch.optim.Adam([loc, log_scale, *post.parameters()], lr=1e-3)
    out = []
    for step in range(1, max(steps) + 1):
        q = post(loc, log_scale.exp(), ctx)
        z = q.rsample((256,))
        loss = (q.log_prob(z) - log_p(z)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step in steps:
            with torch.no_grad():
                q = post(loc, log_scale.exp(), ctx)
                z = q.sample((4000,))
                out.append(round((q.log_prob(z) - log_p(z)).mean().item(), 3))
    return out


CONFIGS = {
    "diagonal (0 flows)": (0, {}),
    "2 flows, gate bias 4, outputs x 0.1 (default)": (2, {}),
    "2 flows, gate bias 4, outputs x 1": (2, {"output_scale": 1.0}),
    "2 flows, gate bias 1, outputs x 1": (2, {"gate_bias": 1.0, "output_scale": 1.0}),
    "4 flows, gate bias 4, outputs x 0.1": (4, {}),
    "4 flows, gate bias 1, outputs x 1": (4, {"gate_bias": 1.0, "output_scale": 1.0}),
}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--steps", default="500,2000,5000")
    add_smoke_options(p, None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    folder = output_dir(args, None) if args.smoke or args.out else None
    steps = [2, 5] if args.smoke else [int(s) for s in args.steps.split(",")]
    res: dict = {}
    for name, (log_p, d, best) in {"gauss4": gauss4(), "banana": banana()}.items():
        print(name, "best diagonal KL (closed form)", best, "; KL after steps", steps, flush=True)
        res[name] = {"best_diagonal": best, "steps": steps, "fits": {}}
        for what, (n, kw) in CONFIGS.items():
            res[name]["fits"][what] = fit(log_p, d, n, steps, **kw)
            print("  ", what, res[name]["fits"][what], flush=True)
    if folder is not None:
        (folder / "iaf_toy.json").write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
