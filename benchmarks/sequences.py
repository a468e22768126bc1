"""Sequence VAEs on words, UCR series and a UCR anomaly series, against plain references.

    python benchmarks/sequences.py [--only words,series,anomaly] [--threads 1]
        [--words-epochs N] [--series-epochs N] [--anomaly-epochs N] [--k K]
        [--word-dropout P] [--kl-warmup E] [--free-bits NATS] [--words-seed S]
    python benchmarks/sequences.py --smoke [--out DIR]   # every section, seconds

Measures (every figure in nats unless it says bits; results in sequences.json and
SEQUENCES.md, figures beside them, in ``--out``, default ``benchmarks/``):

- words: a character-level :class:`pvae.SequenceVAE` on wordfreq's English words
  (``pvae.data.load("words")``), word dropout and KL warm-up against posterior
  collapse (Bowman et al. 2016). Its importance-sampled test NLL in bits per
  character (each word's characters and its end event) against a plain
  recurrent language model of the decoder's size trained as long
  (``seq_references.CharLM``; target: the VAE no worse by more than 0.05 bpc),
  the KL per word (target: at least 1 nat), optionally free bits in the VAE's
  training objective (``--free-bits``; the figures stay the true NLL, ELBO and
  KL), samples (how many are new words)
  and a greedy-decoded interpolation between two test words.
- series: GunPoint and ItalyPowerDemand (UCR, shipped with aeon): test
  log-likelihood per series, 1-NN accuracy on the latent means beside 1-NN on
  the raw series (scikit-learn, Euclidean), a 2-D latent scatter by class.
- anomaly: InternalBleeding16 (UCR anomaly archive): train on windows of the
  anomaly-free training part, score windows of the test series (-ELBO), map the
  scores to steps, and apply the archive's criterion (top step within the
  labelled region widened by 100 steps); aeon's own detectors beside it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from pathlib import Path

import torch

import pvae
import seq_references as ref
from common import HERE, add_smoke_options, machine, output_dir, write_json
from seq_report import markdown
from pvae import latent, plots, sequence_plots

OUT, MD = "sequences.json", "SEQUENCES.md"  # in the output folder
SECTIONS = ("words", "series", "anomaly")
SERIES_SETS = ("gunpoint", "italy_power_demand")


def _png(args, folder: Path, stem: str) -> Path:
    """A figure's file: ``sequences_STEM.png``, or ``sequences_STEM-TAG.png`` with ``--tag``."""
    return folder / f"sequences_{stem}{'-' + args.tag if args.tag else ''}.png"


def _fit(model, data, args, epochs: int, *, kl_warmup: float = 0.0, batch_size: int = 64,
         seed: int = 0, **options):
    t0 = time.perf_counter()
    history = pvae.fit(model, data, epochs=epochs, batch_size=batch_size, lr=args.lr,
                       kl_warmup=kl_warmup, seed=seed, progress=False, **options)
    return history, time.perf_counter() - t0


def _decode_text(vocab, x, lengths) -> list[str]:
    return vocab.decode(x.cpu(), lengths.cpu())


