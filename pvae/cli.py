"""Command line: ``pvae train``, ``evaluate``, ``compare``, ``plot``, ``sample``.

``pvae train [--config configs/NAME.yaml] [--out runs/NAME] [--set key=value ...] [--resume]``
trains the configured model and writes a run folder::

    config.yaml      the resolved configuration
    checkpoint.pt    model, optimiser and RNG state (atomic; --resume continues it)
    features.pt      with data.features: the run's copy of the model whose codes it learns
    metrics.json     per-epoch history and the final test evaluation
    metrics.csv      the per-epoch history as a table
    curves.png  reconstructions.png  samples.png  (layer_kl.png for hierarchical models)

``--out`` must be a new or empty folder, or (with ``--resume``) a run to continue:
a folder holding other files is refused, so nothing of the user's is overwritten.

``pvae evaluate --run runs/NAME [--split S] [--num-samples K]`` writes
``evaluation-S-kK.json`` there (ELBO, importance-sampled log-likelihood,
rate/distortion, active units); ``pvae compare --config X --elbos trace,iwae:5
--epochs N --out DIR`` writes a table and a figure comparing estimators;
``pvae plot --run runs/NAME [--kind K]`` writes any figure for a trained run;
``pvae sample --run runs/NAME -n 64 [--y LABEL] [--seed S]`` writes samples as a
PNG grid and a ``.npy`` array, ``sample-n64[-yLABEL]-seedS``.

Result files are named by what made them and never replaced without
``--overwrite``; every file is written atomically (never half-written), and a
full disk or read-only folder is a one-line error naming the path.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from pvae.config import Config, ConfigError, load_config

def build_model(cfg: Config, x_shape: tuple[int, ...], num_classes: Optional[int] = None):
    """The model a config describes, for data points of shape ``x_shape``."""
    import pvae

    m = cfg.model
    common = dict(x_dim=x_shape, hidden_dims=m.hidden_dims, likelihood=m.likelihood,
                  likelihood_kwargs=m.likelihood_kwargs, beta=m.beta, activation=m.activation,
                  guide_flows=m.guide_flows)
    classes = m.num_classes or num_classes
    if m.type == "cvae" and m.y_dim:  # a vector condition
        return pvae.CVAE(z_dim=m.z_dim, y_dim=m.y_dim, learned_prior=m.learned_prior, **common)
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


def _out_folder_problem(out: Path, resume: bool) -> Optional[str]:
    """Why ``pvae train`` may not write its run into ``out`` (``None`` when it may).

    ``out`` may be new or empty; with ``resume``, a run folder (``checkpoint.pt``)
    or one whose run stopped before its first checkpoint (only ``config.yaml``,
    ``features.pt``). A folder holding anything else is the user's: refused, since
    the run would overwrite files of the same names (config.yaml, metrics.json, ...).
    """
    from pvae.train import CHECKPOINT

    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {str(out)!r} is a file, not a folder; pass --out with a new folder"
    if (out / CHECKPOINT).exists():
        return None if resume else (f"{str(out)!r} already holds a run; pass --resume to "
                                    "continue it, or --out for a new folder")
    names = sorted(p.name for p in out.iterdir()
                   if not (p.name.startswith(".") and p.name.endswith(".tmp")))
    if not names:
        return None
    stopped_early = set(names) <= {"config.yaml", FEATURES}  # a run killed before checkpoint.pt
    if resume and stopped_early:
        return None
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"{str(out)!r} holds files ({shown}) but no pvae run (no checkpoint.pt), and a run "
            "would overwrite files there (config.yaml, metrics.json, figures): pass --out with "
            "a new or empty folder"
            + (", or --resume to continue the run that stopped there before its first checkpoint"
               if stopped_early else ""))


class _Undo:
    """What a run wrote into its folder before training saved anything, to take back if it
    fails: files it created are removed, files it replaced are restored, and the folder
    itself is removed if the run created it and it is empty again. Nothing else is touched."""

    def __init__(self, out: Path) -> None:
        from pvae.train import CHECKPOINT

        self.out, self.made_folder = out, not out.exists()
        self.checkpoint = out / CHECKPOINT
        self.checkpoint_before = self._stamp()
        self.new: list[Path] = []
        self.old: dict[Path, str] = {}

    def _stamp(self):
        try:
            st = self.checkpoint.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def created(self, path: Path) -> None:
        if not path.exists():
            self.new.append(path)

    def write_text(self, path: Path, text: str) -> None:
        from pvae.checkpoint import atomic_write_text

        if path.exists():
            self.old[path] = path.read_text()
        else:
            self.new.append(path)
        atomic_write_text(path, text)

    def undo(self) -> None:
        from pvae.checkpoint import atomic_write_text

        if self._stamp() != self.checkpoint_before:
            return  # training saved a checkpoint: the folder is a run to resume, keep it
        try:
            for path in self.new:
                path.unlink(missing_ok=True)
            for path, text in self.old.items():
                atomic_write_text(path, text)
            if self.made_folder and self.out.is_dir() and not any(self.out.iterdir()):
                self.out.rmdir()
        except OSError:
            pass  # the original error is the one to report


def train_run(cfg: Config, out: Path, *, resume: bool = False,
              progress: Optional[bool] = None) -> dict:
    """Train as ``cfg`` says and write the run folder ``out``; returns metrics.json's content.

    Everything that can be checked is checked before ``out`` is created or
    written. A run refused or failed before its first checkpoint leaves ``out``
    as it found it.

    Raises
    ------
    FileExistsError
        ``out`` already holds a run (without ``resume``) or holds other files.
    ConfigError, ValueError
        A config, data or estimator the model cannot use.
    pvae.checkpoint.WriteError
        The disk is full or ``out`` is not writable (the message names the path).
    """
    import torch

    from pvae import distributed, evaluate
    from pvae.batching import as_batch_tensors
    from pvae.checkpoint import atomic_write_text, writing
    from pvae.train import CHECKPOINT, check_elbo, resume_record

    distributed.init_from_env(cfg.train.device)
    rank, world = distributed.context()
    problem = distributed.broadcast(_out_folder_problem(out, resume) if rank == 0 else None)
    if problem is not None:
        raise FileExistsError(problem)
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    data = load_data(cfg, out if resume else None)  # a resumed run keeps its codes
    if len(data.test) == 0:
        raise ConfigError("the test split is empty, and pvae train reports the test ELBO: "
                          "set data.test_fraction above 0")
    torch.manual_seed(t.seed)  # the same initial weights for the same seed
    model = build_model(cfg, data.x_shape, data.num_classes)
    # Check the data and the estimator against the model before anything is written.
    train = as_batch_tensors(data.train, model)
    model.check_data(*((data.transform(train[0]),) + train[1:] if data.transform else train))
    check_elbo(model, t.elbo, t.num_particles, t.kl_warmup)  # fit's own rule, checked now
    if resume and (out / CHECKPOINT).exists():  # a resume it would refuse: before config.yaml
        resume_record(out / CHECKPOINT, model, optimizer=t.optimizer, seed=t.seed, epochs=t.epochs)
    undo = _Undo(out) if rank == 0 else None
    try:
        if rank == 0:
            with writing(out):
                out.mkdir(parents=True, exist_ok=True)
            undo.write_text(out / "config.yaml", cfg.to_yaml())
            if data.encoder is not None and not (resume and (out / FEATURES).exists()):
                # The run keeps its own copy: retraining that model later cannot change these
                # codes (a resumed run read its codes' model from that copy).
                undo.created(out / FEATURES)
                data.encoder.save(out / FEATURES)
        train_seconds, history = _fit_run(cfg, model, data, out, resume, progress, world)
    except BaseException:
        if undo is not None:
            undo.undo()
        raise
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


def _fit_run(cfg: Config, model, data, out: Path, resume: bool, progress, world: int):
    """``fit`` as the config says, checkpointing into ``out``: (seconds, history)."""
    import torch

    from pvae.train import fit

    t = cfg.train
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
    return time.perf_counter() - t0, history


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
    written.append(sample_figure(model, data, out / "samples.png"))
    if len(getattr(model, "latent_sites", ())) > 1:
        written.append(plots.layer_kl(history, out / "layer_kl.png"))
    return written


def needs_condition(model) -> bool:
    """Whether ``model`` generates only for a given condition ``y`` (a CVAE, with class
    labels or vectors; the semi-supervised model draws its label from p(y) itself)."""
    return bool(model.conditional) and not hasattr(model, "classify")


def sample_figure(model, data, path: Path, *, points: Optional[int] = None) -> Path:
    """Samples from a run's model, drawn as its data's shape suits.

    A model with class labels on images: one row per label. Otherwise samples
    of p(x), against the test data for tables; a model that needs a condition
    (a CVAE) is given conditions drawn from the test set's (so the samples
    follow p(x) = E_y p(x | y), comparable with the data).
    """
    import torch

    from pvae import plots

    src = data.source or data
    image = src.image_shape
    num_classes = getattr(model, "num_classes", None)
    if model.conditional and num_classes and image is not None:
        return plots.conditional_samples(model, path, image_shape=image, num_classes=num_classes,
                                         decode=data.decode)
    y = None
    if needs_condition(model):
        if data.test.y is None:
            raise ValueError(f"{type(model).__name__} samples for a condition, and the run's "
                             "test data have none")
        n = 64 if image is not None else 500
        pick = torch.randint(len(data.test.y), (n,), generator=torch.Generator().manual_seed(0))
        y = data.test.y[pick]
    return plots.prior_samples(model, path, image_shape=image, data=src.test.x[:points],
                               decode=data.decode, y=y)


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
        problem = _out_folder_problem(Path(args.out), args.resume)
        if problem is not None:
            raise FileExistsError(problem)
        argv = sys.argv[1:] if args.argv is None else list(args.argv)
        i = argv.index("--nproc")
        return _launch(args.nproc, argv[:i] + argv[i + 2:])
    out = Path(args.out) if args.out else None
    if args.resume and (out is None or not out.is_dir()):
        raise FileNotFoundError(
            "--resume continues the run in an existing folder: pass --out with that folder"
            + (f" ({str(out)!r} does not exist)" if out is not None else "")
        )
    problem = _out_folder_problem(out, args.resume) if out is not None else None
    if problem is not None:  # before reading anything from the folder
        raise FileExistsError(problem)
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


def _refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    """Raise ``FileExistsError`` naming the first of ``paths`` that exists, unless ``overwrite``."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{str(existing[0])!r} already exists (an earlier result); pass "
                              "--overwrite to replace it, or change the options that name it")


