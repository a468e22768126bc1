"""The IAF and free-bits rows of benchmarks/variants.py (``--only iaf``, ``--only free_bits``);
their sections of VARIANTS.md are written by variants_iaf_report.py.

Each trains the plain VAE and the variant at the same budget and seed on dynamically
binarised MNIST and measures, on the first ``--test-points`` test images, the
importance-sampled log-likelihood (K = ``--k``), the test ELBO (100 samples per image),
the KL and the active units (Burda et al. 2016: posterior-mean variance > 0.01).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

import pvae
from common import mnist
from pvae.flows import GaussianPosterior, train_flows
from variants_iaf_report import markdown  # noqa: F401  (variants.py reads it from here)

#: The VAE both rows compare against (the same as the hvae row's).
Z, HIDDEN = 64, (256, 256)


def _vae(**kw):
    return pvae.VAE(784, Z, hidden_dims=HIDDEN, **kw)


def _ablation(flows: int, **posterior):
    """The IAF VAE with another posterior, for the ablations of the fix (the Monte Carlo
    KL throughout unless ``base_kl=True`` is given, as every flow row before it existed)."""
    def make():
        m = _vae(guide_flows=flows)
        m.posterior = GaussianPosterior(Z, flows, **{"base_kl": False, **posterior})
        return m
    return make


def _thawed_at(fraction: float):
    """Flows frozen (near the identity) for the first ``fraction`` of the epochs, then
    trained: ``f(model, epochs)`` giving pvae.fit's callback."""
    def options(m, epochs: int) -> dict:
        train_flows(m, False)
        at = int(epochs * fraction)
        return {"callback": lambda row: row["epoch"] == at and train_flows(m)}
    return options


def _fast(n: int, **posterior):
    """The default IAF VAE with its flows' outputs not scaled down (outputs x 1)."""
    def make():
        m = _vae(guide_flows=n)
        m.posterior = GaussianPosterior(Z, n, HIDDEN[-1], **{"output_scale": 1.0, **posterior})
        return m
    return make


def _attached(n: int):
    """The default IAF VAE with the encoder trained through h (``detach_context=False``)."""
    m = _vae(guide_flows=n)
    m.posterior = GaussianPosterior(Z, n, HIDDEN[-1], detach_context=False)
    return m


#: Training options of the variants that are not pvae.fit's defaults: name -> f(model, epochs).
FIT = {"vae_meanfield": lambda m, epochs: {"elbo": "meanfield"},
       "iaf_thaw": _thawed_at(0.5), "iaf_thaw_os1": _thawed_at(0.5),
       "iaf_quarter_os1": _thawed_at(0.25), "iaf_wide_os1": _thawed_at(0.5),
       "iaf_thaw_attached": _thawed_at(0.5)}


#: The IAF row's variants: name -> (description, maker given the number of flows).
IAF_VARIANTS = {
    "vae": ("VAE 784-256-256-64, Gaussian q(z|x)", lambda n: _vae),
    "vae_meanfield": ("VAE 784-256-256-64, Gaussian q(z|x), trained with the analytic KL "
                      "(`meanfield`)", lambda n: _vae),
    "iaf": ("IAF (pvae's default): flows on the encoder's h (detached), near-identity init "
            "(gate bias 4), outputs x 0.1, base Gaussian's KL in closed form",
            lambda n: lambda: _vae(guide_flows=n)),
    "iaf_thaw": ("IAF as `iaf`, its flows frozen near the identity for the first half of "
                 "the epochs (`pvae.flows.train_flows`)", lambda n: lambda: _vae(guide_flows=n)),
    "iaf_thaw_os1": ("IAF as `iaf` with outputs x 1, its flows frozen near the identity for "
                     "the first half of the epochs", lambda n: _fast(n)),
    "iaf_quarter_os1": ("IAF as `iaf` with outputs x 1, its flows frozen near the identity "
                        "for the first quarter of the epochs", lambda n: _fast(n)),
    "iaf_wide_os1": ("IAF as `iaf_thaw_os1` with autoregressive networks of two hidden layers "
                     "of 512 (default 256)", lambda n: _fast(n, hidden_dims=[512, 512])),
    "iaf_thaw_attached": ("IAF as `iaf_thaw`, the encoder trained through the flows' context "
                          "h once they thaw (not detached)",
                          lambda n: lambda: _attached(n)),
    "iaf_mc": ("IAF: flows on the encoder's h (detached), near-identity init (gate bias 4), "
               "outputs x 0.1, Monte Carlo KL", lambda n: _ablation(n, context_dim=HIDDEN[-1])),
    "before": ("pvae before the fix: flows on (loc, log scale), default init, gate bias 2",
               lambda n: _ablation(n, context_dim=None, identity_init=False, gate_bias=2.0,
                                   output_scale=1.0, detach_context=False)),
    "loc_scale": ("near-identity init, flows on (loc, log scale), outputs x 1",
                  lambda n: _ablation(n, context_dim=None, output_scale=1.0,
                                      detach_context=False)),
    "default_init": ("flows on h (trained through), default init, gate bias 2, outputs x 1",
                     lambda n: _ablation(n, context_dim=HIDDEN[-1], identity_init=False,
                                         gate_bias=2.0, output_scale=1.0, detach_context=False)),
    "attached": ("flows on h trained through, near-identity init, outputs x 1",
                 lambda n: _ablation(n, context_dim=HIDDEN[-1], output_scale=1.0,
                                     detach_context=False)),
    "detach": ("flows on h (detached), near-identity init, outputs x 1",
               lambda n: _ablation(n, context_dim=HIDDEN[-1], output_scale=1.0)),
    "scaled": ("flows on h trained through, near-identity init, outputs x 0.1",
               lambda n: _ablation(n, context_dim=HIDDEN[-1], detach_context=False)),
}