def words(args, folder: Path) -> dict:
    """The character VAE against the character language model of its decoder's size."""
    d = pvae.data.load("words", max_train=args.words_train, seed=0)
    tr, te = d.train, d.test
    if args.smoke:
        te = pvae.data.Sequences(te.x[:64], te.lengths[:64])
    v, h, e = d.vocab_size, args.hidden, args.embed
    torch.manual_seed(args.words_seed)
    vae = pvae.SequenceVAE(vocab_size=v, z_dim=args.z_dim, hidden_dim=h, embedding_dim=e,
                           word_dropout=args.word_dropout, bidirectional_encoder=True,
                           excluded_ids=d.vocab.excluded_ids)
    hist, vae_s = _fit(vae, tr, args, args.words_epochs, kl_warmup=args.kl_warmup,
                       batch_size=args.batch_size, free_bits=args.free_bits, elbo=args.elbo,
                       seed=args.words_seed)
    torch.manual_seed(args.words_seed)
    lm = ref.CharLM(v, hidden_dim=h, embed_dim=e, excluded_ids=d.vocab.excluded_ids)
    lm_s = ref.train_lm(lm, tr.x, tr.lengths, epochs=args.words_epochs,
                        batch_size=args.batch_size, lr=args.lr, seed=args.words_seed)
    vae.eval()
    torch.manual_seed(1)
    rep = pvae.evaluate.report(vae, te, num_samples=args.k, diagnostics=True, seed=1)
    vae_nll = -rep["log_likelihood"]  # importance-sampled (K = args.k), nats per word
    vae_bpc = ref.bits_per_char(torch.tensor(vae_nll * len(te)), te.lengths)
    lm_nll = ref.lm_nll(lm, te.x, te.lengths)
    lm_bpc = ref.bits_per_char(lm_nll, te.lengths)
    lm_train_bpc = ref.bits_per_char(ref.lm_nll(lm, tr.x, tr.lengths), tr.lengths)  # overfit?
    torch.manual_seed(2)
    sx, sl = vae.sample(args.num_samples, max_len=d.max_len + 5)
    samples = _decode_text(d.vocab, sx, sl)
    known = set(_decode_text(d.vocab, tr.x, tr.lengths))
    rx, rl = vae.reconstruct(te.x[:12], te.lengths[:12])
    originals = _decode_text(d.vocab, te.x[:12], te.lengths[:12])
    a, b = _pair(originals)
    path = _interpolation(vae, te, a, b)
    words_between = _decode_text(d.vocab, *path)
    sequence_plots.text_table({"test word": originals,
                               "reconstruction": _decode_text(d.vocab, rx, rl),
                               "sample": samples[:12],
                               "interpolation": words_between},
                              _png(args, folder, "words"),
                              title="Character VAE on English words")
    return {
        "train_words": len(tr), "test_words": len(te), "vocab_size": v, "epochs":
        args.words_epochs, "hidden_dim": h, "embedding_dim": e, "z_dim": args.z_dim,
        "word_dropout": args.word_dropout, "kl_warmup": args.kl_warmup, "k": args.k,
        "free_bits": args.free_bits, "elbo": args.elbo, "seed": args.words_seed,
        "batch_size": args.batch_size, "lr": args.lr,
        "vae_bpc": vae_bpc, "lm_bpc": lm_bpc, "gap_bpc": vae_bpc - lm_bpc,
        "lm_train_bpc": lm_train_bpc,
        "vae_nll_per_word": vae_nll, "lm_nll_per_word": lm_nll.mean().item(),
        "vae_elbo_per_word": rep["elbo"],
        "kl_per_word": rep["rate"], "active_units": rep["active_units"],
        "vae_train_seconds": vae_s, "lm_train_seconds": lm_s,
        "last_epoch": hist[-1], "samples": samples,
        "new_samples": sum(s not in known for s in samples),
        "interpolation": {"from": originals[a], "to": originals[b], "path": words_between},
        "figure": _png(args, folder, "words").name,
    }


def _pair(words_: list[str]) -> tuple[int, int]:
    """Two distinct test words of similar length to interpolate between."""
    for i in range(len(words_)):
        for j in range(i + 1, len(words_)):
            if words_[i] != words_[j] and abs(len(words_[i]) - len(words_[j])) <= 2:
                return i, j
    return 0, 1


def _interpolation(model, te, a: int, b: int, steps: int = 8):
    """Greedy decodings along the line between two test words' latent means."""
    return latent.interpolate(model, (te.x[a], te.lengths[a]), (te.x[b], te.lengths[b]),
                              steps=steps)[1]


