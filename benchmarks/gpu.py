"""pvae against the hand-written reference on a CUDA device: throughput, compiled networks,
CUDA graphs, data kept on the device, and an absolute epoch time on MNIST.

    python benchmarks/gpu.py [--device cuda] [--repeats 5] [--out benchmarks/GPU.md]
    python benchmarks/gpu.py --device cpu --smoke [--out DIR]   # seconds, on digits

On binarised MNIST (``../shared/data`` or ``$PVAE_DATA``), the 784-400-20 MLP VAE at
batch 128, analytic KL:

1. images/s of ``pvae.fit`` and of ``benchmarks/reference.py`` (the same fused Adam),
   alternated over ``--repeats`` one-epoch runs, median taken, with a second reference
   run as the noise column; three variants of the networks: as written, compiled
   (``torch.compile`` of the encoder and decoder calls, TorchInductor), and compiled
   with ``mode="reduce-overhead"``
   (CUDA graphs; on a CPU there are none, and the row says so);
2. the training data sit on the device for the whole run: ``pvae.fit`` moves an
   in-memory tensor there once; the script counts host-to-device copies during an
   epoch with ``torch.profiler`` (CUDA only) and reports them per step;
3. the absolute seconds of one epoch of ``pvae.fit`` over all 60,000 training images.

Writes GPU.md (with the command, machine, versions and commit) and gpu.json into
``--out``. ``--smoke`` runs every part on a few hundred digits scaled to 28 x 28, into a
temporary folder unless ``--out`` names one; its figures are no GPU figures, and the
Markdown says so. Only ratios measured within one run count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

import pvae
from common import HERE, add_smoke_options, machine, mnist, output_file
from reference import ReferenceVAE, train_reference

VARIANTS = ("eager", "compiled", "cuda graphs")


def _compile(calls, variant: str, device: torch.device) -> bool:
    """Compile in place each ``(module, method)`` of ``calls`` (the methods the training
    step calls) for ``variant``; False where it does not apply (CUDA graphs off CUDA). On a
    CPU, Dynamo with the eager backend (no C++ build): the smoke run checks the wiring."""
    if variant == "eager":
        return True
    if variant == "cuda graphs" and device.type != "cuda":
        return False
    kwargs = {"mode": "reduce-overhead"} if variant == "cuda graphs" else {}
    if device.type != "cuda":
        kwargs = {"backend": "eager"}
    for module, method in calls:
        setattr(module, method, torch.compile(getattr(module, method), **kwargs))
    return True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pvae_epoch(x, device, variant, batch_size=128, seed=0):
    torch.manual_seed(seed)
    vae = pvae.VAE(784, 20, hidden_dims=(400,)).to(device)
    # pvae's guide calls the encoder's with_hidden (its last hidden layer feeds flows)
    if not _compile(((vae.encoder, "with_hidden"), (vae.decoder, "forward")), variant,
                    device):
        return None
    _sync(device)
    h = pvae.fit(vae, x, epochs=1, batch_size=batch_size, elbo="meanfield", seed=seed,
                 device=device, monitor_size=1, progress=False)
    _sync(device)
    return h[0]["seconds"]


def ref_epoch(x, device, variant, batch_size=128, seed=0):
    torch.manual_seed(seed)
    ref = ReferenceVAE().to(device)
    if not _compile(((ref.enc, "forward"), (ref.dec, "forward")), variant, device):
        return None
    _sync(device)
    t0 = time.perf_counter()
    train_reference(ref, x, epochs=1, batch_size=batch_size, analytic_kl=True, seed=seed,
                    fused=True)
    _sync(device)
    return time.perf_counter() - t0


def throughput(x, device, repeats: int, warm: int) -> list[dict]:
    rows = []
    for variant in VARIANTS:
        if pvae_epoch(x[:warm], device, variant) is None:  # warm-up (and compilation)
            rows.append({"variant": variant, "applies": False})
            continue
        ref_epoch(x[:warm], device, variant)
        t = {"ref": [], "pvae": [], "ref_again": []}
        for r in range(repeats):  # alternated, so a slow spell hits all alike
            t["ref"].append(ref_epoch(x, device, variant, seed=r))
            t["pvae"].append(pvae_epoch(x, device, variant, seed=r))
            t["ref_again"].append(ref_epoch(x, device, variant, seed=r))
        ips = {k: len(x) / statistics.median(v) for k, v in t.items()}
        rows.append({"variant": variant, "applies": True,
                     **{f"{k}_img_s": v for k, v in ips.items()},
                     "ratio": ips["pvae"] / ips["ref"], "noise": ips["ref_again"] / ips["ref"]})
        print("throughput", rows[-1], flush=True)
    return rows


def host_to_device_copies(x, device, batch_size=128) -> dict:
    """Host-to-device copies during one epoch of ``pvae.fit`` on in-memory data already
    on ``device`` (CUDA only: counted by torch.profiler), against its steps."""
    steps = -(-len(x) // batch_size)
    if device.type != "cuda":
        return {"steps": steps, "copies": None}
    from torch.profiler import ProfilerActivity, profile

    vae = pvae.VAE(784, 20, hidden_dims=(400,))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        pvae.fit(vae, x, epochs=1, batch_size=batch_size, elbo="meanfield", seed=0,
                 device=device, monitor_size=1, progress=False)
        _sync(device)
    copies = sum(e.count for e in prof.key_averages() if "HtoD" in e.key)
    return {"steps": steps, "copies": copies}


def markdown(res: dict, command: str) -> str:
    m, dev = res["machine"], res["device"]
    on_gpu = dev.startswith("cuda")
    lines = ["# pvae on a GPU", ""]
    if not on_gpu:
        lines += [f"**Not a GPU run**: this file was written by `{command}` on `{dev}` (the "
                  "CPU fallback that keeps the script working); its figures say nothing about "
                  "a GPU.", ""]
    lines += [f"Measured {m['date']} on {m['cuda'] or m['cpu']} (device `{dev}`), Python "
              f"{m['python']}, torch {m['torch']}, pyro {m['pyro']}, commit {m['commit']}. "
              f"Command: `{command}`.", "",
              f"## Training throughput, 784-400-20 MLP VAE, batch 128, analytic KL "
              f"({res['train_images']} images, median of {res['repeats']} alternated epochs)",
              "", "| networks | reference, fused Adam (img/s) | pvae (img/s) | pvae / reference "
              "| reference again / reference (noise) |", "| --- | --- | --- | --- | --- |"]
    for r in res["throughput"]:
        if not r["applies"]:
            lines.append(f"| {r['variant']} | does not apply on {dev} | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['ref_img_s']:.0f} | {r['pvae_img_s']:.0f} | "
                     f"**{r['ratio']:.2f}** | {r['noise']:.2f} |")
    c, e = res["copies"], res["epoch"]
    lines += ["", "## Data on the device", "",
              "`pvae.fit` moves in-memory training tensors to the device once; batches are "
              "indexed there (`pvae.train.data.TrainingData`; tests/test_device_data.py "
              "checks that no copy is made per batch). "
              + (f"Host-to-device copies during one epoch of {c['steps']} steps: "
                 f"{c['copies']} (torch.profiler)." if c["copies"] is not None
                 else "Copies are counted by torch.profiler on CUDA only."),
              "", "## One epoch on MNIST", "",
              f"`pvae.fit` over {e['images']} training images, batch 128, analytic KL, "
              f"networks as written: **{e['seconds']:.2f} s** ({e['images'] / e['seconds']:.0f} "
              "images/s).", ""]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="a torch device (default cuda)")
    p.add_argument("--repeats", type=int, default=5)
    add_smoke_options(p, HERE / "GPU.md")
    given = list(argv if argv is not None else sys.argv[1:])
    args = p.parse_args(given)
    md = output_file(args, HERE / "GPU.md")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --device cpu "
                         "(with --smoke, the CPU fallback)")
    d = mnist(binarize="static", flatten=True, val_fraction=0.0, smoke=args.smoke)
    x = d.train.x.to(device)  # on the device once, as fit keeps it
    train = x if args.smoke else x[:30000]
    repeats = 1 if args.smoke else args.repeats
    res = {"device": str(device), "train_images": len(train), "repeats": repeats,
           "throughput": throughput(train, device, repeats, warm=min(2048, len(train)))}
    res["copies"] = host_to_device_copies(train, device)
    res["epoch"] = {"images": len(x), "seconds": pvae_epoch(x, device, "eager")}
    res["machine"] = machine()
    command = "python benchmarks/gpu.py " + " ".join(given)
    md.write_text(markdown(res, command.strip()))
    md.with_name("gpu.json").write_text(json.dumps({**res, "command": command}, indent=2))
    print(md.read_text())
    return res


if __name__ == "__main__":
    main()
