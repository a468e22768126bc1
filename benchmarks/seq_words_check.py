"""Words: the character-level sequence VAE with z fed at every decoder step or only as
the initial state: test bits per character (importance-sampled, the end event counted
as a character) and KL per word.

    OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python benchmarks/seq_words_check.py \
        --epochs 3 --word-dropout 0.3

appends its rows to ``benchmarks/SEQ_DECODER.md`` (or ``--out``); ``--smoke``: one epoch
on 300 words, 20 test words, a temporary folder.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import sys

import pvae
from common import HERE, add_smoke_options, output_file


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--word-dropout", type=float, default=0.3)
    ap.add_argument("--variants", default="every,init")
    ap.add_argument("--test", type=int, default=1000)
    add_smoke_options(ap, HERE)
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    out = output_file(args, HERE / "SEQ_DECODER.md")
    torch.set_num_threads(1)
    d = pvae.data.load("words", max_train=300 if args.smoke else None)
    tr, te = d.train, d.test
    if args.smoke:
        args.epochs, args.test = 1, 20
    rows = []
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
        rows.append(f"| {v} | {args.word_dropout} | {args.epochs} | {bpc:.3f} | {kl:.2f} | "
                    f"{secs:.0f} |")
        print(rows[-1], flush=True)
    command = "python benchmarks/seq_words_check.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    with open(out, "a") as f:
        f.write(f"\nWords, `{command}`:\n\n| decoder z | word dropout | epochs | test bits per "
                "character | KL per word (nats) | train s |\n|---|---|---|---|---|---|\n"
                + "\n".join(rows) + "\n")
    return rows


if __name__ == "__main__":
    main()
