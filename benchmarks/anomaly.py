"""Anomaly detection example: hold one MNIST digit out of training and detect it.

    python benchmarks/anomaly.py [--digit 0] [--epochs 10] [--fpr 0.05] [--out benchmarks/anomaly]

A VAE is trained on the binarised MNIST training images of the other nine
digits. Scores are the negative ELBO (and the negative importance-sampled
log-likelihood) of each test image; the threshold is calibrated on held-out
normal training images at the chosen false-positive rate. Writes
``anomaly.json`` (ROC AUC, detection rate and false-positive rate at the
threshold) and ``anomaly.png`` (score histograms with the threshold).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pvae  # noqa: E402
from common import machine, mnist  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--digit", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--fpr", type=float, default=0.05)
    p.add_argument("--out", default=str(Path(__file__).with_name("anomaly")))
    args = p.parse_args()
    out = Path(args.out)
    d = mnist(binarize="static", flatten=True, val_fraction=0.1)
    normal = d.train.y != args.digit
    train, val = d.train.x[normal], d.val.x[d.val.y != args.digit]
    torch.manual_seed(0)
    vae = pvae.VAE(784, 20, hidden_dims=(400,))
    pvae.fit(vae, train, epochs=args.epochs, seed=0)
    is_anomaly = d.test.y == args.digit
    result = {"machine": machine(),
              "command": "python benchmarks/anomaly.py " + " ".join(sys.argv[1:]),
              "held_out_digit": args.digit, "epochs": args.epochs,
              "target_false_positive_rate": args.fpr}
    for score in ("elbo", "log_likelihood"):
        k = 10 if score == "elbo" else 200
        threshold = pvae.evaluate.calibrate_threshold(  # on normal validation images, per score
            pvae.evaluate.anomaly_scores(vae, val, score=score, num_samples=k),
            false_positive_rate=args.fpr)
        s = pvae.evaluate.anomaly_scores(vae, d.test.x, score=score, num_samples=k)
        result[score] = {
            "threshold": threshold,
            "roc_auc": pvae.evaluate.roc_auc(s, is_anomaly),
            "detected": (s[is_anomaly] > threshold).float().mean().item(),
            "false_positive_rate": (s[~is_anomaly] > threshold).float().mean().item(),
        }
        if score == "elbo":
            pvae.plots.anomaly_histogram(s[~is_anomaly], s[is_anomaly], threshold,
                                         out / "anomaly.png",
                                         title=f"MNIST, digit {args.digit} held out of training")
    out.mkdir(parents=True, exist_ok=True)
    (out / "anomaly.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
