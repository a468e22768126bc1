"""A plain-Pyro replica of the schedule of Pyro's SS-VAE example, for comparison.

    python benchmarks/ssvae_replica.py [--labels 100] [--epochs 15] [--init tiny|default]
    python benchmarks/ssvae_replica.py --smoke [--out DIR]   # seconds, on digits at 28 x 28

Written here (not pvae code) to check whether the accuracy that Pyro's tutorial
reports for M2 (0.932 with 100 labels) comes out of its recipe in a CPU budget:
784-500-{10, 2x50, 784} softplus MLPs (hidden layers initialised N(0, 0.001)
with ``--init tiny``, as the example does), clipped softmax and sigmoid
outputs, grey-level inputs in [0, 1], the first 50,000 training images with
``--labels`` of them labelled (balanced), batch 200, Adam(lr 4.2e-4, betas
0.9/0.999) shared by ``TraceEnum_ELBO`` on the M2 objective and ``Trace_ELBO``
on the auxiliary term (weight 46), one labelled step every 50,000 / labels
steps. Prints the test accuracy of q(y|x) after each epoch and adds the curve to
variants.json and VARIANTS.md in ``--out`` (default ``benchmarks/``; a smoke run,
20 labels and one epoch: a temporary folder unless given one).
"""

from __future__ import annotations

import argparse
import sys
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.optim import Adam
from torch import nn

from common import HERE, SHARED, add_smoke_options, machine, mnist, output_dir
from pvae.nets import cat_broadcast  # a tensor helper; the model and schedule are Pyro's


def mlp(n_in: int, n_out: int, tiny: bool) -> nn.Module:
    hidden, out = nn.Linear(n_in, 500), nn.Linear(500, n_out)
    if tiny:
        nn.init.normal_(hidden.weight, 0.0, 0.001)
        nn.init.normal_(hidden.bias, 0.0, 0.001)
    return nn.Sequential(hidden, nn.Softplus(), out)


class M2(nn.Module):
    def __init__(self, tiny: bool, aux: float) -> None:
        super().__init__()
        self.classifier, self.aux = mlp(784, 10, tiny), aux
        self.encoder, self.decoder = mlp(794, 100, tiny), mlp(60, 784, tiny)

    def q_y(self, x):
        return torch.softmax(self.classifier(x), -1).clamp(1e-7, 1.0)

    def model(self, x, y=None):
        pyro.module("m2", self)
        n = x.shape[0]
        with pyro.plate("data"):
            z = pyro.sample("z", dist.Normal(x.new_zeros(n, 50), 1.0).to_event(1))
            y = pyro.sample("y", dist.OneHotCategorical(x.new_full((n, 10), 0.1)), obs=y)
            p = torch.sigmoid(self.decoder(cat_broadcast(z, y))).clamp(1e-7, 1 - 1e-7)
            pyro.sample("x", dist.Bernoulli(p, validate_args=False).to_event(1), obs=x)

    def guide(self, x, y=None):
        with pyro.plate("data"):
            if y is None:
                y = pyro.sample("y", dist.OneHotCategorical(self.q_y(x)))
            h = self.encoder(cat_broadcast(x, y))
            pyro.sample("z", dist.Normal(h[..., :50], h[..., 50:].exp()).to_event(1))

    def model_aux(self, x, y=None):
        pyro.module("m2", self)
        if y is not None:
            with pyro.plate("data"), pyro.poutine.scale(scale=self.aux):
                pyro.sample("y_aux", dist.OneHotCategorical(self.q_y(x)), obs=y)

    def guide_aux(self, x, y=None):
        pass


def grey_mnist(smoke: bool) -> tuple[torch.Tensor, ...]:
    """The first 50,000 training images and the test images as grey levels in [0, 1],
    flattened, with their labels (``smoke``: digits at 28 x 28)."""
    if smoke:
        d = mnist(flatten=True, val_fraction=0.0, smoke=True)
        return d.train.x, d.train.y, d.test.x, d.test.y
    import torchvision

    train = torchvision.datasets.MNIST(SHARED, train=True)
    test = torchvision.datasets.MNIST(SHARED, train=False)
    x, y = train.data[:50000].reshape(-1, 784).float() / 255, train.targets[:50000]
    xt, yt = test.data.reshape(-1, 784).float() / 255, test.targets
    return x, y, xt, yt


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--init", choices=["tiny", "default"], default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    add_smoke_options(p, HERE)
    given = list(argv if argv is not None else sys.argv[1:])
    a = p.parse_args(given)
    if a.smoke:
        a.labels, a.epochs = 20, 1
    folder = output_dir(a, HERE)
    if a.threads:
        torch.set_num_threads(a.threads)
    info = machine()
    print(info, flush=True)
    torch.manual_seed(a.seed)
    pyro.set_rng_seed(a.seed)
    x, y, xt, yt = grey_mnist(a.smoke)
    g = torch.Generator().manual_seed(a.seed)
    labelled = torch.cat([torch.nonzero(y == c).squeeze(-1)[
        torch.randperm(int((y == c).sum()), generator=g)[: a.labels // 10]] for c in range(10)])
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[labelled] = False
    unlabelled = torch.nonzero(keep).squeeze(-1)
    m = M2(a.init == "tiny", 46.0)
    opt = Adam({"lr": 4.2e-4, "betas": (0.9, 0.999)})
    svi = SVI(m.model, config_enumerate(m.guide, "parallel", expand=True), opt,
              TraceEnum_ELBO(max_plate_nesting=1))
    svi_aux = SVI(m.model_aux, m.guide_aux, opt, Trace_ELBO())
    period = len(y) // a.labels
    t0 = time.time()
    curve = []
    for epoch in range(a.epochs):
        ub = unlabelled[torch.randperm(len(unlabelled))].split(200)
        lb = labelled[torch.randperm(len(labelled))].split(200)
        iu = il = 0
        for i in range(len(ub) + len(lb)):
            if i % period == 1 and il < len(lb):
                idx, il = lb[il], il + 1
                onehot = F.one_hot(y[idx], 10).float()
                svi.step(x[idx], onehot)
                svi_aux.step(x[idx], onehot)
            else:
                idx, iu = ub[iu], iu + 1
                svi.step(x[idx])
        with torch.no_grad():
            acc = (m.classifier(xt).argmax(-1) == yt).float().mean().item()
        curve.append(acc)
        print(f"epoch {epoch + 1} {time.time() - t0:.0f} s test accuracy {acc:.4f}", flush=True)
    from variants import save

    key = f"{a.labels} labels, init {a.init}, seed {a.seed}, {a.epochs} epochs"
    run = {"labels": a.labels, "init": a.init, "seed": a.seed, "curve": curve,
           "minutes": (time.time() - t0) / 60}
    save({"machine": info, "ssvae_replica": {key: run},
          "commands": ["python benchmarks/ssvae_replica.py " + " ".join(given)]}, folder)
    return run


if __name__ == "__main__":
    main()
