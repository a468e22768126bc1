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
    perpoint = {"command": "python x perpoint --load /r/m.pt --steps 800", "minutes": 3.0,
                "per-point elbo": -94.0, "amortised elbo": -98.0, "amortisation gap": 4.0,
                "model": {"gap": 5.2, "ll": -92.8},
                "test_points": 100}
    text = "\n".join(diag.markdown({"fixed": fixed, "perpoint": {"perpoint": perpoint}}))
    assert "| 2 | -98.00 | -97.50 | +0.50 | 4.60 |" in text
    assert "| `m` (Gaussian) | 800 | -98.00 | -94.00 | -92.80 | 4.00 | 1.20 | 3.0 |" in text
    assert diag.markdown({}) == []


def test_the_verdict_reads_its_figures_from_the_diagnostics(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    diag = importlib.import_module("iaf_diagnose_report")
    flow = {"move/scale active": 0.3, "gate": 0.95, "gate min": 0.4, "log det": -3.0}
    fixed = {name: {"start": {"elbo": -98.0, "gap": 5.0}, "end": {"elbo": end, "gap": 4.6},
                    "epochs": 8, "minutes": 1.0, "command": "c"}
             for name, end in (("fixed_enc8", -97.2), ("fixed_iaf_os1_8", -97.0))}
    per = {"p": {"command": "x --load /r/vae_meanfield_20_s0.pt --steps 800", "minutes": 1.0,
                 "per-point elbo": -92.6, "amortised elbo": -97.6, "amortisation gap": 5.0,
                 "model": {"gap": 5.4, "ll": -92.2}}}
    data = {"move": {"m": {"flows": [flow], "mean |corr| within x (active)": 0.06,
                           "same, base draws (noise floor)": 0.057}},
            "toy": {"banana": {"best_diagonal": None, "steps": [10], "fits": {"2 flows": [0.1]}}},
            "fixed": fixed, "perpoint": per}
    text = " ".join(diag.markdown(data))
    assert "comes within 0.40 nats of log p(x) (K = 1000), against the encoder's gap of 5.40" in text
    assert "closed +0.20 nats more than the encoder alone (8 epochs)" in text
    assert "(0.060 against 0.057)" in text
