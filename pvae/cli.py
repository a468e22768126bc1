"""Command line: ``pvae train``, ``evaluate``, ``compare``, ``plot``, ``sample``, ``config``.

``pvae train [--config configs/NAME.yaml] [--out runs/NAME] [--set key=value ...] [--resume]``
trains the configured model and writes a run folder::

    config.yaml      the resolved configuration
    checkpoint.pt    model, optimiser and RNG state (atomic; --resume continues it)
    features.pt      with data.features: the run's copy of the model whose codes it learns
    metrics.json     per-epoch history and the final test evaluation (the log-likelihood
                     on --test-points of the test points: 2000 by default, or all)
    metrics.csv      the per-epoch history as a table
    curves.png  reconstructions.png  samples.png  (layer_kl.png for hierarchical models,
                     anomaly.png for an anomaly series)
    tensorboard/     with train.logger: tensorboard, TensorBoard's files

``--out`` must be a new or empty folder, or (with ``--resume``) a run to continue:
a folder holding other files is refused, so nothing of the user's is overwritten.

``pvae evaluate --run runs/NAME [--split S] [--num-samples K] [--points N|all]`` writes
``evaluation-S-kK-nN.json`` there (ELBO, importance-sampled log-likelihood on N points
of the split, each with its standard error, rate/distortion, active units); ``pvae compare --config X --elbos trace,iwae:5
--epochs N --out DIR`` writes a table and a figure comparing estimators;
``pvae plot --run runs/NAME [--kind K]`` writes any figure for a trained run;
``pvae sample --run runs/NAME -n 64 [--y LABEL] [--seed S]`` writes samples as a
PNG grid and a ``.npy`` array, ``sample-n64[-yLABEL]-seedS`` (sequences: a table of
text or line plots, and ``.npz`` with ``x`` and ``lengths``);
``pvae config --schema`` prints the JSON schema of the config files (for editors).

Result files are named by what made them and never replaced without
``--overwrite``; every file is written atomically (never half-written), and a
full disk or read-only folder is a one-line error naming the path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from pvae import results, runs
from pvae.config import Config, ConfigError, load_config
from pvae.figures import PLOT_KINDS


def _launch(nproc: int, argv: Sequence[str]) -> int:
    """Re-run this command under torchrun with ``nproc`` processes on this machine."""
    import subprocess

    if nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "pvae", *argv]
    return subprocess.run(cmd).returncode


def _refuse_folder(out: Path, resume: bool) -> None:
    problem = runs.out_folder_problem(out, resume)
    if problem is not None:
        raise FileExistsError(problem)


def _print_accuracy(result: dict, split: str = "") -> None:
    """The classifier's accuracy line, where the result has one (``split``: "test " or "")."""
    if "num_labelled" not in result:
        return
    if result["accuracy"] is None:
        print(f"{split}accuracy of q(y|x): undefined, no {split}point is labelled")
    else:
        print(f"{split}accuracy of q(y|x): {result['accuracy']:.4f} on "
              f"{result['num_labelled']} labelled points")


def _cmd_train(args) -> int:
    if args.nproc and args.nproc > 1:
        if args.out is None:
            raise ValueError("--nproc needs --out, so that every process writes to the same run")
        _refuse_folder(Path(args.out), args.resume)
        argv = sys.argv[1:] if args.argv is None else list(args.argv)
        i = argv.index("--nproc")
        return _launch(args.nproc, argv[:i] + argv[i + 2:])
    out = Path(args.out) if args.out else None
    if args.resume and (out is None or not out.is_dir()):
        raise FileNotFoundError(
            "--resume continues the run in an existing folder: pass --out with that folder"
            + (f" ({str(out)!r} does not exist)" if out is not None else "")
        )
    if out is not None:  # before reading anything from the folder
        _refuse_folder(out, args.resume)
    overrides = list(args.set)
    if args.test_points is not None:  # checked with the config, before anything runs
        overrides.append(f"evaluate.test_points={args.test_points}")
    cfg, config_path = runs.run_config(args.config, overrides, out, args.resume)
    out = out or runs.default_out(config_path)
    metrics = runs.train_run(cfg, out, resume=args.resume,
                             progress=False if args.quiet else None)
    if not metrics:  # not rank 0 of a distributed run
        return 0
    test = metrics["test"]
    last = metrics["history"][-1]
    before = metrics["epochs_before"]
    if before >= last["epoch"]:  # --resume of a finished run: evaluated again, not trained
        print(f"{cfg.model.type} on {cfg.data.name} had already trained for {last['epoch']} "
              "epochs (train.epochs); evaluated it again")
    else:
        print(f"trained {cfg.model.type} on {cfg.data.name} for {last['epoch']} epochs"
              + (f" ({last['epoch'] - before} in this call, resumed at epoch {before})"
                 if before else "") + f" in {metrics['train_seconds']:.1f} s")
    print(_score_line("test", test, test["num_samples"]))
    subset_line = _subset_line(test, "--test-points all")
    if subset_line:
        print(subset_line)
    _print_accuracy(test, "test ")
    if "anomaly" in metrics:  # a long series: where the model found the anomaly
        a = metrics["anomaly"]
        lo, hi = a["region"]
        print(f"anomaly: highest-scoring step {a['top_step']}, "
              f"{'inside' if a['ucr_hit'] else 'outside'} the labelled region {lo}..{hi - 1} "
              f"widened by 100 steps (the UCR criterion); ROC AUC over steps {a['roc_auc']:.3f}; "
              "anomaly.png")
    print(f"run folder: {out}")
    return 0


def _pm(value: float, se) -> str:
    """``-95.12 +- 0.31``: a mean and its standard error (none for one point)."""
    return f"{value:.2f}" + (f" +- {se:.2f}" if se is not None else "")