def series(args, folder: Path) -> dict:
    """GunPoint and ItalyPowerDemand: test log-likelihood, latent 1-NN beside raw 1-NN."""
    out = {}
    for name in SERIES_SETS:
        d = pvae.data.load(name, val_fraction=0.0, seed=0)
        tr, te = d.train, d.test
        if args.series_test:
            te = pvae.data.Sequences(te.x[:args.series_test], te.lengths[:args.series_test],
                                     te.y[:args.series_test])
        torch.manual_seed(0)
        model = pvae.SequenceVAE(x_dim=d.step_dim, z_dim=args.series_z,
                                 hidden_dim=args.series_hidden, likelihood="gaussian",
                                 word_dropout=args.series_word_dropout)
        hist, secs = _fit(model, tr, args, args.series_epochs, batch_size=32,
                          kl_warmup=args.series_kl_warmup)
        model.eval()
        rep = pvae.evaluate.report(model, te, num_samples=args.k, seed=1, diagnostics=True)
        z_tr = model.embed(tr.x, tr.lengths)
        z_te = model.embed(te.x, te.lengths)
        raw = ref.knn_accuracy(tr.x.numpy(), tr.y.numpy(), te.x.numpy(), te.y.numpy())
        lat = ref.knn_accuracy(z_tr.numpy(), tr.y.numpy(), z_te.numpy(), te.y.numpy())
        coords, how = latent.embed_2d(z_te, "auto")
        plots.latent_scatter(coords, _png(args, folder, f"{name}_latent"), labels=te.y,
                             method=how, title=f"{name}: test series' latent means")
        rx, _ = model.reconstruct(te.x[:4], te.lengths[:4])
        sequence_plots.sequence_lines(te.x[:4], te.lengths[:4],
                                      _png(args, folder, f"{name}_recon"), reconstruction=rx,
                                      labels=te.y[:4].tolist(),
                                      title=f"{name}: test series and reconstructions")
        out[name] = {"train": len(tr), "test": len(te), "length": d.max_len,
                     "epochs": args.series_epochs, "z_dim": args.series_z,
                     "word_dropout": args.series_word_dropout,
                     "kl_warmup": args.series_kl_warmup,
                     "kl": rep.get("rate"),
                     "test_elbo": rep["elbo"], "test_ll": rep["log_likelihood"],
                     "test_ll_per_step": rep["log_likelihood"] / d.max_len,
                     "knn_raw": raw, "knn_latent": lat, "train_seconds": secs,
                     "last_epoch": hist[-1], "figures": [
                         _png(args, folder, f"{name}_{k}").name for k in ("latent", "recon")]}
    return out


def anomaly(args, folder: Path) -> dict:
    """InternalBleeding16: the VAE's window scores and aeon's detectors, by the UCR criterion."""
    a = pvae.data.load("ucr_anomaly_135")
    region = (a.region_start, a.region_end)
    period = ref.estimate_period(a.train.numpy())
    length = args.window or period
    mean, std = a.train.mean(), a.train.std()
    train_w = pvae.data.windows((a.train - mean) / std, length, args.train_stride)
    test_w = pvae.data.windows((a.test - mean) / std, length, args.test_stride)
    torch.manual_seed(0)
    model = pvae.SequenceVAE(x_dim=1, z_dim=args.series_z, hidden_dim=args.anomaly_hidden,
                             likelihood="gaussian")
    hist, secs = _fit(model, train_w, args, args.anomaly_epochs, batch_size=64)
    model.eval()
    torch.manual_seed(1)
    t0 = time.perf_counter()
    steps = pvae.evaluate.step_scores(model, test_w, num_samples=args.anomaly_k)
    score_s = time.perf_counter() - t0
    report = pvae.evaluate.step_report(steps, a.labels)
    sequence_plots.anomaly_timeline(a.test, steps, _png(args, folder, "anomaly"),
                                    region=region, title=f"{a.name}: -ELBO per step (mean over "
                                                         f"windows of {length} steps)")
    only = ("KMeansAD",) if args.smoke else None  # STOMP and MERLIN compile for a minute
    detectors = ref.aeon_detectors(a.train.numpy(), a.test.numpy(), region, period, only=only)
    return {"series": a.name, "train_length": len(a.train), "test_length": len(a.test),
            "region": list(region), "period": period, "window": length,
            "train_stride": args.train_stride, "test_stride": args.test_stride,
            "train_windows": len(train_w), "test_windows": len(test_w),
            "epochs": args.anomaly_epochs, "score_samples": args.anomaly_k,
            "top_step": report["top_step"], "hit": report["ucr_hit"],
            "roc_auc_steps": report["roc_auc"], "train_seconds": secs,
            "score_seconds": score_s, "detectors": detectors,
            "figure": _png(args, folder, "anomaly").name}


