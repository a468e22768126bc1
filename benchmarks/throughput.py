"""Training throughput: pvae against the hand-written reference, runs alternated.

``run.py``'s ``throughput`` section: the 784-400-20 MNIST VAE at batch 128 and 512
(analytic and Monte Carlo KL), and the small table VAE (12-64-3, a Gaussian
likelihood with a learned scale, batch 200, one thread). Every row alternates, per
repeat: the reference with plain Adam, pvae (``fit`` defaults: its fast path and fused
Adam), the reference with the same fused Adam, pvae through Pyro's own ELBO classes,
and the fused reference again; the medians give the ratios, and fused reference /
fused reference, timed the same way, is the noise band of the run.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch

import pvae
from reference import ReferenceVAE, train_reference

#: The small table model: 12 columns, 64 hidden units, 3 latent dimensions, batch 200.
TABLE = {"x_dim": 12, "hidden": 64, "z_dim": 3, "batch": 200}


def pvae_epoch(x, batch_size, elbo, z_dim=20, num_particles=1, seed=0, make=None):
    """Seconds of one ``pvae.fit`` epoch; ``make()`` builds the model (default: the
    784-400-``z_dim`` VAE)."""
    torch.manual_seed(seed)
    vae = make() if make is not None else pvae.VAE(784, z_dim, hidden_dims=(400,))
    h = pvae.fit(vae, x, epochs=1, batch_size=batch_size, elbo=elbo, seed=seed,
                 num_particles=num_particles, monitor_size=1)
    return h[0]["seconds"]


def ref_epoch(x, batch_size, analytic, fused=False, seed=0, make=None):
    """Seconds of one epoch of the hand-written reference (``make()`` builds it)."""
    torch.manual_seed(seed)
    model = make() if make is not None else ReferenceVAE()
    return train_reference(model, x, epochs=1, batch_size=batch_size, analytic_kl=analytic,
                           seed=seed, fused=fused)[0]


def _alternated(x, bs: int, analytic: bool, repeats: int, warm: int,
                make_pvae: Callable = None, make_ref: Callable = None) -> dict:
    """Median seconds per epoch of each program, the runs alternated repeat by repeat."""
    from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

    name = "meanfield" if analytic else "trace"
    pyro_cls = TraceMeanField_ELBO if analytic else Trace_ELBO
    runs = {
        "ref": lambda r: ref_epoch(x, bs, analytic, seed=r, make=make_ref),
        "pvae": lambda r: pvae_epoch(x, bs, name, seed=r, make=make_pvae),
        "ref_fused": lambda r: ref_epoch(x, bs, analytic, fused=True, seed=r, make=make_ref),
        "pvae_pyro_elbo": lambda r: pvae_epoch(x, bs, pyro_cls(), seed=r, make=make_pvae),
        "ref_fused_again": lambda r: ref_epoch(x, bs, analytic, fused=True, seed=r,
                                               make=make_ref),
    }
    pvae_epoch(x[:warm], bs, name, make=make_pvae)  # warm-up
    ref_epoch(x[:warm], bs, analytic, make=make_ref)
    t: dict[str, list] = {k: [] for k in runs}
    for r in range(repeats):  # alternate, so load changes hit all alike
        for k, run in runs.items():
            t[k].append(run(r))
    return {k: statistics.median(v) for k, v in t.items()}


def _row(seconds: dict, n: int, batch: int) -> dict:
    ips = {k: n / v for k, v in seconds.items()}
    steps = -(-n // batch)
    return {**{f"{k}_img_s": v for k, v in ips.items()},
            **{f"{k}_ms_step": 1000 * seconds[k] / steps for k in seconds},
            "ratio_vs_ref": ips["pvae"] / ips["ref"],
            "ratio_vs_ref_fused": ips["pvae"] / ips["ref_fused"],
            "ratio_pyro_elbo_vs_ref_fused": ips["pvae_pyro_elbo"] / ips["ref_fused"],
            "ratio_noise_fused": ips["ref_fused_again"] / ips["ref_fused"]}


def throughput(x, repeats, warm=2048):
    """The MNIST rows: batch 128 and 512, analytic and Monte Carlo KL."""
    rows = []
    for bs in (128, 512):
        for kl, analytic in (("analytic", True), ("Monte Carlo", False)):
            rows.append({"batch": bs, "kl": kl,
                         **_row(_alternated(x, bs, analytic, repeats, warm), len(x), bs)})
            print("throughput", rows[-1], flush=True)
    return rows


def table_data(n: int, seed: int = 0) -> torch.Tensor:
    """``n`` rows of a 12-column real-valued table: 3 latent factors, a non-linear map, noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    w = torch.randn(3, TABLE["x_dim"], generator=g)
    return torch.tanh(z @ w) + 0.1 * torch.randn(n, TABLE["x_dim"], generator=g)


