"""SEQUENCES.md from the results of benchmarks/sequences.py (imported by it; not a script)."""

from __future__ import annotations

WORDS_GAP, WORDS_KL = 0.05, 1.0  # the targets: bits per character, nats per word


def _machine(res: dict) -> list[str]:
    m = res["machine"]
    lines = [f"The last run: {m['date']} on {m['cpu']} ({m['cores']} cores, torch threads "
             f"{m['torch_threads']}), python {m['python']}, torch {m['torch']}, pyro "
             f"{m['pyro']}, numpy {m['numpy']}. Each section was measured by its command:", ""]
    for name in _sections(res):
        r = res[name]
        lines.append(f"- {name} ({r['date']}, commit {r['commit']}, {r['seconds'] / 60:.1f} "
                     f"minutes): `{r['command']}`" + (f" ({r['note']})" if r.get("note") else ""))
    return lines + [""]


def _words(w: dict) -> list[str]:
    gap_ok = w["gap_bpc"] <= WORDS_GAP
    kl_ok = w["kl_per_word"] >= WORDS_KL
    lines = [
        "## Words: a character VAE against a character language model", "",
        f"{w['train_words']} training and {w['test_words']} test words (wordfreq, a-z), "
        f"{w['vocab_size']} characters. Both models: GRU decoder of {w['hidden_dim']} units, "
        f"{w['embedding_dim']}-wide character embeddings, {w['epochs']} epochs, the same batch "
        f"size and learning rate. The VAE: z_dim {w['z_dim']}, bidirectional GRU encoder, "
        f"word dropout {w['word_dropout']}, KL warm-up over {w['kl_warmup']:g} epochs"
        + _free_bits(w) + ". Bits per character count each word's characters and its end "
        "event.", "",
        "| model | test NLL, bits per character | nats per word | train seconds |",
        "| --- | --- | --- | --- |",
        f"| recurrent language model (reference, plain torch) | {w['lm_bpc']:.4f} | "
        f"{w['lm_nll_per_word']:.3f} | {w['lm_train_seconds']:.0f} |",
        f"| SequenceVAE, importance-sampled (K = {w['k']}) | {w['vae_bpc']:.4f} | "
        f"{w['vae_nll_per_word']:.3f} | {w['vae_train_seconds']:.0f} |", "",
        f"- VAE minus LM: **{w['gap_bpc']:+.4f} bits per character** (target: at most "
        f"+{WORDS_GAP}; "
        f"{'met' if gap_ok else 'missed by ' + format(w['gap_bpc'] - WORDS_GAP, '.4f')})"
        + (f"; the language model's NLL on its training words: {w['lm_train_bpc']:.4f} bits "
           "per character." if "lm_train_bpc" in w else "."),
        f"- KL per word (rate): **{w['kl_per_word']:.2f} nats** (target: at least {WORDS_KL:g}; "
        f"{'met' if kl_ok else 'missed by ' + format(WORDS_KL - w['kl_per_word'], '.2f')}); "
        f"test ELBO {w['vae_elbo_per_word']:.3f} nats per word; active units "
        f"{_units(w['active_units'])}.",
        f"- {len(w['samples'])} samples from the prior, {w['new_samples']} of them not in the "
        "training words: " + ", ".join(f"`{s}`" for s in w["samples"]) + ".",
        f"- Interpolation (greedy decoding along the line between the latent means of "
        f"`{w['interpolation']['from']}` and `{w['interpolation']['to']}`): "
        + " → ".join(f"`{s}`" for s in w["interpolation"]["path"]) + ".", "",
        f"![words]({w.get('figure', 'sequences_words.png')})", ""]
    return lines


def _free_bits(w: dict) -> str:
    """The training objective, where free bits changed it (the figures are the true ones)."""
    if not w.get("free_bits"):
        return ""
    return (f", free bits {w['free_bits']:g} nats per latent dimension (Kingma et al. 2016; "
            f"training objective only, {w.get('elbo', 'trace')} ELBO: the ELBO, KL and NLL "
            "reported are the true ones)")


def _units(units) -> str:
    if not units:
        return "undefined"
    return ", ".join(f"{k}: {v['active']}/{v['dims']}" for k, v in units.items())


