"""The training loop: every ELBO, reproducibility, resuming, options and bad input."""

import numpy as np
import pytest
import torch
from pyro.infer import Trace_ELBO

import pvae
from pvae.train import CHECKPOINT, make_elbo


@pytest.fixture
def x(binary_digits):
    return binary_digits.train.x[:400]


def small_vae(**kw):
    return pvae.VAE(64, 4, hidden_dims=(32,), **kw)


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


def test_warmup_scales_only_latent_sites(x):
    from pyro import poutine

    from pvae.train import LatentScale

    vae = small_vae()
    with LatentScale(0.25):
        g = poutine.trace(vae.guide).get_trace(x[:5])
        m = poutine.trace(poutine.replay(vae.model, trace=g)).get_trace(x[:5])
    assert g.nodes["z"]["scale"] == 0.25 and m.nodes["z"]["scale"] == 0.25
    assert m.nodes["x"]["scale"] == 1.0


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


def test_numerical_failure_names_the_site_and_keeps_the_checkpoint(x, tmp_path):
    vae = small_vae()
    written = []

    def poison(row):  # after epoch 1 is checkpointed, the decoder goes bad
        written.append((tmp_path / CHECKPOINT).read_bytes())
        with torch.no_grad():
            vae.decoder.net[-1].bias.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match="observed site 'x'.*lower learning rate") as e:
        pvae.fit(vae, x, epochs=3, checkpoint_dir=tmp_path, callback=poison)
    assert f"The last good checkpoint, '{tmp_path / CHECKPOINT}', was kept" in str(e.value)
    assert "standardise" not in str(e.value)  # binary data: nothing to standardise
    assert len(written) == 1 and (tmp_path / CHECKPOINT).read_bytes() == written[0]
    assert pvae.load(tmp_path / CHECKPOINT).decoder.net[-1].bias.isfinite().all()


def _poisoned_fit(model, data, **kwargs):
    def poison(row):  # after epoch 1, the decoder goes bad
        with torch.no_grad():
            model.decoder.net[-1].bias.fill_(float("nan"))

    with pytest.raises(FloatingPointError) as e:
        pvae.fit(model, data, epochs=3, callback=poison, **kwargs)
    return str(e.value)


def test_numerical_failure_claims_a_checkpoint_only_when_one_exists(x, tmp_path):
    message = _poisoned_fit(small_vae(), x)
    assert "checkpoint was kept" not in message and "Nothing was saved" in message
    message = _poisoned_fit(small_vae(), x, checkpoint_dir=tmp_path, checkpoint_every=5)
    assert "checkpoint was kept" not in message and "No checkpoint had been written" in message
    assert not (tmp_path / CHECKPOINT).exists()


@pytest.mark.parametrize("likelihood", ["gaussian", "laplace"])
def test_numerical_failure_suggests_standardising_unscaled_real_data(likelihood):
    g = torch.Generator().manual_seed(0)
    table = 5000.0 + 300.0 * torch.randn(200, 6, generator=g)  # means 5000, std 300
    message = _poisoned_fit(pvae.VAE(6, 2, hidden_dims=(8,), likelihood=likelihood), table)
    assert "not standardised" in message and "x = (x - mean) / std" in message
    assert f"for a {likelihood} likelihood" in message
    standard = (table - table.mean(0)) / table.std(0)
    message = _poisoned_fit(pvae.VAE(6, 2, hidden_dims=(8,), likelihood=likelihood), standard)
    assert "standardis" not in message


@pytest.mark.parametrize("kwargs,message", [
    (dict(epochs=0), "epochs must be a positive int"),
    (dict(epochs=-3), "epochs must be a positive int"),
    (dict(batch_size=0), "batch_size must be a positive int"),
    (dict(lr=-1.0), "lr must be a positive number"),
    (dict(elbo="elbo9"), "unknown elbo 'elbo9'.*trace.*meanfield"),
    (dict(elbo="trace:3"), "takes no argument"),
    (dict(num_particles=0), "num_particles must be a positive int"),
    (dict(clip_norm=0), "clip_norm must be positive"),
    (dict(optimizer="lbfgs"), "unknown optimizer"),
    (dict(epochs=3, lr_steps=(3,)), r"lr_steps must be increasing epochs in 1..2"),
    (dict(epochs=5, lr_steps=(2, 2)), "lr_steps must be increasing"),
    (dict(lr_steps=(1,), lr_factor=0), "lr_factor must be a positive number"),
])
def test_bad_options(kwargs, message, x):
    with pytest.raises(ValueError, match=message):
        pvae.fit(small_vae(), x, **kwargs)


@pytest.mark.parametrize("data,message", [
    (torch.zeros(0, 64), "empty"),
    (torch.zeros(10, 63), r"shape \(10, 63\) but the model expects \(N, \*\(64,\)\)"),
    (torch.zeros(10, 1, 8, 8), r"reshape it with x.reshape\(len\(x\), \*\(64,\)\)"),
    ((torch.zeros(10, 64), torch.zeros(10)), "takes x alone"),
    (torch.zeros(10, 64, dtype=torch.complex64), "dtype"),
    (torch.utils.data.TensorDataset(torch.zeros(0, 64)), "empty"),
    ("x.npy", "must be a tensor"),
])
def test_bad_data_gets_a_clear_error(data, message):
    with pytest.raises((ValueError, TypeError), match=message):
        pvae.fit(small_vae(), data, epochs=1)


