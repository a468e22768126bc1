"""Command line: ``pvae train``, ``evaluate``, ``compare``, ``plot``, ``sample``.

``pvae train [--config configs/NAME.yaml] [--out runs/NAME] [--set key=value ...] [--resume]``
trains the configured model and writes a run folder::

    config.yaml      the resolved configuration
    checkpoint.pt    model, optimiser and RNG state (atomic; --resume continues it)
    features.pt      with data.features: the run's copy of the model whose codes it learns
    metrics.json     per-epoch history and the final test evaluation
    metrics.csv      the per-epoch history as a table
    curves.png  reconstructions.png  samples.png  (layer_kl.png for hierarchical models)

``pvae evaluate --run runs/NAME [--num-samples K]`` writes ``evaluation.json``
there (ELBO, importance-sampled log-likelihood, rate/distortion, active units);
``pvae compare --config X --elbos trace,iwae:5 --epochs N --out DIR`` writes a
table and a figure comparing estimators; ``pvae plot --run runs/NAME [--kind K]``
writes any figure for a trained run; ``pvae sample --run runs/NAME -n 64 [--y LABEL]``
writes samples as a PNG grid and a ``.npy`` array.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from pvae.config import Config, ConfigError, load_config

def build_model(cfg: Config, x_shape: tuple[int, ...], num_classes: Optional[int] = None):
    """The model a config describes, for data points of shape ``x_shape``."""
    import pvae

    m = cfg.model
    common = dict(x_dim=x_shape, hidden_dims=m.hidden_dims, likelihood=m.likelihood,
                  likelihood_kwargs=m.likelihood_kwargs, beta=m.beta, activation=m.activation,
                  guide_flows=m.guide_flows)
    classes = m.num_classes or num_classes
    if m.type in ("cvae", "ssvae") and not classes:
        raise ConfigError(f"model.type {m.type} needs labels: set model.num_classes, "
                          "or use a data set with labels")
    if m.type == "vae":
        return pvae.VAE(z_dim=m.z_dim, arch=m.arch, **common)
    if m.type == "cvae":
        return pvae.CVAE(z_dim=m.z_dim, num_classes=classes, learned_prior=m.learned_prior,
                         **common)
    if m.type == "ssvae":
        return pvae.SemiSupervisedVAE(num_classes=classes, z_dim=m.z_dim,
                                      aux_weight=m.aux_weight, batching=m.batching,
                                      balance_weight=m.balance_weight, **common)
    return pvae.HierarchicalVAE(z_dims=m.z_dims, guide=m.guide, **common)


FEATURES = "features.pt"  # a stacked run's copy of the model whose codes it was trained on


def load_data(cfg: Config, run: Optional[Path] = None):
    """The config's data set; with ``data.features``, as that trained model's latent codes
    (from the run folder's own copy, ``features.pt``, once ``run`` has one)."""
    from pvae import data, latent

    d = cfg.data
    encoder = None
    if d.features:
        copy = run / FEATURES if run is not None else None
        encoder = load_features(str(copy) if copy is not None and copy.exists() else d.features)
    loaded = data.load(
        d.name, root=d.root, path=d.path, download=d.download, binarize=d.binarize,
        flatten=d.flatten, val_fraction=d.val_fraction, test_fraction=d.test_fraction,
        max_train=d.max_train, num_labelled=d.num_labelled, seed=d.seed,
    )
    return latent.code_data(loaded, encoder) if encoder is not None else loaded


def load_features(path: str):
    """The trained model of ``data.features``: a run folder of ``pvae train`` or a checkpoint."""
    import pvae

    p = Path(path)
    file = p / "checkpoint.pt" if p.is_dir() else p
    if not file.exists():
        raise ConfigError(
            f"config key 'data.features': {path!r} is neither a run folder with checkpoint.pt "
            "nor a checkpoint file; train that model first (e.g. pvae train --config "
            "configs/mnist_m1.yaml --out runs/mnist_m1) and give its folder")
    return pvae.load(file)


def train_run(cfg: Config, out: Path, *, resume: bool = False,
              progress: Optional[bool] = None) -> dict:
    """Train as ``cfg`` says and write the run folder ``out``; returns metrics.json's content."""
    import torch

    from pvae import distributed, evaluate
    from pvae.checkpoint import atomic_write_text
    from pvae.batching import as_batch_tensors
    from pvae.train import CHECKPOINT, fit, resume_record

    distributed.init_from_env(cfg.train.device)
    rank, world = distributed.context()
    if (out / CHECKPOINT).exists() and not resume:
        raise FileExistsError(
            f"{str(out)!r} already holds a run; pass --resume to continue it, "
            "or --out for a new folder"
        )
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    data = load_data(cfg, out if resume else None)  # a resumed run keeps its codes
    torch.manual_seed(t.seed)  # the same initial weights for the same seed
    model = build_model(cfg, data.x_shape, data.num_classes)
    # Check the data against the model before anything is written.
    train = as_batch_tensors(data.train, model)
    model.check_data(*((data.transform(train[0]),) + train[1:] if data.transform else train))
    if resume and (out / CHECKPOINT).exists():  # a resume it would refuse: before config.yaml
        resume_record(out / CHECKPOINT, model, optimizer=t.optimizer, seed=t.seed)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", cfg.to_yaml())
        if data.encoder is not None and not (resume and (out / FEATURES).exists()):
            # The run keeps its own copy: retraining that model later cannot change these codes
            # (a resumed run read its codes' model from that copy).
            data.encoder.save(out / FEATURES)
    device = t.device
    if world > 1 and str(device).startswith("cuda"):
        device = f"cuda:{torch.cuda.current_device()}"
    if data.encoder is not None:  # codes are drawn where the model trains
        data.encoder.to(device)
    t0 = time.perf_counter()
    history = fit(
        model, data.train, elbo=t.elbo, epochs=t.epochs, batch_size=t.batch_size, lr=t.lr,
        lr_steps=t.lr_steps, lr_factor=t.lr_factor,
        num_particles=t.num_particles, kl_warmup=t.kl_warmup, clip_norm=t.clip_norm,
        seed=t.seed, device=device, transform=data.transform,
        # codes of a stacked run: fit draws them for the raw inputs, as for training
        validation=data.source.val if data.source is not None else data.val,
        optimizer=t.optimizer, checkpoint_dir=out, checkpoint_every=t.checkpoint_every,
        resume=resume, progress=progress,
    )
    train_seconds = time.perf_counter() - t0
    if rank != 0:  # rank 0 evaluates and writes the run folder
        return {}
    test = tuple(v.to(model.device) for v in (data.test.x, data.test.y) if v is not None)
    test = model.evaluation_batch(test if model.takes_labels else test[:1])
    torch.manual_seed(t.seed)
    k = cfg.evaluate.num_samples
    elbo = evaluate.elbo(model, test).mean().item()
    ll = evaluate.log_likelihood(model, test, num_samples=k).mean().item()
    metrics = {
        "history": list(history),
        "test": {
            "elbo": elbo,
            "log_likelihood": ll,
            "num_samples": k,
            "num_points": len(data.test),
        },
        "train_seconds": train_seconds,
    }
    if model.likelihood.discrete:  # bits/dim is meaningful for probabilities, not densities
        metrics["test"]["bits_per_dim"] = evaluate.bits_per_dim(-ll, data.x_shape)
    if hasattr(model, "classify") and data.test.y is not None:
        # on the labelled test points only (None when there are none), and how many there were
        probs = model.classify(data.test.x.to(model.device)).cpu()
        metrics["test"].update(evaluate.accuracy(probs, data.test.y))
    metrics["processes"] = world
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    history.to_csv(out / "metrics.csv")
    model.cpu()
    write_figures(model, data, history, out)
    return metrics


def write_figures(model, data, history, out: Path) -> list[Path]:
    """The basic figures of a trained run, chosen for the model and the data."""
    from pvae import plots

    written = [plots.training_curves(history, out / "curves.png",
                                     title=f"{data.name}: {type(model).__name__} training")]
    labels = data.test.y if model.takes_labels else None
    # A stacked run's figures are in its source's space: codes decoded by the encoder
    # (data.decode is the identity for a run on the data itself).
    src, decode = data.source or data, data.decode
    written.append(plots.reconstructions(model, data.test.x, out / "reconstructions.png",
                                         image_shape=src.image_shape, y=labels, decode=decode,
                                         originals=src.test.x))
    if model.takes_labels and src.image_shape is not None:
        written.append(plots.conditional_samples(model, out / "samples.png",
                                                 image_shape=src.image_shape,
                                                 num_classes=model.num_classes or 10,
                                                 decode=decode))
    else:
        written.append(plots.prior_samples(model, out / "samples.png",
                                           image_shape=src.image_shape, data=src.test.x,
                                           decode=decode))
    if len(getattr(model, "latent_sites", ())) > 1:
        written.append(plots.layer_kl(history, out / "layer_kl.png"))
    return written


def _launch(nproc: int, argv: Sequence[str]) -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this machine."""
    import subprocess

    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "pvae", *argv]
    return subprocess.run(cmd).returncode


def _cmd_train(args) -> int:
    if args.nproc and args.nproc > 1:
        if args.out is None:
            raise ValueError("--nproc needs --out, so that every process writes to the same run")
        argv = sys.argv[1:] if args.argv is None else list(args.argv)
        i = argv.index("--nproc")
        return _launch(args.nproc, argv[:i] + argv[i + 2:])
    out = Path(args.out) if args.out else None
    if args.resume and (out is None or not out.is_dir()):
        raise FileNotFoundError(
            "--resume continues the run in an existing folder: pass --out with that folder"
            + (f" ({str(out)!r} does not exist)" if out is not None else "")
        )
    config_path = args.config
    if config_path is None and args.resume and out is not None and (out / "config.yaml").exists():
        config_path = out / "config.yaml"
    cfg = load_config(config_path, args.set)
    if out is None:
        stem = Path(config_path).stem if config_path else "digits"
        out = Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics = train_run(cfg, out, resume=args.resume, progress=False if args.quiet else None)
    if not metrics:  # not rank 0 of a distributed run
        return 0
    test = metrics["test"]
    last = metrics["history"][-1]
    print(f"trained {cfg.model.type} on {cfg.data.name} for {last['epoch']} epochs "
          f"in {metrics['train_seconds']:.1f} s")
    line = (f"test ELBO {test['elbo']:.2f}, log-likelihood {test['log_likelihood']:.2f} "
            f"({test['num_samples']} importance samples), nats per data point, higher is better")
    if "bits_per_dim" in test:
        line += f"; {test['bits_per_dim']:.3f} bits/dim"
    print(line)
    if "num_labelled" in test:
        print(f"test accuracy of q(y|x): {test['accuracy']:.4f} on {test['num_labelled']} "
              "labelled points" if test["accuracy"] is not None
              else "test accuracy of q(y|x): undefined, no test point is labelled")
    print(f"run folder: {out}")
    return 0


def load_run(run: Path):
    """The config, model and data of a run folder written by ``pvae train``."""
    import pvae

    if not (run / "config.yaml").exists() or not (run / "checkpoint.pt").exists():
        raise FileNotFoundError(
            f"{str(run)!r} is not a run folder (it needs config.yaml and checkpoint.pt, "
            "as pvae train writes them)"
        )
    cfg = load_config(run / "config.yaml")
    data = load_data(cfg, run)
    model = build_model(cfg, data.x_shape, data.num_classes)
    pvae.load(run / "checkpoint.pt", model=model)
    return cfg, model, data


def _cmd_evaluate(args) -> int:
    import torch

    from pvae import evaluate
    from pvae.batching import as_batch_tensors

    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    run = Path(args.run)
    cfg, model, data = load_run(run)
    split = getattr(data, args.split)
    if split is None:
        raise ValueError(f"the run's data has no {args.split} split")
    batch = model.evaluation_batch(as_batch_tensors(split, model, f"{args.split} data"))
    torch.manual_seed(0)
    t0 = time.perf_counter()
    elbo = evaluate.elbo(model, batch, num_samples=10)
    ll = evaluate.log_likelihood(model, batch, num_samples=args.num_samples)
    diag = evaluate.diagnostics(model, batch)
    result = {
        "split": args.split, "num_points": len(split), "num_samples": args.num_samples,
        "elbo": elbo.mean().item(), "log_likelihood": ll.mean().item(),
        "distortion": diag["distortion"], "rate": diag["rate"],
        **{k: v for k, v in diag.items() if k.startswith("rate_")},
        "active_units": None if diag["active_units"] is None else
        {k: {"active": v["active"], "dims": v["dims"]} for k, v in diag["active_units"].items()},
        "kl_per_dim": {k: (v.tolist() if v is not None else None)
                       for k, v in diag["kl_per_dim"].items()},
        "seconds": time.perf_counter() - t0,
    }
    if diag["active_units"] is None:
        result["active_units_note"] = (f"undefined on {len(split)} point(s): a variance over the "
                                       "data needs at least 2")
    if model.likelihood.discrete:
        result["bits_per_dim"] = evaluate.bits_per_dim(-result["log_likelihood"], data.x_shape)
    if hasattr(model, "classify") and getattr(split, "y", None) is not None:
        result.update(evaluate.accuracy(model.classify(batch[0]).cpu(), split.y))
    out = run / "evaluation.json"
    out.write_text(json.dumps(result, indent=2))
    units = (", ".join(f"{k}: {v['active']}/{v['dims']}" for k, v in result["active_units"].items())
             if result["active_units"] is not None else result["active_units_note"])
    print(f"{args.split}: ELBO {result['elbo']:.2f}, log-likelihood {result['log_likelihood']:.2f} "
          f"({args.num_samples} importance samples), nats per data point, higher is better")
    print(f"rate (KL) {result['rate']:.2f}, distortion {result['distortion']:.2f}; "
          f"active units {units}")
    if "num_labelled" in result:
        print(f"accuracy of q(y|x): {result['accuracy']:.4f} on {result['num_labelled']} labelled "
              "points" if result["accuracy"] is not None else
              "accuracy of q(y|x): undefined, no point is labelled")
    print(f"wrote {out}")
    return 0


def _cmd_compare(args) -> int:
    from pvae.compare import compare

    cfg = load_config(args.config, args.set)
    elbos = [e.strip() for e in args.elbos.split(",") if e.strip()]
    from pvae.elbos import make_elbo

    for e in elbos:  # every name checked before any training
        make_elbo(e, args.num_particles or (5 if e.startswith("renyi") else 1))
    epochs = args.epochs or cfg.train.epochs
    out = Path(args.out) if args.out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    data = load_data(cfg)
    rows = compare(
        lambda: build_model(cfg, data.x_shape, data.num_classes), data.train, elbos,
        test=data.test, epochs=epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr,
        seed=cfg.train.seed, num_particles=args.num_particles,
        num_samples=cfg.evaluate.num_samples, transform=data.transform, out=out,
        progress=False if args.quiet else None,
    )
    print((out / "comparison.md").read_text())
    print(f"wrote {out}/comparison.md, comparison.csv, comparison.png ({len(rows)} estimators)")
    return 0


PLOT_KINDS = ("curves", "reconstructions", "samples", "conditional", "latent", "interpolation",
              "traversal", "manifold", "layer_kl")


def plot_run(run: Path, kinds: Sequence[str] = ("all",), *, method: str = "auto",
             points: int = 2000) -> list[Path]:
    """Write the figures ``kinds`` (or every one that applies, for ``all``) of a run."""
    import torch

    from pvae import latent, plots
    from pvae.batching import History

    unknown = [k for k in kinds if k not in PLOT_KINDS + ("all",)]
    if unknown:
        raise ValueError(f"unknown plot kind {unknown[0]!r}; valid: all, {', '.join(PLOT_KINDS)}")
    cfg, model, data = load_run(run)
    # A stacked run (data.features) draws in its source's space: codes decoded by the encoder
    # (data.decode is the identity for a run on the data itself).
    src, decode = data.source or data, data.decode
    image = src.image_shape
    labels_known = data.test.y is not None
    z_dim = getattr(model, "z_dim", None) or model.z_dims[0]
    applies = {
        "curves": (run / "metrics.json").exists(),
        "reconstructions": True,
        "samples": True,
        "conditional": model.conditional and image is not None,
        "latent": True,
        "interpolation": True,
        "traversal": True,
        "manifold": z_dim == 2,
        "layer_kl": len(getattr(model, "latent_sites", ())) > 1,
    }
    wanted = [k for k in PLOT_KINDS if applies[k]] if "all" in kinds else list(kinds)
    for k in wanted:
        if not applies[k]:
            raise ValueError(f"plot kind {k!r} does not apply to this run "
                             f"({type(model).__name__}, z_dim={z_dim})")
    x, y = data.test.x[:points], (data.test.y[:points] if labels_known else None)
    cond = y if model.takes_labels else None
    first_label = int(y[0]) if (model.conditional and y is not None) else None
    torch.manual_seed(0)
    out: list[Path] = []
    history = History(json.loads((run / "metrics.json").read_text())["history"]) \
        if applies["curves"] else None
    for kind in wanted:
        if kind == "curves":
            out.append(plots.training_curves(history, run / "curves.png",
                                             title=f"{data.name}: {type(model).__name__} training"))
        elif kind == "reconstructions":
            out.append(plots.reconstructions(model, x, run / "reconstructions.png",
                                             image_shape=image, y=cond, decode=decode,
                                             originals=src.test.x[:points]))
        elif kind == "samples":
            if model.conditional and image is not None:
                out.append(plots.conditional_samples(model, run / "samples.png", image_shape=image,
                                                     num_classes=model.num_classes or 10,
                                                     decode=decode))
            else:
                out.append(plots.prior_samples(model, run / "samples.png", image_shape=image,
                                               data=src.test.x[:points], decode=decode))
        elif kind == "conditional":
            out.append(plots.conditional_samples(model, run / "conditional.png",
                                                 image_shape=image,
                                                 num_classes=model.num_classes or 10,
                                                 decode=decode))
        elif kind == "latent":
            z = latent.encode(model, x, cond)
            coords, used = latent.embed_2d(z, method)
            out.append(plots.latent_scatter(coords, run / "latent.png", labels=y, method=used,
                                            title=f"{data.name}: test set in latent space"))
        elif kind == "interpolation":
            ya, yb = (cond[0], cond[1]) if cond is not None else (None, None)
            rows = []
            for how in ("linear", "slerp"):
                _, dec = latent.interpolate(model, x[0], x[1], steps=10, method=how,
                                            y_a=ya, y_b=yb, y=first_label if ya is None else ya)
                rows.append(decode(dec))
            grid = torch.cat(rows)
            if image is None:
                out.append(plots.feature_heatmap(grid, run / "interpolation.png",
                                                 title="Interpolation: linear (top), slerp"))
            else:
                out.append(plots.image_grid(grid, image, run / "interpolation.png", ncol=10,
                                            row_labels=["linear", "slerp"],
                                            title="Interpolation between two test inputs"))
        elif kind == "traversal":
            dims = list(range(min(z_dim, 10)))
            _, dec = latent.traverse(model, x[0], dims=dims, steps=9,
                                     y=cond[0] if cond is not None else first_label)
            dec = decode(dec.flatten(0, 1)).unflatten(0, dec.shape[:2])
            out.append(plots.traversal_grid(dec, run / "traversal.png", dims=dims,
                                            image_shape=image))
        elif kind == "manifold":
            n = 15
            _, dec = latent.manifold(model, n=n, y=first_label)
            dec = decode(dec)
            if image is None:
                out.append(plots.feature_heatmap(dec, run / "manifold.png",
                                                 title="Decoded 2-D latent grid", ylabel="grid point"))
            else:
                out.append(plots.manifold_grid(dec, n, run / "manifold.png", image_shape=image))
        elif kind == "layer_kl":
            out.append(plots.layer_kl(history, run / "layer_kl.png"))
    return out


def _cmd_plot(args) -> int:
    paths = plot_run(Path(args.run), args.kind or ["all"], method=args.method)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_sample(args) -> int:
    import numpy as np
    import torch

    from pvae import plots

    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    run = Path(args.run)
    cfg, model, data = load_run(run)
    if model.conditional and args.y is None and not hasattr(model, "classify"):
        raise ValueError(f"{type(model).__name__} generates for a condition: pass --y LABEL")
    if args.y is not None:
        if not model.conditional:
            raise ValueError(f"{type(model).__name__} is not conditional: drop --y")
        if not 0 <= args.y < (model.num_classes or 0):
            raise ValueError(f"--y must be a label in 0..{(model.num_classes or 1) - 1}")
    torch.manual_seed(args.seed)
    samples = model.sample(args.n, y=args.y) if model.conditional else model.sample(args.n)
    samples = data.decode(samples.cpu())  # a stacked run: codes to its source's space
    src = data.source or data
    stem = f"sample-n{args.n}" + (f"-y{args.y}" if args.y is not None else "")
    np.save(run / f"{stem}.npy", samples.numpy())
    if src.image_shape is not None:
        plots.image_grid(samples, src.image_shape, run / f"{stem}.png",
                         title=f"{args.n} samples" + (f" for y={args.y}" if args.y is not None
                                                      else " from the prior"))
    else:
        plots.feature_histograms(src.test.x, samples, run / f"{stem}.png")
    print(f"wrote {run / (stem + '.png')} and {run / (stem + '.npy')}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pvae", description="Variational autoencoders in Pyro.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a model and write a run folder")
    p.add_argument("--config", help="YAML config (default: the embedded digits set-up)")
    p.add_argument("--out", help="run folder (default: runs/<config>-<time>)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--nproc", type=int, default=None,
                   help="train with N processes (DistributedDataParallel via torchrun); "
                        "train.batch_size is then per process")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run; writes evaluation.json")
    p.add_argument("--run", required=True, help="run folder written by pvae train")
    p.add_argument("--num-samples", type=int, default=1000,
                   help="importance samples for log p(x) (default 1000)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("compare", help="train one model per ELBO estimator and compare them")
    p.add_argument("--config", help="YAML config (default: the embedded digits set-up)")
    p.add_argument("--elbos", default="trace,meanfield,tracegraph,renyi:0.5,iwae:5",
                   help="comma-separated estimators (default: %(default)s)")
    p.add_argument("--epochs", type=int, help="epochs per estimator (default: the config's)")
    p.add_argument("--num-particles", type=int,
                   help="particles for every estimator (default 1; 5 for renyi; iwae:K sets K)")
    p.add_argument("--out", help="output folder (default: runs/compare-<time>)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("plot", help="write figures for a trained run")
    p.add_argument("--run", required=True, help="run folder written by pvae train")
    p.add_argument("--kind", action="append", choices=("all",) + PLOT_KINDS,
                   help="a figure to write (repeatable; default: all that apply)")
    p.add_argument("--method", choices=("auto", "pca", "tsne"), default="auto",
                   help="2-D embedding for the latent scatter (default: as is for 2-D, else PCA)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("sample", help="draw samples from a trained run (PNG grid and .npy)")
    p.add_argument("--run", required=True, help="run folder written by pvae train")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--y", type=int, help="the label to generate (conditional models)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sample)
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    try:
        return args.func(args)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"pvae {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
