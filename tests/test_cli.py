"""The command line (``pvae.cli``) end to end on the embedded digits."""

import csv
import json
import subprocess
import sys
import warnings

import pytest
import torch
from helpers import assert_png
from PIL import Image

import pvae
from pvae.cli import main


def test_compare_and_evaluate_commands(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--set", "train.epochs=2", "--quiet",
                 "--set", "evaluate.num_samples=5"]) == 0
    assert main(["evaluate", "--run", str(run), "--num-samples", "20"]) == 0
    result = json.loads((run / "evaluation-test-k20-n270.json").read_text())
    assert result["num_samples"] == 20 and result["log_likelihood"] >= result["elbo"] - 1
    assert set(result["active_units"]) == {"z"} and len(result["kl_per_dim"]["z"]) == 8
    assert main(["evaluate", "--run", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    out = tmp_path / "cmp"
    assert main(["compare", "--elbos", "trace,renyi:0.5,iwae:2", "--epochs", "1", "--out", str(out),
                 "--quiet", "--set", "evaluate.num_samples=5", "--test-points", "40"]) == 0
    assert (out / "comparison.csv").exists() and "renyi:0.5" in (out / "comparison.md").read_text()
    rows = list(csv.DictReader(open(out / "comparison.csv")))
    assert [r["test_points"] for r in rows] == ["40"] * 3
    assert main(["compare", "--elbos", "trace,bogus", "--out", str(tmp_path / "c2")]) == 2
    assert not (tmp_path / "c2").exists()


def test_plot_and_sample_commands(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", "--set", "model.z_dim=2",
                 "--set", "train.epochs=3", "--set", "evaluate.num_samples=5"]) == 0
    assert main(["plot", "--run", str(run)]) == 0
    for name in ("curves", "reconstructions", "samples", "latent", "interpolation", "traversal",
                 "manifold"):
        assert_png(run / f"{name}.png")
    assert main(["plot", "--run", str(run), "--kind", "latent", "--method", "tsne"]) == 0
    assert main(["plot", "--run", str(run), "--kind", "layer_kl"]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert main(["sample", "--run", str(run), "-n", "12"]) == 0
    import numpy as np

    arr = np.load(run / "sample-n12-seed0.npy")
    assert arr.shape == (12, 64) and 0 <= arr.min() and arr.max() <= 1
    assert_png(run / "sample-n12-seed0.png", 100, 100)
    assert main(["sample", "--run", str(run), "-n", "4", "--y", "3"]) == 2
    assert "not conditional" in capsys.readouterr().err


def test_conditional_sample_command(tmp_path):
    run = tmp_path / "c"
    assert main(["train", "--out", str(run), "--quiet", "--set", "model.type=cvae",
                 "--set", "train.epochs=2", "--set", "evaluate.num_samples=5"]) == 0
    assert main(["sample", "--run", str(run), "-n", "8", "--y", "4"]) == 0
    assert (run / "sample-n8-y4-seed0.npy").exists()
    assert main(["sample", "--run", str(run), "-n", "8", "--y", "12"]) == 2
    assert main(["plot", "--run", str(run), "--kind", "conditional"]) == 0
    assert_png(run / "conditional.png")


QUICK = ["--set", "train.epochs=3", "--set", "evaluate.num_samples=10", "--quiet"]


def test_train_writes_a_complete_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"config.yaml", "checkpoint.pt", "metrics.json", "metrics.csv",
                     "curves.png", "reconstructions.png", "samples.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 3 and metrics["test"]["num_samples"] == 10
    assert metrics["test"]["log_likelihood"] >= metrics["test"]["elbo"] - 1.0
    for png in ("curves.png", "reconstructions.png", "samples.png"):
        w, h = Image.open(out / png).size
        assert w > 200 and h > 200
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_elbo")
    model = pvae.load(out / "checkpoint.pt")
    assert isinstance(model, pvae.VAE) and model.z_dim == 8
    printed = capsys.readouterr().out
    assert "test ELBO" in printed and str(out) in printed


def test_resume_and_refusal_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert main(["train", "--out", str(out), *QUICK]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert main(["train", "--resume", *QUICK]) == 2  # --resume needs the folder
    assert main(["train", "--resume", "--out", str(tmp_path / "typo"), *QUICK]) == 2
    assert "does not exist" in capsys.readouterr().err
    # resume with the saved config, asking for more epochs
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--set", "train.epochs=5", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 5 and metrics["epochs_before"] == 3
    assert "for 5 epochs (2 in this call, resumed at epoch 3)" in capsys.readouterr().out
    # resuming a finished run evaluates it again and says that no epoch ran
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "had already trained for 5 epochs" in printed and "trained vae" not in printed


def test_a_run_saved_before_an_option_existed_resumes(tmp_path):
    """A long run's checkpoint predates an option (here the learned prior): --resume
    continues it with the option's default, as pvae.load does (a 3,280-epoch run was
    refused as 'differently configured' before)."""
    import torch

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK]) == 0
    record = torch.load(out / "checkpoint.pt", weights_only=False)
    for key in ("prior", "prior_components"):
        del record["hparams"][key]
    torch.save(record, out / "checkpoint.pt")
    assert main(["train", "--out", str(out), "--resume", "--set", "train.epochs=4", "--quiet"]) == 0
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 4


def test_bad_config_is_an_error_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "train.epohcs=3"]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert not out.exists()
    assert main(["train", "--config", str(tmp_path / "nope.yaml"), "--out", str(out)]) == 2
    assert not out.exists()
    # data outside the likelihood's support: refused before the folder is written
    assert main(["train", "--out", str(out), "--set", "model.likelihood=bernoulli"]) == 2
    assert "binarise" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("model", ["cvae", "ssvae", "hvae"])
