"""TensorBoard logging (pvae.train.logging): the event files read back with tensorboard's own
EventAccumulator, and the ``train.logger`` config path of ``pvae train``."""

import importlib.util
import json

import pytest
import torch

import pvae
from pvae.train.logging import TensorBoardLogger, scalar_tag

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402


def _read(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _small(digits, n_train=200, n_val=60):
    return (pvae.data.Split(digits.train.x[:n_train], digits.train.y[:n_train]),
            pvae.data.Split(digits.val.x[:n_val], digits.val.y[:n_val]))


def test_scalars_images_projector_and_options_of_an_image_run(digits, tmp_path):
    train, val = _small(digits)
    vae = pvae.VAE(64, 3, hidden_dims=(32,), likelihood="continuous_bernoulli")
    log = TensorBoardLogger(tmp_path, image_shape=(1, 8, 8), log_images_every=2, num_images=6)
    history = pvae.fit(vae, train, epochs=3, batch_size=50, lr=3e-3, kl_warmup=2, seed=0,
                       validation=val, logger=log)
    acc = _read(tmp_path)

    # every number of every History row, under its tag, at its epoch
    for key in ("train_elbo", "val_elbo", "recon", "kl", "lr", "kl_weight", "seconds"):
        events = acc.Scalars(scalar_tag(key))
        assert [e.step for e in events] == [1, 2, 3]
        assert [e.value for e in events] == pytest.approx(history[key], rel=1e-6, abs=1e-6)
    assert acc.Scalars("elbo/train")[0].value < acc.Scalars("elbo/train")[-1].value  # it learns

    # images: at epoch 2 (every 2) and 3 (the last), originals above reconstructions (8 x 8 each)
    tags = acc.Tags()["images"]
    assert set(tags) == {"images/reconstructions", "images/prior_samples"}
    for tag in tags:
        assert [e.step for e in acc.Images(tag)] == [2, 3]
    first = acc.Images("images/reconstructions")[0]
    assert first.height >= 16 and first.width >= 6 * 8

    # the projector: its config and the tensor and label files, one row per validation point
    config = (tmp_path / "projector_config.pbtxt").read_text()
    assert "latent_means" in config and "metadata.tsv" in config
    tensors = (tmp_path / "00003" / "latent_means" / "tensors.tsv").read_text().splitlines()
    assert len(tensors) == 60 and all(len(line.split("\t")) == 3 for line in tensors)
    with torch.no_grad():
        z = vae.embed(val.x)
    got = torch.tensor([[float(v) for v in line.split("\t")] for line in tensors])
    assert torch.allclose(got, z, atol=1e-5)
    labels = (tmp_path / "00003" / "latent_means" / "metadata.tsv").read_text().split()
    assert labels == [str(int(v)) for v in val.y]

    # fit's options as hyperparameters and as a text table
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["lr"].number_value == pytest.approx(3e-3)
    assert start.hparams["batch_size"].number_value == 50
    assert start.hparams["elbo"].string_value == "trace"
    text = acc.Tensors("options/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| epochs | 3 |" in text and "| kl_warmup | 2 |" in text


def test_logging_draws_nothing_from_the_training_streams(digits, tmp_path):
    train, val = _small(digits, 150, 30)

    def run(logger):
        torch.manual_seed(1)
        vae = pvae.VAE(64, 2, hidden_dims=(16,), likelihood="continuous_bernoulli")
        h = pvae.fit(vae, train, epochs=2, batch_size=50, seed=0, validation=val, logger=logger)
        return [{k: v for k, v in row.items() if k != "seconds"} for row in h]

    plain = run(None)
    logged = run(TensorBoardLogger(tmp_path, image_shape=(1, 8, 8), log_images_every=1))
    assert logged == plain
    assert _read(tmp_path).Tags()["images"]  # images were drawn in between


def test_a_table_model_gets_scalars_per_latent_site_and_no_images(digits, tmp_path):
    # logger="tensorboard" writes into checkpoint_dir when no log_dir is given; a flat 64-vector
    # is a table, so no images; no validation: the projector embeds the monitored training points
    train, _ = _small(digits, 120)
    hvae = pvae.HierarchicalVAE(64, z_dims=(3, 2), hidden_dims=(16,),
                                likelihood="continuous_bernoulli")
    history = pvae.fit(hvae, train.x, epochs=2, batch_size=60, seed=0, logger="tensorboard",
                       checkpoint_dir=tmp_path, monitor_size=40)
    acc = _read(tmp_path)
    assert (tmp_path / "checkpoint.pt").exists()
    assert acc.Tags()["images"] == []
    for site in ("z1", "z2"):
        assert [e.value for e in acc.Scalars(f"kl/{site}")] == pytest.approx(
            history[f"kl_{site}"], rel=1e-6, abs=1e-6)
    assert "val_elbo" not in history[0] and "elbo/validation" not in acc.Tags()["scalars"]
    tensors = (tmp_path / "00002" / "latent_means" / "tensors.tsv").read_text().splitlines()
    assert len(tensors) == 40 and len(tensors[0].split("\t")) == 3
    assert not (tmp_path / "00002" / "latent_means" / "metadata.tsv").exists()  # no labels


def test_bad_logger_arguments_are_refused_before_any_work(digits, tmp_path, monkeypatch):
    x = digits.train.x[:50]
    vae = pvae.VAE(64, 2, hidden_dims=(8,))
    with pytest.raises(ValueError, match=r"log_dir=DIR \(or checkpoint_dir=DIR"):
        pvae.fit(vae, x, epochs=1, logger="tensorboard")
    with pytest.raises(ValueError, match="logger must be 'tensorboard', None"):
        pvae.fit(vae, x, epochs=1, logger="wandb", log_dir=tmp_path)
    for bad in ({"log_images_every": 0}, {"num_images": 2.5}, {"image_shape": (8, 8)}):
        with pytest.raises(ValueError, match="log_images_every|num_images|image_shape"):
            TensorBoardLogger(tmp_path, **bad)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install pvae\[tensorboard\]"):
        pvae.fit(vae, x, epochs=1, logger="tensorboard", log_dir=tmp_path / "tb")
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert all(p.grad is None for p in vae.parameters())  # nothing trained


def test_pvae_train_logs_into_the_run_folder(tmp_path):
    from pvae.cli import main

    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "train.epochs=2",
                 "--set", "evaluate.num_samples=5", "--set", "train.logger=tensorboard",
                 "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    acc = _read(out / "tensorboard")
    assert [e.value for e in acc.Scalars("elbo/train")] == pytest.approx(
        [row["train_elbo"] for row in metrics["history"]], rel=1e-6)
    assert [e.step for e in acc.Images("images/reconstructions")] == [2]  # the digits are images
    assert (out / "tensorboard" / "projector_config.pbtxt").exists()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model.z_dim"].number_value == 8  # the run's config
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,train_elbo")
    assert main(["train", "--out", str(tmp_path / "bad"), "--set", "train.logger=wandb",
                 "--quiet"]) == 2
    assert not (tmp_path / "bad").exists()


def test_pvae_train_without_the_package_is_one_line_naming_the_key(tmp_path, monkeypatch,
                                                                    capsys):
    import importlib.util

    from pvae.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--set", "train.logger=tensorboard",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "train.logger: tensorboard" in err and "pip install pvae[tensorboard]" in err
    assert not out.exists()


def test_a_run_failing_before_its_first_checkpoint_takes_its_event_files_back(tmp_path,
                                                                              monkeypatch):
    from pvae.cli import main

    logged = TensorBoardLogger.__call__

    def fail_after_logging(self, row, model, batch):
        logged(self, row, model, batch)
        raise RuntimeError("stopped after logging")

    monkeypatch.setattr(TensorBoardLogger, "__call__", fail_after_logging)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped after logging"):
        main(["train", "--out", str(out), "--set", "train.epochs=3", "--set",
              "train.checkpoint_every=10", "--set", "train.logger=tensorboard", "--quiet"])
    assert not out.exists()  # config.yaml and tensorboard/ taken back, the folder removed


def test_a_resumed_run_logs_each_epoch_once_with_its_final_values(digits, tmp_path):
    # the first run logs epochs 1-3 and dies with its checkpoint at epoch 2; resumed, it
    # logs 3 and 4 again, and TensorBoard keeps only the resumed run's epoch 3
    train, val = _small(digits, 100, 20)

    class Dies(TensorBoardLogger):
        def __call__(self, row, model, batch):
            super().__call__(row, model, batch)
            if row["epoch"] == 3:
                raise RuntimeError("killed")

    def run(logger):
        torch.manual_seed(0)
        vae = pvae.VAE(64, 2, hidden_dims=(8,), likelihood="continuous_bernoulli")
        return pvae.fit(vae, train, epochs=4, batch_size=50, lr=1e-2, seed=0, validation=val,
                        checkpoint_dir=tmp_path, checkpoint_every=2, resume=True, logger=logger)

    with pytest.raises(RuntimeError, match="killed"):
        run(Dies(tmp_path))
    history = run("tensorboard")
    events = _read(tmp_path).Scalars("elbo/train")
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert [e.value for e in events] == pytest.approx(history["train_elbo"], rel=1e-6)
