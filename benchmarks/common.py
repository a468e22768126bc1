"""Shared helpers for the benchmarks: machine description, MNIST, result files, smoke mode.

Every benchmark script takes ``--smoke`` (seconds on tiny data made here from
scikit-learn's digits: no download, no ``../shared/data``, no GPU) and
``--out DIR`` (where its result files go). A smoke run writes into ``--out`` or
a fresh temporary folder, never over the committed results in ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
SHARED = ROOT.parent / "shared" / "data"
SMOKE_TRAIN, SMOKE_TEST = 256, 64  # images in a smoke run's training and test splits


def machine() -> dict:
    """What the numbers were measured on."""
    import numpy
    import pyro

    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(  # the code only: result files change as a run writes them
            ["git", "status", "--porcelain", "--untracked-files=all", "--", "pvae",
             "benchmarks/*.py", "pyproject.toml"],
            cwd=ROOT, capture_output=True, text=True).stdout.strip()
        if changed:  # measured on code that differs from the commit
            commit += " + uncommitted changes"
    except OSError:
        commit = "unknown"
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": commit,
    }


def mnist(root=None, *, smoke: bool = False, **kwargs):
    """MNIST from ``root`` (default ``$PVAE_DATA`` or ``../shared/data``), or with
    ``smoke=True`` the stand-in of :func:`smoke_mnist`; ``kwargs`` go to ``pvae.data.load``."""
    import pvae

    if smoke:
        return smoke_mnist(**kwargs)
    root = root or os.environ.get("PVAE_DATA", SHARED)
    return pvae.data.load("mnist", root=root, **kwargs)


def smoke_mnist(*, binarize: Optional[str] = None, flatten: bool = False,
                val_fraction: float = 0.1, num_labelled: Optional[int] = None, seed: int = 0):
    """A tiny MNIST look-alike for smoke runs: scikit-learn's 8x8 digits scaled up to
    28 x 28 grey levels in [0, 1] (so the scripts' 784-wide networks run unchanged),
    ``SMOKE_TRAIN`` training and ``SMOKE_TEST`` test images, binarised, flattened and
    labelled as ``pvae.data.load("mnist", ...)`` would be. Returns a ``pvae.data.Data``."""
    import dataclasses

    import torch.nn.functional as F

    import pvae
    from pvae.data import Split

    d = pvae.data.load("digits", val_fraction=val_fraction, test_fraction=0.1,
                       max_train=SMOKE_TRAIN, seed=seed)

    def up(s):
        if s is None:
            return None
        x = F.interpolate(s.x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
        return Split(x, s.y)

    train, val, test = up(d.train), up(d.val), up(d.test)
    test = Split(test.x[:SMOKE_TEST], test.y[:SMOKE_TEST])
    if num_labelled is not None:
        train = Split(train.x, pvae.data.hide_labels(train.y, num_labelled, seed))
    transform = None
    if binarize is not None:
        g = torch.Generator().manual_seed(seed + 1)
        val = None if val is None else Split(pvae.data.binarize(val.x, g), val.y)
        test = Split(pvae.data.binarize(test.x, g), test.y)
        if binarize == "static":
            train = Split(pvae.data.binarize(train.x, g), train.y)
        else:
            transform = pvae.data.binarize
    if flatten:
        train, test = Split(train.x.flatten(1), train.y), Split(test.x.flatten(1), test.y)
        val = None if val is None else Split(val.x.flatten(1), val.y)
    return dataclasses.replace(d, name="mnist (smoke: digits at 28 x 28)", train=train, val=val,
                               test=test, x_shape=tuple(train.x.shape[1:]),
                               image_shape=(1, 28, 28), transform=transform)


def add_smoke_options(parser: argparse.ArgumentParser, default_out: Optional[Path]) -> None:
    """``--smoke`` and ``--out DIR``, the same in every script."""
    parser.add_argument("--smoke", action="store_true",
                        help="seconds on tiny data (digits), results into --out or a temporary "
                             "folder, never over the committed results")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the result files (default: "
                             f"{default_out.relative_to(ROOT) if default_out else 'none'}; "
                             "with --smoke, a temporary folder)")


def output_dir(args, default: Optional[Path]) -> Optional[Path]:
    """The folder a run writes into, created. A smoke run never writes into
    ``benchmarks/`` (the committed results): it takes a temporary folder unless
    ``--out`` names one, and raises ``SystemExit`` if ``--out`` is inside ``benchmarks/``."""
    return _prepare(args.out, args.smoke, default)


def output_file(args, default: Path) -> Path:
    """The Markdown file a run writes: ``--out`` names the file itself (ending in ``.md``)
    or its folder (the file keeps ``default``'s name). Folder rules of :func:`output_dir`."""
    if args.out is not None and args.out.suffix == ".md":
        return _prepare(args.out.parent, args.smoke, default.parent) / args.out.name
    return _prepare(args.out, args.smoke, default.parent) / default.name


def _prepare(out: Optional[Path], smoke: bool, default: Optional[Path]) -> Optional[Path]:
    if smoke:
        if out is None:
            out = Path(tempfile.mkdtemp(prefix="pvae-smoke-"))
        elif out.resolve() == HERE or HERE in out.resolve().parents:
            raise SystemExit(f"--smoke writes no results into {HERE}; give --out another folder")
    elif out is None:
        out = default
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if smoke:
        print(f"smoke run: results in {out}", flush=True)
    return out


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2))
