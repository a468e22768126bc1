"""The training loop (``pvae.train.fit``): every ELBO, reproducibility, resuming, options."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import small_vae
from pyro.infer import Trace_ELBO

import pvae
from pvae.train import CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("elbo", ["trace", "meanfield", "tracegraph", "renyi:0.5", "jit_trace",
                                  "jit_meanfield", Trace_ELBO(num_particles=2)])
def test_every_elbo_trains(elbo, x):
    h = pvae.fit(small_vae(), x, elbo=elbo, epochs=6, batch_size=100, lr=3e-3, seed=0,
                 num_particles=2 if isinstance(elbo, str) and elbo.startswith("renyi") else 1)
    assert h[-1]["train_elbo"] > h[0]["train_elbo"] + 2
    assert set(h[0]) >= {"epoch", "train_elbo", "recon", "kl", "seconds"}


def test_history_parts_and_validation(x, binary_digits):
    h = pvae.fit(small_vae(), x, epochs=3, seed=0, validation=binary_digits.val.x)
    assert h["epoch"] == [1, 2, 3]
    row = h[-1]
    assert row["kl"] > 0 and row["recon"] < 0 and "val_elbo" in row
    # the monitored ELBO (recon - kl) and the running minibatch mean are close
    assert abs((row["recon"] - row["kl"]) - row["train_elbo"]) < 5
    assert abs(row["val_elbo"] - row["train_elbo"]) < 10


def test_same_seed_same_numbers(x):
    torch.manual_seed(0)
    a = pvae.fit(small_vae(), x, epochs=2, seed=3)
    torch.manual_seed(0)  # the same initial weights
    b = pvae.fit(small_vae(), x, epochs=2, seed=3)
    assert a["train_elbo"] == b["train_elbo"] and a["recon"] == b["recon"]
    torch.manual_seed(0)
    c = pvae.fit(small_vae(), x, epochs=2, seed=4)
    assert c["train_elbo"] != a["train_elbo"]


def test_resume_continues_to_the_same_numbers(x, tmp_path):
    torch.manual_seed(0)
    full_model = small_vae()
    init = {k: v.clone() for k, v in full_model.state_dict().items()}
    full = pvae.fit(full_model, x, epochs=4, seed=1, checkpoint_dir=tmp_path / "a")

    part_model = small_vae()
    part_model.load_state_dict(init)
    pvae.fit(part_model, x, epochs=2, seed=1, checkpoint_dir=tmp_path / "b")
    resumed_model = small_vae()  # a fresh process would build a new model
    resumed = pvae.fit(resumed_model, x, epochs=4, seed=1, checkpoint_dir=tmp_path / "b",
                       resume=True)
    assert resumed["epoch"] == [1, 2, 3, 4]
    assert resumed["train_elbo"] == full["train_elbo"]
    for (k, v), w in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(v, w), k


def test_lr_steps_drop_the_rate_after_those_epochs_and_a_resumed_run_follows_them(x, tmp_path):
    h = pvae.fit(small_vae(), x, epochs=4, lr=1e-2, lr_steps=(1, 3), lr_factor=0.5)
    assert h["lr"] == [1e-2, 5e-3, 5e-3, 2.5e-3]
    assert pvae.fit(small_vae(), x, epochs=2, lr=3e-3)["lr"] == [3e-3, 3e-3]  # always recorded
    m = small_vae()
    pvae.fit(m, x, epochs=2, lr=1e-2, checkpoint_dir=tmp_path)
    resumed = pvae.fit(m, x, epochs=4, lr=1e-2, lr_steps=(3,), checkpoint_dir=tmp_path,
                       resume=True)
    assert resumed["lr"][2:] == pytest.approx([1e-2, 1e-3])  # the optimiser's saved rate is overridden


def test_a_run_shorter_than_its_lr_steps_warns_and_a_continued_run_drops_at_them(x, tmp_path):
    """Shortening a config's epochs (``--set train.epochs=2`` on a staged schedule) is
    allowed: the steps at or after the last epoch are named in a warning and take
    effect when the run is continued past them; a run that covers every step, and a
    finished run only reloaded, do not warn."""
    import warnings

    from pvae.config import load_config

    cfg = load_config(ROOT / "configs" / "burda_vae.yaml", ["train.epochs=2"])
    assert cfg.train.lr_steps[:2] == (1, 4)
    m = small_vae()
    with pytest.warns(UserWarning, match=r"lr_steps \(4, 6\) are at or after the last epoch "
                                         r"\(2\).*continued past them"):
        h = pvae.fit(m, x, epochs=2, lr=1e-2, lr_steps=(1, 4, 6), lr_factor=0.5,
                     checkpoint_dir=tmp_path)
    assert h["lr"] == [1e-2, 5e-3]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        h = pvae.fit(m, x, epochs=7, lr=1e-2, lr_steps=(1, 4, 6), lr_factor=0.5,
                     checkpoint_dir=tmp_path, resume=True)
        assert h["lr"] == pytest.approx([1e-2, 5e-3, 5e-3, 5e-3, 2.5e-3, 2.5e-3, 1.25e-3])
        pvae.fit(m, x, epochs=7, lr_steps=(1, 4, 8), checkpoint_dir=tmp_path, resume=True)
    with pytest.warns(UserWarning, match=r"lr_steps \(3,\) .* in this run$"):  # no checkpoint
        pvae.fit(small_vae(), x, epochs=3, lr_steps=(3,))


@pytest.mark.parametrize("lr_steps", [(), (3,)])
def test_a_new_lr_on_resume_is_used_and_recorded_as_the_optimisers_rate(x, tmp_path, lr_steps):
    torch.manual_seed(0)
    init = small_vae().state_dict()
    models, histories = {}, {}
    for new_lr in (1e-3, 1e-1):  # resumed with the old rate, and with a new one
        m = small_vae()
        m.load_state_dict(init)
        pvae.fit(m, x, epochs=2, lr=1e-3, seed=1, checkpoint_dir=tmp_path / str(new_lr))
        used = []  # the optimiser's param_group rate at each step, read from the optimiser
        real_step = torch.optim.Adam.step

        def spy(self, *a, _real=real_step, **k):
            used.append({g["lr"] for g in self.param_groups})
            return _real(self, *a, **k)

        torch.optim.Adam.step = spy
        try:
            m = small_vae()
            h = pvae.fit(m, x, epochs=4, lr=new_lr, lr_steps=lr_steps, seed=1, resume=True,
                         checkpoint_dir=tmp_path / str(new_lr))
        finally:
            torch.optim.Adam.step = real_step
        models[new_lr], histories[new_lr] = m, h
        steps = len(used) // 2
        assert h["lr"] == pytest.approx([1e-3, 1e-3, new_lr, new_lr * (0.1 if lr_steps else 1)])
        # the recorded rate of each resumed epoch is the one its optimiser steps used
        assert used[:steps] == [{h["lr"][2]}] * steps and used[steps:] == [{h["lr"][3]}] * steps
    assert histories[1e-1]["lr"][2] == pytest.approx(1e-1)
    assert not all(torch.equal(a, b) for a, b in zip(models[1e-3].state_dict().values(),
                                                     models[1e-1].state_dict().values()))
    assert histories[1e-1]["train_elbo"][2:] != histories[1e-3]["train_elbo"][2:]


def test_resume_applies_the_new_weight_decay_and_refuses_another_optimizer(x, tmp_path):
    pvae.fit(small_vae(), x, epochs=1, optimizer="adamw", checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(ValueError, match="optimizer='adamw'.*resume with optimizer='adamw'"):
        pvae.fit(small_vae(), x, epochs=2, optimizer="sgd", checkpoint_dir=tmp_path, resume=True)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    seen = []
    pvae.fit(small_vae(), x, epochs=2, optimizer="adamw", weight_decay=0.5, resume=True,
             checkpoint_dir=tmp_path, callback=lambda row: seen.append(
                 torch.load(tmp_path / CHECKPOINT, weights_only=False)["training"]["optimizer"]
                 ["param_groups"][0]["weight_decay"]))
    assert seen == [0.5]


def test_adam_eps_reaches_the_optimiser_and_a_resumed_run_takes_the_new_one(x, tmp_path):
    seen = []

    def eps(row):
        groups = torch.load(tmp_path / CHECKPOINT, weights_only=False)["training"]["optimizer"]
        seen.append({g["eps"] for g in groups["param_groups"]})

    pvae.fit(small_vae(), x, epochs=1, adam_eps=1e-4, checkpoint_dir=tmp_path, callback=eps)
    pvae.fit(small_vae(), x, epochs=2, resume=True, checkpoint_dir=tmp_path, callback=eps)
    pvae.fit(small_vae(), x, epochs=3, optimizer="adam", adam_eps=1e-3, resume=True,
             checkpoint_dir=tmp_path, callback=eps)
    # the callback runs after the epoch's checkpoint: each epoch's optimiser used the eps given
    assert seen == [{1e-4}, {1e-8}, {1e-3}]
    # and it changes the steps: the same seed with another eps trains other weights
    weights = []
    for e in (1e-8, 1e-1):
        pvae.fit(m := small_vae(), x, epochs=1, seed=0, adam_eps=e)
        weights.append(m.state_dict()["encoder.net.0.weight"])
    assert not torch.equal(*weights)


def test_resume_refuses_a_seed_it_could_not_apply(x, tmp_path):
    pvae.fit(small_vae(), x, epochs=1, seed=1, checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(ValueError, match="random streams of seed=1.*seed=2 would have no effect"):
        pvae.fit(small_vae(), x, epochs=2, seed=2, checkpoint_dir=tmp_path, resume=True)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    pvae.fit(small_vae(), x, epochs=2, checkpoint_dir=tmp_path, resume=True)  # seed=None: as saved
    assert pvae.fit(small_vae(), x, epochs=3, seed=1, checkpoint_dir=tmp_path,
                    resume=True)["epoch"] == [1, 2, 3]
    pvae.fit(small_vae(), x, epochs=1, checkpoint_dir=tmp_path / "unseeded")
    with pytest.raises(ValueError, match="seed=None, saved"):
        pvae.fit(small_vae(), x, epochs=2, seed=0, checkpoint_dir=tmp_path / "unseeded",
                 resume=True)


def test_existing_checkpoint_is_not_overwritten_without_resume(x, tmp_path):
    pvae.fit(small_vae(), x, epochs=1, checkpoint_dir=tmp_path)
    before = (tmp_path / CHECKPOINT).read_bytes()
    with pytest.raises(FileExistsError, match="resume=True"):
        pvae.fit(small_vae(), x, epochs=1, checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT).read_bytes() == before
    with pytest.raises(pvae.checkpoint.CheckpointError, match="differently configured"):
        pvae.fit(pvae.VAE(64, 5, hidden_dims=(32,)), x, epochs=2, checkpoint_dir=tmp_path,
                 resume=True)
    assert (tmp_path / CHECKPOINT).read_bytes() == before


def test_checkpoints_are_written_atomically_at_the_interval(x, tmp_path, monkeypatch):
    saved = []
    real = pvae.checkpoint.atomic_save
    monkeypatch.setattr(pvae.checkpoint, "atomic_save",
                        lambda obj, path: (saved.append(obj["training"]["epoch"]), real(obj, path)))
    pvae.fit(small_vae(), x, epochs=5, checkpoint_every=2, checkpoint_dir=tmp_path)
    assert saved == [2, 4, 5]
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary files left


def test_kl_warmup_and_clipping(x):
    h = pvae.fit(small_vae(), x, epochs=3, batch_size=100, kl_warmup=2, clip_norm=1.0, seed=0)
    assert h["kl_weight"] == [0.5, 1.0, 1.0]


def test_accepts_arrays_and_datasets(x):
    h = pvae.fit(small_vae(), x.numpy().astype(np.float64), epochs=1)
    assert len(h) == 1
    ds = torch.utils.data.TensorDataset(x)
    h = pvae.fit(small_vae(), ds, epochs=2, batch_size=64, seed=0)
    assert h[-1]["train_elbo"] > h[0]["train_elbo"]


def test_dynamic_binarisation_transform(digits):
    h = pvae.fit(small_vae(), digits.train.x[:300], epochs=2, transform=pvae.data.binarize, seed=0)
    assert len(h) == 2
    with pytest.raises(ValueError, match="binarise"):
        pvae.fit(small_vae(), digits.train.x[:300], epochs=1)


def test_data_are_checked_before_training_not_again_every_epoch(binary_digits, monkeypatch):
    calls = []
    vae = pvae.VAE(64, 2, hidden_dims=(8,), likelihood="bernoulli")
    real = vae.check_data
    monkeypatch.setattr(vae, "check_data", lambda *b, **k: calls.append(1) or real(*b, **k))
    x, val = binary_digits.train.x[:100], binary_digits.val.x[:40]
    pvae.fit(vae, x, epochs=1, validation=val, batch_size=50)
    once = len(calls)
    calls.clear()
    pvae.fit(vae, x, epochs=4, validation=val, batch_size=50)
    assert len(calls) == once  # the same checks for 4 epochs as for 1


def test_keep_every_keeps_copies_that_load_as_the_model_was_then(x, tmp_path):
    torch.manual_seed(0)
    model = small_vae()
    pvae.fit(model, x, epochs=2, seed=1, checkpoint_dir=tmp_path, checkpoint_every=3,
             keep_every=2)
    at2 = {k: v.clone() for k, v in model.state_dict().items()}
    pvae.fit(model, x, epochs=4, seed=1, checkpoint_dir=tmp_path, checkpoint_every=3,
             keep_every=2, resume=True)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-e*.pt")) == [
        "checkpoint-e2.pt", "checkpoint-e4.pt"]
    kept = pvae.load(tmp_path / "checkpoint-e2.pt")
    for k, v in kept.state_dict().items():
        assert torch.equal(v, at2[k]), k
    final = pvae.load(tmp_path / "checkpoint-e4.pt")
    assert not torch.equal(final.state_dict()[k], at2[k])
    assert torch.load(tmp_path / "checkpoint-e2.pt", weights_only=False)["training"]["epoch"] == 2


@pytest.mark.parametrize("bad", [-1, 1.5, "2"])
def test_keep_every_must_be_a_whole_number_of_epochs(x, tmp_path, bad):
    with pytest.raises(ValueError, match="keep_every"):
        pvae.fit(small_vae(), x, epochs=1, checkpoint_dir=tmp_path, keep_every=bad)
    assert not any(tmp_path.iterdir())
