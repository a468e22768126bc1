"""Run folders: building, training, writing and reading them.

``pvae train`` (:func:`train_run`) writes a run folder::

    config.yaml      the resolved configuration
    checkpoint.pt    model, optimiser and RNG state (atomic; resume continues it)
    features.pt      with data.features: the run's copy of the model whose codes it learns
    metrics.json     per-epoch history and the final test evaluation: the ELBO on every
                     test point, the log-likelihood on evaluate.test_points of them (a
                     random subset, the same for every run; all with test_points: all),
                     each with its standard error; train_seconds and evaluate_seconds
                     (of this call: a resumed run's history has each epoch's seconds),
                     epochs_before (the epochs a resumed run had done before this call)
    metrics.csv      the per-epoch history as a table
    curves.png  reconstructions.png  samples.png  (layer_kl.png for hierarchical models)
    anomaly.png      an anomaly series (data.name: ucr_anomaly_135): its per-step scores;
                     metrics.json then holds "anomaly" (top step, UCR criterion, ROC AUC)
    tensorboard/     with train.logger: tensorboard, TensorBoard's files (tensorboard --logdir)

The folder must be new or empty, or (resuming) a run to continue: a folder
holding other files is refused, so nothing of the user's is overwritten, and a
run refused or failed before its first checkpoint leaves the folder as it
found it. :func:`load_run` reads a run back; :mod:`pvae.results` holds what the
other commands make of it. The command line (:mod:`pvae.cli`) only parses and
prints.
"""

from __future__ import annotations

import importlib.util

import json
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

from pvae.config import SEQUENCE_DATA, Config, ConfigError, load_config, points_to_score


def build_model(cfg: Config, x_shape: tuple[int, ...], num_classes: Optional[int] = None, *,
                vocab_size: Optional[int] = None, excluded_ids: tuple[int, ...] = ()):
    """The model a config describes, for data points of shape ``x_shape``.

    Built through the model registry (:func:`pvae.models.from_config`); its
    ``ValueError`` (e.g. a labelled model without a number of classes) is raised
    as a :class:`ConfigError`. A sequence VAE (``model.type: seqvae``) takes padded
    sequences, ``x_shape`` ``(T,)`` token ids of a ``vocab_size`` vocabulary or
    ``(T, D)`` series (:func:`pvae.run_sequences.build_seqvae`), the vocabulary's
    ``excluded_ids`` (special tokens no text holds) given probability 0.
    """
    from pvae.models import from_config

    if cfg.model.type == "seqvae":
        from pvae.run_sequences import build_seqvae

        return build_seqvae(cfg.model, tuple(x_shape), vocab_size, excluded_ids)
    try:
        return from_config(cfg.model, x_shape, num_classes)
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


FEATURES = "features.pt"  # a stacked run's copy of the model whose codes it was trained on
TENSORBOARD = "tensorboard"  # the folder of TensorBoard's files (train.logger: tensorboard)


def load_data(cfg: Config, run: Optional[Path] = None):
    """The config's data set; with ``data.features``, as that trained model's latent codes
    (from the run folder's own copy, ``features.pt``, once ``run`` has one). Sequence data:
    :func:`pvae.run_sequences.load_sequence_data`."""
    from pvae import data, latent

    d = cfg.data
    if d.name in SEQUENCE_DATA:
        from pvae.run_sequences import load_sequence_data

        return load_sequence_data(d)
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


def model_for(cfg: Config, data):
    """:func:`build_model` for the data set ``data`` (its shape, classes, vocabulary)."""
    vocab = getattr(data, "vocab", None)
    return build_model(cfg, data.x_shape, data.num_classes,
                       vocab_size=getattr(data, "vocab_size", None),
                       excluded_ids=tuple(vocab.excluded_ids) if vocab is not None else ())


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


