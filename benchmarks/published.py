"""Quality at the published scale: how far a CPU budget gets.

Burda et al. (2015) report test NLL 86.76 nats (K = 5000) for a one-layer VAE,
784-200-200-50 with tanh units, on dynamically binarised MNIST after 3280
passes over the data. This trains the same architecture with pvae for a CPU
budget of epochs, records the test-ELBO curve, and scores the final model by
importance sampling with K = 5000::

    python benchmarks/published.py [--model vae|hvae] [--epochs 200] [--test-points 10000] [--k 5000]

``--model hvae`` trains the two-stochastic-layer model (z 100 and 50,
bottom-up guide, 200-200 tanh MLPs for every network; Burda et al. used
100-100 between the two stochastic layers). Each run adds to published.json.

Writes ``published.json``, ``PUBLISHED.md`` and ``published_curve.png`` into
``--out`` (default ``benchmarks/``). On a GPU (``--device cuda``) the same
script runs the full budget. ``--smoke`` trains for two epochs on 256 digits
scaled to 28 x 28 with K = 20, into a temporary folder unless ``--out`` names one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import pvae
from common import HERE, add_smoke_options, machine, mnist, output_dir, write_json

OUT, MD, PNG = "published.json", "PUBLISHED.md", "published_curve.png"  # in the output folder
TARGET = {"vae": -86.76, "hvae": -85.33}


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# Quality at the published scale: a CPU budget",
        "",
        f"Measured on {m['cpu']} ({m['cores']} cores, torch threads {m['torch_threads']}), "
        f"torch {m['torch']}, pyro {m['pyro']}. Commands: "
        + ", ".join(f"`{c}`" for c in res["commands"].values()) + ".",
        "",
        "| model | measured | epochs | train minutes | test ELBO | test log p(x), K = "
        f"{res['k']} ({res['test_points']} test images) | published target |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in res["runs"].items():
        when = r.get("machine", m)
        lines.append(f"| {r['description']} | {when['date']}, commit {when['commit']} | "
                     f"{r['epochs']} | {r['train_seconds'] / 60:.1f} | "
                     f"{r['curve'][-1][1]:.2f} | **{r['test_ll']:.2f}** | "
                     f"{TARGET[name]:.2f} (Burda et al., 3280 epochs) |")
    lines += ["", "Test ELBO (one sample per image, all 10,000 test images) during training:", ""]
    for name, r in res["runs"].items():
        pts = ", ".join(f"{e}: {v:.2f}" for e, v in r["curve"])
        lines.append(f"- {name}: {pts}")
    lines += ["", f"![curve]({PNG})", ""]
    return "\n".join(lines)


def figure(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, r in res["runs"].items():
        line, = ax.plot(*zip(*r["curve"]), marker="o", label=f"{name} test ELBO")
        ax.plot([r["epochs"]], [r["test_ll"]], marker="*", ms=12, ls="", color=line.get_color(),
                label=f"{name} test log p(x), K = {res['k']}")
        ax.axhline(TARGET[name], ls="--", color=line.get_color(), alpha=0.6,
                   label=f"{name} published log p(x)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per image")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["vae", "hvae"], default="vae")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--every", type=int, default=10, help="epochs between test-ELBO points")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--test-points", type=int, default=10000)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--plot-only", action="store_true",
                   help="redraw the figure and PUBLISHED.md from published.json")
    add_smoke_options(p, HERE)
    args = p.parse_args(argv if argv is not None else sys.argv[1:])
    if args.smoke:
        args.epochs, args.every, args.k, args.test_points = 2, 1, 20, 32
    folder = output_dir(args, HERE)
    out, md, png = folder / OUT, folder / MD, folder / PNG
    if args.plot_only:
        res = json.loads(out.read_text())
        figure(res, png)
        md.write_text(markdown(res))
        return res
    if args.threads:
        torch.set_num_threads(args.threads)
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=args.smoke)
    xt_all = pvae.data.binarize(d.test.x, torch.Generator().manual_seed(0))  # fixed test set
    xt = xt_all[: args.test_points]
    res = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    command = "python benchmarks/published.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
        if v is not None and v is not False and k not in ("out", "smoke"))
    if args.smoke:
        command += " --smoke"
    if res.get("k", args.k) != args.k or res.get("test_points", len(xt)) != len(xt):
        res = {"runs": {}}  # figures on another test set or K do not go in one table
    res.update(machine=machine(), k=args.k, test_points=len(xt))
    res.setdefault("commands", {})[args.model] = command
    torch.manual_seed(0)
    if args.model == "vae":
        model = pvae.VAE(784, 50, hidden_dims=(200, 200), activation="tanh")
        description = "VAE 784-200-200-50, tanh"
    else:
        model = pvae.HierarchicalVAE(784, (100, 50), hidden_dims=(200, 200), activation="tanh")
        description = "HierarchicalVAE z (100, 50), 200-200 tanh MLPs, bottom-up"
    curve: list = []

    def track(row):
        if row["epoch"] % args.every == 0 or row["epoch"] == args.epochs:
            with torch.random.fork_rng():  # leave training's random stream alone
                torch.manual_seed(1)
                v = pvae.evaluate.elbo(model, xt_all.to(model.device)).mean().item()
            curve.append((row["epoch"], v))
            print("epoch", row["epoch"], "test elbo", round(v, 2), flush=True)

    t0 = time.perf_counter()
    pvae.fit(model, d.train.x, epochs=args.epochs, batch_size=100, lr=1e-3, seed=0,
             transform=d.transform, device=args.device, monitor_size=1, callback=track)
    train_seconds = time.perf_counter() - t0
    torch.manual_seed(2)
    t0 = time.perf_counter()
    ll = pvae.evaluate.log_likelihood(model, xt.to(model.device), num_samples=args.k)
    res["runs"][args.model] = {
        "description": description, "epochs": args.epochs, "machine": machine(),
        "train_seconds": train_seconds, "eval_seconds": time.perf_counter() - t0,
        "curve": curve, "test_ll": ll.mean().item(),
        "test_ll_stderr": (ll.std() / len(ll) ** 0.5).item(),
    }
    write_json(out, res)
    figure(res, png)
    md.write_text(markdown(res))
    print(md.read_text())
    return res


if __name__ == "__main__":
    main()