def _measure(m, d, xt, args, **fit_kw) -> dict:
    t = time.perf_counter()
    h = pvae.fit(m, d.train.x, epochs=args.epochs, transform=d.transform, **fit_kw)
    secs = time.perf_counter() - t
    torch.manual_seed(0)
    ll = pvae.evaluate.log_likelihood(m, xt, num_samples=args.k, batch_size=100).mean().item()
    torch.manual_seed(0)
    elbo = pvae.evaluate.elbo(m, xt, num_samples=100).mean().item()
    # A flow posterior's mean is a Monte Carlo average: with active_units' default 100 draws
    # its noise alone has variance ~0.01 (the threshold) in a dimension the data do not move;
    # 1000 draws bring it to ~0.001. Gaussian guides give their exact mean either way.
    draws = 1000 if not m.mean_field else 1
    au = sum(int(site["active"]) for site in
             pvae.evaluate.active_units(m, xt, num_samples=draws, batch_size=100).values())
    return {"train_seconds": secs, "train_elbos": h[-1]["train_elbo"], "kls": h[-1]["kl"],
            "test_lls": ll, "test_elbos": elbo, "active_units": au}


def _run(args, res, save, section: str, key: str, base: dict, make, reuse=None,
         fit_for=None, **fit_kw) -> None:
    """Train ``make()`` once per seed; each seed's figures kept (``save``) as it completes.
    ``reuse``: an earlier entry of the same model, budget and evaluation whose seeds are
    taken from it instead of trained again. ``fit_for(model, epochs)``: more options of
    ``pvae.fit`` for that model."""
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=args.smoke)
    xt = d.test.x[: args.test_points]
    out = res.setdefault(section, {})
    entry = dict(base, seeds=[], epochs=args.epochs, k=args.k, test_points=len(xt))
    for seed in args.seeds:
        if reuse and seed in reuse["seeds"]:
            i = reuse["seeds"].index(seed)
            r = {name: reuse[name][i] for name in ("train_seconds", "train_elbos", "kls",
                                                   "test_lls", "test_elbos", "active_units")}
        else:
            torch.manual_seed(seed)
            m = make()
            r = _measure(m, d, xt, args, seed=seed, **fit_kw,
                         **(fit_for(m, args.epochs) if fit_for else {}))
            if getattr(args, "save_models", None):  # for later diagnosis (iaf_probe.py)
                folder = Path(args.save_models)
                folder.mkdir(parents=True, exist_ok=True)
                torch.save(m.state_dict(), folder / f"{key.replace(', ', '_').replace(' ', '')}"
                                                    f"_s{seed}.pt")
        print(section, key, seed, r, flush=True)
        entry["seeds"].append(seed)
        for name, value in r.items():
            entry.setdefault(name, []).append(value)
        out[key] = dict(entry)
        save(res, args.folder)


def bench_iaf(args, res, save) -> None:
    """The variants in ``--iaf-variants`` (default: the plain VAE and the IAF guide)."""
    names = [v for v in args.iaf_variants.split(",") if v]
    for name in names:
        if name not in IAF_VARIANTS:
            raise SystemExit(f"--iaf-variants: unknown {name!r}; valid: {', '.join(IAF_VARIANTS)}")
    for name in names:
        what, maker = IAF_VARIANTS[name]
        flows = 0 if name.startswith("vae") else args.iaf_flows
        key = f"{name}, {flows} flows, {args.epochs} epochs, N {args.test_points}, K {args.k}"
        _run(args, res, save, "iaf", key, {"variant": name, "what": what, "flows": flows},
             maker(args.iaf_flows), fit_for=FIT.get(name))


def bench_free_bits(args, res, save) -> None:
    """The plain VAE trained without and with free bits (``--free-bits`` nats per dim)."""
    same = [r for r in res.get("iaf", {}).values() if r.get("variant") == "vae" and
            (r["epochs"], r["test_points"], r["k"]) == (args.epochs, args.test_points, args.k)]
    for lam in (0.0, args.free_bits):
        key = f"free_bits {lam:g}, {args.epochs} epochs, N {args.test_points}, K {args.k}"
        # the plain VAE is the iaf row's, where that ran with this budget (the same model)
        _run(args, res, save, "free_bits", key, {"free_bits": lam}, _vae,
             reuse=same[0] if same and not lam else None,
             **({"free_bits": lam} if lam else {}))
