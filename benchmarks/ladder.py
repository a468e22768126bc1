"""The Ladder VAE rows of ``benchmarks/VARIANTS.md`` (issue 21, items 2 and 6).

Two sections, both run through ``benchmarks/variants.py``:

``--only ladder``
    Scores the four long runs at one budget, trained by ``pvae train`` from
    ``configs/ladder_{flat,bottom_up,top_down,top_down5}.yaml`` into run folders
    ``ladder_NAME`` under ``--ladder-runs`` (finished or not: an unfinished run
    is scored at its last checkpoint, and the table says how many epochs it had).
    Per run: importance-sampled test log-likelihood (K = ``--k`` on the first
    ``--test-points`` test images), the test ELBO, the KL of each layer and its
    active units (Burda et al. 2015: Cov_x E_q[z_d | x] > 0.01) on those images,
    the train-ELBO curve and the minutes of training.
``--only ladder_small``
    The issue's small budget (20,000 training images, 10 epochs, batch 100,
    784-400-32 networks, z (32, 16)), trained here: the one-layer VAE and both
    guides as they were (no normalisation) and with ``norm="layer"``, each with
    every KL warm-up of ``--ladder-warmups`` (epochs; 0 is none).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

import pvae
from pvae import checkpoint as ckpt
from pvae.runs import load_run

#: run name -> what it is (the configs' names: configs/ladder_NAME.yaml)
RUNS = {
    "flat": "1 layer, z 64",
    "bottom_up": "2 layers, z (64, 32), bottom-up guide",
    "top_down": "2 layers, z (64, 32), Ladder (top-down) guide",
    "top_down5": "5 layers, z (64, 32, 16, 8, 4), Ladder guide",
}


def per_layer(model, x) -> tuple[dict, dict]:
    """KL (nats, Monte Carlo over 10 draws) and active units of each latent layer on ``x``."""
    import warnings

    with warnings.catch_warnings():  # a collapsed layer is reported in the table
        warnings.simplefilter("ignore", UserWarning)
        d = pvae.evaluate.diagnostics(model, x, num_samples=10, batch_size=500)
    kl = {k[5:]: v for k, v in d.items() if k.startswith("rate_")}
    au = {k: f"{v['active']}/{v['dims']}" for k, v in d["active_units"].items()}
    return kl, au


def score(model, xt, k: int) -> dict:
    torch.manual_seed(0)
    ll = pvae.evaluate.log_likelihood(model, xt, num_samples=k, batch_size=100).mean().item()
    torch.manual_seed(0)
    elbo = pvae.evaluate.elbo(model, xt, num_samples=1, batch_size=500).mean().item()
    kl, au = per_layer(model, xt)
    return {"test_ll": ll, "test_elbo": elbo, "kl": kl, "active_units": au}


def score_run(folder: Path, k: int, test_points: int) -> dict:
    """One ``pvae train`` run folder, at its last checkpoint."""
    cfg, model, data = load_run(folder)
    history = ckpt.read(folder / "checkpoint.pt")["training"]["history"]
    xt = data.test.x[:test_points]
    t = time.perf_counter()
    out = score(model, xt, k)
    out.update(
        epochs_done=len(history), epochs=cfg.train.epochs, finished=(folder / "metrics.json").exists(),
        train_minutes=sum(r["seconds"] for r in history) / 60, score_minutes=(time.perf_counter() - t) / 60,
        curve={r["epoch"]: round(r["train_elbo"], 2) for r in history if r["epoch"] % 5 == 0},
        folder=str(folder), test_points=len(xt), num_samples=k,
        config=f"configs/ladder_{folder.name.removeprefix('ladder_')}.yaml")
    return out


def bench_ladder(args, res) -> None:
    out = res.setdefault("ladder", {})
    root = Path(args.ladder_runs)
    for name in RUNS:
        folder = root / f"ladder_{name}"
        if not (folder / "checkpoint.pt").exists():
            print("ladder: no checkpoint yet in", folder, flush=True)
            continue
        out[name] = score_run(folder, args.k, args.test_points)
        print("ladder", name, out[name], flush=True)


#: latent sizes of the small-budget hierarchies by guide name (``top_down5``: five layers)
SMALL_Z = {"bottom_up": (32, 16), "top_down": (32, 16), "top_down5": (64, 32, 16, 8, 4)}


#: options of a small-budget name that go to ``pvae.fit`` (the others to the model)
FIT_OPTIONS = {"elbo": str, "free_bits": float}


def small_models(name: str):
    """The issue's small-budget models (784-400 networks) and their ``pvae.fit`` options:
    ``flat`` (z 32) or ``GUIDE/NORM[/KEY=VALUE...]``, GUIDE one of :data:`SMALL_Z`, KEY
    ``merge`` (``HierarchicalVAE(merge=...)``) or one of :data:`FIT_OPTIONS`. ``ValueError``
    for another key."""
    if name == "flat":
        return pvae.VAE(784, 32, hidden_dims=(400,)), {}
    guide, norm, *items = name.split("/")
    model_kw, fit_kw = {}, {}
    for key, _, value in (item.partition("=") for item in items):
        if key == "merge":
            model_kw[key] = value
        elif key in FIT_OPTIONS:
            fit_kw[key] = FIT_OPTIONS[key](value)
        else:
            raise ValueError(f"--ladder-small: unknown option {key!r} in {name!r}; valid: "
                             f"merge, {', '.join(FIT_OPTIONS)}")
    return pvae.HierarchicalVAE(784, SMALL_Z[guide], hidden_dims=(400,), guide=guide.rstrip("5"),
                                norm=norm, **model_kw), fit_kw


def bench_ladder_small(args, res, mnist, save) -> None:
    """Train and score the small-budget models; ``save()`` keeps each row as it completes."""
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=args.smoke)
    x, xt = d.train.x[: args.ladder_small_n], d.test.x[: args.test_points]
    out = res.setdefault("ladder_small", {})
    for name in args.ladder_small.split(","):
        for warmup in args.ladder_warmups:
            torch.manual_seed(0)
            m, fit_kw = small_models(name)
            t = time.perf_counter()
            h = pvae.fit(m, x, epochs=args.epochs, batch_size=100, transform=d.transform, seed=0,
                         kl_warmup=warmup, **fit_kw)
            row = score(m, xt, args.k)
            row.update(train_minutes=(time.perf_counter() - t) / 60, warmup=warmup,
                       model=name, epochs=args.epochs, train_images=len(x), test_points=len(xt),
                       num_samples=args.k, final_train_elbo=h[-1]["train_elbo"],
                       epoch1_train_elbo=h[0]["train_elbo"])
            out[f"{name}, warm-up {warmup:g}, {args.epochs} epochs, {len(x)} images"] = row
            print("ladder_small", name, warmup, row, flush=True)
            save()


def _fmt(d: dict, digits: int = 1) -> str:
    return ", ".join(f"{k}: {v:.{digits}f}" if isinstance(v, float) else f"{k}: {v}"
                     for k, v in d.items())


def markdown(res) -> list[str]:
    """The ladder sections of VARIANTS.md."""
    lines: list[str] = []
    if "ladder_small" in res:
        lines += ["", "## Ladder VAE: the fault and its fix at the issue's small budget", "",
                  "784-400-32 networks (z (32, 16) for two layers), the first training images "
                  "(20,000 in the issue), batch 100, Adam 1e-3, seed 0, dynamic binarisation, elbo "
                  "`trace`; `norm` is `HierarchicalVAE(norm=...)`, warm-up is `pvae.fit("
                  "kl_warmup=...)` in epochs. Test log-likelihood with K importance samples on "
                  "the first test images; KL (nats) and active units per layer on those images.",
                  "", "| model | norm | images x epochs | warm-up | test log p(x) | test ELBO | epoch-1 train ELBO "
                  "| KL per layer | active units | K, test images | train minutes |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in res["ladder_small"].values():
            model, _, norm = r["model"].partition("/")
            norm, _, opts = norm.partition("/")
            model += f", z {SMALL_Z[model]}" if model in SMALL_Z else ""
            model += "".join(f", {o.replace('=', ' ')}" for o in opts.split("/") if o)
            lines.append(f"| {model} | {norm or 'none'} | {r['train_images']} x {r['epochs']} | "
                         f"{r['warmup']:g} | {r['test_ll']:.2f} | "
                         f"{r['test_elbo']:.2f} | {r['epoch1_train_elbo']:.2f} | {_fmt(r['kl'])} | "
                         f"{_fmt(r['active_units'])} | {r['num_samples']}, {r['test_points']} | "
                         f"{r['train_minutes']:.1f} |")
    if "ladder" in res:
        rows = res["ladder"]
        lines += ["", "## Ladder VAE against the bottom-up hierarchy and the one-layer VAE", "",
                  "One budget (`configs/ladder_*.yaml`): dynamically binarised MNIST, all 60,000 "
                  "training images, 100 epochs, batch 100, Adam 1e-3 times 0.3 after epochs 60 "
                  "and 85, KL warm-up over 10 epochs, seed 0, elbo `trace`; 784-256-256 "
                  "networks with layer normalisation in every model. Trained by `PYTHONPATH=. "
                  "nice -n 10 python -m pvae train --config configs/ladder_NAME.yaml --out "
                  "RUNS/ladder_NAME --set data.root=/work/shared/data` (continue with `--resume`), "
                  "one thread each, four at once on the shared 2-core machine; scored by "
                  "`python benchmarks/variants.py --only ladder --ladder-runs RUNS`. An "
                  "unfinished run is scored at its last checkpoint (the epochs column).", "",
                  "| model | epochs done | test log p(x) | gain over 1 layer | test ELBO | KL per "
                  "layer | active units | train ELBO every 5 epochs | train minutes |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        base = rows.get("flat", {}).get("test_ll")
        for name, what in RUNS.items():
            if name not in rows:
                continue
            r = rows[name]
            gain = f"{r['test_ll'] - base:+.2f}" if base is not None else ""
            curve = ", ".join(f"{v:.1f}" for v in r["curve"].values())
            lines.append(f"| {what} | {r['epochs_done']}/{r['epochs']} | {r['test_ll']:.2f} | "
                         f"{gain} | {r['test_elbo']:.2f} | {_fmt(r['kl'])} | "
                         f"{_fmt(r['active_units'])} | {curve} | {r['train_minutes']:.0f} |")
        any_row = next(iter(rows.values()))
        lines += ["", f"K = {any_row['num_samples']} on the first {any_row['test_points']} test "
                  "images. The train ELBO of epochs 1-10 is weighted by the warm-up (its KL "
                  "weight rises to 1 at epoch 10), so those figures are above the true ELBO. Active units: Cov_x "
                  "E_q[z_d | x] > 0.01 on the same test images."]
    return lines
