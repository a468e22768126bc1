"""Run folders (``pvae.runs``): nothing overwritten, nothing half-written or left behind."""

import errno
import json
import os

import numpy as np
import pytest
from helpers import TABLE, TABLE_ANY_MODEL

import pvae
from pvae import checkpoint
from pvae.cli import main


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("resume", [False, True])
def test_train_refuses_a_folder_of_the_users_files(tmp_path, table, capsys, resume):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.yaml").write_text("my own settings\n")
    (out / "metrics.json").write_text('{"mine": 1}')
    before = snapshot(out)
    assert main(["train", "--out", str(out), *table, *(["--resume"] if resume else [])]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "no pvae run" in err and "new or empty folder" in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(out) == before  # nothing changed, nothing added


def test_train_resumes_a_run_stopped_before_its_first_checkpoint(tmp_path, table, capsys):
    out = tmp_path / "stopped"
    out.mkdir()
    sets = [v for k, v in zip(table, table[1:]) if k == "--set"]
    cfg = pvae.config.load_config(None, sets)
    (out / "config.yaml").write_text(cfg.to_yaml())  # what a run killed in epoch 1 leaves
    assert main(["train", "--out", str(out), *table]) == 2  # not without --resume
    assert "--resume to continue the run" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", *table]) == 0
    assert (out / "checkpoint.pt").exists()
    assert main(["train", "--out", str(tmp_path / "empty"), *table]) == 0  # new folder: fine


def _fail_after_writing(code):
    def fsync(fd):  # the data is in the temporary file; the disk fills before it is on disk
        raise OSError(code, os.strerror(code))
    return fsync


def _leftovers(folder, before):
    return sorted(set(os.listdir(folder)) - set(before))


@pytest.mark.parametrize("command", [
    ["evaluate", "--num-samples", "2"],
    ["sample", "-n", "4"],
    ["plot", "--kind", "latent", "--method", "pca"],
])
def test_a_full_disk_leaves_no_partial_file_and_one_line_naming_the_path(run, capsys,
                                                                        monkeypatch, command):
    before = os.listdir(run)
    monkeypatch.setattr(checkpoint.os, "fsync", _fail_after_writing(errno.ENOSPC))
    capsys.readouterr()
    assert main([command[0], "--run", str(run), *command[1:]]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no space left on the device" in err and f"cannot write '{run}/" in err
    assert _leftovers(run, before) == []  # no 0-byte, partial or temporary file


def test_a_read_only_folder_is_one_line_naming_the_path(run, capsys, monkeypatch):
    def mkstemp(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", mkstemp)
    before = os.listdir(run)
    capsys.readouterr()
    assert main(["sample", "--run", str(run), "-n", "4"]) == 1
    err = capsys.readouterr().err
    assert "read-only" in err and "sample-n4-seed0.npy" in err and len(err.splitlines()) == 1
    assert _leftovers(run, before) == []


def test_a_failed_write_keeps_the_file_it_would_have_replaced(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    checkpoint.atomic_write_text(path, "old")
    monkeypatch.setattr(checkpoint.os, "fsync", _fail_after_writing(errno.ENOSPC))
    with pytest.raises(checkpoint.WriteError, match="metrics.json.*no space left") as e:
        checkpoint.atomic_write_text(path, "new" * 1000)
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint.os, "fsync", _fail_after_writing(errno.EIO))
    with pytest.raises(OSError) as e:  # other failures pass through as they are
        checkpoint.atomic_write_text(path, "new")
    assert not isinstance(e.value, checkpoint.WriteError)


def test_train_on_a_full_disk_leaves_no_folder(tmp_path, table, capsys, monkeypatch):
    monkeypatch.setattr(checkpoint.os, "fsync", _fail_after_writing(errno.ENOSPC))
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *table]) == 1
    assert "cannot write" in capsys.readouterr().err and not out.exists()


def test_a_refused_estimator_is_refused_before_the_folder_is_made(tmp_path, table, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *table, "--set", "model.guide_flows=1",
                 "--set", "train.elbo=meanfield"]) == 2
    assert "not mean-field" in capsys.readouterr().err and not out.exists()


def test_a_run_refused_inside_fit_removes_only_what_it_wrote(tmp_path, table, capsys,
                                                             monkeypatch):
    def refuse(*a, **k):
        raise ValueError("refused by fit")

    monkeypatch.setattr("pvae.train.fit", refuse)
    out = tmp_path / "new"
    assert main(["train", "--out", str(out), *table]) == 2
    assert "refused by fit" in capsys.readouterr().err and not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()  # the user's empty folder stays, empty
    assert main(["train", "--out", str(empty), *table]) == 2
    assert empty.is_dir() and os.listdir(empty) == []


def test_a_refused_resume_restores_the_runs_config(run, table, monkeypatch):
    before = snapshot(run)

    def refuse(*a, **k):
        raise ValueError("refused by fit")

    monkeypatch.setattr("pvae.train.fit", refuse)
    assert main(["train", "--out", str(run), "--resume", *table,
                 "--set", "train.lr=0.1"]) == 2
    assert snapshot(run) == before


MODELS = {  # hvae's latent sizes are z_dims (its config refuses z_dim)
    "vae": ["--set", "model.z_dim=2"],
    "cvae": ["--set", "model.type=cvae", "--set", "model.z_dim=2"],
    "ssvae": ["--set", "model.type=ssvae", "--set", "train.elbo=enum", "--set", "model.z_dim=2"],
    "hvae": ["--set", "model.type=hvae", "--set", "model.z_dims=[3,2]"],
}


