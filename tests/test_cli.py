"""``pvae train`` end to end on the embedded digits."""

import json
import subprocess
import sys

import pytest
from PIL import Image

import pvae
from pvae.cli import main

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
    assert main(["train", "--out", str(out), "--resume", "--set", "train.epochs=5", "--quiet"]) == 0
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 5


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
    extra = ["--set", "data.num_labelled=50", "--set", "train.elbo=enum"] if model == "ssvae" else []
    assert main(["train", "--out", str(out), "--set", f"model.type={model}", *QUICK, *extra]) == 0
    kinds = {"cvae": pvae.CVAE, "ssvae": pvae.SemiSupervisedVAE, "hvae": pvae.HierarchicalVAE}
    assert type(pvae.load(out / "checkpoint.pt")) is kinds[model]


def test_module_entry_point(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "pvae", "train", "--out", str(out), *QUICK,
                        "--set", "train.epochs=1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("config", ["mnist", "fashion_mnist", "mnist_cvae", "mnist_ssvae",
                                    "mnist_hvae", "mnist_iaf"])
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
