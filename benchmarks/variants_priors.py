"""The ``priors`` section of benchmarks/variants.py: the VAE with its standard prior
against the VampPrior and a mixture of Gaussians, at the same budget.

    python benchmarks/variants.py --only priors --epochs 30 --seeds 0 --threads 1

Each run: ``pvae.VAE(784, 40, hidden_dims=(300, 300), prior=...)`` (Tomczak &
Welling 2018's sizes, without their gated layers), dynamically binarised MNIST
(all 60,000 training images), batch 100, Adam 1e-3, ``elbo="trace"`` for every
prior (the learned priors' KL is Monte Carlo; the standard prior uses the same
estimator so that only the prior differs), the seed fixing initialisation and
data order. Test log-likelihood: importance-sampled with K samples on the first
test images (``--k``, ``--test-points``). Every (prior, seed) is kept as its own
entry of ``variants.json``, so runs in several processes add up.
"""

from __future__ import annotations

import numpy as np
import torch

import pvae

#: The priors compared, with their number of components (None: the standard prior).
PRIORS = {"standard": None, "vamp": 500, "mog": 10}
Z_DIM, HIDDEN = 40, (300, 300)


def key(prior: str, k, seed: int, epochs: int) -> str:
    return f"{prior}{f' K={k}' if k else ''}, {epochs} epochs, seed {seed}"


def bench_priors(args, res, *, mnist, fit_timed, test_ll, save) -> None:
    """Train each prior of ``args.priors`` for ``args.epochs`` per seed; record test LL."""
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=args.smoke)
    xt = d.test.x[: args.test_points]
    out = res.setdefault("priors", {})
    for seed in args.seeds:
        for prior in args.priors.split(","):
            k = PRIORS[prior]
            if args.smoke and k:
                k = 20
            torch.manual_seed(seed)
            m = pvae.VAE(784, Z_DIM, hidden_dims=HIDDEN, prior=prior, prior_components=k)
            h, secs = fit_timed(m, d.train.x, epochs=args.epochs, batch_size=100,
                                transform=d.transform, seed=seed)
            diag = pvae.evaluate.parts(m, xt, 10)
            active = pvae.evaluate.active_units(m, xt)["z"]["active"]
            out[key(prior, k, seed, args.epochs)] = {
                "prior": prior, "components": k, "seed": seed, "epochs": args.epochs,
                "train_seconds": secs, "final_train_elbo": h[-1]["train_elbo"],
                "test_ll": test_ll(m, xt, args.k), "test_elbo": diag["elbo"].mean().item(),
                "test_kl": diag["kl"].mean().item(), "active_units": active,
                "test_points": len(xt), "num_samples": args.k}
            save(res, args.folder)  # each run kept as it completes


def markdown(res) -> list[str]:
    """The section's lines: per prior, each seed's figures and the mean gain over the
    standard prior at the same epochs and seed."""
    runs = list(res.get("priors", {}).values())
    if not runs:
        return []
    first = runs[0]
    lines = ["", "## Learned priors: VampPrior and mixture of Gaussians against N(0, I)", "",
             f"`pvae.VAE(784, {Z_DIM}, hidden_dims={HIDDEN}, prior=...)`, dynamically "
             "binarised MNIST (60,000 training images), batch 100, Adam 1e-3, `elbo='trace'` "
             "for every prior, no KL warm-up; the seed fixes initialisation and data order. "
             f"Test log p(x): importance-sampled, K = {first['num_samples']}, on the first "
             f"{first['test_points']} test images; test ELBO and KL (rate): 10 samples per "
             "image; active units: posterior-mean variance > 0.01. Target (issue 21): the "
             "VampPrior beats the standard prior's test log-likelihood at the same budget.",
             "", "| prior | epochs | seed | test log p(x) | gain over standard | test ELBO | "
             "KL | active units | train minutes |", "| --- | --- | --- | --- | --- | --- | "
             "--- | --- | --- |"]
    base = {(r["epochs"], r["seed"]): r["test_ll"] for r in runs if r["prior"] == "standard"}
    gains: dict = {}
    for r in sorted(runs, key=lambda r: (r["epochs"], list(PRIORS).index(r["prior"]), r["seed"])):
        b = base.get((r["epochs"], r["seed"]))
        gain = "" if b is None else f"{r['test_ll'] - b:+.2f}"
        if b is not None and r["prior"] != "standard":
            gains.setdefault((r["prior"], r["components"], r["epochs"]), []).append(
                r["test_ll"] - b)
        name = r["prior"] + (f" (K = {r['components']})" if r["components"] else "")
        lines.append(f"| {name} | {r['epochs']} | {r['seed']} | {r['test_ll']:.2f} | {gain} | "
                     f"{r['test_elbo']:.2f} | {r['test_kl']:.2f} | {r['active_units']} / "
                     f"{Z_DIM} | {r['train_seconds'] / 60:.1f} |")
    if gains:
        lines += [""] + [f"- {p} (K = {k}), {e} epochs: mean gain over the standard prior "
                         f"{np.mean(g):+.2f} nats over {len(g)} seed(s)"
                         + (f" (per seed {', '.join(f'{v:+.2f}' for v in g)})" if len(g) > 1
                            else "") for (p, k, e), g in sorted(gains.items())]
    return lines
