"""Compare ELBO estimators on the same model/guide pair, data, seed and budget.

``compare(model_factory, data, elbos=[...])`` builds a fresh model for each
estimator from the same seed (so every estimator starts from the same
weights), trains it with :func:`pvae.fit`, and measures: the final train
objective, the test ELBO and importance-sampled test log-likelihood, the
gradient signal-to-noise ratio per parameter group at the end of training,
and seconds per optimiser step. With ``out=`` it writes ``comparison.md``,
``comparison.csv`` and ``comparison.png`` (the training curves).
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from pvae import evaluate
from pvae.gradients import gradient_stats
from pvae.train import check_elbo, fit

COLUMNS = ["elbo", "final_train_objective", "test_elbo", "test_log_likelihood",
           "test_log_likelihood_se", "test_points", "snr_encoder", "snr_decoder",
           "seconds_per_step", "epochs", "error"]
#: The files ``compare(out=...)`` writes in its folder.
COMPARISON_FILES = ("comparison.md", "comparison.csv", "comparison.png")


class EstimatorFailed(RuntimeError):
    """One or more estimators failed while training; the others' rows are in ``rows``
    (and in ``out``'s files) and each failed one has a row with its ``error``."""

    def __init__(self, message: str, rows: list[dict]) -> None:
        super().__init__(message)
        self.rows = rows


def _particles(spec: str, num_particles: Optional[int]) -> int:
    if num_particles is not None:
        return num_particles
    return 5 if spec.startswith("renyi") else 1  # Renyi needs several particles


def _check_first(model_factory, data, elbos, *, seed, num_particles, snr_estimates, transform,
                 out, overwrite, test, test_points) -> None:
    """Everything :func:`compare` refuses, checked before any estimator trains: the
    options, the output files, the data and every estimator (by ``fit``'s own rules)."""
    from pvae.batching import as_batch_tensors

    if not elbos:
        raise ValueError("pass at least one estimator in elbos")
    if not (isinstance(snr_estimates, int) and snr_estimates >= 2):  # before any training
        raise ValueError(f"snr_estimates must be an int >= 2 (a variance over repeated "
                         f"estimates), got {snr_estimates!r}")
    if out is not None and not overwrite:
        existing = [Path(out) / f for f in COMPARISON_FILES if (Path(out) / f).exists()]
        if existing:
            raise FileExistsError(f"{str(existing[0])!r} already exists; pass overwrite=True "
                                  "(--overwrite) to replace it, or another out folder")
    if test_points is not None and test is None:
        raise ValueError("test_points needs test data: pass test=, or leave test_points None")
    torch.manual_seed(seed)
    probe = model_factory()
    if test_points is not None:  # 1..N test points, as evaluate.report takes them
        evaluate.subset(as_batch_tensors(test, probe, "test data")[0].shape[0], test_points)
    # The data and every estimator checked by fit's own rules before the first trains.
    train = as_batch_tensors(data, probe)
    probe.check_data(*((transform(train[0]),) + train[1:] if transform else train))
    for spec in elbos:
        try:
            check_elbo(probe, spec, _particles(spec, num_particles))
        except ValueError as e:
            raise ValueError(f"estimator {spec!r}: {e} (nothing was trained)") from None


def compare(
    model_factory: Callable[[], object],
    data,
    elbos: Sequence[str] = ("trace", "meanfield", "tracegraph", "renyi:0.5", "iwae:5"),
    *,
    test=None,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    num_particles: Optional[int] = None,
    num_samples: int = 100,
    test_points: Optional[int] = None,
    snr_estimates: int = 20,
    snr_points: int = 64,
    transform=None,
    out: Optional[Union[str, os.PathLike]] = None,
    progress: Optional[bool] = False,
    overwrite: bool = False,
) -> list[dict]:
    """Train one model per estimator under the same seed and budget; a row per estimator.

    Parameters
    ----------
    model_factory
        Builds a fresh model (called after seeding, once per estimator).
    data, test
        Training data and (optional) test data, in any form ``pvae.fit`` takes.
    elbos
        Estimator names (``trace``, ``meanfield``, ``tracegraph``, ``enum``,
        ``renyi:ALPHA``, ``iwae:K``, ``iwae_dreg:K``, ...).
    num_particles
        Particles for every estimator; default 1, and 5 for ``renyi``
        (``iwae:K`` sets its own).
    num_samples
        Importance samples for the test log-likelihood.
    test_points
        Score the test log-likelihood on this many test points, the same random
        subset for every estimator (:func:`pvae.evaluate.subset`), with its
        standard error in ``test_log_likelihood_se``; ``None``: every test point.
        The test ELBO always takes every point.
    snr_estimates, snr_points
        Repeated gradient estimates on a batch of ``snr_points`` training points
        for the signal-to-noise ratio.
    out
        Folder for ``comparison.md``, ``comparison.csv`` and ``comparison.png``,
        rewritten as each estimator finishes (so finished rows survive a later
        failure or interruption).
    overwrite
        Replace those files if ``out`` already holds them; otherwise that is refused.

    Returns
    -------
    list[dict]
        One row per estimator: the columns above (nats per data point; seconds;
        ``test_points`` is how many points the log-likelihood scored).

    Raises
    ------
    ValueError
        Before any training, if the data or any estimator is refused for the
        model (the rules ``pvae.fit`` applies, e.g. ``meanfield`` on a guide with
        flows), or ``test_points`` outside ``1..len(test)``.
    FileExistsError
        ``out`` holds comparison files and ``overwrite`` is false.
    EstimatorFailed
        After every other estimator has run, if one failed while training; its
        ``rows`` hold every row, the failed ones with an ``error``.
    """
    _check_first(model_factory, data, elbos, seed=seed, num_particles=num_particles,
                 snr_estimates=snr_estimates, transform=transform, out=out, overwrite=overwrite,
                 test=test, test_points=test_points)
    rows, histories, failed = [], {}, []
    for spec in elbos:
        try:
            row, histories[spec] = _run_one(
                spec, model_factory, data, test, epochs=epochs, batch_size=batch_size, lr=lr,
                seed=seed, num_particles=_particles(spec, num_particles),
                num_samples=num_samples, test_points=test_points, snr_estimates=snr_estimates,
                snr_points=snr_points, transform=transform, progress=progress)
        except Exception as e:  # noqa: BLE001 - keep the finished rows, report this one
            failed.append(spec)
            row = {"elbo": spec, "epochs": epochs,
                   "error": f"{type(e).__name__}: {e}".splitlines()[0]}
        rows.append(row)
        if out is not None:
            write_comparison(rows, histories, Path(out))
    if failed:
        where = f"; every row is in {str(Path(out) / 'comparison.md')!r}" if out else ""
        raise EstimatorFailed(
            f"{len(failed)} of {len(rows)} estimators failed while training ("
            + "; ".join(f"{r['elbo']}: {r['error']}" for r in rows if "error" in r) + f"){where}",
            rows)
    return rows


def _run_one(spec: str, model_factory, data, test, *, epochs, batch_size, lr, seed,
             num_particles, num_samples, test_points, snr_estimates, snr_points, transform,
             progress):
    """Train and measure one estimator: (its row, its history)."""
    from pvae.batching import as_batch_tensors

    k = num_particles
    torch.manual_seed(seed)
    model = model_factory()
    t0 = time.perf_counter()
    history = fit(model, data, elbo=spec, epochs=epochs, batch_size=batch_size, lr=lr,
                  seed=seed, num_particles=k, transform=transform, progress=progress)
    seconds = time.perf_counter() - t0
    train = as_batch_tensors(data, model)
    steps = model.num_steps(train, batch_size, False) * epochs
    snr_batch = model.evaluation_batch(tuple(t[:snr_points] for t in train))
    if transform is not None:
        snr_batch = (transform(snr_batch[0]),) + snr_batch[1:]
    torch.manual_seed(seed)
    snr = gradient_stats(model, snr_batch, [spec], num_estimates=snr_estimates,
                         num_particles=k)[spec]
    row = {"elbo": spec, "final_train_objective": history[-1]["train_elbo"],
           "snr_encoder": snr.get("encoder", {}).get("snr", math.nan),
           "snr_decoder": snr.get("decoder", {}).get("snr", math.nan),
           "seconds_per_step": sum(r["seconds"] for r in history) / steps,
           "train_seconds": seconds, "epochs": epochs}
    if test is not None:
        scores = evaluate.report(model, test, num_samples=num_samples, seed=seed,
                                 what="test data", points=test_points, progress=progress)
        row.update(test_elbo=scores["elbo"], test_log_likelihood=scores["log_likelihood"],
                   test_log_likelihood_se=scores["log_likelihood_se"],
                   test_points=scores["log_likelihood_points"])
    return row, history


def write_comparison(rows: list[dict], histories: dict, out: Path) -> list[Path]:
    """``comparison.md``, ``comparison.csv`` and ``comparison.png`` in ``out``."""
    from pvae import plots
    from pvae.checkpoint import atomic_write_text

    cols = [c for c in COLUMNS if any(c in r for r in rows)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "comparison.csv", buf.getvalue())

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    note = ("\nNats per data point; higher ELBO / log-likelihood is better. The test "
            "log-likelihood scores `test_points` test points (a random subset, the same for "
            "every estimator; `test_log_likelihood_se` its standard error), the test ELBO all. "
            "`final_train_objective` is each estimator's own bound (IWAE/Renyi bounds are "
            "tighter than the ELBO), `snr_*` is the mean |mean|/std of gradient coordinates "
            "over repeated estimates at the end of training.\n")
    atomic_write_text(out / "comparison.md", "\n".join(lines) + "\n" + note)
    plots.estimator_curves(histories, out / "comparison.png")
    return [out / "comparison.md", out / "comparison.csv", out / "comparison.png"]
