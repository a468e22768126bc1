"""What the commands make of a run (``pvae.results``): evaluation, sample, plot and
comparison files named by their settings, earlier ones kept, refusals before work."""

import csv
import json

import numpy as np
from helpers import TABLE, compare_module, fail_estimator

from pvae.cli import main


def _evaluation(run, split, k):
    """The one evaluation file of ``split`` and K, checked to be named by the points its
    log-likelihood scored."""
    (path,) = run.glob(f"evaluation-{split}-k{k}-n*.json")
    assert path.name == f"evaluation-{split}-k{k}-n{json.loads(path.read_text())['log_likelihood_points']}.json"
    return path


def test_evaluate_names_its_file_by_split_and_samples_and_keeps_earlier_ones(run, capsys):
    assert main(["evaluate", "--run", str(run), "--num-samples", "3"]) == 0
    test_file = _evaluation(run, "test", 3)
    before = test_file.read_bytes()
    assert json.loads(before)["split"] == "test" and json.loads(before)["num_samples"] == 3
    assert main(["evaluate", "--run", str(run), "--num-samples", "3", "--split", "val"]) == 0
    assert json.loads(_evaluation(run, "val", 3).read_text())["split"] == "val"
    assert main(["evaluate", "--run", str(run), "--num-samples", "4"]) == 0
    assert json.loads(_evaluation(run, "test", 4).read_text())["num_samples"] == 4
    assert test_file.read_bytes() == before
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--num-samples", "3"]) == 2
    err = capsys.readouterr().err
    assert str(test_file) in err and "--overwrite" in err
    assert test_file.read_bytes() == before
    assert main(["evaluate", "--run", str(run), "--num-samples", "3", "--overwrite"]) == 0


def test_sample_names_its_files_by_seed_and_keeps_earlier_ones(run, capsys):
    assert main(["sample", "--run", str(run), "-n", "5"]) == 0
    seed0 = (run / "sample-n5-seed0.npy").read_bytes()
    assert main(["sample", "--run", str(run), "-n", "5", "--seed", "1"]) == 0
    assert (run / "sample-n5-seed0.npy").read_bytes() == seed0
    s0, s1 = np.load(run / "sample-n5-seed0.npy"), np.load(run / "sample-n5-seed1.npy")
    assert s0.shape == s1.shape == (5, 5) and not np.array_equal(s0, s1)
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "-n", "5"]) == 2
    assert "sample-n5-seed0.npy' already exists" in capsys.readouterr().err
    assert (run / "sample-n5-seed0.npy").read_bytes() == seed0
    assert main(["sample", "--run", str(run), "-n", "5", "--overwrite"]) == 0
    assert np.array_equal(np.load(run / "sample-n5-seed0.npy"), s0)  # same seed, same draws


def test_plot_keeps_the_figures_train_drew_unless_told(run, capsys):
    kept = {n: (run / n).read_bytes() for n in ("curves.png", "reconstructions.png",
                                                 "samples.png")}
    capsys.readouterr()
    assert main(["plot", "--run", str(run)]) == 0
    printed = capsys.readouterr().out
    for name, data in kept.items():
        assert f"skipped {name[:-4]}: {run / name} exists; pass --overwrite" in printed
        assert (run / name).read_bytes() == data
    assert (run / "latent.png").exists() and (run / "manifold.png").exists()
    assert main(["plot", "--run", str(run), "--kind", "samples"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["plot", "--run", str(run), "--kind", "latent", "--method", "pca"]) == 0
    assert (run / "latent-pca.png").exists()  # named by its method: latent.png is kept
    assert main(["plot", "--run", str(run), "--kind", "samples", "--overwrite"]) == 0


def test_compare_refuses_a_folder_holding_comparison_files(tmp_path, table, capsys,
                                                             monkeypatch):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "comparison.md").write_text("my notes")
    calls = []
    monkeypatch.setattr(compare_module, "fit", lambda *a, **k: calls.append(1))
    assert main(["compare", *table, "--elbos", "trace", "--epochs", "1", "--out", str(out)]) == 2
    assert "comparison.md' already exists" in capsys.readouterr().err
    assert (out / "comparison.md").read_text() == "my notes" and calls == []


def test_compare_checks_every_estimator_before_training_the_first(tmp_path, table, capsys,
                                                                  monkeypatch):
    calls = []
    monkeypatch.setattr(compare_module, "fit", lambda *a, **k: calls.append(1))
    out = tmp_path / "cmp"
    code = main(["compare", *table, "--set", "model.guide_flows=1", "--elbos",
                 "trace,meanfield", "--epochs", "1", "--out", str(out)])
    assert code == 2 and calls == [] and not out.exists()
    err = capsys.readouterr().err
    assert "estimator 'meanfield'" in err and "not mean-field" in err
    assert len(err.strip().splitlines()) == 1


def test_compare_keeps_finished_rows_when_a_later_estimator_fails(tmp_path, table, capsys,
                                                                  monkeypatch):
    fail_estimator(monkeypatch, "tracegraph", RuntimeError("the loss became nan at step 3"))
    out = tmp_path / "cmp"
    code = main(["compare", *table, "--elbos", "trace,tracegraph,iwae:2", "--epochs", "1",
                 "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "1 of 3 estimators failed" in err and "tracegraph" in err and "comparison.md" in err
    assert "every row is in" in err
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["elbo"] for r in rows] == ["trace", "tracegraph", "iwae:2"]
    assert float(rows[0]["test_elbo"]) < 0 and float(rows[2]["test_elbo"]) < 0  # kept
    assert rows[1]["test_elbo"] == "" and "nan at step 3" in rows[1]["error"]
    assert (out / "comparison.png").exists() and "tracegraph" in (out / "comparison.md").read_text()


def test_sample_takes_a_label_or_a_condition_vector_and_names_files_by_its_value(tmp_path,
                                                                                 capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", x=rng.normal(size=(30, 4)).astype("float32"),
             y=rng.integers(0, 3, 30))
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "data.name=array", "--set",
                 f"data.path={tmp_path / 't.npz'}", "--set", "model.type=cvae", *TABLE]) == 0
    assert main(["sample", "--run", str(out), "-n", "3", "--y", "2"]) == 0
    capsys.readouterr()
    assert main(["sample", "--run", str(out), "-n", "3", "--y", "2.0"]) == 2  # the same label
    assert "sample-n3-y2-seed0.npy' already exists" in capsys.readouterr().err
    for bad in ("1.5", "3", "0.5,1"):
        assert main(["sample", "--run", str(out), "-n", "3", "--y", bad]) == 2
        assert "--y must be a label in 0..2" in capsys.readouterr().err
    assert main(["sample", "--run", str(out), "-n", "3"]) == 2
    assert "pass --y" in capsys.readouterr().err