def test_make_elbo_names():
    assert make_elbo("renyi:0.5", num_particles=2).alpha == 0.5
    e = Trace_ELBO()
    assert make_elbo(e) is e
    assert make_elbo("trace", num_particles=4).vectorize_particles


def test_renyi_leaves_the_plate_unscaled_and_scales_the_loss(x):
    """Renyi's log-mean-exp is not linear in site scales: the loss must be N/B times the
    unscaled batch loss, not the loss of a plate scaled by N/B."""
    from pyro.infer import RenyiELBO

    from pvae.elbos import traits

    vae = small_vae()
    elbo = RenyiELBO(alpha=0.0, num_particles=20)
    assert not traits(elbo).linear_in_plate_scale
    import pyro

    pyro.set_rng_seed(0)
    unscaled = elbo.loss(vae.model, vae.guide, x[:40])
    vae.num_data = 400
    pyro.set_rng_seed(0)
    inside = elbo.loss(vae.model, vae.guide, x[:40])
    vae.num_data = None
    assert inside != pytest.approx(10 * unscaled, rel=1e-3)  # what scaling the plate would give
    # fit's first-step loss uses the scale-free form: check through a one-step epoch
    seen = []
    real = elbo.loss_and_grads

    def spy(*args, **kwargs):
        assert vae.num_data is None
        seen.append(real(*args, **kwargs))
        return seen[-1]

    elbo.loss_and_grads = spy
    h = pvae.fit(vae, x[:40], elbo=elbo, epochs=1, batch_size=40, lr=1e-12, seed=0)
    assert h[0]["train_elbo"] == pytest.approx(-seen[0] / 40, rel=1e-6)
    with pytest.raises(ValueError, match="num_particles >= 2"):
        make_elbo("renyi:0.5")
    with pytest.raises(ValueError, match="kl_warmup cannot be used"):
        pvae.fit(small_vae(), x, elbo="renyi:0.5", num_particles=2, kl_warmup=1)
    with pytest.raises(ValueError, match="beta != 1"):
        pvae.fit(small_vae(beta=2.0), x, elbo="renyi:0.5", num_particles=2)


def test_schedules_are_pure_and_match_the_history(x):
    from pvae.train import kl_weight, learning_rate

    assert [learning_rate(e, 1.0, (2, 4), 0.5) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert kl_weight(0, 0, 10, 0) == 1.0
    assert kl_weight(0, 0, 4, 2) == pytest.approx(1 / 8)
    assert kl_weight(1, 3, 4, 2) == 1.0 and kl_weight(5, 0, 4, 2) == 1.0
    h = pvae.fit(small_vae(), x, epochs=3, batch_size=100, kl_warmup=2.5, lr=1e-3,
                 lr_steps=(2,), seed=0)
    assert h["kl_weight"] == [kl_weight(e, 3, 4, 2.5) for e in range(3)]
    assert h["lr"] == [learning_rate(e, 1e-3, (2,)) for e in range(3)]


def test_elbos_declare_their_traits_and_subclasses_inherit_them():
    from pyro.infer import RenyiELBO, TraceMeanField_ELBO

    from pvae.elbos import ELBO_NAMES, traits

    got = {name: traits(make_elbo(name, 2)) for name in ELBO_NAMES}
    assert {n for n, t in got.items() if t.needs_mean_field_guide} == {"meanfield",
                                                                       "jit_meanfield"}
    assert {n for n, t in got.items() if not t.linear_in_plate_scale} == {"renyi"}
    assert {n for n, t in got.items() if not t.allows_kl_weight} == {"renyi", "iwae",
                                                                     "iwae_dreg"}
    assert {n for n, t in got.items() if t.jit} == {"jit_trace", "jit_meanfield"}
    assert {n for n, t in got.items() if t.lean_path} == {"trace", "meanfield"}
    assert all(t.refusal is None for t in got.values())

    class MyMeanField(TraceMeanField_ELBO):
        pass

    assert traits(MyMeanField()).needs_mean_field_guide
    assert traits(Trace_ELBO()) == traits(make_elbo("tracegraph"))
    assert traits(RenyiELBO) is traits(RenyiELBO(num_particles=2))


def test_training_data_joins_tensors_and_datasets(x):
    from pvae.data import ArrayDataset
    from pvae.train import TrainingData

    vae = small_vae()
    in_memory = TrainingData(x, vae, batch_size=100)
    streamed = TrainingData(ArrayDataset(x.numpy()), vae, batch_size=100)
    assert not in_memory.streamed and streamed.streamed
    assert in_memory.num_data == streamed.num_data == 400
    assert in_memory.num_steps(vae) == streamed.num_steps(vae) == 4
    for data in (in_memory, streamed):
        steps = list(data.to("cpu").batches(vae, 0, torch.Generator().manual_seed(0)))
        assert len(steps) == 4
        assert sorted(n for step in steps for _, n in step) == [400] * 4
        assert sum(b[0].shape[0] for step in steps for b, _ in step) == 400
    with pytest.raises(ValueError, match="empty"):
        TrainingData(torch.utils.data.TensorDataset(x[:0]), vae, batch_size=100)