def _options(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(SECTIONS))
    p.add_argument("--words-epochs", type=int, default=20)
    p.add_argument("--words-train", type=int, default=None, help="cap the training words")
    p.add_argument("--series-epochs", type=int, default=150)
    p.add_argument("--anomaly-epochs", type=int, default=30)
    p.add_argument("--hidden", type=int, default=128, help="recurrent width (VAE and LM)")
    p.add_argument("--embed", type=int, default=32, help="character embedding size")
    p.add_argument("--z-dim", type=int, default=16, help="words: latent size")
    p.add_argument("--series-z", type=int, default=8)
    p.add_argument("--series-hidden", type=int, default=64)
    p.add_argument("--series-word-dropout", type=float, default=0.0,
                   help="series: decoder inputs dropped in training (against collapse)")
    p.add_argument("--series-kl-warmup", type=float, default=0.0)
    p.add_argument("--anomaly-hidden", type=int, default=64)
    p.add_argument("--word-dropout", type=float, default=0.1)
    p.add_argument("--kl-warmup", type=float, default=10.0, help="epochs of KL warm-up (words)")
    p.add_argument("--free-bits", type=float, default=0.0, help="words: nats per latent "
                   "dimension, a floor on its minibatch KL in training (pvae.free_bits)")
    p.add_argument("--elbo", default="trace", help="words: the VAE's training ELBO")
    p.add_argument("--words-seed", type=int, default=0, help="words: both models' "
                   "initialisation and batch order (the data split is fixed)")
    p.add_argument("--batch-size", type=int, default=128, help="words: batch size (VAE and LM)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--k", type=int, default=100, help="importance samples for test NLL")
    p.add_argument("--anomaly-k", type=int, default=10, help="ELBO samples per test window")
    p.add_argument("--window", type=int, default=None, help="default: the series' period")
    p.add_argument("--train-stride", type=int, default=1)
    p.add_argument("--test-stride", type=int, default=5)
    p.add_argument("--num-samples", type=int, default=20, help="words sampled from the VAE")
    p.add_argument("--series-test", type=int, default=None, help="cap the series' test sets")
    p.add_argument("--tag", default="", help="record the sections as NAME-TAG (another "
                   "setting beside the default one)")
    p.add_argument("--threads", type=int, default=None)
    add_smoke_options(p, HERE)
    args = p.parse_args(argv if argv is not None else sys.argv[1:])
    if args.smoke:
        args.words_epochs, args.series_epochs, args.anomaly_epochs = 1, 1, 1
        args.words_train, args.k, args.anomaly_k, args.hidden = 300, 5, 2, 16
        args.anomaly_hidden, args.train_stride, args.test_stride = 8, 20, 100
        args.series_hidden = 8
        args.series_test = 64
    return args


def main(argv=None) -> dict:
    args = _options(argv)
    folder = output_dir(args, HERE)
    if args.threads:
        torch.set_num_threads(args.threads)
    only = [s for s in args.only.split(",") if s]
    bad = sorted(set(only) - set(SECTIONS))
    if bad:
        raise SystemExit(f"--only: unknown section {bad[0]!r}; valid: {', '.join(SECTIONS)}")
    here = machine()
    command = "python benchmarks/sequences.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    runners = {"words": words, "series": series, "anomaly": anomaly}
    res: dict = {}
    for name in only:
        t0 = time.perf_counter()
        section = {"results": runners[name](args, folder), "command": command,
                   "date": here["date"], "commit": here["commit"],
                   "seconds": time.perf_counter() - t0}
        res = _record(folder, name + (f"-{args.tag}" if args.tag else ""), section, here)
        print(f"{name}: done in {section['seconds']:.0f} s", flush=True)
    return res


def _record(folder: Path, name: str, section: dict, here: dict) -> dict:
    """Add one measured section to sequences.json (under a lock: runs of other sections may
    write at the same time) and rewrite SEQUENCES.md from it; returns the whole record."""
    with open(folder / ".sequences.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = folder / OUT
        res = json.loads(out.read_text()) if out.exists() else {}
        res.update({name: section, "machine": here})
        write_json(out, res)
        (folder / MD).write_text(markdown(res))
    return res


if __name__ == "__main__":
    main()
