"""How far a trained IAF guide moves z, whether it bends q(z | x) away from a Gaussian, and how
much of the Gaussian guide's gap a richer posterior family could close at all.

    python benchmarks/iaf_diagnose.py move MODEL.pt [MODEL.pt ...] [--flows N]
    # a saved Gaussian-guide VAE with its decoder frozen: the guide alone trained more
    python benchmarks/iaf_diagnose.py fixed --load MF.pt --flows 2 --epochs 8 --output-scale 1
    # a diagonal Gaussian optimised per test image on a frozen model (Cremer et al. 2018)
    python benchmarks/iaf_diagnose.py perpoint --load MF.pt --test-points 100 --steps 800
    # the logs of those runs (in --logs) into variants.json / VARIANTS.md
    python benchmarks/iaf_diagnose.py record --logs /work/runs/iaf3
    python benchmarks/iaf_diagnose.py --smoke [--out DIR]   # every stage in seconds, on digits

(The flows fitted to known 2-D/4-D targets: benchmarks/iaf_toy.py.)

``move``: on the first 200 test images, 200 base draws z_0 each, for every flow t:
the mean displacement |z_t - z_{t-1}| in units of the base scale, the mean gate sigma,
the mean log-determinant (nats), and the share of the flow's shift m that depends on z
(the variance of m over draws of one image, against its variance over draws and images);
then the mean absolute correlation between coordinates of z_K within one image (0 for a
diagonal Gaussian) over the active units (Burda et al.: variance of the mean > 0.01).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import time
from pathlib import Path

import torch
import torch.distributions as dist

import pvae
from common import add_smoke_options, mnist, output_dir
from pvae.flows import GaussianPosterior

Z, HIDDEN = 64, (256, 256)


def load(path: str, flows: int, flow_hidden: int = 0):
    m = pvae.VAE(784, Z, hidden_dims=HIDDEN, guide_flows=flows)
    m.posterior = GaussianPosterior(Z, flows, HIDDEN[-1],
                                    [flow_hidden] * 2 if flow_hidden else None)
    m.load_state_dict(torch.load(path))
    return m


@torch.no_grad()
def movement(m, xt, draws: int = 200) -> dict:
    loc, scale, h = m.encoder.with_hidden(xt)
    active = loc.var(0) > 0.01
    q = m.posterior(loc, scale, h)
    z = dist.Normal(loc, scale).sample((draws,))  # (S, B, Z)
    rows = []
    for t in q.transforms:
        mm, logit = t._params(z)
        y = t(z)
        within = mm.var(0).mean().item()
        total = mm.flatten(0, 1).var(0).mean().item()
        rows.append({"move/scale": ((y - z).abs() / scale).mean().item(),
                     "move/scale active": ((y - z).abs() / scale)[..., active].mean().item(),
                     "gate": torch.sigmoid(logit).mean().item(),
                     "gate min": torch.sigmoid(logit).min().item(),
                     "log det": t.log_abs_det_jacobian(z, y).mean().item(),
                     "m share from z": within / max(total, 1e-12)})
        z = y
    base = dist.Normal(loc, scale).sample((draws,))
    return {"active": int(active.sum()), "flows": rows,
            "mean |corr| within x (active)": _mean_abs_corr(z[..., active]),
            "same, base draws (noise floor)": _mean_abs_corr(base[..., active])}


def _mean_abs_corr(z: torch.Tensor) -> float:
    """Mean absolute off-diagonal correlation between coordinates over draws (dim 0) of
    each point (dim 1), averaged over points."""
    zc = z - z.mean(0)
    cov = torch.einsum("sbi,sbj->bij", zc, zc) / (z.shape[0] - 1)
    sd = cov.diagonal(dim1=-2, dim2=-1).sqrt()
    corr = cov / (sd[..., :, None] * sd[..., None, :])
    n = z.shape[-1]
    return ((corr.abs().sum((-1, -2)) - n) / max(n * (n - 1), 1)).mean().item()


def fixed_decoder(args, d) -> dict:
    """A trained Gaussian-guide VAE (``--load``) with its decoder frozen: the guide alone
    (encoder, plus ``--flows`` IAFs when > 0) trained ``--epochs`` more, so the change of the
    test ELBO is the part of the gap log p(x) - ELBO that this guide closes for a fixed model."""
    m = pvae.VAE(784, Z, hidden_dims=HIDDEN, guide_flows=args.flows)
    if args.flows:
        m.posterior = GaussianPosterior(Z, args.flows, HIDDEN[-1], gate_bias=args.gate_bias,
                                        output_scale=args.output_scale)
    missing = m.load_state_dict(torch.load(args.load), strict=False)
    assert all(k.startswith("posterior.") for k in missing.missing_keys), missing
    xt = d.test.x[: args.test_points]
    start = evaluate(m, xt, args.k)
    for name, q in m.named_parameters():
        q.requires_grad_(name.startswith(("encoder.", "posterior.")))
    pvae.fit(m, d.train.x, epochs=args.epochs, transform=d.transform, seed=0,
             elbo="trace" if args.flows else "meanfield")
    return {"start": start, "end": evaluate(m, xt, args.k)}


def evaluate(m, xt, k: int) -> dict:
    torch.manual_seed(0)
    ll = pvae.evaluate.log_likelihood(m, xt, num_samples=k, batch_size=100).mean().item()
    torch.manual_seed(0)
    elbo = pvae.evaluate.elbo(m, xt, num_samples=100).mean().item()
    return {"ll": round(ll, 3), "elbo": round(elbo, 3), "gap": round(ll - elbo, 3)}


def per_point(args, d) -> dict:
    """Cremer et al. 2018's approximation gap: a diagonal Gaussian optimised for each test
    image (``--steps`` Adam steps at lr 0.01, ``--draws`` draws, the KL in closed form) on the
    model of ``--load``, from the encoder's output; its ELBO against the amortised guide's
    (with ``--load-flows N``, a flow VAE's guide: the base Gaussian is the start)."""
    m = (load(args.load, args.load_flows, args.flow_hidden) if args.load_flows
         else pvae.VAE(784, Z, hidden_dims=HIDDEN))
    if not args.load_flows:
        m.load_state_dict(torch.load(args.load))
    m.requires_grad_(False)
    x = d.test.x[: args.test_points]
    xb = (x > 0.5).float() if x.max() > 1 else x
    loc, scale = m.encoder(xb)
    loc, log_s = loc.clone().requires_grad_(), scale.log().clone().requires_grad_()
    pz = dist.Normal(0., 1.)

    def elbo(draws):
        q = dist.Normal(loc, log_s.exp())
        z = q.rsample((draws,))
        px = m.likelihood(m._likelihood_params(m.decoder(z)))
        lp = px.log_prob(xb)
        lp = lp.reshape(*lp.shape[:2], -1).sum(-1) if lp.dim() > 2 else lp
        return lp.mean(0) - dist.kl_divergence(q, pz).sum(-1)

    start = evaluate(m, x, args.k)
    amortised = start["elbo"]
    opt = torch.optim.Adam([loc, log_s], lr=0.01)
    for _ in range(args.steps):
        loss = -elbo(args.draws).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        torch.manual_seed(0)
        best = elbo(100).mean().item()
    return {"model": start, "amortised elbo": round(amortised, 3),
            "per-point elbo": round(best, 3), "amortisation gap": round(best - amortised, 3)}


SCRIPT = "python benchmarks/iaf_diagnose.py"
FLAGS = (("flows", "--flows"), ("epochs", "--epochs"), ("gate_bias", "--gate-bias"),
         ("output_scale", "--output-scale"), ("test_points", "--test-points"), ("k", "--k"))


def _command(opts: dict) -> str:
    """The command line of a ``fixed`` or ``perpoint`` run from its printed options."""
    keys = FLAGS if opts["stage"] == "fixed" else (
        ("test_points", "--test-points"), ("steps", "--steps"), ("draws", "--draws"),
        ("k", "--k"), ("load_flows", "--load-flows"))
    flags = " ".join(f"{flag} {opts.get(name, 0):g}" for name, flag in keys)
    return f"{SCRIPT} {opts['stage']} --load {opts['load']} {flags}"


def record(logs: Path) -> dict:
    """The figures of the ``fixed``, ``perpoint``, ``move`` and toy runs from their logs in
    ``logs`` (``fixed*.log``, ``perpoint.log``, ``move.log``, ``toy.log``), for
    variants.json ("iaf_diagnose")."""
    out: dict = {"fixed": {}, "perpoint": {}, "move": {}, "toy": {}}
    for f in sorted(logs.glob("fixed*.log")) + sorted(logs.glob("perpoint*.log")):
        found = re.search(r"^(fixed|perpoint) (\{.*?\}) (\{.*\}) ([.0-9]+) min$",
                          f.read_text(), re.M)
        if found is None:  # a run still going, or one that failed: left out
            print(f"{f}: no result line, left out")
            continue
        opts, res = ast.literal_eval(found[2]), ast.literal_eval(found[3])
        row = {**res, "minutes": float(found[4]), "command": _command(opts),
               "flows": opts["flows"], "epochs": opts["epochs"],
               "gate_bias": opts["gate_bias"], "output_scale": opts["output_scale"],
               "test_points": opts["test_points"]}
        if found[1] == "fixed":
            out["fixed"][f.stem] = row
        else:
            out["perpoint"][f.stem] = {**row, "load_flows": opts.get("load_flows", 0)}
    for line in (logs / "move.log").read_text().splitlines():
        if line.startswith("move "):
            _, path, text = line.split(" ", 2)
            out["move"][Path(path).stem] = ast.literal_eval(text)
    target = None
    for line in (logs / "toy.log").read_text().splitlines():
        if not line.startswith(" "):
            target = line.split()[0]
            best = re.search(r"closed form\) ([-.0-9e]+|None)", line)[1]
            out["toy"][target] = {"best_diagonal": None if best == "None" else float(best),
                                  "steps": ast.literal_eval(line.split("steps ")[1]), "fits": {}}
        else:
            what, kls = line.strip().rsplit(" [", 1)
            out["toy"][target]["fits"][what] = ast.literal_eval("[" + kls)
    return out


def smoke(args, folder: Path) -> dict:
    """Every stage on the digits stand-in, in seconds (a Gaussian-guide VAE and a flow VAE
    trained one epoch, saved into ``folder``); results into ``folder/iaf_diagnose.json``."""
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=True)
    plain, flow = pvae.VAE(784, Z, hidden_dims=HIDDEN), pvae.VAE(784, Z, hidden_dims=HIDDEN,
                                                               guide_flows=2)
    pvae.fit(plain, d.train.x, epochs=1, transform=d.transform, seed=0, elbo="meanfield")
    pvae.fit(flow, d.train.x, epochs=1, transform=d.transform, seed=0)
    args.load, args.k, args.test_points, args.steps, args.draws = (
        str(folder / "plain.pt"), 10, 8, 3, 2)
    torch.save(plain.state_dict(), args.load)
    torch.save(flow.state_dict(), folder / "flows.pt")
    args.epochs, args.flows = 1, 2
    res = {"move": movement(load(str(folder / "flows.pt"), 2), d.test.x[:8], draws=20),
           "fixed": fixed_decoder(args, d), "perpoint": per_point(args, d)}
    (folder / "iaf_diagnose.json").write_text(json.dumps(res, indent=1))
    return res


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("stage", nargs="?", choices=["move", "fixed", "perpoint", "record"])
    p.add_argument("--logs", default=None, help="record: the folder of the runs' logs")
    p.add_argument("--load", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--gate-bias", type=float, default=4.0)
    p.add_argument("--output-scale", type=float, default=0.1)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--draws", type=int, default=16, help="perpoint: draws per step")
    p.add_argument("--load-flows", type=int, default=0,
                   help="perpoint: the flows of the --load model (its amortised guide)")
    p.add_argument("models", nargs="*")
    p.add_argument("--flows", type=int, default=2)
    p.add_argument("--flow-hidden", type=int, default=0)
    p.add_argument("--test-points", type=int, default=200)
    add_smoke_options(p, None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        return smoke(args, output_dir(args, None))
    if args.stage is None:
        p.error("give a stage (move, fixed, perpoint or record) or --smoke")
    if args.stage == "record":
        if args.logs is None:
            p.error("record needs --logs, the folder of the runs' logs")
        from variants import save
        return save({"iaf_diagnose": record(Path(args.logs))}, Path(__file__).parent)
    torch.manual_seed(0)
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0)
    if args.stage != "move":
        t = time.perf_counter()
        r = (fixed_decoder if args.stage == "fixed" else per_point)(args, d)
        print(args.stage, vars(args), r, f"{(time.perf_counter() - t) / 60:.1f} min", flush=True)
        return r
    xt = d.test.x[: args.test_points]
    for path in args.models:
        t = time.perf_counter()
        n = args.flows
        if "4flows" in path:
            n = 4
        m = load(path, n, 512 if "wide" in path else args.flow_hidden)
        print(path, {"gate_bias": m.posterior.gate_bias,
                     "output_scale": m.posterior.output_scale}, flush=True)
        r = movement(m, xt)
        for i, row in enumerate(r["flows"]):
            print(f"  flow {i}", {k: round(v, 4) for k, v in row.items()}, flush=True)
        print("  active", r["active"], "mean |corr| within x",
              round(r["mean |corr| within x (active)"], 4), "base draws",
              round(r["same, base draws (noise floor)"], 4),
              f"{(time.perf_counter() - t) / 60:.1f} min", flush=True)
        print("move", path, r, flush=True)
    return None


if __name__ == "__main__":
    main()