def _cmd_evaluate(args) -> int:
    import torch

    from pvae import evaluate
    from pvae.batching import as_batch_tensors
    from pvae.checkpoint import atomic_write_text

    if args.num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {args.num_samples}")
    run = Path(args.run)
    out = run / f"evaluation-{args.split}-k{args.num_samples}.json"  # named by what made it
    _refuse_existing([out], args.overwrite)
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
    atomic_write_text(out, json.dumps(result, indent=2))
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
    from pvae.compare import COMPARISON_FILES, compare

    cfg = load_config(args.config, args.set)
    elbos = [e.strip() for e in args.elbos.split(",") if e.strip()]
    from pvae.elbos import make_elbo

    for e in elbos:  # every name checked before any training
        make_elbo(e, args.num_particles or (5 if e.startswith("renyi") else 1))
    epochs = args.epochs or cfg.train.epochs
    out = Path(args.out) if args.out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    _refuse_existing([out / name for name in COMPARISON_FILES], args.overwrite)
    data = load_data(cfg)
    rows = compare(
        lambda: build_model(cfg, data.x_shape, data.num_classes), data.train, elbos,
        test=data.test, epochs=epochs, batch_size=cfg.train.batch_size, lr=cfg.train.lr,
        seed=cfg.train.seed, num_particles=args.num_particles,
        num_samples=cfg.evaluate.num_samples, transform=data.transform, out=out,
        progress=False if args.quiet else None, overwrite=args.overwrite,
    )
    print((out / "comparison.md").read_text())
    print(f"wrote {out}/comparison.md, comparison.csv, comparison.png ({len(rows)} estimators)")
    return 0