def _score_line(what: str, result: dict, num_samples: int) -> str:
    """ELBO and log-likelihood of an evaluation, in nats per data point (per sequence for
    sequence data, whose results also hold per-step figures), means +- standard errors,
    with bits per dim or step."""
    per = "sequence" if "log_likelihood_per_step" in result else "data point"
    n, m = result["num_points"], result.get("log_likelihood_points", result["num_points"])
    line = (f"{what} ELBO {_pm(result['elbo'], result.get('elbo_se'))} (all {n} points), "
            f"log-likelihood {_pm(result['log_likelihood'], result.get('log_likelihood_se'))} "
            f"(K = {num_samples} importance samples; "
            + (f"all {n} points" if m == n else f"{m} of the {n} points") +
            f"), nats per {per}, mean +- standard error, higher is better")
    if "bits_per_dim" in result:
        line += f"; {result['bits_per_dim']:.3f} bits/dim"
    if "bits_per_step" in result:  # text: its characters (tokens) and end events
        line += f"; {result['bits_per_step']:.3f} bits per step"
    return line


def _subset_line(result: dict, option: str) -> Optional[str]:
    """What the log-likelihood was measured on: every point, or a subset and how to ask
    for all (``option``)."""
    n, m = result["num_points"], result["log_likelihood_points"]
    if m == n:
        return None
    return (f"the log-likelihood's {m} points were chosen at random (seed "
            f"{result['subset_seed']}, the same for every run); {option} scores all {n}")


def _points_arg(text: str):
    """``--test-points`` / ``--points``: a whole number or ``all``."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive whole number of points or 'all', got {text!r}") from None


def _cmd_evaluate(args) -> int:
    result, out = results.evaluate_run(
        Path(args.run), args.split, args.num_samples,
        points="config" if args.points is None else args.points, overwrite=args.overwrite,
        progress=False if args.quiet else None)
    units = (", ".join(f"{k}: {v['active']}/{v['dims']}" for k, v in result["active_units"].items())
             if result["active_units"] is not None else result["active_units_note"])
    print(_score_line(f"{args.split}:", result, args.num_samples))
    subset_line = _subset_line(result, "--points all")
    if subset_line:
        print(subset_line)
    print(f"rate (KL) {result['rate']:.2f}, distortion {result['distortion']:.2f}; "
          f"active units {units}")
    _print_accuracy(result)
    print(f"wrote {out}")
    return 0


def _cmd_compare(args) -> int:
    overrides = list(args.set)
    if args.test_points is not None:  # checked with the config, before anything runs
        overrides.append(f"evaluate.test_points={args.test_points}")
    cfg = load_config(args.config, overrides)
    elbos = [e.strip() for e in args.elbos.split(",") if e.strip()]
    out = Path(args.out) if args.out else runs.default_out(None, prefix="compare")
    rows = results.compare_run(cfg, elbos, out, epochs=args.epochs,
                               num_particles=args.num_particles,
                               progress=False if args.quiet else None, overwrite=args.overwrite)
    print((out / "comparison.md").read_text())
    print(f"wrote {out}/comparison.md, comparison.csv, comparison.png ({len(rows)} estimators)")
    return 0


def _cmd_plot(args) -> int:
    paths = results.plot_run(Path(args.run), args.kind or ["all"], method=args.method,
                             overwrite=args.overwrite)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_sample(args) -> int:
    png, npy = results.sample_run(Path(args.run), args.n, args.y, args.seed,
                                  overwrite=args.overwrite)
    print(f"wrote {png} and {npy}")
    return 0


def _cmd_config(args) -> int:
    import json

    if not args.schema:
        raise ValueError("pass --schema to print the JSON schema of the config files")
    print(json.dumps(Config.model_json_schema(), indent=2))
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
    p.add_argument("--test-points", type=_points_arg, metavar="N|all",
                   help="test points the final log-likelihood scores (evaluate.test_points; "
                        "default: a random 2000, the same for every run, or all if fewer)")
    p.add_argument("--nproc", type=int, default=None,
                   help="train with N processes (DistributedDataParallel via torchrun); "
                        "train.batch_size is then per process")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run; writes "
                       "evaluation-SPLIT-kNUM_SAMPLES-nPOINTS.json")
    p.add_argument("--run", required=True, help="run folder written by pvae train")
    p.add_argument("--num-samples", type=int, default=1000,
                   help="importance samples for log p(x) (default 1000)")
    p.add_argument("--split", choices=["test", "val", "train"], default="test")
    p.add_argument("--points", type=_points_arg, metavar="N|all",
                   help="points of the split the log-likelihood scores, a random subset the "
                        "same for every run (default: the run's evaluate.test_points)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
    p.add_argument("--test-points", type=_points_arg, metavar="N|all",
                   help="test points each estimator's log-likelihood scores, the same random "
                        "subset for all (evaluate.test_points; default: 2000, or all if fewer)")
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

    p = sub.add_parser("sample", help="draw samples from a trained run (PNG grid and .npy; "
                                      "sequences: .npz)")
    p.add_argument("--run", required=True, help="run folder written by pvae train")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--y", help="the condition to generate for: a label, or for a CVAE with "
                   "y_dim, comma-separated numbers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace result files of the same name from an earlier run of this command")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("config", help="describe the config files")
    p.add_argument("--schema", action="store_true",
                   help="print the JSON schema of a config file (for editors' completion)")
    p.set_defaults(func=_cmd_config)
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    from pvae.checkpoint import WriteError
    from pvae.compare import EstimatorFailed

    try:
        return args.func(args)
    except (WriteError, EstimatorFailed) as e:  # the disk, or a failure during training
        print(f"pvae {args.command}: error: {e}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"pvae {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
