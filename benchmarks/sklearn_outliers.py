"""Outlier detection on the 8x8 digits with one class held out: pvae's VAEOutlierDetector
side by side with IsolationForest and LocalOutlierFactor(novelty=True), same split.

    python benchmarks/sklearn_outliers.py [--digits 0,1,...,9] [--epochs 100] [--out benchmarks]
    python benchmarks/sklearn_outliers.py --smoke [--out DIR]   # seconds; a temporary folder

For each held-out digit: the digits are split 70/30 (stratified, seed 0); every
detector is fitted on the training rows of the other nine digits, then scores
the whole test split, where the held-out digit's rows are the outliers. ROC AUC
from ``sklearn.metrics.roc_auc_score`` on ``-score_samples`` (higher: more
anomalous). Writes ``SKLEARN.md`` (machine, versions, command, table).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import LocalOutlierFactor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from common import HERE, add_smoke_options, machine, output_file
from pvae.sklearn import VAEOutlierDetector


def detectors(epochs: int) -> dict:
    """Name -> a fresh unfitted detector (each a pipeline with its scaling)."""
    vae = dict(z_dim=8, hidden_dims=(128,), epochs=epochs, batch_size=64, lr=1e-3,
               random_state=0)
    return {
        "VAE, gaussian (StandardScaler)": make_pipeline(
            StandardScaler(), VAEOutlierDetector(likelihood="gaussian", **vae)),
        "VAE, continuous_bernoulli (MinMaxScaler(clip=True))": make_pipeline(
            MinMaxScaler(clip=True),  # test pixels beyond the training range stay in [0, 1]
            VAEOutlierDetector(likelihood="continuous_bernoulli", **vae)),
        "IsolationForest": IsolationForest(random_state=0),
        "LocalOutlierFactor(novelty=True)": make_pipeline(
            StandardScaler(), LocalOutlierFactor(novelty=True)),
    }


def held_out_aucs(digit: int, epochs: int) -> dict[str, tuple[float, float]]:
    """ROC AUC and seconds (fit and score) per detector, ``digit`` held out of training."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y,
                                                        random_state=0)
    normal = x_train[y_train != digit]
    is_outlier = (y_test == digit).astype(int)
    out = {}
    for name, det in detectors(epochs).items():
        t0 = time.perf_counter()
        det.fit(normal)
        auc = roc_auc_score(is_outlier, -det.score_samples(x_test))
        out[name] = (float(auc), time.perf_counter() - t0)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9",
                   help="the digits held out, one run each")
    p.add_argument("--epochs", type=int, default=100)
    add_smoke_options(p, HERE)
    given = list(argv if argv is not None else sys.argv[1:])
    args = p.parse_args(given)
    digits = [int(d) for d in args.digits.split(",")]
    if args.smoke:
        digits, args.epochs = digits[:1], 2
    path = output_file(args, HERE / "SKLEARN.md")
    runs = {d: held_out_aucs(d, args.epochs) for d in digits}
    names = list(next(iter(runs.values())))
    m = machine()
    lines = [
        "# Outlier detection on the digits: pvae.sklearn beside scikit-learn",
        "",
        f"Command: `{' '.join(['python benchmarks/sklearn_outliers.py', *given])}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads; "
        f"Python {m['python']}, torch {m['torch']}, pyro {m['pyro']}, numpy {m['numpy']}, "
        f"scikit-learn {sklearn.__version__}; commit {m['commit']}; {m['date']}.",
        "",
        "scikit-learn's 8x8 digits (1797 images, 64 pixels in 0..16), split 70/30 "
        "(stratified, seed 0). Each detector is fitted on the training images of the nine "
        "other digits and scores the test split; the held-out digit's test images are the "
        "outliers. ROC AUC (`sklearn.metrics.roc_auc_score` on `-score_samples`); 1 is "
        f"perfect, 0.5 is chance. VAE: z_dim=8, hidden_dims=(128,), {args.epochs} epochs, "
        "batch 64, lr 1e-3, ELBO score over 100 shared draws, random_state=0. "
        "IsolationForest(random_state=0) on raw pixels; LocalOutlierFactor(novelty=True) "
        "after StandardScaler; defaults otherwise.",
        "",
        "| held-out digit | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for d, row in runs.items():
        lines.append(f"| {d} | " + " | ".join(f"{row[n][0]:.3f}" for n in names) + " |")
    means = {n: float(np.mean([row[n][0] for row in runs.values()])) for n in names}
    lines.append("| **mean** | " + " | ".join(f"**{means[n]:.3f}**" for n in names) + " |")
    seconds = {n: float(np.mean([row[n][1] for row in runs.values()])) for n in names}
    lines += ["", "Seconds per fit and score (mean over the held-out digits): "
              + ", ".join(f"{n} {seconds[n]:.2f}" for n in names) + ".", ""]
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    return {"aucs": {d: {n: row[n][0] for n in names} for d, row in runs.items()},
            "mean": means, "path": str(path)}


if __name__ == "__main__":
    main()
