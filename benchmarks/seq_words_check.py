"""Words: the character-level sequence VAE with z fed at every decoder step or only as
the initial state: test bits per character (importance-sampled, the end event counted
as a character) and KL per word.

    OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/seq_words_check.py \
        --epochs 3 --word-dropout 0.3
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import pvae


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--word-dropout", type=float, default=0.3)
    ap.add_argument("--variants", default="every,init")
    ap.add_argument("--test", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = pvae.data.load("words")
    tr, te = d.train, d.test
    x, lengths = te.x[: args.test], te.lengths[: args.test]
    for v in args.variants.split(","):
        torch.manual_seed(0)
        model = pvae.SequenceVAE(vocab_size=d.vocab_size, z_dim=16,
                                 excluded_ids=d.vocab.excluded_ids,
                                 word_dropout=args.word_dropout, z_every_step=(v == "every"))
        t0 = time.time()
        pvae.fit(model, (tr.x, tr.lengths), epochs=args.epochs, kl_warmup=args.epochs / 2,
                 seed=0, progress=False, logger=None)
        secs = time.time() - t0
        ll = pvae.evaluate.log_likelihood(model, (x, lengths), num_samples=100)
        kl = pvae.evaluate.parts(model, (x, lengths), num_samples=4)["kl"].mean().item()
        bpc = -ll.sum().item() / (lengths.sum().item() + len(lengths)) / math.log(2)
        print(f"| {v} | {args.word_dropout} | {args.epochs} | {bpc:.3f} | {kl:.2f} | {secs:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
