"""What the commands make of a trained run: evaluations, samples, figures, comparisons.

``pvae evaluate``, ``pvae sample``, ``pvae plot`` and ``pvae compare`` call
these; every result file is named by what made it and never replaced without
``overwrite`` (:func:`pvae.runs.refuse_existing`), and written atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence, Union

from pvae.config import Config
from pvae.runs import load_data, load_run, model_for, refuse_existing


def evaluation_file(run: Path, split: str, num_samples: int, points: int) -> Path:
    """The file ``pvae evaluate`` writes, named by what made it: the split, the importance
    samples K and the points the log-likelihood scored (``evaluation-test-k1000-n2000.json``)."""
    return run / f"evaluation-{split}-k{num_samples}-n{points}.json"


def evaluate_run(run: Path, split: str = "test", num_samples: int = 1000, *,
                 points: Union[int, str, None, Literal["config"]] = "config",
                 overwrite: bool = False, progress: Optional[bool] = False) -> tuple[dict, Path]:
    """Evaluate a run on one split and write :func:`evaluation_file`; (result, path).

    The result is :func:`pvae.evaluate.report` with diagnostics (nats per data
    point), with ``split`` and ``seconds``. ``points``: how many of the split's points
    the log-likelihood scores (:func:`pvae.config.points_to_score`): a number,
    ``"all"``, ``None`` for at most :data:`pvae.config.DEFAULT_TEST_POINTS`, or
    ``"config"`` for the run's ``evaluate.test_points``. ``progress``: a progress bar
    during the log-likelihood (``None``: when stderr is a terminal).

    Raises
    ------
    ValueError
        ``num_samples < 1``, a bad ``points`` (:class:`pvae.config.ConfigError`) or more
        points than the split holds, or the run's data have no such split; before any
        estimate.
    FileExistsError
        The file exists and ``overwrite`` is false.
    FileNotFoundError
        ``run`` is not a run folder.
    """
    from pvae import evaluate
    from pvae.checkpoint import atomic_write_text
    from pvae.config import check_points, points_to_score

    if num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {num_samples}")
    if points != "config":
        check_points(points, "--points")
    cfg, model, data = load_run(run)
    part = getattr(data, split)
    if part is None:
        raise ValueError(f"the run's data has no {split} split")
    n = points_to_score(cfg.evaluate.test_points if points == "config" else points, len(part),
                        "config key 'evaluate.test_points'" if points == "config" else "--points")
    out = evaluation_file(run, split, num_samples, n)
    refuse_existing([out], overwrite)
    t0 = time.perf_counter()
    result = {"split": split, **evaluate.report(model, part, num_samples=num_samples,
                                                elbo_samples=10, seed=0, diagnostics=True,
                                                what=f"{split} data", points=n,
                                                progress=progress)}
    result["seconds"] = time.perf_counter() - t0
    atomic_write_text(out, json.dumps(result, indent=2))
    return result, out


def _condition_name(text: str) -> str:
    """``--y`` as it names files: ``2.0`` and ``2`` alike are ``2``; ``0.50,1`` is ``0.5,1``."""
    try:
        return ",".join(f"{float(v):g}" for v in text.split(","))
    except ValueError:
        return text


def sample_stem(n: int, y: Optional[str], seed: int) -> str:
    """The name (without suffix) of ``pvae sample``'s files: another seed, size or label
    never replaces them."""
    return f"sample-n{n}" + (f"-y{_condition_name(y)}" if y is not None else "") + f"-seed{seed}"


def _parse_condition(model, text: Optional[str]):
    """``--y`` for ``model``: a label (int), a condition vector (list), or ``None``."""
    from pvae.figures import needs_condition

    y_dim = getattr(model, "y_dim", None)
    what = f"a condition of {y_dim} numbers, e.g. --y " + ",".join(["0.5"] * y_dim) if y_dim \
        else f"a label in 0..{(getattr(model, 'num_classes', None) or 1) - 1}"
    if needs_condition(model) and text is None:
        raise ValueError(f"{type(model).__name__} generates for a condition: pass --y, {what}")
    if text is None:
        return None
    if "y" not in model.batch_parts:
        raise ValueError(f"{type(model).__name__} is not conditional: drop --y")
    try:
        y = [float(v) for v in text.split(",")]
    except ValueError:
        y = []
    if y_dim:
        ok = len(y) == y_dim
    else:
        ok = len(y) == 1 and y[0].is_integer() and 0 <= y[0] < model.num_classes
        y = int(y[0]) if ok else None
    if not ok:
        raise ValueError(f"--y must be {what}, got {text!r}")
    return y


def sample_run(run: Path, n: int = 64, y: Optional[str] = None, seed: int = 0, *,
               overwrite: bool = False) -> tuple[Path, Path]:
    """Draw ``n`` samples of a run (for the condition ``y``, as ``--y`` gives it) and write
    them as a PNG grid (tables: histograms) and a ``.npy`` array; returns (png, npy).
    A sequence run writes ``.npz`` (``x``, ``lengths``; text also as ``text``) and draws
    text as a table, series as line plots.

    Raises
    ------
    ValueError
        ``n < 1``; ``y`` missing for a model that needs it, given for one that
        takes none, or not a valid label / condition.
    FileExistsError
        The files exist and ``overwrite`` is false.
    """
    import numpy as np
    import torch

    from pvae import plots
    from pvae.checkpoint import atomic_write

    if n < 1:
        raise ValueError(f"-n must be >= 1, got {n}")
    stem = sample_stem(n, y, seed)
    npy, png = run / f"{stem}.npy", run / f"{stem}.png"
    if (run / "config.yaml").exists() and _sequence_run(run):
        npy = run / f"{stem}.npz"  # padded sequences and their lengths
    refuse_existing([npy, png], overwrite)
    cfg, model, data = load_run(run)
    label = _parse_condition(model, y)
    if "lengths" in model.batch_parts:
        torch.manual_seed(seed)
        return _sequence_samples(model, data, n, png, npy)
    torch.manual_seed(seed)
    samples = model.sample(n, y=label) if "y" in model.batch_parts else model.sample(n)
    samples = data.decode(samples.cpu())  # a stacked run: codes to its source's space
    src = data.source or data
    atomic_write(npy, lambda f: np.save(f, samples.numpy()))
    if src.image_shape is not None:
        plots.image_grid(samples, src.image_shape, png,
                         title=f"{n} samples" + (f" for y={y}" if y is not None
                                                 else " from the prior"))
    else:
        plots.feature_histograms(src.test.x, samples, png)
    return png, npy


def _sequence_run(run: Path) -> bool:
    from pvae.config import load_config

    return load_config(run / "config.yaml").model.type == "seqvae"


def _sequence_samples(model, data, n: int, png: Path, npz: Path) -> tuple[Path, Path]:
    """Sequences from a sequence model: ``x`` and ``lengths`` in ``npz``; text as a table
    of strings (and their ``text`` in ``npz``), series as line plots, in ``png``."""
    import numpy as np

    from pvae import sequence_plots
    from pvae.checkpoint import atomic_write

    x, lengths = (t.cpu() for t in model.sample(n))
    arrays = {"x": x.numpy(), "lengths": lengths.numpy()}
    if not x.is_floating_point():
        vocab = getattr(data, "vocab", None)
        text = (list(vocab.decode(x, lengths)) if vocab is not None else
                [" ".join(str(int(t)) for t in row[:k]) for row, k in zip(x, lengths)])
        arrays["text"] = np.array(text)
        sequence_plots.text_table({"sample": text}, png, max_rows=n,
                                  title=f"{n} samples from the prior")
    else:
        sequence_plots.sequence_lines(x, lengths, png, max_series=min(n, 16),
                                      title=f"{n} samples from the prior (the first "
                                            f"{min(n, 16)} drawn)")
    atomic_write(npz, lambda f: np.savez(f, **arrays))
    return png, npz


def compare_run(cfg: Config, elbos: Sequence[str], out: Path, *, epochs: Optional[int] = None,
                num_particles: Optional[int] = None, progress: Optional[bool] = None,
                overwrite: bool = False) -> list[dict]:
    """``pvae compare``: one model per estimator, as ``cfg`` says; the table and figure in
    ``out`` (:func:`pvae.compare.compare`, which checks every estimator, the data and the
    output files before the first estimator trains)."""
    from pvae.compare import compare
    from pvae.config import points_to_score

    data = load_data(cfg)
    test_points = (None if data.test is None else
                   points_to_score(cfg.evaluate.test_points, len(data.test)))
    return compare(
        lambda: model_for(cfg, data), data.train, elbos,
        test=data.test, epochs=epochs or cfg.train.epochs, batch_size=cfg.train.batch_size,
        lr=cfg.train.lr, seed=cfg.train.seed, num_particles=num_particles,
        num_samples=cfg.evaluate.num_samples, test_points=test_points,
        transform=data.transform, out=out, progress=progress, overwrite=overwrite,
    )


def _plot_choice(view, run: Path, kinds: Sequence[str], method: str, overwrite: bool,
                 report: Callable[[str], None]) -> list[str]:
    """The kinds ``pvae plot`` draws: every one that applies for ``all`` (skipping, and
    reporting, those that cannot be drawn), else those named (refusing any that cannot)."""
    from pvae.figures import KINDS, applicable, figure_name

    every = "all" in kinds
    fits = applicable(view)
    wanted = fits if every else list(dict.fromkeys(kinds))
    for k in wanted:
        if k not in fits:
            raise ValueError(f"plot kind {k!r} does not apply to this run "
                             f"({type(view.model).__name__}, z_dim={view.z_dim})")
    n_points = min(len(view.data.test), view.points)
    chosen = []
    for k in wanted:
        need, path = KINDS[k].min_points, run / figure_name(k, method)
        why = None
        if n_points < need:
            why = (f"it needs at least {need} test points and the run has {n_points} "
                   "(raise data.test_fraction, or use more data)")
        elif path.exists() and not overwrite:
            why = f"{path} exists; pass --overwrite to redraw it"
        if why is None:
            chosen.append(k)
        elif not every:
            error = FileExistsError if "exists" in why else ValueError
            raise error(f"cannot draw {k!r}: {why}")
        else:
            report(f"skipped {k}: {why}")
    return chosen


def plot_run(run: Path, kinds: Sequence[str] = ("all",), *, method: str = "auto",
             points: int = 2000, overwrite: bool = False,
             report: Callable[[str], None] = print) -> list[Path]:
    """Write the figures ``kinds`` (or every one that applies, for ``all``) of a run.

    Existing figure files are kept: for ``all`` they are skipped, a figure asked
    for by name is refused (``FileExistsError``), unless ``overwrite``. Figures
    that need more test points than the run has (each kind's ``min_points`` in :data:`pvae.figures.KINDS`)
    are skipped for ``all`` and refused by name (``ValueError``), as is a kind
    that does not apply to the run. ``report`` is told each figure skipped and
    why. Returns the paths written.
    """
    import torch

    from pvae import figures
    from pvae.train import History

    unknown = [k for k in kinds if k not in figures.PLOT_KINDS + ("all",)]
    if unknown:
        raise ValueError(f"unknown plot kind {unknown[0]!r}; valid: all, "
                         f"{', '.join(figures.PLOT_KINDS)}")
    cfg, model, data = load_run(run)
    metrics = run / "metrics.json"
    history = (lambda: History(json.loads(metrics.read_text())["history"])) \
        if metrics.exists() else None
    view = figures.View(model, data, history, points=points, method=method,
                        anomaly=(cfg.evaluate.anomaly_samples, cfg.train.seed))
    chosen = _plot_choice(view, run, kinds, method, overwrite, report)
    torch.manual_seed(0)
    return [figures.draw(view, k, run / figures.figure_name(k, method)) for k in chosen]
