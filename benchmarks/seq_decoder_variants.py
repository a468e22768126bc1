"""GunPoint: how the sequence VAE's decoder uses z (initial state only, or z at every
step) and decoder-input dropout change KL, active units, test log-likelihood, 1-NN
accuracy on latent means and sample spread.

    OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/seq_decoder_variants.py \
        --variants init:0,every:0,every:0.5 --epochs 40

appends its table to ``benchmarks/SEQ_DECODER.md`` (or ``--out``). ``--smoke``: one epoch
of two tiny variants on 20 series, into a temporary folder.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import pyro
import torch

import pvae
from common import HERE, add_smoke_options, output_file
from seq_references import knn_accuracy  # 1-NN, scikit-learn, as benchmarks/sequences.py


def run(variant: str, args, data) -> dict:
    where, p = variant.split(":")
    torch.manual_seed(args.seed)
    model = pvae.SequenceVAE(x_dim=1, z_dim=args.z_dim, hidden_dim=args.hidden_dim,
                             word_dropout=float(p), z_every_step=(where != "init"),
                             decoder_history="previous" if where == "previous" else "full")
    tr, te = data.train, data.test
    t0 = time.time()
    pvae.fit(model, (tr.x, tr.lengths), epochs=args.epochs, kl_warmup=args.kl_warmup,
             batch_size=args.batch_size, lr=args.lr, seed=args.seed, progress=False, logger=None)
    secs = time.time() - t0
    model.eval()
    parts = pvae.evaluate.parts(model, (te.x, te.lengths), num_samples=10)
    au = pvae.evaluate.active_units(model, (te.x, te.lengths), num_samples=1)  # Gaussian q: exact mean
    ll = pvae.evaluate.log_likelihood(model, (te.x, te.lengths), num_samples=args.k)
    ztr, zte = model.embed(tr.x, tr.lengths), model.embed(te.x, te.lengths)
    xs, _ = model.sample(200, max_len=150)
    return {"variant": variant, "kl": parts["kl"].mean().item(),
            "active": au, "ll": ll.mean().item(), "elbo": parts["elbo"].mean().item(),
            "knn": knn_accuracy(ztr.detach().numpy(), tr.y.numpy(), zte.detach().numpy(),
                                te.y.numpy()),
            "raw": knn_accuracy(tr.x.numpy(), tr.y.numpy(), te.x.numpy(), te.y.numpy()),
            "sample_std": xs.std().item(), "secs": secs}


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="init:0,every:0,every:0.5")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--kl-warmup", type=float, default=20)
    ap.add_argument("--z-dim", type=int, default=8)
    ap.add_argument("--hidden-dim", type=int, default=128)
    ap.add_argument("-k", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    add_smoke_options(ap, HERE)
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    out = output_file(args, HERE / "SEQ_DECODER.md")
    torch.set_num_threads(1)
    data = pvae.data.load("gunpoint")
    if args.smoke:
        args.variants, args.epochs, args.k, args.hidden_dim = "init:0,every:0.5", 1, 4, 8
        data.train = pvae.data.Sequences(data.train.x[:20], data.train.lengths[:20],
                                         data.train.y[:20])
    rows = []
    for v in args.variants.split(","):
        r = run(v, args, data)
        au = r["active"]
        au = au if isinstance(au, (int, float)) else ", ".join(
            f"{a['active']}/{a['dims']}" for a in au.values()) if isinstance(au, dict) else au
        line = (f"| {v} | {r['kl']:.2f} | {au} | {r['ll']:.1f} | {r['elbo']:.1f} | "
                f"{r['knn']:.2f} | {r['raw']:.2f} | {r['sample_std']:.2f} | {r['secs']:.0f} |")
        print(line, flush=True)
        rows.append(line)
    command = "python benchmarks/seq_decoder_variants.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    with open(out, "a") as f:  # the table, appended with its command
        f.write(f"\n`{command}` ({platform.machine()}, 1 thread, torch "
                f"{torch.__version__}, pyro {pyro.__version__})\n\n")
        f.write("| decoder z : input dropout | KL (nats) | active units | test log p(x) "
                "(nats, K importance samples) | test ELBO | 1-NN on z means | 1-NN raw | "
                "sample std (data 1.0) | train s |\n|---|---|---|---|---|---|---|---|---|\n")
        f.write("\n".join(rows) + "\n")
    return rows


if __name__ == "__main__":
    main()
