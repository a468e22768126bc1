"""Data and argument checks shared by every public entry point (``pvae.models.checks``):
shapes, dtypes, NaN, labels and conditions, constructor arguments, numbers of draws."""

import numpy as np
import pyro
import pytest
import torch
from helpers import E, L, cvae, hvae, ssvae

import pvae


@pytest.mark.parametrize("make,data,message", [
    (cvae, lambda x, y: (x, y + 10), r"labels out of range: found 1\d.*num_classes=10"),
    (cvae, lambda x, y: (x, -y - 1), r"labels out of range"),
    (cvae, lambda x, y: (x, torch.nn.functional.one_hot(y, 10)), r"one-hot labels pass y.argmax"),
    (cvae, lambda x, y: (x, y[:-1]), r"x has 500 rows but a second part has shape \(499,\)"),
    (cvae, lambda x, y: x, r"trains on pairs"),
    (lambda: pvae.CVAE(64, 3, y_dim=8), lambda x, y: (x, x[:, :7]), r"condition has shape \(500, 7\).*y_dim=8"),
    (ssvae, lambda x, y: (x, y + 1), r"-1 \(unlabelled\) or 0..9"),
    (ssvae, lambda x, y: (x, y - 2), r"labels out of range: found -2"),
    (lambda: pvae.SemiSupervisedVAE(64, 5), lambda x, y: (x, y), r"found 9.*num_classes=5"),
    (hvae, lambda x, y: (x, y), r"takes x alone"),
])
def test_bad_labels_and_conditions(make, data, message, xy):
    x, y = xy
    with pytest.raises(ValueError, match=message):
        pvae.fit(make(), data(x, y), epochs=1)


def test_bad_variant_arguments():
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        pvae.CVAE(64, 3)
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        pvae.CVAE(64, 3, num_classes=3, y_dim=2)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        pvae.SemiSupervisedVAE(64, 1)
    with pytest.raises(ValueError, match=r"balance_weight must be non-negative \(0 turns"):
        pvae.SemiSupervisedVAE(64, 10, balance_weight=-1.0)
    with pytest.raises(ValueError, match="guide must be"):
        pvae.HierarchicalVAE(64, guide="sideways")
    with pytest.raises(ValueError, match="guide_flows"):
        pvae.VAE(64, 2, guide_flows=-1)


# -- every public method that takes data checks it as fit does ---------------------------------
def _same(a, b):
    if isinstance(a, (tuple, list)):
        return all(_same(p, q) for p, q in zip(a, b))
    if isinstance(a, dict):
        return all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.allclose(a, b, atol=1e-5)
    return a == pytest.approx(b, abs=1e-5)


VAE_CALLS = {
    "encode": lambda m, x: m.encode(x),
    "embed": lambda m, x: m.embed(x),
    "reconstruct": lambda m, x: m.reconstruct(x),
    "latent.encode": lambda m, x: L.encode(m, x),
    "latent.interpolate": lambda m, x: L.interpolate(m, x[0], x[1], steps=3),
    "latent.traverse": lambda m, x: L.traverse(m, x[0], steps=3),
    "latent.Features": lambda m, x: L.Features(m, sample=False)(x),
    "evaluate.elbo": lambda m, x: E.elbo(m, x),
    "evaluate.log_likelihood": lambda m, x: E.log_likelihood(m, x, num_samples=4),
    "evaluate.parts": lambda m, x: E.parts(m, x),
    "evaluate.active_units": lambda m, x: E.active_units(m, x, num_samples=2)["z"]["active"],
    "evaluate.anomaly_scores": lambda m, x: E.anomaly_scores(m, x, num_samples=2),
    "evaluate.gradient_stats": lambda m, x: E.gradient_stats(m, x, num_estimates=2),
}


@pytest.mark.filterwarnings("ignore:posterior collapse")
@pytest.mark.parametrize("model_cls", ["VAE", "HierarchicalVAE"])
@pytest.mark.parametrize("name", list(VAE_CALLS))
def test_float64_data_is_cast_as_fit_casts_it(x, name, model_cls):
    if model_cls == "VAE":
        model = pvae.VAE(64, 3, hidden_dims=(16,))
    else:
        model = pvae.HierarchicalVAE(64, z_dims=(3, 2), hidden_dims=(16,))
    call = VAE_CALLS[name]
    if name == "evaluate.active_units" and model_cls != "VAE":
        call = lambda m, x: E.active_units(m, x, num_samples=2)["z1"]["active"]  # noqa: E731
    results = []
    for data in (x, x.double(), x.numpy().astype(np.float64)):
        pyro.set_rng_seed(1)
        results.append(call(model, data))
    assert _same(results[0], results[1]) and _same(results[0], results[2])


