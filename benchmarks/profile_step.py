"""Where a training step's time goes: pvae before and after the replay, and by hand.

    python benchmarks/profile_step.py [--repeats 7] [--steps 300] [--out benchmarks/RESULTS.md]
    python benchmarks/profile_step.py --smoke [--out DIR]   # seconds

One thread, analytic KL, random data of the right kind (speed does not depend on the
values): the table VAE (12-64-3, Gaussian likelihood, batch 200) and the MNIST VAE
(784-400-20, Bernoulli, batch 128). Three programs take the same steps as ``pvae.fit``
(zero the gradients, loss, ``.item()``, backward, fused Adam), alternated repeat by
repeat: pvae running its Pyro program every step (``pvae.fast_elbo``'s lean path, the
replay off: the path before it), pvae replaying the recorded step (the default), and
the hand-written reference (``reference.py``) with the same fused Adam. Each phase is
timed alone over ``--steps`` steps (median over repeats, microseconds per step), and
cProfile lists the costliest calls of one forward pass of each pvae program. The
results go into ``results.json`` (``profile``) beside ``--out`` and the section
"Where a training step's time goes" of RESULTS.md is rewritten from it by ``run.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time

import pyro
import torch

import pvae
from common import HERE, add_smoke_options, machine, output_file
from pvae.elbos import make_elbo
from pvae.replay import Tape
from reference import ReferenceVAE

MODELS = {
    "table 12-64-3, batch 200": (lambda: pvae.VAE(12, 3, hidden_dims=(64,), likelihood="gaussian"),
                                 lambda: ReferenceVAE(12, 3, 64, "gaussian"),
                                 lambda: torch.randn(200, 12), 20000),
    "MNIST 784-400-20, batch 128": (lambda: pvae.VAE(784, 20, hidden_dims=(400,)),
                                    lambda: ReferenceVAE(),
                                    lambda: (torch.rand(128, 784) > 0.5).float(), 60000),
}
PROGRAMS = ("pvae, Pyro program each step", "pvae, replayed", "reference, fused Adam")


def _phases(program: str, make_pvae, make_ref, x, num_data):
    """``(forward, backward, step)`` callables of one program, sharing one state."""
    if program.startswith("reference"):
        model = make_ref()
        loss_fn = lambda: -model.elbo(x, True).mean()  # noqa: E731
    else:
        model = make_pvae()
        elbo = make_elbo("meanfield")
        if "each step" in program:
            elbo.__dict__["_tape"] = Tape(max_keys=0)
        model.num_data = num_data
        loss_fn = lambda: elbo.differentiable_loss(model.model, model.guide, x) / num_data  # noqa: E731
    opt = torch.optim.Adam(model.parameters(), fused=True)
    state = {}

    def forward():
        opt.zero_grad(set_to_none=True)
        state["loss"] = loss = loss_fn()
        loss.item()

    def backward():
        state["loss"].backward()

    return model, forward, backward, opt.step


def _time(model, forward, backward, step, steps: int) -> dict:
    out = {"forward": 0.0, "backward": 0.0, "optimiser": 0.0}
    for _ in range(steps):
        t0 = time.perf_counter()
        forward()
        t1 = time.perf_counter()
        backward()
        t2 = time.perf_counter()
        step()
        t3 = time.perf_counter()
        out["forward"] += t1 - t0
        out["backward"] += t2 - t1
        out["optimiser"] += t3 - t2
    return {k: 1e6 * v / steps for k, v in out.items()}


def _top_calls(forward, steps: int, n: int = 8) -> list[dict]:
    """The ``n`` calls with the most own time in ``steps`` forward passes (µs per step)."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(steps):
        forward()
    prof.disable()
    stats = pstats.Stats(prof).stats
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:n]
    return [{"call": f"{k[0].split('site-packages/')[-1].split('fastpath/')[-1]}:{k[1]}({k[2]})"
             if k[0] != "~" else k[2], "calls_per_step": v[1] / steps,
             "us_per_step": 1e6 * v[2] / steps} for k, v in rows]


def profile(repeats: int, steps: int) -> dict:
    torch.set_num_threads(1)
    out = {}
    for name, (make_pvae, make_ref, make_x, num_data) in MODELS.items():
        x = make_x()
        with pyro.validation_enabled(False):
            runs = {p: _phases(p, make_pvae, make_ref, x, num_data) for p in PROGRAMS}
            for model, forward, backward, step in runs.values():
                with model.unregistered() if hasattr(model, "unregistered") else _null():
                    _time(model, forward, backward, step, 20)  # warm-up; the replay records
            times = {p: [] for p in PROGRAMS}
            for _ in range(repeats):
                for p, (model, forward, backward, step) in runs.items():
                    with model.unregistered() if hasattr(model, "unregistered") else _null():
                        times[p].append(_time(model, forward, backward, step, steps))
            row = {p: {k: statistics.median(t[k] for t in v) for k in v[0]}
                   for p, v in times.items()}
            calls = {}
            for p in PROGRAMS[:2]:
                model, forward, _, _ = runs[p]
                with model.unregistered():
                    calls[p] = _top_calls(forward, max(steps // 3, 5))
        out[name] = {"us_per_step": row, "top_calls": calls}
        print(name, json.dumps(row), flush=True)
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=300)
    add_smoke_options(p, HERE / "RESULTS.md")
    args = p.parse_args(argv if argv is not None else sys.argv[1:])
    repeats, steps = (1, 5) if args.smoke else (args.repeats, args.steps)
    result = profile(repeats, steps)
    md = output_file(args, HERE / "RESULTS.md")
    store = md.with_name("results.json")
    res = json.loads(store.read_text()) if store.exists() else {}
    command = "python benchmarks/profile_step.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    res["profile"] = {"machine": machine(), "command": command.strip(),
                      "repeats": repeats, "steps": steps, "models": result}
    store.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
