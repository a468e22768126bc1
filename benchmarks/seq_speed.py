"""Training throughput of pvae's SequenceVAE against a hand-written recurrent VAE.

Two rows, the settings of the shipped configs:

- ``words`` (``configs/words.yaml``): character ids of English words (wordfreq, the
  training split of ``pvae.data.load("words")``, 18 steps, mean length 6.9), z 16, GRU
  128, embedding 32, word dropout 0.05, Monte Carlo KL (``elbo="trace"``), free bits 0.1,
  KL warm-up over 6 epochs, batch 128;
- ``gunpoint`` (``configs/gunpoint.yaml``): real-valued series of GunPoint's shape
  (150 steps, one feature, all of full length; synthetic: a random phase and amplitude
  of a smooth bump plus noise), z 8, GRU 64, Gaussian likelihood with a learned scale,
  Monte Carlo KL, batch 32.

Every row first checks that the reference's loss and gradient equal pvae's on the same
weights and noise (``seq_reference.from_pvae``; the run stops otherwise), then times the
programs two ways, each alternating the reference with plain Adam, pvae (``pvae.fit``'s
defaults: the fast ELBO path, replayed, and fused Adam), the reference with the same fused
Adam, and the fused reference again (its ratio to the first is the run's noise band):

- whole epochs (``--repeats``): one-epoch ``pvae.fit`` runs against one-epoch reference
  runs, as ``benchmarks/throughput.py`` times the MLP models; medians of the repeats;
- blocks of steps (``--rounds``, ``--block``): ``fit``'s own step (``pvae.train.step.Step``
  with ``fit``'s ELBO, optimiser and KL weight) and the reference's, each program keeping
  its model, taking turns every few steps on the same batches; medians of the rounds.
  On a shared, loaded machine this second figure is the steadier one.

One thread::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/seq_speed.py [--repeats 5] [--rounds 20]
    python benchmarks/seq_speed.py --smoke          # seconds: tiny data, a temporary folder

writes ``SEQ_SPEED.md`` (and ``seq_speed.json``) into ``--out`` (default ``benchmarks/``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

import pvae
from seq_reference import (from_pvae, pvae_grads, reference_step, train_reference,
                           warm_up_weight)

HERE = Path(__file__).resolve().parent
ROWS = {
    "words": dict(model=dict(z_dim=16, hidden_dim=128, embedding_dim=32, word_dropout=0.05),
                  batch=128, free_bits=0.1, kl_warmup=6.0),
    "gunpoint": dict(model=dict(x_dim=1, z_dim=8, hidden_dim=64), batch=32, free_bits=0.0,
                     kl_warmup=0.0),
}


def words_data(n: int):
    """``(x, lengths, vocab_size, excluded_ids)``: the first ``n`` training words."""
    from pvae.data import load

    d = load("words", val_fraction=0.1, test_fraction=0.15, seed=0)
    return d.train.x[:n], d.train.lengths[:n], len(d.vocab), tuple(d.vocab.excluded_ids)


def series_data(n: int, t: int = 150, seed: int = 0):
    """``(x (n, t, 1), lengths)``: smooth bumps at a random place and height, plus noise,
    z-normalised per series (GunPoint's shape and scale); every series of full length."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.linspace(0, 1, t)
    centre, height = torch.rand(n, 1, generator=g), 1 + torch.rand(n, 1, generator=g)
    x = height * torch.exp(-((steps - centre) / 0.15) ** 2) + 0.1 * torch.randn(n, t, generator=g)
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    return x[..., None], torch.full((n,), t)


def make_pvae(name: str, vocab=None) -> pvae.SequenceVAE:
    kw = dict(ROWS[name]["model"])
    if vocab is not None:
        kw.update(vocab_size=vocab[0], excluded_ids=vocab[1])
    return pvae.SequenceVAE(**kw)


def agreement(name: str, x, lengths, vocab) -> float:
    """The largest relative difference between pvae's loss (and each parameter's gradient)
    and the reference's on the same weights and noise; ``AssertionError`` above 1e-5."""
    from pvae.elbos import make_elbo
    from pvae.program_key import LatentScale
    from pvae.train.checks import with_free_bits

    row = ROWS[name]
    torch.manual_seed(0)
    vae = make_pvae(name, vocab)
    ref = from_pvae(vae)
    elbo = with_free_bits(make_elbo("trace"), row["free_bits"])
    xb, lb = x[:row["batch"]], lengths[:row["batch"]]
    torch.manual_seed(1)
    with LatentScale(0.5) if row["kl_warmup"] else torch.enable_grad(), vae.unregistered():
        mine = elbo.differentiable_loss(vae.model, vae.guide, xb, lb) / len(xb)
    mine.backward()
    torch.manual_seed(1)
    theirs = ref.loss(xb, lb, 0.5 if row["kl_warmup"] else 1.0, row["free_bits"])
    theirs.backward()
    worst = abs(mine.item() - theirs.item()) / abs(theirs.item())
    for a, b in zip(pvae_grads(vae), [p.grad for p in ref.parameters()]):
        worst = max(worst, ((a - b).norm() / b.norm().clamp(min=1e-12)).item())
    assert worst < 1e-5, f"{name}: the reference differs from pvae by {worst:.2e}"
    return worst


def pvae_epoch(name, x, lengths, vocab, seed) -> float:
    row = ROWS[name]
    torch.manual_seed(seed)
    vae = make_pvae(name, vocab)
    h = pvae.fit(vae, (x, lengths), epochs=1, batch_size=row["batch"], elbo="trace",
                 free_bits=row["free_bits"], kl_warmup=row["kl_warmup"], seed=seed,
                 monitor_size=1)
    return h[0]["seconds"]


def ref_epoch(name, x, lengths, vocab, seed, fused) -> float:
    row = ROWS[name]
    torch.manual_seed(seed)
    ref = from_pvae(make_pvae(name, vocab))
    return train_reference(ref, x, lengths, epochs=1, batch_size=row["batch"], fused=fused,
                           kl_warmup=row["kl_warmup"], free_bits=row["free_bits"], seed=seed)[0]


def alternated(name, x, lengths, vocab, repeats: int, warm: int) -> dict:
    """Median milliseconds per step of each program, alternated repeat by repeat."""
    runs = {
        "ref": lambda r: ref_epoch(name, x, lengths, vocab, r, fused=False),
        "pvae": lambda r: pvae_epoch(name, x, lengths, vocab, r),
        "ref_fused": lambda r: ref_epoch(name, x, lengths, vocab, r, fused=True),
        "ref_fused_again": lambda r: ref_epoch(name, x, lengths, vocab, r, fused=True),
    }
    pvae_epoch(name, x[:warm], lengths[:warm], vocab, 0)  # warm-up
    ref_epoch(name, x[:warm], lengths[:warm], vocab, 0, fused=True)
    times: dict = {k: [] for k in runs}
    for r in range(repeats):
        for k, run in runs.items():
            times[k].append(run(r))
            print(name, r, k, f"{times[k][-1]:.3f} s", flush=True)
    steps = math.ceil(len(x) / ROWS[name]["batch"])
    ms = {k: 1000 * statistics.median(v) / steps for k, v in times.items()}
    return {"ms_step": ms, "steps": steps, "n": len(x),
            "pvae_vs_ref": ms["ref"] / ms["pvae"], "pvae_vs_ref_fused": ms["ref_fused"] / ms["pvae"],
            "noise": ms["ref_fused"] / ms["ref_fused_again"],
            "all_ms": {k: [1000 * s / steps for s in v] for k, v in times.items()}}


def pvae_stepper(name, x, lengths, vocab, seed):
    """One training step of ``pvae.fit``'s own loop (its ELBO, fused Adam, ``Step``, KL
    weight, validation off, parameters unregistered) on the batch ``idx``, step ``i``."""
    import pyro
    from pvae.train.checks import check_elbo
    from pvae.train.schedules import kl_weight
    from pvae.train.state import make_optimizer
    from pvae.train.step import Step

    row = ROWS[name]
    torch.manual_seed(seed)
    vae = make_pvae(name, vocab)
    elbo = check_elbo(vae, "trace", 1, row["kl_warmup"], row["free_bits"])
    step = Step(vae, elbo, make_optimizer("adam", list(vae.parameters()), 1e-3, 0.0), len(x))
    per_epoch = math.ceil(len(x) / row["batch"])

    def run(idx, i):
        with pyro.validation_enabled(False), vae.unregistered():
            step([((x[idx], lengths[idx]), len(x))], 0, i,
                 kl_weight(0, i, per_epoch, row["kl_warmup"]))
    run.elbo = elbo  # its tape counts the replayed steps
    return run


def ref_stepper(name, x, lengths, vocab, seed, fused):
    """One step of the reference (``train_reference``'s loop body)."""
    row = ROWS[name]
    torch.manual_seed(seed)
    ref = from_pvae(make_pvae(name, vocab)).train()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    per_epoch = math.ceil(len(x) / row["batch"])

    def run(idx, i):
        reference_step(ref, opt, x[idx], lengths[idx], warm_up_weight(i, per_epoch,
                       row["kl_warmup"]), row["free_bits"])
    return run


def interleaved(name, x, lengths, vocab, rounds: int, block: int) -> dict:
    """Median ms per step of each program over ``rounds`` blocks of ``block`` steps, the
    programs taking turns block by block (the order rotating), every program on the same
    batches: load that changes over seconds hits them alike."""
    import time

    runs = {"ref": ref_stepper(name, x, lengths, vocab, 0, fused=False),
            "pvae": pvae_stepper(name, x, lengths, vocab, 0),
            "ref_fused": ref_stepper(name, x, lengths, vocab, 0, fused=True),
            "ref_fused_again": ref_stepper(name, x, lengths, vocab, 0, fused=True)}
    g = torch.Generator().manual_seed(0)
    bs = ROWS[name]["batch"]
    batches = [torch.randperm(len(x), generator=g)[:bs] for _ in range(block)]
    for run in runs.values():  # warm-up: pvae records its step here
        for i, idx in enumerate(batches[:3]):
            run(idx, i)
    times: dict = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        batches = [torch.randperm(len(x), generator=g)[:bs] for _ in range(block)]
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            for j, idx in enumerate(batches):
                runs[k](idx, 3 + r * block + j)
            times[k].append(1000 * (time.perf_counter() - t0) / block)
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {"ms_step": ms, "rounds": rounds, "block": block,
            "pvae_tape": dict(runs["pvae"].elbo.__dict__["_tape"].counts),
            "pvae_vs_ref": ms["ref"] / ms["pvae"], "pvae_vs_ref_fused": ms["ref_fused"] / ms["pvae"],
            "noise": ms["ref_fused"] / ms["ref_fused_again"], "all_ms": times}


_HEAD = ("| model | batch | reference | ref. fused Adam | pvae | pvae / reference | "
         "**pvae / ref. fused** | ref. fused again / ref. fused (noise) | agreement |")


def _line(name: str, r: dict, agreement: float) -> str:
    ms = r["ms_step"]
    return (f"| {name} | {ROWS[name]['batch']} | {ms['ref']:.2f} | {ms['ref_fused']:.2f} | "
            f"{ms['pvae']:.2f} | {r['pvae_vs_ref']:.2f} | **{r['pvae_vs_ref_fused']:.2f}** | "
            f"{1 / r['noise']:.2f} | {agreement:.1e} |")


def markdown(res: dict) -> list:
    m, rows = res["machine"], res["rows"]
    lines = ["## Training throughput, sequence VAE", "",
             f"`{res['command']}` ({m['date']}, commit {m['commit']}; {m['cpu']}, "
             f"{m['torch_threads']} thread; Python {m['python']}, torch {m['torch']}, "
             f"Pyro {m['pyro']}). Milliseconds per step. pvae runs `pvae.fit`'s training step "
             "with its defaults (the fast ELBO path, replayed from the second step of a batch "
             "shape on, and fused Adam); the reference is `benchmarks/seq_reference.py`, "
             "whose loss and gradients were checked against pvae's on the same weights and "
             "noise before timing (largest relative difference: the last column). "
             f"words: the first {rows.get('words', {}).get('n', 0)} training words of "
             "`pvae.data.load(\"words\")` (18 steps, V = 30), the settings of "
             "`configs/words.yaml` (word dropout, free bits, KL warm-up); gunpoint: "
             f"{rows.get('gunpoint', {}).get('n', 0)} synthetic series of "
             f"{res['series_steps']} steps and one feature, the settings of "
             "`configs/gunpoint.yaml`.", ""]
    if res["repeats"]:
        lines += [f"Whole epochs of `pvae.fit` (a new model and ELBO each, so the first "
                  "step runs the Pyro program and the second records it) and of the "
                  f"reference, alternated; medians of {res['repeats']} repeats:", "",
                  _HEAD, "| --- " * 9 + "|"]
        lines += [_line(k, r["epochs"], r["agreement"]) for k, r in rows.items()]
        lines.append("")
    if res["rounds"]:
        lines += [f"Blocks of {res['block']} steps, the four programs taking turns block by "
                  "block on the same batches (each program's model and optimiser kept "
                  f"across blocks, pvae's step recorded in a warm-up); medians of "
                  f"{res['rounds']} rounds:", "", _HEAD, "| --- " * 9 + "|"]
        lines += [_line(k, r["blocks"], r["agreement"]) for k, r in rows.items()]
        lines += ["", "pvae's steps in these blocks: " + "; ".join(
            f"{k} {r['blocks']['pvae_tape']['replayed']} replayed of "
            f"{sum(r['blocks']['pvae_tape'].values())}" for k, r in rows.items()), ""]
    return lines


def main(argv=None) -> dict:
    sys.path.insert(0, str(HERE))
    from common import add_smoke_options, machine, output_dir

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="alternated fit epochs (0: none)")
    p.add_argument("--rounds", type=int, default=20, help="rounds of step blocks (0: none)")
    p.add_argument("--block", type=int, default=5, help="steps per block")
    p.add_argument("--words", type=int, default=7680, help="training words per epoch")
    p.add_argument("--series", type=int, default=1920, help="series per epoch")
    p.add_argument("--series-steps", type=int, default=150, help="steps of each series")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    add_smoke_options(p, HERE)
    given = list(argv if argv is not None else sys.argv[1:])
    args = p.parse_args(given)
    out = output_dir(args, HERE)  # before any work: a smoke run never writes into benchmarks/
    if args.smoke:  # seconds: two steps a program, short series
        args.repeats, args.words, args.series, args.series_steps = 1, 256, 64, 20
        args.rounds, args.block = 2, 2
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    res = {"command": "python benchmarks/seq_speed.py " + " ".join(given),
           "repeats": args.repeats, "rounds": args.rounds, "block": args.block,
           "series_steps": args.series_steps, "rows": {}}
    try:
        for name in args.rows:
            if name == "words":
                x, lengths, *vocab = words_data(args.words)
            else:
                (x, lengths), vocab = series_data(args.series, args.series_steps), None
            r = res["rows"][name] = {"agreement": agreement(name, x, lengths, vocab),
                                     "n": len(x)}
            if args.repeats:
                r["epochs"] = alternated(name, x, lengths, vocab, args.repeats,
                                         warm=4 * ROWS[name]["batch"])
            if args.rounds:
                r["blocks"] = interleaved(name, x, lengths, vocab, args.rounds, args.block)
            print(name, {k: {q: w for q, w in v.items() if q != "all_ms"}
                         if isinstance(v, dict) else v for k, v in r.items()}, flush=True)
        res["machine"] = machine()
    finally:
        torch.set_num_threads(threads)
    (out / "seq_speed.json").write_text(json.dumps(res, indent=2, default=str))
    (out / "SEQ_SPEED.md").write_text("\n".join(["# Sequence VAE training speed", ""]
                                                + markdown(res)))
    print("\n".join(markdown(res)))
    return res


if __name__ == "__main__":
    main()
