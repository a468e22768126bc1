"""A hand-written PyTorch VAE: the yardstick for pvae's speed and quality.

Same architecture as ``pvae.VAE(784, z_dim, hidden_dims=(h,))`` (MLP encoder
x -> h -> (loc, softplus scale), MLP decoder z -> h -> Bernoulli logits), the
same ELBO (analytic KL like ``meanfield``, or single-sample Monte Carlo KL
like ``trace``), the same optimiser (Adam over all parameters), the same
in-memory batching (index a shuffled permutation). Written here for the
benchmark; it is not part of the library. ``run.py`` imports it; alone it trains
the reference and prints its seconds per epoch and test ELBO::

    python benchmarks/reference.py [--epochs 1] [--kl analytic|mc] [--out DIR]
    python benchmarks/reference.py --smoke [--out DIR]   # seconds, on digits

writing ``reference.json`` into ``--out`` when one is given (a smoke run: a
temporary folder unless given one).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class ReferenceVAE(nn.Module):
    """``likelihood``: ``"bernoulli"`` (logits) or ``"gaussian"`` with one learned scale per
    feature (softplus, floor 1e-3), as ``pvae.VAE(..., likelihood="gaussian")``: the table
    model ``ReferenceVAE(12, 3, 64, "gaussian")``."""

    def __init__(self, x_dim: int = 784, z_dim: int = 20, hidden: int = 400,
                 likelihood: str = "bernoulli"):
        super().__init__()
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        self.likelihood = likelihood
        self.enc = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * z_dim))
        self.dec = nn.Sequential(nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, x_dim))
        if likelihood == "gaussian":
            self.raw_scale = nn.Parameter(torch.full((x_dim,), 0.5413))

    def log_px(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per data point (nats)."""
        out = self.dec(z)
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        scale = F.softplus(self.raw_scale) + 1e-3
        return (-0.5 * ((x - out) / scale) ** 2 - torch.log(scale)
                - 0.5 * math.log(2 * math.pi)).sum(-1)

    def elbo(self, x: torch.Tensor, analytic_kl: bool = True) -> torch.Tensor:
        """Per data point."""
        loc, raw = self.enc(x).chunk(2, -1)
        scale = F.softplus(raw) + 1e-4
        eps = torch.randn_like(loc)
        z = loc + scale * eps
        rec = self.log_px(x, z)
        if analytic_kl:
            kl = (-torch.log(scale) + 0.5 * (scale**2 + loc**2) - 0.5).sum(-1)
        else:
            log_q = (-0.5 * eps**2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)
            log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
            kl = log_q - log_p
        return rec - kl


def train_reference(model: ReferenceVAE, x: torch.Tensor, *, epochs: int, batch_size: int,
                    lr: float = 1e-3, analytic_kl: bool = True, seed: int = 0,
                    transform=None, fused: bool = False) -> list[float]:
    """Train; returns seconds per epoch."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, **({"fused": True} if fused else {}))
    seconds = []
    n = len(x)
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n, device=x.device)  # indices where the data are
        for i in range(math.ceil(n / batch_size)):
            xb = x[perm[i * batch_size : (i + 1) * batch_size]]
            if transform is not None:
                xb = transform(xb)
            loss = -model.elbo(xb, analytic_kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    return seconds


def main(argv=None) -> dict:
    """Train the reference on binarised MNIST (``--smoke``: digits at 28 x 28) and report
    seconds per epoch and the test ELBO (nats per image, 10 samples)."""
    from common import add_smoke_options, machine, mnist, output_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--kl", choices=["analytic", "mc"], default="analytic")
    add_smoke_options(p, None)
    given = list(argv if argv is not None else sys.argv[1:])
    args = p.parse_args(given)
    out = output_dir(args, None)
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=args.smoke)
    torch.manual_seed(0)
    model = ReferenceVAE()
    seconds = train_reference(model, d.train.x, epochs=args.epochs, batch_size=args.batch_size,
                              analytic_kl=args.kl == "analytic", transform=d.transform)
    with torch.no_grad():
        torch.manual_seed(1)
        test_elbo = torch.stack([model.elbo(d.test.x, args.kl == "analytic")
                                 for _ in range(10)]).mean().item()
    result = {"machine": machine(), "command": "python benchmarks/reference.py " + " ".join(given),
              "train_images": len(d.train.x), "seconds_per_epoch": seconds,
              "test_elbo": test_elbo}
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    if out is not None:
        (out / "reference.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
