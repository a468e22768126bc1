"""The model variants against the plain VAE on binarised MNIST.

    python benchmarks/variants.py [--epochs N] [--only cvae,hvae,iaf,ssvae,ssvae_baseline]
        [--seeds 0,1,2] [--labels 100,3000] [--ss-epochs N] [--ss-batching balanced]
    python benchmarks/variants.py --smoke [--out DIR]   # every section, seconds, on digits

Measures, each with the same budget; every run adds its sections to
variants.json and rewrites VARIANTS.md (with the commands) in ``--out`` (default
``benchmarks/``; a smoke run: a temporary folder unless given one, never the
committed results):

- cvae:  samples generated for each label, classified by an independent
         classifier (an MLP on the MNIST training images, test accuracy
         printed): the agreement rate (target >= 0.90).
- hvae:  importance-sampled test log-likelihood of HierarchicalVAE against the
         one-layer VAE at the same epochs (target: hvae better).
- iaf:   the same VAE with --iaf-flows inverse autoregressive flows on q(z|x) (and the
         ablations in --iaf-variants): test log-likelihood and ELBO gains, per seed.
- free_bits: the same VAE trained with free bits (--free-bits nats per dimension)
         against plain training: test log-likelihood, ELBO, active units.
- ssvae: test accuracy of q(y|x) after each epoch, with 100 and 3000 labels
         (mean over seeds), for a chosen batching, aux_weight and lr.
- ssvae_baseline: q(y|x)'s network trained on the labelled images alone.
- priors: the VAE with the standard prior, the VampPrior and a mixture of
         Gaussians (``--priors standard,vamp,mog``): test log-likelihood per seed
         (variants_priors.py).
- ladder, ladder_small: the Ladder VAE against the bottom-up hierarchy and the one-layer
         VAE (benchmarks/ladder.py): the long runs' folders scored, and the issue's small
         budget trained here.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import pvae
import variants_priors
import ladder
from common import HERE, ROOT, add_smoke_options, machine, mnist, output_dir, write_json
from variants_iaf import bench_free_bits, bench_iaf, markdown as flows_markdown
from pvae.nets import MLP

OUT, MD = "variants.json", "VARIANTS.md"  # in the output folder
SECTIONS = ("cvae", "hvae", "iaf", "free_bits", "ssvae", "ssvae_baseline", "ssvae_m1m2",
            "priors", "ladder", "ladder_small")


def per_seed(r) -> tuple[str, str]:
    """A run's final test accuracies per seed, and each curve's best epoch (optimistic)."""
    per = ", ".join(f"{a:.4f}" for a in r["accuracies"])
    best = ", ".join(f"{max(c):.4f} (epoch {c.index(max(c)) + 1})" for c in r.get("curves", []))
    return per, best


def markdown(res) -> str:
    m = res["machine"]
    lines = ["# pvae variants on binarised MNIST", "",
             f"Runs accumulate here from the commands below, made at different times and "
             f"commits. The last run: {m['date']} on {m['cpu']} ({m['cores']} cores, torch "
             f"threads {m['torch_threads']}), torch {m['torch']}, pyro {m['pyro']}, commit "
             f"{m['commit']}.",
             "", "Commands (each run adds its sections to variants.json):", ""]
    lines += [f"- `{c}`" for c in res.get("commands", [])]
    if "cvae" in res:
        c = res["cvae"]
        lines += ["", "## Conditional VAE: are generated digits the asked-for digit?", "",
                  f"CVAE (z 16, hidden 400, learned prior), {c['epochs']} epochs "
                  f"({c['train_seconds'] / 60:.1f} min). An independent classifier (784-256-10 "
                  f"MLP on the MNIST training images, test accuracy "
                  f"{c['classifier_test_accuracy']:.4f}) labels {c['samples_per_label']} "
                  f"decoder-mean samples per digit: **agreement {c['agreement']:.3f}** "
                  f"(target >= 0.90). Test log-likelihood log p(x | y): {c['test_ll']:.2f}."]
    if "hvae_iaf" in res:
        h = res["hvae_iaf"]
        lines += ["", "## Hierarchical VAE and flow posterior against the one-layer VAE", "",
                  f"Same budget ({h['vae']['epochs']} epochs, batch 128, Adam 1e-3, dynamic "
                  f"binarisation, seed 0); importance-sampled test log-likelihood on the first "
                  f"{h['test_points']} test images with K = {h['num_samples']}.", "",
                  "| model | test log p(x) | gain over VAE | final train ELBO | KL (nats) | "
                  "train minutes |", "| --- | --- | --- | --- | --- | --- |"]
        base = h["vae"]["test_ll"]
        names = {"vae": "VAE 784-256-256-64", "hvae": "HierarchicalVAE z (64, 32), bottom-up",
                 "iaf": "VAE + 2 IAF flows (pvae before the IAF fix; see below)"}
        for k in ("vae", "hvae", "iaf"):
            if k in h:
                r = h[k]
                kl = ", ".join(f"{n}: {v:.1f}" for n, v in r["kl"].items())
                lines.append(f"| {names[k]} | {r['test_ll']:.2f} | {r['test_ll'] - base:+.2f} | "
                             f"{r['final_train_elbo']:.2f} | {kl} | {r['train_seconds'] / 60:.1f} |")
    lines += flows_markdown(res)
    if "ssvae" in res:
        lines += ["", "## Semi-supervised VAE (M2, enumerated labels, auxiliary classifier)", "",
                  "784-500-50 softplus MLPs, batch 200, Adam, dynamic binarisation; test "
                  "accuracy of q(y|x) on the 10,000 test images after the last epoch. "
                  "Batchings (see `pvae.SemiSupervisedVAE`): `balanced` (the default) pairs an "
                  "unlabelled and a labelled batch in every step, a labelled point weighing as "
                  "much as an unlabelled one; "
                  "`paired` scales each batch to its own set's size (Kingma et al.'s objective "
                  "as written); `separate` takes labelled-only and unlabelled-only steps, every "
                  "point weighted alike, as Pyro's tutorial (the same objective as `paired`). The "
                  "best-epoch column is the highest test accuracy seen at any epoch end: an "
                  "optimistic figure, for the curve's shape only.", "",
                  "| labels | batching | aux_weight | lr | epochs | test accuracy, mean | per seed "
                  "| best epoch (optimistic) | minutes per run |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in res["ssvae"].values():
            per, best = per_seed(r)
            mins = sum(r["train_seconds"]) / len(r["train_seconds"]) / 60
            lines.append(f"| {r['labels']} | {r.get('batching', 'paired')} | "
                         f"{r.get('aux_weight', 50.0):g} | {r.get('lr', 3e-4):g} | {r['epochs']} | "
                         f"{r['accuracy_mean']:.4f} | {per} | {best} | {mins:.1f} |")
        if "ssvae_baseline" in res:
            lines += ["", "Supervised only: q(y|x)'s network (784-500-10 softplus) trained on the "
                      "labelled images alone with cross-entropy (Adam 3e-4, batches of up to 200, "
                      "dynamic binarisation) for as many steps as 10 epochs of the "
                      "semi-supervised run:", "",
                      "| labels | steps | test accuracy, mean | per seed |", "| --- | --- | --- | --- |"]
            for r in res["ssvae_baseline"].values():
                lines.append(f"| {r['labels']} | {r['steps']} | {np.mean(r['accuracies']):.4f} | "
                             + ", ".join(f"{a:.4f}" for a in r["accuracies"]) + " |")
    if "ssvae_m1m2" in res:
        lines += ["", "## Semi-supervised M1+M2 (Kingma et al. 2014), from pvae pieces", "",
                  "M1: `pvae.VAE(784, 50, hidden_dims=(500, 500), activation='softplus')`, "
                  "analytic KL, batch 100, Adam 1e-3, dynamic binarisation, on all 60,000 "
                  "training images (labels unused), with a linear KL warm-up over the first "
                  "epochs where the table says; active units: code dimensions whose posterior "
                  "mean has variance > 0.01 over the test images (Burda et al. 2016). M2: "
                  "`pvae.SemiSupervisedVAE(50, 10, z_dim, "
                  "hidden_dims=(500,), likelihood='gaussian', scale 'predicted')` trained with "
                  "`elbo='enum'` and batch 200 on codes z1 ~ q(z1|x) drawn afresh each step "
                  "(`transform=pvae.latent.Features(m1, transform=d.transform)`); test accuracy "
                  "of q(y|z1) at the posterior means of the 10,000 binarised test images after "
                  "the last epoch. Best epoch: optimistic, for the curve's shape only. Where "
                  "the labels column says so, 10,000 training images (drawn by the seed) were "
                  "held out with their labels (50,000 left for M1 and M2) and the "
                  "validation-selected column gives the test accuracy at the first epoch of "
                  "best validation accuracy: Pyro's tutorial's protocol. Where the "
                  "aux_weight column adds a balance_weight, the M2 had the class-balance "
                  "term on unlabelled batches (`SemiSupervisedVAE(balance_weight=...)`).", "",
                  "| labels | M1 epochs | M2 z_dim | batching | aux_weight | M2 training | "
                  "test accuracy, mean | per seed | best epoch (optimistic) | "
                  "validation-selected: mean (per seed) | M1 + M2 minutes |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in res["ssvae_m1m2"].values():
            per, best = per_seed(r)
            mins = (sum(r["m1_seconds"]) + sum(r["m2_seconds"])) / len(r["m1_seconds"]) / 60
            m1 = str(r["m1_epochs"])
            if r.get("m1_warmup"):
                m1 += f" (KL warm-up {r['m1_warmup']:g})"
            if r.get("m1_active_units"):
                m1 += f"; active units {', '.join(map(str, r['m1_active_units']))}"
            labels = str(r["labels"]) + (f"; {r['val']} for validation" if r.get("val") else "")
            sel = ""
            if r.get("val_selected"):
                sel = (f"{np.mean(r['val_selected']):.4f} ("
                       + ", ".join(f"{a:.4f}" for a in r["val_selected"]) + ")")
            aux = f"{r['aux_weight']:g}"
            if r.get("balance_weight"):
                aux += f"; balance_weight {r['balance_weight']:g}"
            lines.append(f"| {labels} | {m1} | {r['m2_z']} | {r['batching']} | "
                         f"{aux} | "
                         f"{r.get('stages', str(r['epochs']) + ' epochs at lr ' + format(r['lr'], 'g'))} | "
                         f"{r['accuracy_mean']:.4f} | {per} | {best} | {sel} | {mins:.1f} |")
    if "ssvae_replica" in res:
        lines += ["", "## Pyro's SS-VAE example, replicated in plain Pyro", "",
                  "`benchmarks/ssvae_replica.py`: the schedule and settings of Pyro's "
                  "`examples/vae/ss_vae_M2.py` (784-500 softplus MLPs with N(0, 0.001) hidden "
                  "initialisation (`tiny`) or PyTorch's default, clipped softmax and sigmoid, grey "
                  "inputs, the first 50,000 training images, batch 200, Adam 4.2e-4 shared by "
                  "the enumerated ELBO and the auxiliary term (weight 46), one labelled step "
                  "every 50,000 / labels steps), written here. Test accuracy of q(y|x) after "
                  "each epoch:", "",
                  "| labels | init | seed | epochs | test accuracy by epoch | minutes |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in res["ssvae_replica"].values():
            curve = ", ".join(f"{a:.3f}" for a in r["curve"])
            lines.append(f"| {r['labels']} | {r['init']} | {r['seed']} | {len(r['curve'])} | "
                         f"{curve} | {r['minutes']:.1f} |")
    if "ssvae" in res or "ssvae_m1m2" in res:
        lines += ["", "Pyro's tutorial reports 0.932 (100 labels) and 0.958 (3000 labels), the "
                  "test accuracy at the epoch of best accuracy on 10,000 labelled validation "
                  "images; Kingma et al. report 0.88 for M2 alone with 100 labels."]
    lines += variants_priors.markdown(res)
    lines += ladder.markdown(res)
    return "\n".join(lines) + "\n"


PER_SEED = ("accuracies", "curves", "train_seconds", "m1_seconds", "m2_seconds", "m1_active_units",
            "elbo_curves", "val_curves", "val_selected",
            "test_lls", "test_elbos", "train_elbos", "kls", "active_units")  # iaf, free_bits


def merge_seeds(old, new):
    """One configuration's runs from several processes: the union of their seeds (a seed
    measured again takes the new figures)."""
    if not (isinstance(old, dict) and isinstance(new, dict) and "seeds" in old and "seeds" in new):
        return new
    runs = {}
    for entry in (old, new):
        for i, seed in enumerate(entry["seeds"]):
            runs[seed] = {k: entry[k][i] for k in PER_SEED if k in entry}
    out = dict(new, seeds=sorted(runs))
    for k in PER_SEED:
        out.pop(k, None)
        if all(k in run for run in runs.values()):  # a figure only some runs recorded is dropped
            out[k] = [runs[seed][k] for seed in out["seeds"]]
    if "accuracies" in out:
        out["accuracy_mean"] = float(np.mean(out["accuracies"]))
    return out


def save(res, folder: Path = HERE) -> str:
    """Merge this run's results into ``folder``/variants.json (under a lock, so that runs in
    parallel processes keep each other's sections) and rewrite VARIANTS.md from the merged
    file."""
    out, md = folder / OUT, folder / MD
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = json.loads(out.read_text()) if out.exists() else {}
        for key, value in res.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "machine":
                for name, run in value.items():
                    merged[key][name] = merge_seeds(merged[key].get(name), run)
            elif key == "commands":
                merged[key] = list(dict.fromkeys(merged.get(key, []) + value))
            else:
                merged[key] = value
        write_json(out, merged)
        text = markdown(merged)
        md.write_text(text)
    return text


def fit_timed(model, data, **kw):
    t = time.perf_counter()
    history = pvae.fit(model, data, **kw)
    return history, time.perf_counter() - t


def test_ll(model, x, k):
    torch.manual_seed(0)
    return pvae.evaluate.log_likelihood(model, x, num_samples=k, batch_size=100).mean().item()


class Classifier:
    """An independent digit classifier: a 784-256-10 MLP trained on the MNIST training images."""

    def __init__(self, d, epochs: int = 5):
        torch.manual_seed(123)
        self.net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                       torch.nn.Linear(256, 10))
        opt = torch.optim.Adam(self.net.parameters(), 1e-3)
        x, y = d.train.x, d.train.y
        for _ in range(epochs):
            for idx in torch.randperm(len(x)).split(128):
                loss = torch.nn.functional.cross_entropy(self.net(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.test_accuracy = accuracy(self.predict(d.test.x), d.test.y)

    @torch.no_grad()
    def predict(self, x):
        return self.net(x).argmax(-1)


def classifier(d):
    clf = Classifier(d)
    return clf, clf.test_accuracy


def bench_cvae(args, res):
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=args.smoke)
    torch.manual_seed(0)
    m = pvae.CVAE(784, 16, num_classes=10, hidden_dims=(400,))
    h, secs = fit_timed(m, (d.train.x, d.train.y), epochs=args.epochs, transform=d.transform,
                        seed=0)
    clf, clf_acc = classifier(mnist(flatten=True, val_fraction=0.0, smoke=args.smoke))
    print("classifier test accuracy", clf_acc, flush=True)
    labels = torch.arange(10).repeat_interleave(100)
    torch.manual_seed(0)
    samples = m.sample(len(labels), y=labels)
    agree = float((clf.predict(samples) == labels).float().mean())
    res["cvae"] = {"epochs": args.epochs, "train_seconds": secs, "classifier_test_accuracy": clf_acc,
                   "agreement": agree, "samples_per_label": 100,
                   "test_ll": test_ll(m, (d.test.x, d.test.y), args.k)}


def bench_hvae_iaf(args, res, which):
    d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, smoke=args.smoke)
    xt = d.test.x[: args.test_points]
    out = {}
    makers = {
        # ReLU throughout: at these budgets tanh learned far slower here (HVAE -177 vs
        # -139 nats on 10k images x 8 epochs), which hid the hierarchy's effect.
        "vae": lambda: pvae.VAE(784, 64, hidden_dims=(256, 256)),
        "hvae": lambda: pvae.HierarchicalVAE(784, (64, 32), hidden_dims=(256, 256)),
        "iaf": lambda: pvae.VAE(784, 64, hidden_dims=(256, 256), guide_flows=2),
    }
    for name in ["vae"] + which:
        torch.manual_seed(0)
        m = makers[name]()
        h, secs = fit_timed(m, d.train.x, epochs=args.epochs, transform=d.transform, seed=0)
        out[name] = {"epochs": args.epochs, "train_seconds": secs,
                     "final_train_elbo": h[-1]["train_elbo"], "test_ll": test_ll(m, xt, args.k),
                     "kl": {k: v for k, v in h[-1].items() if k.startswith("kl")}}
        print(name, out[name], flush=True)
    out["test_points"], out["num_samples"] = len(xt), args.k
    res["hvae_iaf"] = out


def accuracy(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Share of labelled rows whose most probable class is the label (pvae's one definition)."""
    return pvae.evaluate.accuracy(probs, y)["accuracy"]


