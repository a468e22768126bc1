"""The "Why the flows do not pay at 20 epochs" part of VARIANTS.md' IAF section, written from
variants.json ("iaf_diagnose": ``python benchmarks/iaf_diagnose.py record``)."""

from __future__ import annotations

FIXED = {
    "fixed_enc": "Gaussian guide: the encoder alone trained (`meanfield`)",
    "fixed_enc8": "Gaussian guide: the encoder alone trained (`meanfield`)",
    "fixed_iaf": "encoder + 2 flows, pvae's default (gate bias 4, outputs x 0.1)",
    "fixed_iaf_os1": "encoder + 2 flows, outputs x 1",
    "fixed_iaf_os1_8": "encoder + 2 flows, outputs x 1",
    "fixed_iaf_gb1": "encoder + 2 flows, gate bias 1, outputs x 1 (not near the identity)",
}


def _fixed(rows: dict, perpoint) -> list[str]:
    if not rows:
        return []
    lines = ["", "The model held fixed (`benchmarks/iaf_diagnose.py fixed`): the 20-epoch "
             "`vae_meanfield` VAE of seed 0 (MF20, `/work/runs/iaf3/models/vae_meanfield_20_s0."
             "pt`, saved by `python benchmarks/iaf_probe.py plain --epochs 20 --elbo meanfield "
             "--save MF20`), its decoder frozen, only the guide trained on all 60,000 training "
             "images; the first 500 test images, K = 1000; the gap is log p(x) - ELBO:", "",
             "| guide trained | epochs | test ELBO before | after | gain | gap after | "
             "minutes | command |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in sorted(rows.items(), key=lambda kv: (kv[1]["epochs"], kv[0])):
        gain = r["end"]["elbo"] - r["start"]["elbo"]
        lines.append(f"| {FIXED.get(name, name)} | {r['epochs']} | {r['start']['elbo']:.2f} | "
                     f"{r['end']['elbo']:.2f} | {gain:+.2f} | {r['end']['gap']:.2f} | "
                     f"{r['minutes']:.1f} | `{r['command'].replace('--load /work/runs/iaf3/models/vae_meanfield_20_s0.pt', '--load MF20')}` |")
    if perpoint:
        p = perpoint
        lines += ["", f"Per image (Cremer et al. 2018, `{p['command'].replace('--load /work/runs/iaf3/models/vae_meanfield_20_s0.pt', '--load MF20')}`, "
                  f"the first 200 test images, {p['minutes']:.0f} minutes): a diagonal Gaussian "
                  "optimised for each image on the same frozen model reaches an ELBO of "
                  f"{p['per-point elbo']:.2f} against the encoder's {p['amortised elbo']:.2f}: "
                  f"the amortisation gap is {p['amortisation gap']:.2f} nats of the "
                  f"{p['model']['gap']:.2f}-nat gap log p(x) - ELBO (K = 1000) on those images, "
                  f"so at most {p['model']['gap'] - p['amortisation gap']:.2f} nats (less the "
                  "K-sample estimator's own bias) are the diagonal family's approximation gap, "
                  "the part a more flexible posterior family closes by being more flexible."]
    return lines


def _move(rows: dict) -> list[str]:
    if not rows:
        return []
    lines = ["", "What the trained flows do (`python benchmarks/iaf_diagnose.py move MODELS/*.pt`; "
             "MODELS is `/work/runs/iaf2/models`, the 20-epoch models above; the first 200 "
             "test images, 200 base draws each): per flow, how far it moves z on the active "
             "units in units of the base scale, its mean and smallest gate sigma, its mean "
             "log-determinant; then the mean absolute correlation between active coordinates "
             "of z within one image, for the flows' output and for the base draws (the noise "
             "floor of 200 draws, about 0.056):", "",
             "| model | moves z (x base scale) | gate mean | gate min | log-det | "
             "corr. within x | base draws |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        f = r["flows"]
        col = lambda k, fmt: ", ".join(fmt.format(v[k]) for v in f)  # noqa: E731
        lines.append(f"| `{name}` | {col('move/scale active', '{:.2f}')} | "
                     f"{col('gate', '{:.3f}')} | {col('gate min', '{:.2f}')} | "
                     f"{col('log det', '{:.1f}')} | "
                     f"{r['mean |corr| within x (active)']:.3f} | "
                     f"{r['same, base draws (noise floor)']:.3f} |")
    return lines


def _toy(rows: dict) -> list[str]:
    if not rows:
        return []
    lines = ["", "Can these flows express a correlated posterior at all, and how fast "
             "(`python benchmarks/iaf_toy.py`: q fitted by reverse KL, as the ELBO fits a "
             "guide, with Adam at lr 1e-3, batch 256; KL(q || p) in nats from 4,000 draws):", "",
             "| target | best diagonal Gaussian | q | KL after " + " / ".join(
                 str(s) for s in next(iter(rows.values()))["steps"]) + " steps |",
             "| --- | --- | --- | --- |"]
    for target, r in rows.items():
        best = "" if r["best_diagonal"] is None else f"{r['best_diagonal']:.2f}"
        for what, kls in r["fits"].items():
            lines.append(f"| {target} | {best} | {what} | {' / '.join(f'{v:.3f}' for v in kls)} |")
    return lines


def markdown(diag: dict) -> list[str]:
    """The diagnostics' tables (empty when ``diag`` is)."""
    if not diag:
        return []
    return (["", "### Why the flows do not pay at 20 epochs (diagnostics of 2026-12-01)"]
            + _move(diag.get("move", {})) + _toy(diag.get("toy", {}))
            + _fixed(diag.get("fixed", {}), diag.get("perpoint")))
