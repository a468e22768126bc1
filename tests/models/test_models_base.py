"""What every model family shares (``pvae.models.base``): training under each ELBO,
evaluation and save/load round trips, declared traits, independent copies, sampling with
labels, and a model/guide pair of callables evaluated as a model is."""

import copy
import pickle

import numpy as np
import pyro
import pytest
import torch
from helpers import L, copy_params, cvae, hvae, params_changed, ssvae, svi_steps
from pyro import poutine

import pvae


# ---- each variant trains and improves its ELBO, with Trace_ELBO and (mean-field) TraceMeanField --
@pytest.mark.parametrize("make,data,elbos", [
    (cvae, "xy", ["trace", "meanfield"]),
    (lambda: pvae.CVAE(64, 3, y_dim=8, hidden_dims=(32,), learned_prior=False), "xcond",
     ["trace", "meanfield"]),
    (ssvae, "xy_partial", ["enum", "trace", "meanfield"]),
    (lambda: ssvae(balance_weight=20.0), "xy_partial", ["enum", "trace"]),
    (lambda: hvae(guide="top_down"), "x", ["trace", "meanfield"]),
    (hvae, "x", ["trace"]),
    (lambda: pvae.VAE(64, 3, hidden_dims=(32,), guide_flows=2), "x", ["trace"]),
    (lambda: cvae(guide_flows=1), "xy", ["trace"]),
], ids=["cvae", "cvae-vector", "ssvae", "ssvae-balance", "hvae-topdown", "hvae-bottomup",
        "vae-iaf", "cvae-iaf"])
def test_variants_train_and_improve(make, data, elbos, xy):
    x, y = xy
    batch = {"x": x, "xy": (x, y), "xcond": (x, x[:, ::8].clone()),
             "xy_partial": (x, torch.where(torch.arange(500) < 100, y, -1))}[data]
    for elbo in elbos:
        torch.manual_seed(0)
        h = pvae.fit(make(), batch, elbo=elbo, epochs=8, batch_size=100, lr=3e-3, seed=0)
        assert h[-1]["train_elbo"] > h[0]["train_elbo"] + 3, (elbo, h["train_elbo"])


def test_every_variant_evaluates_and_round_trips(xy, tmp_path):
    x, y = xy
    for m, data in [(cvae(), (x[:20], y[:20])), (ssvae(), (x[:20],)), (hvae(), (x[:20],)),
                    (pvae.VAE(64, 3, guide_flows=1), (x[:20],))]:
        ll = pvae.evaluate.log_likelihood(m, data, num_samples=10)
        elbo = pvae.evaluate.elbo(m, data, num_samples=10)
        assert ll.shape == elbo.shape == (20,) and torch.isfinite(ll).all()
        m.save(tmp_path / "m.pt")
        back = pvae.load(tmp_path / "m.pt")
        assert type(back) is type(m) and back.hparams == m.hparams


# -- what models declare ---------------------------------------------------------------------------
@pytest.mark.parametrize("make,parts,code_dim,classifies", [
    (lambda: pvae.VAE(64, 3), ("x",), 3, False), (cvae, ("x", "y"), 3, False),
    (ssvae, ("x", "y"), 3, True), (hvae, ("x",), 6, False)])
def test_models_declare_their_batches_codes_and_classifier(make, parts, code_dim, classifies):
    m = make()
    assert m.batch_parts == parts and m.code_dim == code_dim
    assert isinstance(m, pvae.models.Classifier) == classifies
    assert type(m).batch_parts == parts  # declared on the class
    # only the CVAE needs its condition given to generate (the SSVAE draws its label)
    assert m.needs_condition == (parts == ("x", "y") and not classifies)
    assert m.embed(*((torch.rand(4, 64),) + ((torch.arange(4),) if "y" in parts else ()))
                   ).shape == (4, code_dim)


def test_mean_field_is_read_from_the_posteriors():
    assert pvae.VAE(64, 3).mean_field and cvae().mean_field and ssvae().mean_field
    assert not pvae.VAE(64, 3, guide_flows=1).mean_field and not ssvae(guide_flows=1).mean_field
    assert hvae(guide="top_down").mean_field and not hvae().mean_field


