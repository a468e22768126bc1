"""Every benchmark script runs in its smoke mode: seconds on digits scaled to 28 x 28,
its result files written into a temporary folder, the committed results untouched."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
HELPERS = {"common", "variants_priors", "variants_iaf"}  # imported by the scripts, not run
# script -> (extra smoke arguments, result files it writes into --out)
SCRIPTS = {
    "anomaly": ([], ["anomaly.json", "anomaly.png"]),
    "jit": ([], ["JIT.md"]),
    "published": ([], ["published.json", "PUBLISHED.md", "published_curve.png"]),
    "reference": ([], ["reference.json"]),
    "run": ([], ["RESULTS.md", "results.json"]),
    "sklearn_outliers": ([], ["SKLEARN.md"]),
    "ssvae_replica": ([], ["variants.json", "VARIANTS.md"]),
    "variants": (["--val", "1"], ["variants.json", "VARIANTS.md"]),
}


def committed_results() -> dict[str, str]:
    """Digest of every result file in benchmarks/ (Markdown, JSON, figures)."""
    files = [p for ext in ("md", "json", "png") for p in BENCH.rglob(f"*.{ext}")]
    return {str(p.relative_to(BENCH)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def script(monkeypatch):
    """Import a benchmark script by name, as ``python benchmarks/NAME.py`` would see it."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module


def test_every_script_is_smoke_tested():
    scripts = {p.stem for p in BENCH.glob("*.py")} - HELPERS
    assert scripts == set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_smoke_run_writes_its_results_into_out(name, script, tmp_path):
    before = committed_results()
    extra, files = SCRIPTS[name]
    module = script(name)  # importing runs nothing
    result = module.main(["--smoke", "--out", str(tmp_path), *extra])
    assert result
    for f in files:
        assert (tmp_path / f).stat().st_size > 0, f
        if f.endswith(".json"):
            assert json.loads((tmp_path / f).read_text())
    assert committed_results() == before


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_smoke_refuses_to_write_into_benchmarks(name, script):
    before = committed_results()
    with pytest.raises(SystemExit, match="--smoke writes no results"):
        script(name).main(["--smoke", "--out", str(BENCH)])
    assert committed_results() == before
