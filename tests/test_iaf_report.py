"""The IAF section of benchmarks/VARIANTS.md: each flow row is compared with the Gaussian
guide at its own number of flows (benchmarks/variants_iaf_report.py)."""

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def report(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("variants_iaf_report")


def _row(variant, flows, lls, elbos, seeds=(0, 1)):
    return {"variant": variant, "flows": flows, "epochs": 20, "test_points": 2000, "k": 1000,
            "seeds": list(seeds), "test_lls": list(lls), "test_elbos": list(elbos),
            "train_elbos": list(elbos), "kls": [20.0] * len(seeds),
            "active_units": [20] * len(seeds), "train_seconds": [60.0] * len(seeds)}


def test_target_lines_keep_rows_with_other_numbers_of_flows_apart(report):
    runs = {"mf": _row("vae_meanfield", 0, [-95.0, -95.0], [-100.0, -100.0]),
            "two": _row("iaf_thaw_os1", 2, [-94.0, -94.4], [-98.8, -99.0]),
            "four": _row("iaf_thaw_os1", 4, [-96.0], [-101.0], seeds=(0,))}
    text = " ".join(report._target(runs))
    assert "`iaf_thaw_os1` (2 flows) against `vae_meanfield` (2 seeds): +0.80 nats" in text
    assert "+1.10 of ELBO (+1.20, +1.00): met" in text
    assert "`iaf_thaw_os1` (4 flows) against `vae_meanfield` (1 seed): -1.00 nats" in text


def test_the_gap_line_is_per_seed_against_the_gaussian_guide(report):
    runs = {"mf": _row("vae_meanfield", 0, [-95.0, -94.0], [-100.0, -99.5]),
            "iaf": _row("iaf", 2, [-94.5, -94.0], [-99.0, -99.5])}
    # gaps: Gaussian 5.0 and 5.5; flows 4.5 and 5.5: narrower by 0.5 and 0.0
    assert "`iaf` (2 flows, 2 seeds) +0.25" in " ".join(report._gaps(runs))


def test_the_diagnostics_report_the_gain_per_guide_and_the_approximation_gap(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    diag = importlib.import_module("iaf_diagnose_report")
    fixed = {"fixed_enc": {"start": {"elbo": -98.0, "gap": 5.0}, "end": {"elbo": -97.5, "gap": 4.6},
                           "epochs": 2, "minutes": 1.0, "command": "python x fixed"}}
    perpoint = {"command": "python x perpoint", "minutes": 3.0, "per-point elbo": -94.0,
                "amortised elbo": -98.0, "amortisation gap": 4.0, "model": {"gap": 5.2},
                "test_points": 100}
    text = "\n".join(diag.markdown({"fixed": fixed, "perpoint": {"perpoint": perpoint}}))
    assert "| 2 | -98.00 | -97.50 | +0.50 | 4.60 |" in text
    assert "the amortisation gap is 4.00 nats of the 5.20-nat gap" in text
    assert "at most 1.20 nats" in text
    assert diag.markdown({}) == []