def test_a_pair_of_callables_is_evaluated_as_the_model_is(xy):
    x, _ = xy
    m = pvae.VAE(64, 3)
    pyro.set_rng_seed(0)
    a = pvae.evaluate.elbo(m, x[:20], num_samples=2)
    pyro.set_rng_seed(0)
    b = pvae.evaluate.elbo((m.model, m.guide), x[:20], num_samples=2)
    assert torch.allclose(a, b)


def param_names(model, x):
    """The names of the model's parameters in Pyro's param store: the param sites of a trace."""
    tr = poutine.trace(model.model).get_trace(x)
    return {n for n, s in tr.nodes.items() if s["type"] == "param"}


# -- every second model has its own identity ---------------------------------------------------
def _deepcopy(vae, tmp_path):
    return copy.deepcopy(vae)


def _pickled(vae, tmp_path):
    return pickle.loads(pickle.dumps(vae))


def _loaded(vae, tmp_path):
    vae.save(tmp_path / "vae.pt")
    return pvae.load(tmp_path / "vae.pt").train()


@pytest.mark.parametrize("make_copy", [_deepcopy, _pickled, _loaded])
def test_a_copy_of_a_trained_model_trains_on_its_own_with_pyro_svi(x, tmp_path, make_copy):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    svi_steps(vae, x, 3)  # the original's parameters are now in Pyro's param store
    twin = make_copy(vae, tmp_path)
    assert param_names(twin, x).isdisjoint(param_names(vae, x))
    original, before = copy_params(vae), copy_params(twin)
    losses = svi_steps(twin, x)
    assert params_changed(before, twin), "the copy did not train"
    assert not params_changed(original, vae), "training the copy changed the original"
    assert len(set(losses)) > 1


def test_loading_twice_gives_two_independent_models(x, tmp_path):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    svi_steps(vae, x, 3)
    vae.save(tmp_path / "vae.pt")
    a, b = pvae.load(tmp_path / "vae.pt").train(), pvae.load(tmp_path / "vae.pt").train()
    names = [param_names(m, x) for m in (vae, a, b)]
    assert all(m.isdisjoint(n) for i, m in enumerate(names) for n in names[i + 1:])
    before_a, before_b = copy_params(a), copy_params(b)
    svi_steps(b, x)
    assert params_changed(before_b, b) and not params_changed(before_a, a)
    svi_steps(a, x)
    assert params_changed(before_a, a)


def test_a_shallow_copy_shares_the_networks():
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    shallow = copy.copy(vae)
    assert shallow.decoder is vae.decoder and shallow.encoder is vae.encoder
    assert all(p is q for p, q in zip(shallow.parameters(), vae.parameters()))


@pytest.mark.parametrize("model_cls", ["CVAE", "SemiSupervisedVAE"])
def test_sample_with_labels(model_cls):
    if model_cls == "CVAE":
        model = pvae.CVAE(5, 2, num_classes=3, hidden_dims=(8,), likelihood="gaussian")
    else:
        model = pvae.SemiSupervisedVAE(5, 3, z_dim=2, hidden_dims=(8,), likelihood="gaussian")
    assert model.sample(4, y=2).shape == (4, 5)  # one label: n draws of that class
    assert model.sample(3, y=torch.tensor([0, 1, 2])).shape == (3, 5)  # n labels: one each
    assert model.sample(3, y=np.array([[0], [1], [2]])).shape == (3, 5)
    with pytest.raises(ValueError, match=r"shape \(2,\): give one label \(n=5 draws"):
        model.sample(5, y=[0, 1])
    with pytest.raises(ValueError, match="whole numbers.*found 1.5"):
        model.sample(4, y=1.5)
    with pytest.raises(ValueError, match="out of range: found 3"):
        model.sample(4, y=3)
    with pytest.raises(ValueError, match="whole numbers"):
        L.manifold(model, n=2, y=0.5)
