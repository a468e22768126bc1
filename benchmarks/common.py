"""Shared helpers for the benchmarks: machine description, MNIST, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


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


def mnist(root=None, **kwargs):
    import pvae

    root = root or os.environ.get("PVAE_DATA", SHARED)
    return pvae.data.load("mnist", root=root, **kwargs)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2))
