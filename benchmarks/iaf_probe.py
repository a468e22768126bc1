"""Diagnostics for the IAF guide (issue 21): how much can flows gain on a given decoder?

    # train the plain VAE of the iaf row and save it
    python benchmarks/iaf_probe.py plain --epochs 3 --save /work/runs/iaf/plain3.pt
    # freeze its encoder and decoder, train only IAF flows on top, compare the test ELBO
    python benchmarks/iaf_probe.py flows --load /work/runs/iaf/plain3.pt --epochs 1 \
        --output-scale 1.0
    # train a flow VAE from scratch with one setting changed (--cv: the base KL in closed
    # form; --frozen, --flows-from N, --attached, --no-context, --gate-bias, ...)
    python benchmarks/iaf_probe.py joint --epochs 3 --cv --output-scale 0.1 --flows-from 2
    # a trained flow VAE (variants.py --save-models) scored with its flows switched off
    python benchmarks/iaf_probe.py contrib --load MODEL.pt --flows 2
    # read the logs of PROBES and CONTRIB into variants.json / VARIANTS.md
    python benchmarks/iaf_probe.py record --logs /work/runs/iaf --contrib-logs /work/runs/iaf2

The second stage measures the part of the Gaussian guide's gap that flows can close with
the model p(x, z) held fixed (Cremer et al. 2018's approximation gap, amortised): if it is
small, a flow guide cannot gain much however it is trained; if it is large, the flows work
and any loss in joint training comes from the training dynamics.
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
from pvae.flows import GaussianPosterior, train_flows

Z, HIDDEN = 64, (256, 256)


def evaluate(m, xt, k: int) -> dict:
    torch.manual_seed(0)
    ll = pvae.evaluate.log_likelihood(m, xt, num_samples=k, batch_size=100).mean().item()
    torch.manual_seed(0)
    elbo = pvae.evaluate.elbo(m, xt, num_samples=100).mean().item()
    return {"ll": round(ll, 3), "elbo": round(elbo, 3)}


#: The diagnostic runs of VARIANTS.md (3 epochs, seed 0, 500 test images, K = 200):
#: log file -> (what, the options after ``python benchmarks/iaf_probe.py``).
PROBES = {
    "plain3": ("Gaussian guide, Monte Carlo KL (`trace`)", "plain --epochs 3 --save P3"),
    "plain3mf": ("Gaussian guide, analytic KL (`meanfield`)",
                 "plain --epochs 3 --elbo meanfield --save P3MF"),
    "j3_os01": ("IAF as the 30-epoch `iaf_mc` row (Monte Carlo KL)",
                "joint --epochs 3 --output-scale 0.1"),
    "j3_frozen": ("IAF, Monte Carlo KL, flows frozen at initialisation",
                  "joint --epochs 3 --frozen"),
    "j3_cv_os01": ("IAF, base KL in closed form (pvae's `iaf` now)",
                   "joint --epochs 3 --cv --output-scale 0.1"),
    "j3_cv_frozen": ("IAF, base KL in closed form, flows frozen at initialisation",
                     "joint --epochs 3 --cv --frozen"),
    "j3_cv": ("`iaf`, outputs x 1", "joint --epochs 3 --cv"),
    "j3_cv_os001": ("`iaf`, outputs x 0.01", "joint --epochs 3 --cv --output-scale 0.01"),
    "j3_cv_gb2": ("`iaf`, gate bias 2", "joint --epochs 3 --cv --output-scale 0.1 --gate-bias 2"),
    "j3_cv_att": ("`iaf`, encoder trained through h",
                  "joint --epochs 3 --cv --output-scale 0.1 --attached"),
    "j3_cv_noctx": ("`iaf`, flows without context (h = 0)",
                    "joint --epochs 3 --cv --output-scale 0.1 --no-context"),
    "j3_cv_1flow": ("`iaf`, 1 flow", "joint --epochs 3 --cv --output-scale 0.1 --flows 1"),
    "j3_cv_from2": ("`iaf`, flows frozen for epochs 1-2, trained in epoch 3",
                    "joint --epochs 3 --cv --output-scale 0.1 --flows-from 2"),
    "j3_cv_from2_os1": ("`iaf`, outputs x 1, flows frozen for epochs 1-2",
                        "joint --epochs 3 --cv --flows-from 2"),
    "j3_cv_from1_os1": ("`iaf`, outputs x 1, flows frozen for epoch 1",
                        "joint --epochs 3 --cv --flows-from 1"),
    "flows3_os1.0": ("flows alone (outputs x 1) trained 1 epoch on the frozen `trace` VAE",
                     "flows --load P3 --epochs 1 --output-scale 1.0"),
    "flowsmf": ("flows alone (outputs x 1) trained 2 epochs on the frozen `meanfield` VAE",
                "flows --load P3MF --epochs 2 --output-scale 1.0"),
}


#: The ``contrib`` runs (20-epoch models that ``variants.py --save-models`` kept; 500 test
#: images, K = 200): log file -> (what, the options after ``python benchmarks/iaf_probe.py``).
CONTRIB = {
    "contrib_wide": ("`iaf_wide_os1`, 2 flows, seed 0",
                     "contrib --load MODELS/iaf_wide_os1_2flows_20epochs_N2000_K1000_s0.pt "
                     "--flows 2 --flow-hidden 512"),
    "contrib_f4": ("`iaf_thaw_os1`, 4 flows, seed 0",
                   "contrib --load MODELS/iaf_thaw_os1_4flows_20epochs_N2000_K1000_s0.pt "
                   "--flows 4"),
    "contrib_quarter_s1": ("`iaf_quarter_os1`, 2 flows, seed 1",
                           "contrib --load MODELS/iaf_quarter_os1_2flows_20epochs_N2000_K1000"
                           "_s1.pt --flows 2"),
    "contrib_thaw_s1": ("`iaf_thaw_os1`, 2 flows, seed 1",
                        "contrib --load MODELS/iaf_thaw_os1_2flows_20epochs_N2000_K1000_s1.pt "
                        "--flows 2"),
}


def record_contrib(logs: Path) -> dict:
    """The figures of :data:`CONTRIB` from their logs in ``logs``."""
    out = {}
    for name, (what, options) in CONTRIB.items():
        text = (logs / f"{name}.log").read_text()
        found = re.search(r"with flows (\{.*?\}) flows off \{'ll': ([-.0-9]+), 'elbo': "
                          r"([-.0-9]+)\} ([.0-9]+) min", text)
        on = ast.literal_eval(found[1])
        out[name] = {"what": what, "command": f"python benchmarks/iaf_probe.py {options}",
                     **on, "off_ll": float(found[2]), "off_elbo": float(found[3]),
                     "minutes": float(found[4])}
    return out


def record(logs: Path, contrib_logs: Path) -> None:
    """Read the figures of :data:`PROBES` and :data:`CONTRIB` from their logs into
    variants.json ("iaf_probe", "iaf_contrib")."""
    from variants import save

    out = {}
    for name, (what, options) in PROBES.items():
        lines = [ln for ln in (logs / f"{name}.log").read_text().splitlines()
                 if ln.startswith(("plain", "joint", "flows only"))]
        found = re.search(r"\{'ll': ([-.0-9]+), 'elbo': ([-.0-9]+)\} ([.0-9]+) min", lines[-1])
        start = re.search(r"flows at init \{'ll': ([-.0-9]+), 'elbo': ([-.0-9]+)\}",
                          (logs / f"{name}.log").read_text())
        ll, elbo, minutes = map(float, found.groups())
        out[name] = {"what": what, "command": f"python benchmarks/iaf_probe.py {options}",
                     "test_ll": ll, "test_elbo": elbo, "minutes": minutes,
                     **({"start_ll": float(start[1]), "start_elbo": float(start[2])}
                        if start else {})}
    save({"iaf_probe": out, "iaf_contrib": record_contrib(contrib_logs)},
         Path(__file__).parent)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("stage", nargs="?",
                   choices=["plain", "flows", "joint", "contrib", "record"])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--save", default=None, help="plain: where to save the trained VAE")
    p.add_argument("--load", default=None, help="flows: the VAE a plain run saved")
    p.add_argument("--flows", type=int, default=2)
    p.add_argument("--output-scale", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--attached", action="store_true", help="joint: train the encoder through h")
    p.add_argument("--frozen", action="store_true", help="joint: flows fixed at initialisation")
    p.add_argument("--cv", action="store_true",
                   help="joint: analytic KL of the base Gaussian + MC flow correction")
    p.add_argument("--no-context", action="store_true", help="joint: flows see h = 0")
    p.add_argument("--flows-from", type=int, default=0,
                   help="joint: flows frozen until this epoch, then trained")
    p.add_argument("--gate-bias", type=float, default=4.0)
    p.add_argument("--flow-hidden", type=int, default=0, help="MADE width (0: default)")
    p.add_argument("--elbo", default="trace")
    p.add_argument("--train-points", type=int, default=60000)
    p.add_argument("--test-points", type=int, default=500)
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--logs", default="/work/runs/iaf", help="record: the runs' logs")
    p.add_argument("--contrib-logs", default="/work/runs/iaf2",
                   help="record: the contrib runs' logs")
    add_smoke_options(p, None)
    return p


def plain(args, d) -> dict:
    m = pvae.VAE(784, Z, hidden_dims=HIDDEN)
    pvae.fit(m, d.train.x[: args.train_points], epochs=args.epochs, transform=d.transform,
             seed=0, elbo=args.elbo)
    torch.save(m.state_dict(), args.save)
    return evaluate(m, d.test.x[: args.test_points], args.k)


def joint(args, d) -> dict:
    m = pvae.VAE(784, Z, hidden_dims=HIDDEN, guide_flows=args.flows)
    m.posterior = GaussianPosterior(
        Z, args.flows, HIDDEN[-1], [args.flow_hidden] * 2 if args.flow_hidden else None,
        output_scale=args.output_scale, detach_context=not args.attached,
        gate_bias=args.gate_bias, base_kl=args.cv)
    if args.no_context:
        old = m.posterior.forward
        m.posterior.forward = lambda loc, scale, h: old(loc, scale, torch.zeros_like(h))
    if args.frozen or args.flows_from:
        train_flows(m, False)
    thaw = lambda row: args.flows_from and row["epoch"] == args.flows_from and train_flows(m)  # noqa: E731
    pvae.fit(m, d.train.x[: args.train_points], epochs=args.epochs, transform=d.transform,
             seed=0, lr=args.lr, callback=thaw)
    return evaluate(m, d.test.x[: args.test_points], args.k)


def flows_alone(args, d) -> tuple[dict, dict]:
    """The flows trained on a saved VAE whose encoder and decoder stay fixed."""
    xt = d.test.x[: args.test_points]
    m = pvae.VAE(784, Z, hidden_dims=HIDDEN, guide_flows=args.flows)
    m.posterior = GaussianPosterior(Z, args.flows, HIDDEN[-1], output_scale=args.output_scale)
    missing = m.load_state_dict(torch.load(args.load), strict=False)
    assert all(k.startswith("posterior.") for k in missing.missing_keys), missing
    start = evaluate(m, xt, args.k)
    for name, q in m.named_parameters():
        q.requires_grad_(name.startswith("posterior."))
    pvae.fit(m, d.train.x[: args.train_points], epochs=args.epochs, transform=d.transform,
             seed=0, lr=args.lr)
    return start, evaluate(m, xt, args.k)


def contribution(args, d) -> tuple[dict, dict]:
    """A trained flow VAE (``--load``, a state dict) scored as it is and with its flows
    switched off (gate fixed at 1, so z' = z: the base Gaussian q_0 alone): how much of its
    ELBO the flows give at the end of training."""
    xt = d.test.x[: args.test_points]
    m = pvae.VAE(784, Z, hidden_dims=HIDDEN, guide_flows=args.flows)
    m.posterior = GaussianPosterior(
        Z, args.flows, HIDDEN[-1], [args.flow_hidden] * 2 if args.flow_hidden else None)
    m.load_state_dict(torch.load(args.load))
    with_flows = evaluate(m, xt, args.k)
    torch.manual_seed(0)
    train_x = d.transform(d.train.x[: args.test_points])
    with_flows["train_elbo"] = round(
        pvae.evaluate.elbo(m, train_x, num_samples=100).mean().item(), 3)
    with torch.no_grad():  # what the flows do to the base draws of the test images
        loc, scale, h = m.encoder.with_hidden(xt)
        z = dist.Normal(loc, scale).sample((10,))
        with_flows["base_scale"] = round(scale.mean().item(), 3)
        with_flows["log_dets"] = []
        for t in m.posterior(loc, scale, h).transforms:
            y = t(z)
            with_flows["log_dets"].append(round(t.log_abs_det_jacobian(z, y).mean().item(), 2))
            z = y
    m.posterior.output_scale, m.posterior.gate_bias = 0.0, 60.0  # sigmoid(60) = 1 in float32
    return with_flows, evaluate(m, xt, args.k)


def smoke(args, folder: Path) -> dict:
    """Every stage for one epoch on the digits stand-in; results into ``folder``."""
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=True)
    args.k, args.test_points, args.save = 10, 32, str(folder / "plain.pt")
    args.load, args.cv = args.save, True
    res = {"plain": plain(args, d), "joint": joint(args, d), "flows": flows_alone(args, d)}
    (folder / "iaf_probe.json").write_text(json.dumps(res, indent=1))
    return res


def main(argv=None):
    args = _parser().parse_args(argv)
    folder = output_dir(args, None)
    torch.set_num_threads(1)
    if args.smoke:
        return smoke(args, folder)
    if args.stage == "record":
        return record(Path(args.logs), Path(args.contrib_logs))
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0)
    torch.manual_seed(0)
    t = time.perf_counter()
    took = lambda: f"{(time.perf_counter() - t) / 60:.1f} min"  # noqa: E731
    if args.stage == "plain":
        print("plain", args.epochs, args.elbo, plain(args, d), took(), flush=True)
    elif args.stage == "contrib":
        on, off = contribution(args, d)
        print("with flows", on, "flows off", off, took(), flush=True)
    elif args.stage == "joint":
        print("joint", vars(args), joint(args, d), took(), flush=True)
    else:
        start, end = flows_alone(args, d)
        print("flows at init", start, flush=True)
        print("flows only", args.flows, args.output_scale, args.lr, end, took(), flush=True)
    return True


if __name__ == "__main__":
    main()