def out_folder_problem(out: Path, resume: bool) -> Optional[str]:
    """Why ``pvae train`` may not write its run into ``out`` (``None`` when it may).

    ``out`` may be new or empty; with ``resume``, a run folder (``checkpoint.pt``)
    or one whose run stopped before its first checkpoint (only ``config.yaml``,
    ``features.pt``, ``tensorboard/``). A folder holding anything else is the user's:
    refused, since the run would overwrite files of the same names (config.yaml, ...).
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
    # a run killed before checkpoint.pt
    stopped_early = set(names) <= {"config.yaml", FEATURES, TENSORBOARD}
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
                if path.is_dir():
                    shutil.rmtree(path)
                else:
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
    from pvae.run_sequences import anomaly_report, draw_anomaly, is_windowed
    from pvae.train import CHECKPOINT, check_elbo, resume_record

    distributed.init_from_env(cfg.train.device)
    rank, world = distributed.context()
    problem = distributed.broadcast(out_folder_problem(out, resume) if rank == 0 else None)
    if problem is not None:
        raise FileExistsError(problem)
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    from pvae.run_sequences import check_model_for_data

    check_model_for_data(cfg, cfg.data.name)
    data = load_data(cfg, out if resume else None)  # a resumed run keeps its codes
    if len(data.test) == 0:
        raise ConfigError("the test split is empty, and pvae train reports the test ELBO: "
                          "set data.test_fraction above 0")
    test_points = points_to_score(cfg.evaluate.test_points, len(data.test))
    torch.manual_seed(t.seed)  # the same initial weights for the same seed
    model = model_for(cfg, data)
    # Check the data and the estimator against the model before anything is written.
    train = as_batch_tensors(data.train, model)
    model.check_data(*((data.transform(train[0]),) + train[1:] if data.transform else train))
    check_elbo(model, t.elbo, t.num_particles, t.kl_warmup,  # fit's own rule, checked now
               t.free_bits, t.kl_balance)
    logger = run_logger(cfg, data, out)  # a missing tensorboard package: before anything is written
    epochs_before = 0
    if resume and (out / CHECKPOINT).exists():  # a resume it would refuse: before config.yaml
        epochs_before = resume_record(out / CHECKPOINT, model, optimizer=t.optimizer,
                                      seed=t.seed, epochs=t.epochs)["training"]["epoch"]
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
            if logger is not None:
                undo.created(out / TENSORBOARD)
        train_seconds, history = _fit_run(cfg, model, data, out, resume, progress, world, logger)
    except BaseException:
        if undo is not None:
            undo.undo()
        raise
    if rank != 0:  # rank 0 evaluates and writes the run folder
        return {}
    t0 = time.perf_counter()
    test = evaluate.report(model, data.test, num_samples=cfg.evaluate.num_samples,
                           seed=t.seed, what="test data", points=test_points,
                           progress=progress)
    metrics = {"history": list(history), "test": test, "train_seconds": train_seconds,
               "evaluate_seconds": time.perf_counter() - t0, "processes": world,
               "epochs_before": epochs_before}
    anomaly_scores = None
    if is_windowed(data):  # a long series: the anomaly found, by the archive's criterion
        metrics["anomaly"], anomaly_scores = anomaly_report(
            model, data, cfg.evaluate.anomaly_samples, cfg.train.seed)
    model.cpu()
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    history.to_csv(out / "metrics.csv")
    write_figures(model, data, history, out)
    if anomaly_scores is not None:
        draw_anomaly(data, anomaly_scores, out / "anomaly.png")
    return metrics


def run_logger(cfg: Config, data, out: Path):
    """The run's :class:`pvae.train.logging.TensorBoardLogger` (``train.logger:
    tensorboard``), writing into ``out/tensorboard`` with the config as hyperparameters;
    ``None`` without. Raises ``ImportError`` when the tensorboard package is missing."""
    if cfg.train.logger != "tensorboard":
        return None
    import yaml

    from pvae.train.logging import INSTALL, TensorBoardLogger

    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError(f"config key 'train.logger: tensorboard' needs the tensorboard "
                          f"package: {INSTALL}, or set train.logger: none")
    config = yaml.safe_load(cfg.to_yaml())
    hparams = {f"{section}.{key}": value for section, values in config.items()
               if isinstance(values, dict) for key, value in values.items()}
    # a stacked run trains on codes: no images of them
    return TensorBoardLogger(out / TENSORBOARD, hparams=hparams,
                             image_shape=data.image_shape if data.source is None else None)


def _fit_run(cfg: Config, model, data, out: Path, resume: bool, progress, world: int,
             logger=None):
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
        model, data.train, **{**t.fit_kwargs(), "device": device}, transform=data.transform,
        # codes of a stacked run: fit draws them for the raw inputs, as for training
        validation=data.source.val if data.source is not None else data.val,
        checkpoint_dir=out, resume=resume, progress=progress, logger=logger,
    )
    return time.perf_counter() - t0, history


def write_figures(model, data, history, out: Path) -> list[Path]:
    """The basic figures of a trained run (:mod:`pvae.figures`) that apply to its model and data."""
    from pvae import figures

    view = figures.View(model, data, history)
    return [figures.draw(view, kind, out / figures.figure_name(kind))
            for kind in figures.applicable(view, basic=True)]


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
    model = model_for(cfg, data)
    pvae.load(run / "checkpoint.pt", model=model)
    return cfg, model, data


def refuse_existing(paths: Sequence[Path], overwrite: bool) -> None:
    """Raise ``FileExistsError`` naming the first of ``paths`` that exists, unless ``overwrite``."""
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{str(existing[0])!r} already exists (an earlier result); pass "
                              "--overwrite to replace it, or change the options that name it")


def default_out(config_path, prefix: str = "") -> Path:
    """A new run folder, ``runs/<config name>-<time>`` (``runs/<prefix>-<time>`` if given)."""
    stem = prefix or (Path(config_path).stem if config_path else "digits")
    return Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_config(config_path, overrides: Sequence[str], out: Optional[Path],
               resume: bool) -> tuple[Config, Optional[str]]:
    """The config of ``pvae train``: the file given, else (resuming) the run's own
    ``config.yaml``, else the embedded default; with ``overrides``. Returns it and its path."""
    if config_path is None and resume and out is not None and (out / "config.yaml").exists():
        config_path = out / "config.yaml"
    return load_config(config_path, overrides), config_path