def test_every_model_type_trains_from_the_command_line(model, tmp_path):
    out = tmp_path / model
    extra = ["--set", "data.num_labelled=50", "--set", "train.elbo=enum",
             "--set", "model.balance_weight=5"] if model == "ssvae" else []
    assert main(["train", "--out", str(out), "--set", f"model.type={model}", *QUICK, *extra]) == 0
    kinds = {"cvae": pvae.CVAE, "ssvae": pvae.SemiSupervisedVAE, "hvae": pvae.HierarchicalVAE}
    trained = pvae.load(out / "checkpoint.pt")
    assert type(trained) is kinds[model]
    if model == "ssvae":  # the config's class-balance weight reaches the model
        assert trained.balance_weight == 5.0 and trained.hparams["balance_weight"] == 5.0


def test_module_entry_point(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "pvae", "train", "--out", str(out), *QUICK,
                        "--set", "train.epochs=1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("config", ["mnist", "fashion_mnist", "mnist_cvae", "mnist_ssvae",
                                    "mnist_hvae", "mnist_iaf", "mnist_m1"])
def test_torchvision_configs_run_on_the_shared_files(tmp_path, shared_data, config):
    out = tmp_path / "run"
    code = main(["train", "--config", f"configs/{config}.yaml", "--out", str(out),
                 "--set", f"data.root={shared_data}", "--set", "data.max_train=512",
                 "--set", "train.epochs=1", "--set", "evaluate.num_samples=2", "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["num_points"] == 10000
    assert ("accuracy" in metrics["test"]) == (config == "mnist_ssvae")
    assert (out / "samples.png").exists() and (out / "layer_kl.png").exists() == (config == "mnist_hvae")


def test_a_stacked_run_learns_a_trained_models_codes_and_draws_in_its_space(tmp_path, capsys):
    """data.features: M1+M2 from the command line (a semi-supervised model on a VAE's codes)."""
    import shutil

    import numpy as np

    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    assert main(["train", "--out", str(m1), *QUICK]) == 0  # a VAE with z_dim 8 on the digits
    stacked = ["--set", f"data.features={m1}", "--set", "model.type=ssvae",
               "--set", "data.num_labelled=50", "--set", "train.elbo=enum",
               "--set", "model.likelihood=gaussian", "--set", "model.z_dim=2",
               "--set", "train.lr_steps=[2]"]
    # a missing M1 is refused before anything is written
    bad = tmp_path / "bad"
    assert main(["train", "--out", str(bad), *QUICK, *stacked,
                 "--set", f"data.features={tmp_path / 'nope'}"]) == 2
    assert "neither a run folder with checkpoint.pt nor a checkpoint file" in capsys.readouterr().err
    assert not bad.exists()
    assert main(["train", "--out", str(m2), *QUICK, *stacked]) == 0
    assert "test accuracy of q(y|x)" in capsys.readouterr().out
    metrics = json.loads((m2 / "metrics.json").read_text())
    assert [r["lr"] for r in metrics["history"]] == pytest.approx([1e-3, 1e-3, 1e-4])
    assert 0 <= metrics["test"]["accuracy"] <= 1
    assert pvae.load(m2 / "checkpoint.pt").x_shape == (8,)  # M2 models the 8-dimensional codes
    copy, original = pvae.load(m2 / "features.pt"), pvae.load(m1 / "checkpoint.pt")
    for v, w in zip(copy.state_dict().values(), original.state_dict().values()):
        assert torch.equal(v, w)
    shutil.rmtree(m1)  # the run keeps its own copy of the M1
    assert main(["sample", "--run", str(m2), "-n", "5", "--y", "3"]) == 0
    drawn = np.load(m2 / "sample-n5-y3-seed0.npy")
    assert drawn.shape == (5, 64) and drawn.min() >= 0 and drawn.max() <= 1  # digit pixels
    assert main(["plot", "--run", str(m2)]) == 0
    for name in ("reconstructions", "samples", "conditional", "latent", "interpolation",
                 "traversal"):
        assert (m2 / f"{name}.png").exists(), name
    assert main(["evaluate", "--run", str(m2), "--num-samples", "5"]) == 0
    assert json.loads((m2 / "evaluation-test-k5-n270.json").read_text())["num_points"] == 270


def test_the_m1m2_config_runs_on_the_m1_configs_run(tmp_path, shared_data):
    quick = ["--set", f"data.root={shared_data}", "--set", "data.max_train=512",
             "--set", "evaluate.num_samples=2", "--quiet"]
    m1 = tmp_path / "mnist_m1"
    assert main(["train", "--config", "configs/mnist_m1.yaml", "--out", str(m1), *quick,
                 "--set", "train.epochs=1"]) == 0
    m2 = tmp_path / "mnist_m1m2"
    assert main(["train", "--config", "configs/mnist_m1m2.yaml", "--out", str(m2), *quick,
                 "--set", f"data.features={m1}", "--set", "train.epochs=2",
                 "--set", "train.lr_steps=[1]"]) == 0
    metrics = json.loads((m2 / "metrics.json").read_text())
    assert metrics["test"]["num_points"] == 10000 and "accuracy" in metrics["test"]
    assert [r["lr"] for r in metrics["history"]] == pytest.approx([2e-3, 2e-4])
    assert Image.open(m2 / "samples.png").size[1] > 500  # ten rows of 28x28 digits


def test_resume_with_a_new_lr_uses_and_records_it(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK, "--set", "train.epochs=2"]) == 0
    assert main(["train", "--out", str(out), "--resume", "--quiet", "--set", "train.epochs=4",
                 "--set", "train.lr=0.1"]) == 0
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [row["lr"] for row in history] == pytest.approx([1e-3, 1e-3, 0.1, 0.1])
    lines = (out / "metrics.csv").read_text().splitlines()
    column = lines[0].split(",").index("lr")
    assert [float(line.split(",")[column]) for line in lines[1:]] == pytest.approx(
        [1e-3, 1e-3, 0.1, 0.1])
    saved = torch.load(out / "checkpoint.pt", weights_only=False)["training"]["optimizer"]
    assert saved["param_groups"][0]["lr"] == pytest.approx(0.1)  # what the optimiser used


@pytest.mark.parametrize("change,message", [
    ("train.seed=7", "seed=7 would have no effect"),
    ("train.optimizer=sgd", "resume with optimizer='adam'"),
    ("model.z_dim=3", "differently configured"),
])
def test_a_resume_it_cannot_honour_is_refused_before_anything_is_written(tmp_path, capsys,
                                                                          change, message):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK, "--set", "train.epochs=1"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--out", str(out), "--resume", "--quiet", "--set", "train.epochs=2",
                 "--set", change]) == 2
    assert message in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _labelled_table(path, n=90, seed=0):
    """Binary rows whose class is given by their first two features."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 8, generator=g) < 0.5).float()
    y = (x[:, 0] + 2 * x[:, 1]).long()
    return x, y


def _test_rows(path, n, **split):
    """Which rows of an n-row file land in the test split (labels = row numbers)."""
    import numpy as np

    np.savez(path, x=np.zeros((n, 2), np.float32), y=np.arange(n))
    return pvae.data.load("array", path=str(path), **split).test.y


@pytest.mark.parametrize("unlabelled", ["a third", "all"])
def test_ssvae_accuracy_is_scored_on_labelled_test_points_only(tmp_path, capsys, unlabelled):
    import numpy as np

    x, y = _labelled_table(tmp_path / "table.npz")
    test_rows = _test_rows(tmp_path / "table.npz", len(x))
    hidden = test_rows[::3] if unlabelled == "a third" else test_rows
    y[hidden] = -1
    np.savez(tmp_path / "table.npz", x=x.numpy(), y=y.numpy())
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK, "--set", "data.name=array",
                 "--set", f"data.path={tmp_path / 'table.npz'}", "--set", "model.type=ssvae",
                 "--set", "model.likelihood=bernoulli", "--set", "train.elbo=enum"]) == 0
    test = json.loads((out / "metrics.json").read_text())["test"]
    printed = capsys.readouterr().out
    labelled = y[test_rows] >= 0
    assert test["num_labelled"] == int(labelled.sum()) == len(test_rows) - len(hidden)
    if unlabelled == "all":
        assert test["accuracy"] is None and "no test point is labelled" in printed
        return
    model = pvae.load(out / "checkpoint.pt")
    predicted = model.classify(x[test_rows]).argmax(-1)
    right = (predicted == y[test_rows])[labelled]
    assert test["accuracy"] == pytest.approx(right.float().mean().item())
    assert f"on {test['num_labelled']} labelled points" in printed
    assert main(["evaluate", "--run", str(out), "--num-samples", "5"]) == 0  # the same figure
    result = json.loads((out / "evaluation-test-k5-n14.json").read_text())
    assert result["accuracy"] == pytest.approx(test["accuracy"])
    assert result["num_labelled"] == test["num_labelled"]


def test_evaluate_on_a_one_point_split_says_active_units_are_undefined(tmp_path, capsys):
    import numpy as np

    x, _ = _labelled_table(tmp_path / "table.npz", n=60)
    np.save(tmp_path / "table.npy", x.numpy())
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *QUICK, "--set", "data.name=array",
                 "--set", f"data.path={tmp_path / 'table.npy'}", "--set", "data.val_fraction=0.02",
                 "--set", "model.likelihood=bernoulli"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no posterior-collapse warning
        assert main(["evaluate", "--run", str(out), "--split", "val", "--num-samples", "5"]) == 0
    result = json.loads((out / "evaluation-val-k5-n1.json").read_text())
    assert result["num_points"] == 1 and result["active_units"] is None
    assert "undefined on 1 point" in result["active_units_note"]
    assert "active units undefined on 1 point" in capsys.readouterr().out
