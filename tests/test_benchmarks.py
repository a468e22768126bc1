"""Every benchmark script runs in its smoke mode: seconds on digits scaled to 28 x 28,
its result files written into a temporary folder, the committed results untouched."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
# imported by the scripts, not run
HELPERS = {"common", "eval_speed", "variants_priors", "variants_iaf", "variants_iaf_report",
           "iaf_diagnose_report", "ladder", "seq_references", "seq_report", "throughput", "seq_reference"}
# script -> (extra smoke arguments, result files it writes into --out)
SCRIPTS = {
    "anomaly": ([], ["anomaly.json", "anomaly.png"]),
    "gpu": (["--device", "cpu"], ["GPU.md", "gpu.json"]),
    "hvae_plateau": ([], ["hvae_plateau.json", "HVAE_PLATEAU.md"]),
    "iaf_diagnose": ([], ["iaf_diagnose.json"]),
    "iaf_probe": ([], ["iaf_probe.json"]),
    "iaf_toy": ([], ["iaf_toy.json"]),
    "jit": ([], ["JIT.md"]),
    "profile_step": ([], ["results.json"]),
    "published": ([], ["published.json", "PUBLISHED.md", "published_curve.png"]),
    "reference": ([], ["reference.json"]),
    "run": ([], ["RESULTS.md", "results.json"]),
    "sequences": ([], ["sequences.json", "SEQUENCES.md", "sequences_words.png",
                       "sequences_gunpoint_latent.png", "sequences_anomaly.png"]),
    "seq_decoder_variants": ([], ["SEQ_DECODER.md"]),
    "seq_eval_memory": ([], ["SEQ_EVAL_MEMORY.md"]),
    "seq_speed": ([], ["SEQ_SPEED.md", "seq_speed.json"]),
    "seq_words_check": ([], ["SEQ_DECODER.md"]),
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


NEEDS = {"sequences": ("aeon", "wordfreq"), "seq_decoder_variants": ("aeon",),
         "seq_words_check": ("wordfreq",), "seq_speed": ("wordfreq",)}  # script -> packages of pvae[sequences] it needs


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_smoke_run_writes_its_results_into_out(name, script, tmp_path):
    for package in NEEDS.get(name, ()):
        pytest.importorskip(package)
    before = committed_results()
    extra, files = SCRIPTS[name]
    module = script(name)  # importing runs nothing
    result = module.main(["--smoke", "--out", str(tmp_path), *extra])
    assert result
    for f in files:
        assert (tmp_path / f).stat().st_size > 0, f
        if f.endswith(".json"):
            assert json.loads((tmp_path / f).read_text())
    if name == "gpu":  # the CPU fallback never passes for GPU figures
        assert "**Not a GPU run**" in (tmp_path / "GPU.md").read_text()
    assert committed_results() == before


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_smoke_refuses_to_write_into_benchmarks(name, script):
    before = committed_results()
    with pytest.raises(SystemExit, match="--smoke writes no results"):
        script(name).main(["--smoke", "--out", str(BENCH)])
    assert committed_results() == before


def test_sequence_references_score_what_they_say(script):
    """The plain language model of benchmarks/sequences.py: padding never counts, its NLL is
    the sum of the step-by-step log-probabilities (characters and the end event), and an
    untrained uniform model scores log(V + 1) nats per step."""
    import math

    import torch

    ref = script("seq_references")
    torch.manual_seed(0)
    lm = ref.CharLM(5, hidden_dim=8, embed_dim=4).eval()
    x = torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0]])
    lengths = torch.tensor([3, 1])
    nll = lm(x, lengths)
    assert torch.allclose(lm(x.masked_fill(x == 0, 4), lengths), nll)  # other padding
    h, steps = None, []
    for t, token in enumerate([5, 1, 2, 3]):  # start symbol, then the word "1 2 3"
        out, h = lm.rnn(lm.embed(torch.tensor([[token]])), h)
        logp = torch.log_softmax(lm.out(out[0, 0]), -1)
        steps.append(logp[[1, 2, 3, 5][t]])  # next id; after the last one, the end event
    assert torch.allclose(nll[0], -torch.stack(steps).sum(), atol=1e-5)
    with torch.no_grad():
        lm.out.weight.zero_()
        lm.out.bias.zero_()
    assert torch.allclose(lm(x, lengths), (lengths + 1) * math.log(6))
    bpc = ref.bits_per_char(lm(x, lengths), lengths)
    assert abs(bpc - math.log2(6)) < 1e-5
    # excluded ids (the vocabulary's specials, here 0, which padding also holds) get
    # probability 0: uniform over the other 4 ids and the end event, and finite
    masked = ref.CharLM(5, hidden_dim=8, embed_dim=4, excluded_ids=(0,)).eval()
    with torch.no_grad():
        masked.out.weight.zero_()
        masked.out.bias.zero_()
    assert torch.allclose(masked(x, lengths), (lengths + 1) * math.log(5))
    assert ref.ucr_hit(4287, (4187, 4199)) and not ref.ucr_hit(4299, (4187, 4199))
    assert ref.ucr_hit(4087, (4187, 4199)) and not ref.ucr_hit(4086, (4187, 4199))
    assert ref.estimate_period(torch.sin(torch.arange(1000) * 2 * math.pi / 50).numpy()) == 50


def test_run_keeps_the_sections_other_scripts_write_in_results_md(script, tmp_path):
    """benchmarks/run.py rewrites RESULTS.md from results.json; the sequence VAE's section,
    written by seq_speed.py, is kept from its heading to the end."""
    run = script("run")
    md = tmp_path / "RESULTS.md"
    assert run.kept_sections(md) == ""
    md.write_text("# results\n\n## Training throughput\n\nrows\n\n"
                  "## Training throughput, sequence VAE\n\nseq rows\n")
    assert run.kept_sections(md) == "\n## Training throughput, sequence VAE\n\nseq rows\n"
    md.write_text("# results\n\n## Training throughput\n\nrows\n")
    assert run.kept_sections(md) == ""


def test_published_reports_a_finished_runs_own_evaluation(script, tmp_path):
    """A finished run's metrics.json (pvae train's evaluation of every test image) is
    reported beside the curve, with its K and number of test images."""
    script("published").main(["--smoke", "--out", str(tmp_path)])
    text = (tmp_path / "PUBLISHED.md").read_text()
    assert "smoke_run's own evaluation when it finished" in text
    assert "with K = 2 on " in text


def test_published_counts_the_log_likelihood_subset_and_names_earlier_runs(script, tmp_path):
    """A run whose log-likelihood was taken on a subset of the test images
    (``evaluate.test_points``) is reported with the subset's size, not the ELBO's count;
    the table names each run's networks; and runs kept from earlier calls (whose folders
    are not in this call) are named as such."""
    import json

    published = script("published")
    published.main(["--smoke", "--out", str(tmp_path)])
    run = tmp_path / "smoke_run"
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test"]["log_likelihood_points"] = 7
    (run / "metrics.json").write_text(json.dumps(metrics))
    res = json.loads((tmp_path / "published.json").read_text())
    res["runs"]["gone_run"] = {**res["runs"]["smoke_run"], "networks": "z 3, 5-5"}
    (tmp_path / "published.json").write_text(json.dumps(res))
    published.main(["--run", str(run), "--k", "20", "--test-points", "32",
                    "--out", str(tmp_path)])
    text = (tmp_path / "PUBLISHED.md").read_text()
    assert "with K = 2 on 7 test images" in text
    assert "| smoke_run | vae | z 50, 200-200 | 20 | tanh |" in text
    assert "earlier calls that scored them (same K and test images): gone_run." in text


def test_published_compares_runs_of_one_depth_at_shared_epochs(script):
    """Each run is compared with the first scored run of as many stochastic layers at
    the epochs the two share (a one-layer ``hvae`` with the one-layer VAEs); runs with
    no scored epoch or unknown depth are left out, and a pair with no shared epoch adds
    no table. The published figure follows the depth, not the model type."""
    published = script("published")
    curve = lambda pts: [{"epoch": e, "test_ll": ll} for e, ll in pts]  # noqa: E731
    res = {"runs": {"new": {"type": "vae", "curve": []},
                    "b100": {"type": "vae", "curve": curve([(100, -91.7), (400, -88.6)])},
                    "b20": {"type": "vae", "curve": curve([(100, -90.2), (200, -89.0),
                                                           (400, -87.9)])},
                    "odd": {"type": "vae", "curve": curve([(300, -88.0)])},
                    "untyped": {"curve": curve([(100, -80.0)])},
                    "two": {"type": "hvae", "curve": curve([(100, -90.0)])},
                    "flat": {"type": "hvae", "layers": 1, "curve": curve([(400, -87.0)])}}}
    lines = published.same_epochs(res)
    assert "| epoch | b100 | b20 | difference |" in lines
    assert "| epoch | b100 | flat | difference |" in lines
    assert "flat against b100 (1 stochastic layer) at the epochs both scored " \
        "(test log p(x), nats, on the same test images):" in lines
    assert [line for line in lines if line[:3] in ("| 1", "| 2", "| 3", "| 4")] == \
        ["| 100 | -91.70 | -90.20 | +1.50 |", "| 400 | -88.60 | -87.90 | +0.70 |",
         "| 400 | -88.60 | -87.00 | +1.60 |"]
    assert not any("odd" in line or "untyped" in line or "two" in line or "new" in line
                   for line in lines)
    assert published.target(res["runs"]["flat"]) == -86.76
    assert published.target(res["runs"]["two"]) == -85.33
    assert published.target(res["runs"]["untyped"]) != published.target(res["runs"]["untyped"])
    res["runs"]["b20"]["curve"] = curve([(200, -89.0)])
    res["runs"]["flat"]["curve"] = curve([(300, -88.0)])
    assert published.same_epochs(res) == []


def test_ladder_weight_norm_probe_starts_as_the_same_network(script):
    """``wn=1`` replaces every linear layer by a weight-normalised one that computes the
    same function at initialisation, and whose weight keeps its norm g per output unit
    however v is scaled."""
    import torch

    ladder = script("ladder")
    torch.manual_seed(0)
    plain, _ = ladder.small_models("top_down/none/merge=joint")
    torch.manual_seed(0)
    wn, _ = ladder.small_models("top_down/none/merge=joint/wn=1")
    assert not any(type(m) is torch.nn.Linear for m in wn.modules())
    x = (torch.rand(8, 784) < 0.3).float()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain.encode(x), wn.encode(x)))
    layer = next(m for m in wn.modules() if torch.nn.utils.parametrize.is_parametrized(m))
    v = layer.parametrizations.weight.original1  # weight_norm's direction (original0: g)
    h = torch.randn(5, v.shape[1])
    before = layer(h)
    with torch.no_grad():
        v.mul_(3.0)
    assert torch.allclose(layer(h), before, atol=1e-5)


def test_ladder_run_variants_name_their_configs_and_seed_differences(script):
    """Each repeated or varied Ladder run names a config that exists and the option that
    varies it, and the seed table's differences are top-down minus bottom-up, paired by seed."""
    ladder = script("ladder")
    configs = BENCH.parent / "configs"
    for name in ladder.RUNS:
        path, _, option = ladder.config_of(name).partition(" --set ")
        assert (BENCH.parent / path).exists(), (name, path)
        assert (option != "") == (name in ladder.RUN_VARIANTS)
    assert ladder.config_of("top_down_joint_w60_s1") == \
        "configs/ladder_top_down_joint.yaml --set train.kl_warmup=60 --set train.seed=1"
    assert (configs / "ladder_top_down_joint.yaml").exists()
    rows = {"bottom_up": {"test_ll": -85.0, "test_elbo": -89.0},
            "top_down_joint": {"test_ll": -86.0, "test_elbo": -88.5},
            "bottom_up_s1": {"test_ll": -85.5, "test_elbo": -89.5},
            "top_down_joint_s1": {"test_ll": -85.0, "test_elbo": -89.5},
            "bottom_up_w60": {"test_ll": -85.0, "test_elbo": -89.0}}  # its pair missing: left out
    table = ladder.seed_table(rows)
    assert [line.split(" | ")[4] for line in table if line.startswith("| 10 epochs | 0 ") or
            line.startswith("| 10 epochs | 1 ")] == ["-1.00", "+0.50"]
    assert table[-1] == "| 10 epochs | mean ± sd | | | -0.25 ± 1.06 | | | +0.25 ± 0.35 |"
    assert not any("60 epochs" in line for line in table)
    assert ladder.seed_table({"bottom_up": rows["bottom_up"],
                              "top_down_joint": rows["top_down_joint"]}) == []