def _figures(out, model):
    names = {"curves.png", "reconstructions.png", "samples.png"}
    return names | ({"layer_kl.png"} if model == "hvae" else set())


@pytest.mark.parametrize("model", ["vae", "cvae", "cvae_ydim", "ssvae", "hvae"])
def test_every_model_type_draws_its_figures_on_a_table(tmp_path, model, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype("float32")
    y = rng.normal(size=(30, 2)).astype("float32") if model == "cvae_ydim" \
        else rng.integers(0, 3, 30)
    np.savez(tmp_path / "t.npz", x=x, y=y)
    extra = [*MODELS["cvae"], "--set", "model.y_dim=2"] if model == "cvae_ydim" \
        else MODELS[model]
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "data.name=array",
                 "--set", f"data.path={tmp_path / 't.npz'}", *TABLE_ANY_MODEL, *extra]) == 0
    assert _figures(out, model.split("_")[0]) <= set(os.listdir(out))
    assert main(["plot", "--run", str(out), "--overwrite", "--kind", "all"]) == 0
    printed = capsys.readouterr().out
    assert "skipped" not in printed
    assert {"latent.png"} | ({"manifold.png"} if model != "hvae" else set()) \
        <= set(os.listdir(out))  # the hierarchical model's z1 has 3 dimensions, not 2
    assert {"interpolation.png", "traversal.png"} <= set(os.listdir(out))
    y = {"cvae_ydim": ["--y", "0.5,-1"], "cvae": ["--y", "2"], "ssvae": ["--y", "1"]}
    assert main(["sample", "--run", str(out), "-n", "6", *y.get(model, [])]) == 0
    name = "sample-n6" + ("-y" + y[model][1] if model in y else "") + "-seed0"
    assert np.load(out / f"{name}.npy").shape == (6, 4) and (out / f"{name}.png").exists()


def test_a_cvae_with_condition_vectors_draws_its_figures_on_images(tmp_path):
    """No built-in image set has condition vectors, so this one is made here."""
    import torch

    from pvae.data import Data, Split
    from pvae.runs import write_figures
    from pvae.train import History

    g = torch.Generator().manual_seed(0)
    split = Split(torch.rand(12, 64, generator=g), torch.randn(12, 2, generator=g))
    data = Data(name="made", train=split, val=None, test=split, x_shape=(64,),
                image_shape=(1, 8, 8))
    model = pvae.CVAE(64, 2, y_dim=2, hidden_dims=(8,))
    history = History([{"epoch": 1, "train_elbo": -50.0, "recon": -40.0, "kl": 10.0}])
    written = write_figures(model, data, history, tmp_path)
    assert {p.name for p in written} == {"curves.png", "reconstructions.png", "samples.png"}
    assert all(p.stat().st_size > 0 for p in written)


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_type_draws_its_figures_on_images(tmp_path, model, capsys):
    extra = ["--set", "data.num_labelled=30"] if model == "ssvae" else []
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "data.max_train=60",
                 "--set", "data.test_fraction=0.02", "--set", "data.val_fraction=0.02", "--set",
                 "model.hidden_dims=[16]", "--set", "train.epochs=1",
                 "--set", "evaluate.num_samples=2", "--quiet", *MODELS[model], *extra]) == 0
    assert _figures(out, model) <= set(os.listdir(out))
    assert main(["plot", "--run", str(out), "--overwrite"]) == 0
    expected = {"latent.png", "interpolation.png", "traversal.png", "samples.png"}
    expected |= {"conditional.png"} if model in ("cvae", "ssvae") else set()
    expected |= {"manifold.png"} if model != "hvae" else set()
    assert expected <= set(os.listdir(out))


def test_three_rows_are_refused_up_front_naming_the_fraction(tmp_path, capsys):
    path = tmp_path / "three.npz"
    np.savez(path, x=np.zeros((3, 4), dtype="float32"))
    out = tmp_path / "run"
    data = ["--set", "data.name=array", "--set", f"data.path={path}", *TABLE]
    assert main(["train", "--out", str(out), *data]) == 2
    err = capsys.readouterr().err
    assert "data.test_fraction" in err and "rounds the test split to 0 points" in err
    assert not out.exists()
    assert main(["train", "--out", str(out), *data, "--set", "data.test_fraction=0.34"]) == 2
    assert "data.val_fraction" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="test_fraction=0.15 of 3 data points"):
        pvae.data.load("array", path=path)
    assert main(["train", "--out", str(out), *data, "--set", "data.test_fraction=0",
                 "--set", "data.val_fraction=0"]) == 2
    assert "test split is empty" in capsys.readouterr().err and not out.exists()


def test_a_run_with_one_test_point_skips_figures_that_need_two_and_says_so(tmp_path, capsys):
    path = tmp_path / "three.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(3, 4)).astype("float32"))
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "data.name=array",
                 "--set", f"data.path={path}", "--set", "data.val_fraction=0",
                 "--set", "data.test_fraction=0.34", *TABLE]) == 0
    assert json.loads((out / "metrics.json").read_text())["test"]["num_points"] == 1
    capsys.readouterr()
    assert main(["plot", "--run", str(out), "--overwrite"]) == 0
    printed = capsys.readouterr().out
    for kind in ("latent", "interpolation"):
        assert f"skipped {kind}: it needs at least 2 test points and the run has 1" in printed
        assert not (out / f"{kind}.png").exists()
    assert (out / "traversal.png").exists() and (out / "manifold.png").exists()
    assert main(["plot", "--run", str(out), "--kind", "interpolation"]) == 2
    assert "needs at least 2 test points" in capsys.readouterr().err