PLOT_KINDS = ("curves", "reconstructions", "samples", "conditional", "latent", "interpolation",
              "traversal", "manifold", "layer_kl")
#: Test points a figure needs: two inputs to interpolate between, two to spread in a plane.
MIN_POINTS = {"latent": 2, "interpolation": 2, "reconstructions": 1, "traversal": 1}


def figure_name(kind: str, method: str = "auto") -> str:
    """The file ``pvae plot`` writes a figure of ``kind`` to (the latent scatter by method)."""
    return f"latent-{method}.png" if kind == "latent" and method != "auto" else f"{kind}.png"


def plot_run(run: Path, kinds: Sequence[str] = ("all",), *, method: str = "auto",
             points: int = 2000, overwrite: bool = False,
             report: Callable[[str], None] = print) -> list[Path]:
    """Write the figures ``kinds`` (or every one that applies, for ``all``) of a run.

    Existing figure files are kept: for ``all`` they are skipped, a figure asked
    for by name is refused (``FileExistsError``), unless ``overwrite``. Figures
    that need more test points than the run has (``MIN_POINTS``) are skipped
    for ``all`` and refused by name. ``report`` is told each figure skipped and why.
    Returns the paths written.
    """
    import torch

    from pvae import latent, plots
    from pvae.train import History

    unknown = [k for k in kinds if k not in PLOT_KINDS + ("all",)]
    if unknown:
        raise ValueError(f"unknown plot kind {unknown[0]!r}; valid: all, {', '.join(PLOT_KINDS)}")
    cfg, model, data = load_run(run)
    # A stacked run (data.features) draws in its source's space: codes decoded by the encoder
    # (data.decode is the identity for a run on the data itself).
    src, decode = data.source or data, data.decode
    image = src.image_shape
    labels_known = data.test.y is not None
    num_classes = getattr(model, "num_classes", None)
    z_dim = getattr(model, "z_dim", None) or model.z_dims[0]
    applies = {
        "curves": (run / "metrics.json").exists(),
        "reconstructions": True,
        "samples": True,
        "conditional": bool(model.conditional and num_classes) and image is not None,
        "latent": True,
        "interpolation": True,
        "traversal": True,
        "manifold": z_dim == 2,
        "layer_kl": len(getattr(model, "latent_sites", ())) > 1 and (run / "metrics.json").exists(),
    }
    every = "all" in kinds
    wanted = [k for k in PLOT_KINDS if applies[k]] if every else list(dict.fromkeys(kinds))
    for k in wanted:
        if not applies[k]:
            raise ValueError(f"plot kind {k!r} does not apply to this run "
                             f"({type(model).__name__}, z_dim={z_dim})")
    n_points = min(len(data.test), points)
    skipped = []
    for k in list(wanted):
        need = MIN_POINTS.get(k, 0)
        why = None
        if n_points < need:
            why = (f"it needs at least {need} test points and the run has {n_points} "
                   "(raise data.test_fraction, or use more data)")
        elif (run / figure_name(k, method)).exists() and not overwrite:
            why = f"{run / figure_name(k, method)} exists; pass --overwrite to redraw it"
        if why is None:
            continue
        if not every:
            error = FileExistsError if "exists" in why else ValueError
            raise error(f"cannot draw {k!r}: {why}")
        wanted.remove(k)
        skipped.append((k, why))
    for k, why in skipped:
        report(f"skipped {k}: {why}")
    x, y = data.test.x[:points], (data.test.y[:points] if labels_known else None)
    cond = y if model.takes_labels else None
    first_label = None
    if model.conditional and y is not None:  # a label, or a condition vector (y_dim)
        first_label = int(y[0]) if num_classes else y[0]
    torch.manual_seed(0)
    out: list[Path] = []
    history = History(json.loads((run / "metrics.json").read_text())["history"]) \
        if "curves" in wanted or "layer_kl" in wanted else None
    for kind in wanted:
        path = run / figure_name(kind, method)
        if kind == "curves":
            out.append(plots.training_curves(history, path,
                                             title=f"{data.name}: {type(model).__name__} training"))
        elif kind == "reconstructions":
            out.append(plots.reconstructions(model, x, path,
                                             image_shape=image, y=cond, decode=decode,
                                             originals=src.test.x[:points]))
        elif kind == "samples":
            out.append(sample_figure(model, data, path, points=points))
        elif kind == "conditional":
            out.append(plots.conditional_samples(model, path, image_shape=image,
                                                 num_classes=num_classes, decode=decode))
        elif kind == "latent":
            z = latent.encode(model, x, cond)
            coords, used = latent.embed_2d(z, method)
            labels = y if y is not None and y.dim() == 1 else None  # not condition vectors
            out.append(plots.latent_scatter(coords, path, labels=labels, method=used,
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
                out.append(plots.feature_heatmap(grid, path,
                                                 title="Interpolation: linear (top), slerp"))
            else:
                out.append(plots.image_grid(grid, image, path, ncol=10,
                                            row_labels=["linear", "slerp"],
                                            title="Interpolation between two test inputs"))
        elif kind == "traversal":
            dims = list(range(min(z_dim, 10)))
            _, dec = latent.traverse(model, x[0], dims=dims, steps=9,
                                     y=cond[0] if cond is not None else first_label)
            dec = decode(dec.flatten(0, 1)).unflatten(0, dec.shape[:2])
            out.append(plots.traversal_grid(dec, path, dims=dims, image_shape=image))
        elif kind == "manifold":
            n = 15
            _, dec = latent.manifold(model, n=n, y=first_label)
            dec = decode(dec)
            if image is None:
                out.append(plots.feature_heatmap(dec, path, title="Decoded 2-D latent grid",
                                                 ylabel="grid point"))
            else:
                out.append(plots.manifold_grid(dec, n, path, image_shape=image))
        elif kind == "layer_kl":
            out.append(plots.layer_kl(history, path))
    return out


def _cmd_plot(args) -> int:
    paths = plot_run(Path(args.run), args.kind or ["all"], method=args.method,
                     overwrite=args.overwrite)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _condition_name(text: str) -> str:
    """``--y`` as it names files: ``2.0`` and ``2`` alike are ``2``; ``0.50,1`` is ``0.5,1``."""
    try:
        return ",".join(f"{float(v):g}" for v in text.split(","))
    except ValueError:
        return text


def _cmd_sample(args) -> int:
    import numpy as np
    import torch

    from pvae import plots
    from pvae.checkpoint import atomic_write

    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    run = Path(args.run)
    # named by what made them: another seed, size or label never replaces these
    stem = f"sample-n{args.n}" + (f"-y{_condition_name(args.y)}" if args.y is not None else "") \
        + f"-seed{args.seed}"
    _refuse_existing([run / f"{stem}.npy", run / f"{stem}.png"], args.overwrite)
    cfg, model, data = load_run(run)
    y_dim = getattr(model, "y_dim", None)
    what = f"a condition of {y_dim} numbers, e.g. --y " + ",".join(["0.5"] * y_dim) if y_dim \
        else f"a label in 0..{(getattr(model, 'num_classes', None) or 1) - 1}"
    if needs_condition(model) and args.y is None:
        raise ValueError(f"{type(model).__name__} generates for a condition: pass --y, {what}")
    y = None
    if args.y is not None:
        if not model.conditional:
            raise ValueError(f"{type(model).__name__} is not conditional: drop --y")
        try:
            y = [float(v) for v in args.y.split(",")]
        except ValueError:
            y = []
        if y_dim:
            ok = len(y) == y_dim
        else:
            ok = len(y) == 1 and y[0].is_integer() and 0 <= y[0] < model.num_classes
            y = int(y[0]) if ok else None
        if not ok:
            raise ValueError(f"--y must be {what}, got {args.y!r}")
    torch.manual_seed(args.seed)
    samples = model.sample(args.n, y=y) if model.conditional else model.sample(args.n)
    samples = data.decode(samples.cpu())  # a stacked run: codes to its source's space
    src = data.source or data
    atomic_write(run / f"{stem}.npy", lambda f: np.save(f, samples.numpy()))
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

    p = sub.add_parser("evaluate", help="evaluate a trained run; writes "
                       "evaluation-SPLIT-kNUM_SAMPLES.json")
    p.add_argument("--run", required=True, help="run folder written by pvae train")
    p.add_argument("--num-samples", type=int, default=1000,
                   help="importance samples for log p(x) (default 1000)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--overwrite", action="store_true",
                   help="replace result files of the same name from an earlier run of this command")
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace result files of the same name from an earlier run of this command")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("plot", help="write figures for a trained run")
    p.add_argument("--run", required=True, help="run folder written by pvae train")
    p.add_argument("--kind", action="append", choices=("all",) + PLOT_KINDS,
                   help="a figure to write (repeatable; default: all that apply)")
    p.add_argument("--method", choices=("auto", "pca", "tsne"), default="auto",
                   help="2-D embedding for the latent scatter (default: as is for 2-D, else PCA)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace result files of the same name from an earlier run of this command")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("sample", help="draw samples from a trained run (PNG grid and .npy)")
    p.add_argument("--run", required=True, help="run folder written by pvae train")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--y", help="the condition to generate for: a label, or for a CVAE with "
                   "y_dim, comma-separated numbers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace result files of the same name from an earlier run of this command")
    p.set_defaults(func=_cmd_sample)
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    from pvae.checkpoint import WriteError
    from pvae.compare import EstimatorFailed

    try:
        return args.func(args)
    except (WriteError, EstimatorFailed) as e:  # the disk, or a failure during training
        print(f"pvae {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"pvae {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