def supervised_baseline(d, seed: int, steps: int) -> float:
    """Test accuracy of q(y|x)'s network (784-500-10 softplus) trained on the labelled
    images alone: cross-entropy, Adam 3e-4, batches of up to 200 labelled images,
    dynamic binarisation, ``steps`` steps (as many as the semi-supervised run takes)."""
    torch.manual_seed(seed)
    net = MLP(784, (500,), 10, "softplus")
    opt = torch.optim.Adam(net.parameters(), 3e-4)
    lab = torch.nonzero(d.train.y >= 0).squeeze(-1)
    g = torch.Generator().manual_seed(seed)
    done = 0
    while done < steps:
        for idx in lab[torch.randperm(len(lab), generator=g)].split(200):
            x = d.transform(d.train.x[idx])
            loss = torch.nn.functional.cross_entropy(net(x), d.train.y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    with torch.no_grad():
        return accuracy(net(d.test.x), d.test.y)


def bench_ssvae_baseline(args, res):
    out = res.setdefault("ssvae_baseline", {})
    for labels in args.labels:
        accs = []
        for seed in args.seeds:
            d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, num_labelled=labels,
                      seed=seed, smoke=args.smoke)
            steps = -(-(len(d.train.y) - labels) // 200) * 10  # 10 epochs of unlabelled steps
            accs.append(supervised_baseline(d, seed, steps))
            print("supervised only", labels, seed, accs[-1], flush=True)
        out[str(labels)] = {"labels": labels, "steps": steps, "seeds": args.seeds,
                            "accuracies": accs}


def bench_ssvae(args, res):
    out = res.setdefault("ssvae", {})
    for labels in args.labels:
        accs, secs_all, curves = [], [], []
        for seed in args.seeds:
            d = mnist(binarize="dynamic", flatten=True, val_fraction=0.0, num_labelled=labels,
                      seed=seed, smoke=args.smoke)
            torch.manual_seed(seed)
            m = pvae.SemiSupervisedVAE(784, 10, z_dim=50, hidden_dims=(500,),
                                       aux_weight=args.ss_aux, batching=args.ss_batching)
            curve = []

            def test_accuracy(row, m=m, d=d, curve=curve):
                curve.append(accuracy(m.classify(d.test.x), d.test.y))
                print("  epoch", row["epoch"], round(row["seconds"], 1), "test accuracy",
                      round(curve[-1], 4), flush=True)

            h, secs = fit_timed(m, (d.train.x, d.train.y), elbo="enum", epochs=args.ss_epochs,
                                batch_size=200, lr=args.ss_lr, transform=d.transform, seed=seed,
                                callback=test_accuracy)
            accs.append(curve[-1])
            secs_all.append(secs)
            curves.append(curve)
            print("ssvae", labels, seed, curve[-1], secs, flush=True)
            key = (f"{labels} labels, {args.ss_batching}, aux {args.ss_aux:g}, lr {args.ss_lr:g}, "
                   f"{args.ss_epochs} epochs")
            out[key] = {"labels": labels, "batching": args.ss_batching, "aux_weight": args.ss_aux,
                        "lr": args.ss_lr, "accuracy_mean": float(np.mean(accs)),
                        "accuracies": accs, "curves": curves, "seeds": args.seeds[: len(accs)],
                        "epochs": args.ss_epochs, "train_seconds": secs_all}
            save(res, args.folder)  # each run kept as it completes


def bench_ssvae_m1m2(args, res):
    """Kingma et al.'s M1+M2 from pvae pieces: a VAE (M1) on all training images, then the
    semi-supervised M2 on its latent codes, drawn afresh each step (pvae.latent.Features)."""
    out = res.setdefault("ssvae_m1m2", {})
    plan = [(args.ss_epochs, args.ss_lr)]  # M2 stages: (epochs, lr), each with a fresh Adam
    if args.ss_final_epochs:  # a second stage at a lower learning rate
        plan.append((args.ss_final_epochs, args.ss_final_lr))
    stages = f"{plan[0][0]} epochs at lr {plan[0][1]:g}" + "".join(
        f" + {e} at {lr:g}" for e, lr in plan[1:])
    for labels in args.labels:
        warm = f" (KL warm-up {args.m1_warmup:g})" if args.m1_warmup else ""
        val = f", {args.val} labelled validation images" if args.val else ""
        bal = f", balance {args.ss_balance:g}" if args.ss_balance else ""
        key = (f"{labels} labels, M1 {args.m1_epochs} epochs{warm}, M2 z {args.m2_z}, "
               f"{args.ss_batching}, aux {args.ss_aux:g}{bal}, {stages}{val}")
        accs, curves, secs1, secs2, active = [], [], [], [], []
        val_curves, elbo_curves, selected = [], [], []
        for seed in args.seeds:
            # --val: Pyro's tutorial protocol, N training images held out with their
            # labels to pick the epoch; the rest are the training set (50,000 for N = 10,000)
            d = mnist(binarize="dynamic", flatten=True, val_fraction=args.val / 60000,
                      num_labelled=labels, seed=seed, smoke=args.smoke)
            torch.manual_seed(seed)
            m1 = pvae.VAE(784, 50, hidden_dims=(500, 500), activation="softplus")
            _, s1 = fit_timed(m1, d.train.x, elbo="meanfield", epochs=args.m1_epochs,
                              batch_size=100, lr=1e-3, transform=d.transform, seed=seed,
                              kl_warmup=args.m1_warmup)
            m2 = pvae.SemiSupervisedVAE(50, 10, z_dim=args.m2_z, hidden_dims=(500,),
                                        likelihood="gaussian",
                                        likelihood_kwargs={"scale": "predicted"},
                                        aux_weight=args.ss_aux, batching=args.ss_batching,
                                        balance_weight=args.ss_balance)
            test_codes = pvae.latent.Features(m1, sample=False)(d.test.x)
            # active units (Burda et al. 2016): code dimensions whose posterior mean varies
            active.append(int((test_codes.var(0) > 0.01).sum()))
            val_codes = pvae.latent.Features(m1, sample=False)(d.val.x) if args.val else None
            curve, val_curve, elbo_curve = [], [], []

            def record(row, m2=m2, d=d, curve=curve, test_codes=test_codes,
                       val_codes=val_codes, val_curve=val_curve, elbo_curve=elbo_curve):
                curve.append(accuracy(m2.classify(test_codes), d.test.y))
                elbo_curve.append(row["train_elbo"])
                line = f"  epoch {row['epoch']} {row['seconds']:.1f} test accuracy {curve[-1]:.4f}"
                if val_codes is not None:
                    val_curve.append(accuracy(m2.classify(val_codes), d.val.y))
                    line += f" validation accuracy {val_curve[-1]:.4f}"
                print(line, flush=True)

            codes = pvae.latent.Features(m1, transform=d.transform)
            s2 = 0.0
            for stage, (epochs, lr) in enumerate(plan):
                _, s = fit_timed(m2, (d.train.x, d.train.y), elbo="enum", epochs=epochs,
                                 batch_size=200, lr=lr, seed=seed + 1000 * stage,
                                 callback=record, transform=codes)
                s2 += s
            accs.append(curve[-1])
            curves.append(curve)
            elbo_curves.append(elbo_curve)
            if args.val:  # the test accuracy at the first epoch of best validation accuracy
                val_curves.append(val_curve)
                selected.append(curve[val_curve.index(max(val_curve))])
            secs1.append(s1)
            secs2.append(s2)
            print("ssvae M1+M2", labels, seed, curve[-1], s1, s2, "M1 active units", active[-1],
                  flush=True)
            if args.save_models:  # for later diagnosis: M2 restarts on a fixed M1, confusions
                folder = Path(args.save_models)
                folder.mkdir(parents=True, exist_ok=True)
                tag = f"{labels}labels_val{args.val}_seed{seed}"
                m1.save(str(folder / f"m1_{tag}.pt"))
                m2.save(str(folder / f"m2_{tag}.pt"))
            out[key] = {"labels": labels, "m1_epochs": args.m1_epochs, "m2_z": args.m2_z,
                        "m1_warmup": args.m1_warmup,
                        "batching": args.ss_batching, "aux_weight": args.ss_aux, "lr": args.ss_lr,
                        "balance_weight": args.ss_balance,
                        "epochs": args.ss_epochs, "stages": stages,
                        "accuracy_mean": float(np.mean(accs)),
                        "accuracies": accs, "curves": curves, "seeds": args.seeds[: len(accs)],
                        "m1_seconds": secs1, "m2_seconds": secs2, "m1_active_units": active,
                        "elbo_curves": elbo_curves}
            if args.val:
                out[key].update(val=args.val, val_curves=val_curves, val_selected=selected)
            save(res, args.folder)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--ss-epochs", type=int, default=50)
    p.add_argument("--ss-batching", default="balanced", choices=["balanced", "separate", "paired"])
    p.add_argument("--ss-aux", type=float, default=50.0, help="ssvae: aux_weight")
    p.add_argument("--ss-lr", type=float, default=3e-4)
    p.add_argument("--ss-balance", type=float, default=0.0,
                   help="ssvae_m1m2: the M2's balance_weight (class-balance term, 0 = off)")
    p.add_argument("--m1-epochs", type=int, default=30, help="ssvae_m1m2: epochs of the VAE M1")
    p.add_argument("--m1-warmup", type=float, default=0.0,
                   help="ssvae_m1m2: epochs of linear KL warm-up of the M1 (fit's kl_warmup)")
    p.add_argument("--m2-z", type=int, default=10, help="ssvae_m1m2: z_dim of the M2")
    p.add_argument("--ss-final-epochs", type=int, default=0,
                   help="ssvae_m1m2: epochs of a second stage at --ss-final-lr")
    p.add_argument("--ss-final-lr", type=float, default=2e-4)
    p.add_argument("--val", type=int, default=0,
                   help="ssvae_m1m2: hold out this many labelled training images (Pyro's "
                        "tutorial: 10000) and also report the test accuracy at the epoch of "
                        "best validation accuracy")
    p.add_argument("--save-models", default=None,
                   help="ssvae_m1m2: a folder to save each seed's trained M1 and M2 in")
    p.add_argument("--iaf-flows", type=int, default=2, help="iaf: guide_flows")
    p.add_argument("--iaf-variants", default="vae,iaf",
                   help="iaf: what to train: vae, iaf and the ablations before, loc_scale, "
                        "default_init")
    p.add_argument("--free-bits", type=float, default=0.5,
                   help="free_bits: the floor lambda (nats per latent dimension)")
    p.add_argument("--ladder-runs", default=str(ROOT / "runs"),
                   help="ladder: folders (comma-separated) holding the run folders ladder_NAME "
                        "(default: the checkout's runs/, where `pvae train --out runs/NAME` "
                        "writes them)")
    p.add_argument("--ladder-names", default="",
                   help="ladder: score only these runs (comma-separated names of ladder.RUNS; "
                        "default every run found)")
    p.add_argument("--ladder-small", default="flat,bottom_up/none,top_down/none,"
                   "bottom_up/layer,top_down/layer",
                   help="ladder_small: models (flat or GUIDE/NORM), each without and with warm-up")
    p.add_argument("--ladder-small-n", type=int, default=20000,
                   help="ladder_small: training images")
    p.add_argument("--ladder-warmups", default="0,3",
                   help="ladder_small: epochs of KL warm-up; each model is trained with each")
    p.add_argument("--only", default="cvae,hvae,iaf,ssvae")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--labels", default="100,3000", help="ssvae: numbers of labels")
    p.add_argument("--k", type=int, default=1000, help="importance samples for test LL")
    p.add_argument("--test-points", type=int, default=2000)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--priors", default="standard,vamp,mog", help="priors: which to train")
    add_smoke_options(p, HERE)
    args = p.parse_args(argv if argv is not None else sys.argv[1:])
    if args.smoke:  # every section, one seed, one epoch, tiny K
        given = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        if "--only" not in given:
            args.only = ",".join(SECTIONS)
        args.epochs = args.ss_epochs = args.m1_epochs = 1
        args.seeds, args.labels, args.k, args.test_points = "0", "20", 10, 32
        args.val = args.val and 10000  # a validation split only where asked for
    args.folder = output_dir(args, HERE)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.labels = [int(n) for n in args.labels.split(",")]
    args.ladder_warmups = [float(w) for w in args.ladder_warmups.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    only = args.only.split(",")
    unknown = [name for name in only if name not in SECTIONS]
    if unknown:
        p.error(f"--only: unknown section {unknown[0]!r}; valid: {', '.join(SECTIONS)}")
    out = args.folder / OUT
    res = json.loads(out.read_text()) if out.exists() else {}
    res["machine"] = machine()
    res.setdefault("commands", []).append("python benchmarks/variants.py " + " ".join(
        f"--{k.replace('_', '-')} {v if not isinstance(v, list) else ','.join(map(str, v))}"
        for k, v in vars(args).items()
        if v is not None and k not in ("smoke", "out", "folder")) + (
            " --smoke" if args.smoke else ""))
    if "cvae" in only:
        bench_cvae(args, res)
        save(res, args.folder)
    if "iaf" in only:
        bench_iaf(args, res, save)
    if "free_bits" in only:
        bench_free_bits(args, res, save)
    which = [w for w in ("hvae",) if w in only]
    if which:
        bench_hvae_iaf(args, res, which)
        save(res, args.folder)
    if "ssvae" in only:
        bench_ssvae(args, res)
        save(res, args.folder)
    if "ssvae_baseline" in only:
        bench_ssvae_baseline(args, res)
        save(res, args.folder)
    if "ssvae_m1m2" in only:
        bench_ssvae_m1m2(args, res)
        save(res, args.folder)
    if "priors" in only:
        variants_priors.bench_priors(args, res, mnist=mnist, fit_timed=fit_timed,
                                     test_ll=test_ll, save=save)
    if "ladder" in only and not args.smoke:  # reads run folders: nothing to smoke-test on
        ladder.bench_ladder(args, res)
        save(res, args.folder)
    if "ladder_small" in only:
        ladder.bench_ladder_small(args, res, mnist, lambda: save(res, args.folder))
        save(res, args.folder)
    print((args.folder / MD).read_text())
    return json.loads(out.read_text())


if __name__ == "__main__":
    main()
