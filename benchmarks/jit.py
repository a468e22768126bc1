"""Milliseconds per training step of the plain and the JIT-compiled ELBOs.

    python benchmarks/jit.py            # 784-400-20 VAE, batch 128, writes benchmarks/JIT.md
    python benchmarks/jit.py --smoke [--out DIR]  # a tiny model, a few steps: checks that it runs

``--out`` names the Markdown file or its folder; a smoke run writes into a
temporary folder unless given one, never over ``benchmarks/JIT.md``.

Each ELBO trains the same kind of VAE on random binary data with ``pvae.fit`` (one
epoch of ``--steps`` steps per round), the ELBOs alternated round by round so that
the machine's drift hits them alike. A step's time is the epoch's training time
(``history[-1]["seconds"]``, without the end-of-epoch monitoring) over its steps; the
first round, which compiles the JIT graphs, is reported apart. For comparison, Pyro's
own ``JitTrace_ELBO`` and ``JitTraceMeanField_ELBO`` are timed in a loop that passes
``vae.model`` anew at each step, as ``pvae.fit`` did before its JIT ELBOs were
stabilised (``pvae.fit`` now refuses Pyro's JIT classes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import pyro
import pyro.infer
import torch

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by path (tests/test_elbos_jit.py)
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import pvae  # noqa: E402
from common import HERE, add_smoke_options, machine, output_file  # noqa: E402
from pvae.elbos import make_elbo  # noqa: E402

NAMES = ("trace", "meanfield", "jit_trace", "jit_meanfield")
PYRO_CLASSES = {"Pyro's JitTrace_ELBO": pyro.infer.JitTrace_ELBO,
                "Pyro's JitTraceMeanField_ELBO": pyro.infer.JitTraceMeanField_ELBO}


def fit_round(vae, x, elbo, batch_size: int) -> float:
    """ms per step of one epoch of pvae.fit."""
    history = pvae.fit(vae, x, elbo=elbo, epochs=1, batch_size=batch_size, monitor_size=128)
    return 1000 * history[-1]["seconds"] / (x.shape[0] // batch_size)


def pyro_class_ms(vae, x, cls, batch_size: int, steps: int) -> float:
    """ms per step with one of Pyro's JIT classes, ``vae.model`` passed anew each step."""
    elbo = cls(ignore_jit_warnings=True)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    vae.num_data = x.shape[0]
    t0 = time.perf_counter()
    with pyro.validation_enabled(False):
        for i in range(steps):
            batch = x[i * batch_size:(i + 1) * batch_size]
            opt.zero_grad()
            loss = elbo.differentiable_loss(vae.model, vae.guide, batch) / x.shape[0]
            loss.backward()
            opt.step()
    return 1000 * (time.perf_counter() - t0) / steps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_smoke_options(parser, HERE / "JIT.md")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds after the first")
    parser.add_argument("--steps", type=int, default=10, help="steps per round")
    given = list(argv if argv is not None else sys.argv[1:])
    args = parser.parse_args(given)
    out = output_file(args, HERE / "JIT.md")
    warnings.filterwarnings("ignore", message=".*torch.jit.trace.*is deprecated")
    if args.smoke:
        x_dim, hidden, z_dim, batch, args.rounds, args.steps = 64, 32, 4, 32, 1, 3
    else:
        x_dim, hidden, z_dim, batch = 784, 400, 20, 128
    torch.manual_seed(0)
    x = (torch.rand(batch * args.steps, x_dim) < 0.3).float()
    vaes = {n: pvae.VAE(x_dim, z_dim, hidden_dims=(hidden,)) for n in NAMES}
    for n in NAMES[1:]:
        vaes[n].load_state_dict(vaes[NAMES[0]].state_dict())
    elbos = {n: make_elbo(n) for n in NAMES}  # kept across rounds: compiled once
    first = {}
    times: dict[str, list[float]] = {n: [] for n in NAMES}
    for r in range(args.rounds + 1):
        for n in NAMES:
            t0 = time.perf_counter()
            ms = fit_round(vaes[n], x, elbos[n], batch)
            if r == 0:
                first[n] = time.perf_counter() - t0
            else:
                times[n].append(ms)
            print(f"round {r} {n:14s} {ms:8.2f} ms/step", flush=True)
    median = {n: statistics.median(times[n]) for n in NAMES}
    pyro_steps = min(args.steps, 10)
    pyro_ms = {}
    for label, cls in PYRO_CLASSES.items():
        vae = pvae.VAE(x_dim, z_dim, hidden_dims=(hidden,))
        pyro_ms[label] = pyro_class_ms(vae, x, cls, batch, pyro_steps)
        print(f"{label}: {pyro_ms[label]:.2f} ms/step", flush=True)
    info = machine()
    pairs = {"jit_trace": "trace", "jit_meanfield": "meanfield"}
    # per round (the two ran seconds apart), then the median over rounds: robust to drift
    ratio = {j: statistics.median(a / b for a, b in zip(times[j], times[p]))
             for j, p in pairs.items()}
    lines = [
        "# JIT-compiled ELBOs: milliseconds per training step",
        "",
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores, torch threads "
        f"{info['torch_threads']}), Python {info['python']}, torch {info['torch']}, "
        f"pyro {info['pyro']}, commit {info['commit']}.",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} python "
        f"benchmarks/jit.py{''.join(' ' + a for a in given)}` "
        f"({x_dim}-{hidden}-{z_dim} MLP VAE, Bernoulli likelihood, random binary data, "
        f"batch {batch}; {args.rounds} timed rounds of {args.steps} steps after a first "
        "round that compiles; ELBOs alternated within each round).",
        "",
        "| elbo | ms/step (median over rounds) | min | max | first round, s (jit_*: compiles) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n in NAMES:
        lines.append(f"| {n} | {median[n]:.2f} | {min(times[n]):.2f} | {max(times[n]):.2f} "
                     f"| {first[n]:.2f} |")
    lines += [
        "",
        f"Ratios in this run (per round, median over rounds): jit_trace / trace = "
        f"{ratio['jit_trace']:.2f}, jit_meanfield / meanfield = {ratio['jit_meanfield']:.2f}.",
        "",
        f"Pyro's own classes with `vae.model` passed anew each step (as `pvae.fit` did "
        f"before; {pyro_steps} steps, compilation included, which is the point):",
        "",
        "| class | ms/step |",
        "| --- | --- |",
    ]
    lines += [f"| {label} | {ms:.2f} |" for label, ms in pyro_ms.items()]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    print(text)
    return {"median": median, "ratio": ratio, "pyro": pyro_ms}


if __name__ == "__main__":
    main()
