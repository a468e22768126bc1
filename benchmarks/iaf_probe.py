"""Diagnostics for the IAF guide (issue 21): how much can flows gain on a given decoder?

    # train the plain VAE of the iaf row and save it
    python benchmarks/iaf_probe.py plain --epochs 3 --out /work/runs/iaf/plain3.pt
    # freeze its encoder and decoder, train only IAF flows on top, compare the test ELBO
    python benchmarks/iaf_probe.py flows --load /work/runs/iaf/plain3.pt --epochs 1 \
        --output-scale 1.0

The second stage measures the part of the Gaussian guide's gap that flows can close with
the model p(x, z) held fixed (Cremer et al. 2018's approximation gap, amortised): if it is
small, a flow guide cannot gain much however it is trained; if it is large, the flows work
and any loss in joint training comes from the training dynamics.
"""

from __future__ import annotations

import argparse
import time

import torch

import pvae
from common import mnist
from pvae.flows import GaussianPosterior

Z, HIDDEN = 64, (256, 256)


def evaluate(m, xt, k: int) -> dict:
    torch.manual_seed(0)
    ll = pvae.evaluate.log_likelihood(m, xt, num_samples=k, batch_size=100).mean().item()
    torch.manual_seed(0)
    elbo = pvae.evaluate.elbo(m, xt, num_samples=100).mean().item()
    return {"ll": round(ll, 3), "elbo": round(elbo, 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stage", choices=["plain", "flows", "joint"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--load", default=None)
    p.add_argument("--flows", type=int, default=2)
    p.add_argument("--output-scale", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--attached", action="store_true", help="joint: train the encoder through h")
    p.add_argument("--frozen", action="store_true", help="joint: flows fixed at initialisation")
    p.add_argument("--cv", action="store_true",
                   help="joint: analytic KL of the base Gaussian + MC flow correction")
    p.add_argument("--no-context", action="store_true", help="joint: flows see h = 0")
    p.add_argument("--flows-from", type=int, default=0,
                   help="joint: flows frozen until this epoch, then trained")
    p.add_argument("--gate-bias", type=float, default=4.0)
    p.add_argument("--flow-hidden", type=int, default=0, help="MADE width (0: default)")
    p.add_argument("--elbo", default="trace")
    p.add_argument("--train-points", type=int, default=60000)
    p.add_argument("--test-points", type=int, default=500)
    p.add_argument("--k", type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(1)
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0)
    x, xt = d.train.x[: args.train_points], d.test.x[: args.test_points]
    torch.manual_seed(0)
    t = time.perf_counter()
    if args.stage == "plain":
        m = pvae.VAE(784, Z, hidden_dims=HIDDEN)
        pvae.fit(m, x, epochs=args.epochs, transform=d.transform, seed=0, elbo=args.elbo)
        torch.save(m.state_dict(), args.out)
        print("plain", args.epochs, args.elbo, evaluate(m, xt, args.k),
              f"{(time.perf_counter() - t) / 60:.1f} min", flush=True)
        return
    if args.stage == "joint":
        m = pvae.VAE(784, Z, hidden_dims=HIDDEN, guide_flows=args.flows)
        m.posterior = GaussianPosterior(
            Z, args.flows, HIDDEN[-1], [args.flow_hidden] * 2 if args.flow_hidden else None,
            output_scale=args.output_scale, detach_context=not args.attached,
            gate_bias=args.gate_bias, base_kl=args.cv)
        if args.no_context:
            old = m.posterior.forward
            m.posterior.forward = lambda loc, scale, h: old(loc, scale, torch.zeros_like(h))
        if args.frozen or args.flows_from:
            m.posterior.requires_grad_(False)

        def thaw(row):
            if args.flows_from and row["epoch"] == args.flows_from:
                m.posterior.requires_grad_(True)
        pvae.fit(m, x, epochs=args.epochs, transform=d.transform, seed=0, lr=args.lr,
                 callback=thaw)
        print("joint", vars(args), evaluate(m, xt, args.k),
              f"{(time.perf_counter() - t) / 60:.1f} min", flush=True)
        return
    m = pvae.VAE(784, Z, hidden_dims=HIDDEN, guide_flows=args.flows)
    m.posterior = GaussianPosterior(Z, args.flows, HIDDEN[-1], output_scale=args.output_scale)
    missing = m.load_state_dict(torch.load(args.load), strict=False)
    assert all(k.startswith("posterior.") for k in missing.missing_keys), missing
    print("flows at init", evaluate(m, xt, args.k), flush=True)
    for name, q in m.named_parameters():
        q.requires_grad_(name.startswith("posterior."))
    pvae.fit(m, x, epochs=args.epochs, transform=d.transform, seed=0, lr=args.lr)
    print("flows only", args.flows, args.output_scale, args.lr, evaluate(m, xt, args.k),
          f"{(time.perf_counter() - t) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
