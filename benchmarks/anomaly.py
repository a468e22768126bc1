"""Anomaly detection example: hold one MNIST digit out of training and detect it.

    python benchmarks/anomaly.py [--digit 0] [--epochs 10] [--fpr 0.05] [--out benchmarks/anomaly]
    python benchmarks/anomaly.py --smoke [--out DIR]   # seconds, on digits; a temporary folder

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

import torch

import pvae
from common import HERE, add_smoke_options, machine, mnist, output_dir


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--digit", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--fpr", type=float, default=0.05)
    add_smoke_options(p, HERE / "anomaly")
    given = list(argv if argv is not None else sys.argv[1:])
    args = p.parse_args(given)
    if args.smoke:
        args.epochs = 1
    out = output_dir(args, HERE / "anomaly")
    d = mnist(binarize="static", flatten=True, val_fraction=0.1, smoke=args.smoke)
    normal = d.train.y != args.digit
    train, val = d.train.x[normal], d.val.x[d.val.y != args.digit]
    torch.manual_seed(0)
    vae = pvae.VAE(784, 20, hidden_dims=(400,))
    pvae.fit(vae, train, epochs=args.epochs, seed=0)
    is_anomaly = d.test.y == args.digit
    result = {"machine": machine(),
              "command": "python benchmarks/anomaly.py " + " ".join(given),
              "held_out_digit": args.digit, "epochs": args.epochs,
              "target_false_positive_rate": args.fpr}
    for score in ("elbo", "log_likelihood"):
        k = 10 if score == "elbo" else (20 if args.smoke else 200)
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
    (out / "anomaly.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return result


if __name__ == "__main__":
    main()