@pytest.mark.parametrize("shape,x_shape,fix", [
    ((2, 10, 64), (64,), r"flatten the data sets into one batch with x.reshape\(-1, 64\)$"),
    ((3, 10, 1, 28, 28), (1, 28, 28), r"x.reshape\(-1, 1, 28, 28\)$"),
    ((10,), (1,), r"one value per point: x.reshape\(len\(x\), 1\)$"),
    ((64,), (64,), r"one data point\? pass x\[None\] \(shape \(1, 64\)\)$"),
    ((10,), (64,), r"pass a batch of points, one per row \(shape \(N, 64\)\)$"),
    ((10, 0), (64,), r"must hold 64 values, these hold none$"),
    ((10, 63), (64,), r"must hold 64 values: build the model for this data \(x_dim=63\)$"),
    ((10, 784), (1, 28, 28), r"x.reshape\(len\(x\), 1, 28, 28\) or build the model with "
                             r"x_dim=784$"),
    ((10, 28, 28), (1, 28, 28), r"x.reshape\(len\(x\), 1, 28, 28\) or build the model with "
                                r"x_dim=\(28, 28\)$"),
])
def test_a_wrong_shape_is_named_with_its_fix(shape, x_shape, fix):
    from pvae.models.checks import check_x

    want = ", ".join(map(str, x_shape))
    with pytest.raises(ValueError, match=rf"^data has shape \({shape[0]},.*\) but the model "
                                         rf"expects \(N, {want}\); (.* )?" + fix):
        check_x(torch.zeros(shape), x_shape)


@pytest.mark.parametrize("name", list(VAE_CALLS))
def test_data_of_the_wrong_shape_gets_fits_error(x, name):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    message = r"data has shape \(\d+, 60\) but the model expects \(N, 64\)"
    with pytest.raises(ValueError, match=message):
        pvae.fit(vae, x[:, :60], epochs=1, progress=False)
    with pytest.raises(ValueError, match=message):
        VAE_CALLS[name](vae, x[:, :60])


@pytest.mark.parametrize("name", ["encode", "reconstruct", "latent.encode", "evaluate.elbo",
                                  "evaluate.parts"])
def test_nan_and_non_tensors_are_refused_and_support_where_data_are_scored(x, name):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    grey = x.clone()
    grey[0, 0] = 0.5
    if name.startswith("evaluate"):  # scored: outside the Bernoulli support, as in fit
        with pytest.raises(ValueError, match="likelihood 'bernoulli'"):
            VAE_CALLS[name](vae, grey)
    else:  # only encoded: grey levels are fine
        assert torch.isfinite(torch.as_tensor(VAE_CALLS[name](vae, grey)[0])).all()
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or infinite value"):
        VAE_CALLS[name](vae, bad)
    with pytest.raises(TypeError, match="must be a tensor"):
        VAE_CALLS[name](vae, x.tolist())


def test_conditional_models_check_data_and_labels(digits):
    x, y = digits.train.x[:40], digits.train.y[:40]
    cvae = pvae.CVAE(64, 3, num_classes=10, hidden_dims=(16,), likelihood="gaussian")
    ref = cvae.reconstruct(x, y)
    assert torch.allclose(cvae.reconstruct(x.double(), y.numpy()), ref)
    assert torch.allclose(cvae.encode(x.double(), y.float())[0], cvae.encode(x, y)[0])
    assert torch.allclose(L.encode(cvae, x.numpy().astype(np.float64), y), L.encode(cvae, x, y))
    assert torch.allclose(cvae.reconstruct(x, y[:, None]), ref)  # (N, 1) labels
    bad_y = y.float()
    bad_y[3] = 1.5
    for call in (lambda: cvae.reconstruct(x, bad_y), lambda: cvae.encode(x, bad_y),
                 lambda: L.encode(cvae, x, bad_y), lambda: E.elbo(cvae, (x, bad_y)),
                 lambda: pvae.fit(cvae, (x, bad_y), epochs=1, progress=False)):
        with pytest.raises(ValueError, match="whole numbers.*found 1.5"):
            call()
    with pytest.raises(ValueError, match="out of range: found 12"):
        cvae.reconstruct(x, torch.full((40,), 12))
    with pytest.raises(ValueError, match=r"x has 40 rows but a second part has shape \(39,\)"):
        cvae.reconstruct(x, y[:39])

    ss = pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,), likelihood="gaussian")
    assert torch.allclose(ss.classify(x.double()), ss.classify(x))
    assert torch.allclose(ss.embed(x.numpy().astype(np.float64), y), ss.embed(x, y))
    with pytest.raises(ValueError, match=r"shape \(40, 60\)"):
        ss.classify(x[:, :60])
    part = y.clone()
    part[:5] = -1  # unlabelled: predicted, as embed does
    guess = ss.classify(x).argmax(-1)
    filled = torch.where(part >= 0, part, guess)
    assert torch.allclose(ss.reconstruct(x, part), ss.reconstruct(x, filled))


@pytest.mark.parametrize("make", [
    lambda: pvae.VAE(5, 2, hidden_dims=(8,), likelihood="gaussian"),
    lambda: pvae.HierarchicalVAE(5, z_dims=(2, 2), hidden_dims=(8,), likelihood="gaussian"),
    lambda: pvae.CVAE(5, 2, num_classes=3, hidden_dims=(8,), likelihood="gaussian"),
    lambda: pvae.SemiSupervisedVAE(5, 3, z_dim=2, hidden_dims=(8,), likelihood="gaussian"),
])
def test_the_number_of_draws_is_checked(make):
    model = make()
    kwargs = {"y": 1} if "y" in model.batch_parts else {}
    assert model.sample(np.int64(3), **kwargs).shape == (3, 5)
    for n in (0, -2, 2.5):
        with pytest.raises(ValueError, match=rf"n must be a positive int .*got {n}"):
            model.sample(n, **kwargs)