def table(n: int, repeats: int, warm: int = 2000) -> list[dict]:
    """The small table model's rows (one thread), analytic and Monte Carlo KL."""
    x = table_data(n)
    c = TABLE
    make_pvae = lambda: pvae.VAE(c["x_dim"], c["z_dim"], hidden_dims=(c["hidden"],),  # noqa: E731
                                 likelihood="gaussian")
    make_ref = lambda: ReferenceVAE(c["x_dim"], c["z_dim"], c["hidden"], "gaussian")  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = []
        for kl, analytic in (("analytic", True), ("Monte Carlo", False)):
            seconds = _alternated(x, c["batch"], analytic, repeats, warm, make_pvae, make_ref)
            rows.append({"batch": c["batch"], "kl": kl, "n": n,
                         **_row(seconds, n, c["batch"])})
            print("table", rows[-1], flush=True)
    finally:
        torch.set_num_threads(threads)
    return rows


def markdown(res: dict) -> list[str]:
    """The throughput tables (MNIST, then the table model) as Markdown lines."""
    head = ("| batch | KL | reference | ref. fused Adam | pvae | pvae / reference | "
            "**pvae / ref. fused** | pvae via Pyro's ELBO classes / ref. fused | "
            "ref. fused again / ref. fused (noise) |")
    rule = "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    lines = ["## Training throughput, 784-400-20 MLP VAE, binarised MNIST (images/s)", "",
             head, rule]
    for r in res["throughput"]:
        lines.append(_line(r, "img_s", "{:.0f}"))
    lines += ["", _band(res["throughput"])]
    if res.get("table"):
        t = res["table"][0]
        lines += ["", f"## Training throughput, table VAE 12-64-3, batch 200, one thread "
                      f"(ms per step, {t['n']} rows)", "", head, rule]
        for r in res["table"]:
            lines.append(_line(r, "ms_step", "{:.3f}"))
        lines += ["", _band(res["table"])]
    return lines


def _band(rows: list[dict]) -> str:
    """The run's noise band (fused reference against itself) and where pvae falls."""
    noise = [r["ratio_noise_fused"] for r in rows]
    low, high = min(min(noise), 1 / max(noise)), max(max(noise), 1 / min(noise))
    inside = sum(low <= r["ratio_vs_ref_fused"] for r in rows)
    return (f"Noise band of these rows: the fused reference against itself at "
            f"{min(noise):.2f}-{max(noise):.2f}, so two identical programs land "
            f"{low:.2f}-{high:.2f} apart; pvae / ref. fused is at or above the band's "
            f"low end in {inside} of {len(rows)} rows.")


def _line(r: dict, unit: str, fmt: str) -> str:
    cells = [fmt.format(r[f"{k}_{unit}"]) for k in ("ref", "ref_fused", "pvae")]
    ratios = [f"{r[k]:.2f}" for k in ("ratio_vs_ref", "ratio_vs_ref_fused",
                                      "ratio_pyro_elbo_vs_ref_fused", "ratio_noise_fused")]
    ratios[1] = f"**{ratios[1]}**"
    return f"| {r['batch']} | {r['kl']} | " + " | ".join(cells + ratios) + " |"


def profile_markdown(res: dict) -> list[str]:
    """The section "Where a training step's time goes" from ``res["profile"]``
    (``profile_step.py``); empty when it has not been measured."""
    prof = res.get("profile")
    if not prof:
        return []
    m = prof["machine"]
    lines = ["## Where a training step's time goes", "",
             f"`{prof['command']}` ({m['date']}, commit {m['commit']}, one thread; median of "
             f"{prof['repeats']} alternated repeats of {prof['steps']} steps). Microseconds per "
             "step in each phase: forward (zero the gradients, the loss, `.item()`), backward, "
             "the fused Adam step. *Before*: pvae running its Pyro program every step (the "
             "lean path of `pvae.fast_elbo`, replay off); *after*: the replayed step (the "
             "default).", "",
             "| model | program | forward | backward | optimiser | step | step / reference |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in prof["models"].items():
        times = r["us_per_step"]
        ref = sum(times["reference, fused Adam"].values())
        for program, t in times.items():
            total = sum(t.values())
            lines.append(f"| {name} | {program} | {t['forward']:.0f} | {t['backward']:.0f} | "
                         f"{t['optimiser']:.0f} | {total:.0f} | {total / ref:.2f} |")
    lines += ["", "The costliest calls of one forward pass (own time, cProfile, so inflated "
                  "alike; µs per step, calls per step):", ""]
    for name, r in prof["models"].items():
        for program, calls in r["top_calls"].items():
            top = "; ".join(f"`{c['call']}` {c['us_per_step']:.0f} ({c['calls_per_step']:.0f})"
                            for c in calls[:6])
            lines.append(f"- {name}, {program}: {top}")
    return lines + [""]