def _series(s: dict) -> list[str]:
    lines = ["## UCR series: likelihood and the latent space's classes", "",
             "1-nearest-neighbour (Euclidean, scikit-learn) trained on the training split, "
             "scored on the test split: on the raw series and on the VAE's latent means. "
             "Test log p(x): importance-sampled; KL: the rate, nats per series (near 0: the "
             "decoder ignores z, and the latent means carry little of the class).", "",
             "| data | train / test series, length | epochs (word dropout, KL warm-up) | "
             "test ELBO | test log p(x) per series (per step) | KL | 1-NN raw | 1-NN latent | "
             "train seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in s.items():
        kl = f"{r['kl']:.2f}" if r.get("kl") is not None else "not measured"
        lines.append(f"| {name} | {r['train']} / {r['test']}, {r['length']} | {r['epochs']} "
                     f"({r.get('word_dropout', 0.0):g}, {r.get('kl_warmup', 0.0):g}) | "
                     f"{r['test_elbo']:.2f} | {r['test_ll']:.2f} ({r['test_ll_per_step']:.3f}) | "
                     f"{kl} | {r['knn_raw']:.3f} | {r['knn_latent']:.3f} | "
                     f"{r['train_seconds']:.0f} |")
    lines.append("")
    for name, r in s.items():
        latent, recon = r.get("figures", (f"sequences_{name}_latent.png",
                                          f"sequences_{name}_recon.png"))
        lines += [f"![{name}]({latent}) ![{name} reconstructions]({recon})", ""]
    return lines


def _anomaly(a: dict) -> list[str]:
    lo, hi = a["region"]
    lines = [f"## Anomaly: {a['series']} (UCR anomaly archive)", "",
             f"Training series {a['train_length']} steps (anomaly-free), test series "
             f"{a['test_length']} steps, labelled anomaly steps {lo}..{hi - 1}; the criterion "
             f"asks whether the single highest-scoring step lies in {lo - 100}..{hi - 1 + 100}. "
             f"Period (autocorrelation of the training series): {a['period']} steps.", "",
             "| detector | settings | top step | inside the widened region | seconds |",
             "| --- | --- | --- | --- | --- |",
             f"| SequenceVAE, -ELBO ({a['score_samples']} samples) per window, mean per step | "
             f"windows of {a['window']} (train stride {a['train_stride']}: "
             f"{a['train_windows']} windows; test stride {a['test_stride']}), "
             f"{a['epochs']} epochs | {a['top_step']} | **{'yes' if a['hit'] else 'no'}** | "
             f"{a['train_seconds'] + a['score_seconds']:.0f} |"]
    for d in a["detectors"]:
        if "error" in d:
            lines.append(f"| aeon {d['detector']} | {d['settings']} | not run: {d['error']} | | |")
        else:
            lines.append(f"| aeon {d['detector']} | {d['settings']} | {d['top']} | "
                         f"{'yes' if d['hit'] else 'no'} | {d['seconds']:.1f} |")
    lines += ["", f"ROC AUC of the VAE's per-step scores against the step labels: "
              f"{a['roc_auc_steps']:.3f}. MERLIN marks discords rather than scoring steps; its "
              "location is the middle marked step.", "",
              f"![anomaly]({a.get('figure', 'sequences_anomaly.png')})", ""]
    return lines


def _sections(res: dict) -> list[str]:
    """The measured sections, words, series, anomaly, each with its tagged variants."""
    order = ("words", "series", "anomaly")
    return sorted((k for k in res if k.partition("-")[0] in order),
                  key=lambda k: (order.index(k.partition("-")[0]), k))


def _words_summary(res: dict, names: list[str]) -> list[str]:
    """One row per words run, the headline first: its setting, both models' bits per
    character and the two targets."""
    lines = ["## Words: every run at a glance", "",
             f"Targets, both at once: the VAE's importance-sampled test NLL at most "
             f"+{WORDS_GAP} bits per character above the language model's (same data, epochs, "
             f"batch, learning rate and size), and a KL per word of at least {WORDS_KL:g} nat "
             "with word dropout. Free bits changes only the VAE's training objective; every "
             "figure is the true test NLL, ELBO and KL. The commands are listed above; each "
             "run's section follows.", "",
             "| run | training words, epochs | seed | word dropout | KL warm-up | free bits "
             "(nats per dimension) | z_dim | VAE bpc | LM bpc | VAE minus LM | KL per word "
             "| both targets |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
             "| --- | --- |"]
    for name in names:
        w = res[name]["results"]
        met = (w["gap_bpc"] <= WORDS_GAP and w["kl_per_word"] >= WORDS_KL
               and w["word_dropout"] > 0)
        lines.append(f"| {name} | {w['train_words']}, {w['epochs']} | {w.get('seed', 0)} | "
                     f"{w['word_dropout']:g} | {w['kl_warmup']:g} | {w.get('free_bits', 0):g} "
                     f"| {w['z_dim']} | {w['vae_bpc']:.4f} | {w['lm_bpc']:.4f} | "
                     f"{w['gap_bpc']:+.4f} | {w['kl_per_word']:.2f} | "
                     f"{'**met**' if met else 'no'} |")
    notes = res.get("words_notes", [])  # what the runs show, written when they are merged
    return lines + [""] + [f"- {n}" for n in notes] + ([""] if notes else [])


def markdown(res: dict) -> str:
    lines = ["# Sequence VAEs: words, UCR series, a UCR anomaly", ""] + _machine(res)
    draw = {"words": _words, "series": _series, "anomaly": _anomaly}
    words = [n for n in _sections(res) if n.partition("-")[0] == "words"]
    for name in _sections(res):
        tag = name.partition("-")[2]
        if words and name == words[0]:
            lines += _words_summary(res, words)
        part = draw[name.partition("-")[0]](res[name]["results"])
        if tag:  # another setting of the same section, measured beside the default one
            part[0] += f" ({tag})"
        lines += part
    return "\n".join(lines)
