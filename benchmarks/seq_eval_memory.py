"""Peak memory of one `pvae.evaluate.log_likelihood` call on 100 series x 150 steps with a
128-unit SequenceVAE (initial-state decoder), in a fresh process: the rise of peak RSS.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/seq_eval_memory.py --k 69 [--max-working N]

(without --max-working: the default budget.) Appends a line to
``benchmarks/SEQ_EVAL_MEMORY.md`` (or ``--out``); ``--smoke``: 4 series, K = 2, a
temporary folder. Run each measurement in a fresh process: peak RSS only grows.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

import pvae
from common import HERE, add_smoke_options, machine, output_file


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=69)
    ap.add_argument("--max-working", type=int, default=None)
    add_smoke_options(ap, HERE)
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    out = output_file(args, HERE / "SEQ_EVAL_MEMORY.md")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n, k = (4, 2) if args.smoke else (100, args.k)
    model = pvae.SequenceVAE(x_dim=1, z_dim=8, hidden_dim=128)
    x, lengths = torch.randn(n, 150, 1), torch.full((n,), 150)
    kw = {"max_working": args.max_working} if args.max_working else {}
    pvae.evaluate.log_likelihood(model, (x[:2], lengths[:2]), num_samples=2)  # warm up
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.time()
    ll = pvae.evaluate.log_likelihood(model, (x, lengths), num_samples=k, **kw)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = machine()
    line = (f"- {m['date']}, commit {m['commit']}, {n} series x 150 steps, K={k} {kw}: peak "
            f"RSS rise {(after - before) / 1024:.0f} MB, {time.time() - t:.1f} s, mean log p(x) "
            f"{ll.mean():.3f} (`python benchmarks/seq_eval_memory.py "
            + " ".join(argv if argv is not None else sys.argv[1:]) + "`)\n")
    if not out.exists():
        out.write_text("# Evaluation memory of a sequence VAE (peak RSS rise per call)\n\n")
    with open(out, "a") as f:
        f.write(line)
    print(line, end="")
    return line


if __name__ == "__main__":
    main()
