"""Input checks shared by every public entry point, and independent copies of models."""

import copy
import pickle

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO
from torch import nn

import pvae
from pvae.checkpoint import CheckpointError


@pytest.fixture
def x(binary_digits):
    return binary_digits.train.x[:48]


def _svi_steps(model, x, steps=5):
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    return [svi.step(x) for _ in range(steps)]


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


def _changed(before, model):
    return any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# -- 1. every second model has its own identity ---------------------------------------------------
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
    _svi_steps(vae, x, 3)  # the original's parameters are now in Pyro's param store
    twin = make_copy(vae, tmp_path)
    assert twin._pyro_name != vae._pyro_name
    original, before = _weights(vae), _weights(twin)
    losses = _svi_steps(twin, x)
    assert _changed(before, twin), "the copy did not train"
    assert not _changed(original, vae), "training the copy changed the original"
    assert len(set(losses)) > 1


def test_loading_twice_gives_two_independent_models(x, tmp_path):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    _svi_steps(vae, x, 3)
    vae.save(tmp_path / "vae.pt")
    a, b = pvae.load(tmp_path / "vae.pt").train(), pvae.load(tmp_path / "vae.pt").train()
    assert len({vae._pyro_name, a._pyro_name, b._pyro_name}) == 3
    before_a, before_b = _weights(a), _weights(b)
    _svi_steps(b, x)
    assert _changed(before_b, b) and not _changed(before_a, a)
    _svi_steps(a, x)
    assert _changed(before_a, a)


def test_a_shallow_copy_shares_the_networks():
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    shallow = copy.copy(vae)
    assert shallow.decoder is vae.decoder and shallow.encoder is vae.encoder
    assert all(p is q for p, q in zip(shallow.parameters(), vae.parameters()))


# -- 2. custom networks' outputs, checked at their first call -------------------------------------
class _Dec(nn.Module):
    def __init__(self, z_dim, widths):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(z_dim, w) for w in widths)

    def forward(self, z):
        out = tuple(h(z) for h in self.heads)
        return out[0] if len(out) == 1 else out


def _x200():
    return torch.randn(16, 200)


@pytest.mark.parametrize("call", ["fit", "svi", "sample", "reconstruct"])
def test_a_decoder_of_the_wrong_width_is_named_with_both_shapes(call):
    vae = pvae.VAE(200, 4, likelihood="gaussian", decoder=_Dec(4, [199]))
    x = _x200()
    rows = 3 if call == "sample" else 16
    message = (rf"decoder returned one tensor of shape \({rows}, 199\), but the 'gaussian' "
               r"likelihood .*for data of shape \(200,\) needs one tensor of shape \(N, 200\)")
    with pytest.raises(ValueError, match=message):
        if call == "fit":
            pvae.fit(vae, x, epochs=1, batch_size=16, progress=False)
        elif call == "svi":
            _svi_steps(vae, x, 1)
        elif call == "sample":
            vae.sample(3)
        else:
            vae.reconstruct(x)


def test_one_tensor_where_the_likelihood_needs_two():
    vae = pvae.VAE(200, 4, likelihood="gaussian", likelihood_kwargs={"scale": "predicted"},
                   decoder=_Dec(4, [200]))
    with pytest.raises(ValueError, match=r"returned one tensor of shape \(16, 200\), but the "
                       r"'gaussian' likelihood \(scale='predicted'\).*needs a tuple of 2 "
                       r"tensors of shapes \(N, 200\), \(N, 200\)"):
        pvae.fit(vae, _x200(), epochs=1, batch_size=16, progress=False)
    right = pvae.VAE(200, 4, likelihood="gaussian", likelihood_kwargs={"scale": "predicted"},
                     decoder=_Dec(4, [200, 200]))
    assert right.sample(5).shape == (5, 200)


def test_one_output_per_data_point_is_refused_not_broadcast():
    vae = pvae.VAE(200, 4, likelihood="gaussian", decoder=_Dec(4, [1]))
    with pytest.raises(ValueError, match=r"returned one tensor of shape \(5, 1\).* needs one "
                                         r"tensor of shape \(N, 200\)"):
        vae.sample(5)  # was shape (5, 1)
    with pytest.raises(ValueError, match=r"returned one tensor of shape \(16, 1\)"):
        pvae.fit(vae, _x200(), epochs=1, batch_size=16, progress=False)


def test_categorical_and_cvae_decoders_are_checked_too():
    cat = pvae.VAE(6, 2, likelihood="categorical", likelihood_kwargs={"num_levels": 4},
                   decoder=_Dec(2, [24]))
    with pytest.raises(ValueError, match=r"one tensor of shape \(3, 24\).*needs one tensor of "
                                         r"shape \(N, 6, 4\)"):
        cat.sample(3)
    cvae = pvae.CVAE(200, 4, num_classes=3, likelihood="gaussian", decoder=_Dec(7, [199]))
    with pytest.raises(ValueError, match=r"decoder returned one tensor of shape \(2, 199\)"):
        cvae.sample(2, y=1)


class _Enc(nn.Module):
    def __init__(self, x_dim, out):
        super().__init__()
        self.lin, self.out = nn.Linear(x_dim, 8), out

    def forward(self, x, *c):
        h = self.lin(x)
        if self.out == "one":
            return h[:, :4]
        return h[:, : self.out], torch.exp(h[:, : self.out])


@pytest.mark.parametrize("out, match", [
    ("one", r"encoder returned one tensor of shape \(16, 4\).*two tensors of shape \(16, 4\)"),
    (3, r"encoder returned a tuple of 2 \(\(16, 3\), \(16, 3\)\).*shape \(16, 4\)"),
])
def test_encoder_outputs_are_checked(out, match):
    vae = pvae.VAE(200, 4, likelihood="gaussian", encoder=_Enc(200, out))
    with pytest.raises(ValueError, match=match):
        pvae.fit(vae, _x200(), epochs=1, batch_size=16, progress=False)
    with pytest.raises(ValueError, match=match):
        vae.encode(_x200())
    cvae = pvae.CVAE(200, 4, num_classes=3, likelihood="gaussian", encoder=_Enc(200, out))
    with pytest.raises(ValueError, match=match):
        cvae.encode(_x200(), torch.zeros(16, dtype=torch.long))


# -- 3. every public method that takes data checks it as fit does ---------------------------------
def _same(a, b):
    if isinstance(a, (tuple, list)):
        return all(_same(p, q) for p, q in zip(a, b))
    if isinstance(a, dict):
        return all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return torch.allclose(a, b, atol=1e-5)
    return a == pytest.approx(b, abs=1e-5)


L = pvae.latent
E = pvae.evaluate
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


@pytest.mark.parametrize("name", list(VAE_CALLS))
def test_data_of_the_wrong_shape_gets_fits_error(x, name):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    message = r"data has shape \(\d+, 60\) but the model expects \(N, \*\(64,\)\)"
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


# -- 4. options and files that were silently wrong or gave raw errors -----------------------------
def test_roc_auc_refuses_labels_it_cannot_read():
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    assert E.roc_auc(scores, torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    assert E.roc_auc(scores.numpy(), [False, False, True, True]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="3 labels for 4 scores"):
        E.roc_auc(scores, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"0 \(normal\) or 1 \(anomaly\), found the values "
                                         r"\[1, 2\]"):
        E.roc_auc(scores, torch.tensor([1, 1, 2, 2]))
    with pytest.raises(ValueError, match="NaN"):
        E.roc_auc(torch.tensor([0.1, float("nan"), 0.3, 0.2]), torch.tensor([0, 0, 1, 1]))
    assert E.calibrate_threshold([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="NaN"):
        E.calibrate_threshold(torch.tensor([0.1, float("nan")]))


@pytest.mark.parametrize("spec, match", [
    ("iwae:abc", r"elbo 'iwae:abc': 'abc' is not a whole number; write 'iwae' or 'iwae:K'"),
    ("iwae_dreg:2.5", r"'2.5' is not a whole number; write 'iwae_dreg' or 'iwae_dreg:K'"),
    ("renyi:x", r"elbo 'renyi:x': 'x' is not a number; write 'renyi' or 'renyi:ALPHA'"),
    ("iwae:0", r"K, the number of importance samples .* at least 1"),
    ("iwae:-3", r"K, the number of importance samples .* at least 1"),
    ("iwae:", r"empty argument"),
    ("renyi:1", r"alpha must be a finite number other than 1"),
])
def test_bad_elbo_arguments_name_the_option_and_the_valid_forms(x, spec, match):
    with pytest.raises(ValueError, match=match):
        pvae.elbos.make_elbo(spec, 2)
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    before = _weights(vae)
    with pytest.raises(ValueError, match=match):
        pvae.fit(vae, x, elbo=spec, num_particles=2, epochs=1, progress=False)
    assert not _changed(before, vae)
    assert pvae.elbos.make_elbo("iwae:3").num_particles == 3


class MyGaussian(pvae.likelihoods.Gaussian):
    name = "my_gaussian"  # not registered


class ShadowGaussian(pvae.likelihoods.Gaussian):
    pass  # keeps the name "gaussian", but is not the registered class


@pytest.mark.parametrize("lik_cls", [MyGaussian, ShadowGaussian])
def test_a_user_defined_likelihood_says_to_pass_the_model(digits, tmp_path, lik_cls):
    vae = pvae.VAE(64, 3, hidden_dims=(16,), likelihood=lik_cls(scale=0.5))
    vae.save(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=rf"likelihood not in pvae's registry "
                                              rf"\({lik_cls.__name__}\).*model=\.\.\."):
        pvae.load(tmp_path / "m.pt")
    again = pvae.VAE(64, 3, hidden_dims=(16,), likelihood=lik_cls(scale=0.5))
    loaded = pvae.load(tmp_path / "m.pt", model=again)
    x = digits.test.x[:4]
    assert torch.equal(loaded.reconstruct(x), vae.eval().reconstruct(x))


def test_resuming_with_fewer_epochs_than_done_is_refused(x, tmp_path):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    pvae.fit(vae, x, epochs=3, checkpoint_dir=tmp_path, progress=False, seed=0)
    saved = (tmp_path / "checkpoint.pt").read_bytes()
    weights = _weights(vae)
    with pytest.raises(ValueError, match=r"has 3 epochs done, more than epochs=2.*epochs > 3"):
        pvae.fit(vae, x, epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == saved
    assert not _changed(weights, vae)


# -- 5. labels: at load time, in fit, and for generation ------------------------------------------
def _npz(tmp_path, y, n=30):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.random.default_rng(0).random((n, 4)).astype(np.float32), y=y)
    return path


@pytest.mark.parametrize("y, match", [
    (np.tile([0.4, 1.6, 2.9], 10), r"whole class ids, found 0.4 \(30 fractional"),
    (np.array(["cat", "dog", "eel"] * 10), r"<U3 values, not class ids.*numpy.unique"),
    (np.array([0.0, 1.0, np.nan] * 10), r"10 NaN or infinite"),
    (np.tile([1000, 2000, 3000], 10), r"3 distinct value\(s\) but range up to 3000, which would "
                                      r"make 3001 classes; re-index them to 0..2.*numpy.unique"),
    (np.tile([0, 1, -2], 10), r"found -2"),
])
def test_bad_labels_in_a_users_file_are_refused_at_load(tmp_path, y, match):
    with pytest.raises(ValueError, match=match):
        pvae.data.load("array", path=_npz(tmp_path, y))
    with pytest.raises(ValueError, match=match):
        pvae.data.ArrayDataset(np.zeros((30, 4), np.float32), y)


def test_a_matrix_y_in_a_file_is_condition_vectors_and_must_be_finite(tmp_path):
    # (N, D) with D > 1 in a user's file: a CVAE's condition vectors (config model.y_dim)
    y = np.random.default_rng(1).normal(size=(30, 3))
    data = pvae.data.load("array", path=_npz(tmp_path, y))
    assert data.train.y.dtype == torch.float32 and data.train.y.shape[1] == 3
    y[4, 1] = np.nan
    with pytest.raises(ValueError, match="condition vectors y must be finite"):
        pvae.data.load("array", path=_npz(tmp_path, y))
    # as class labels (ArrayDataset), a matrix is refused with the shape it has
    with pytest.raises(ValueError, match=r"shape \(30, 3\)"):
        pvae.data.ArrayDataset(np.zeros((30, 4), np.float32), np.zeros((30, 3)))


def test_good_labels_in_a_users_file(tmp_path):
    data = pvae.data.load("array", path=_npz(tmp_path, np.tile([0, 1, 2], 10)[:, None]))
    assert data.train.y.dim() == 1 and data.num_classes == 3  # (N, 1) squeezed
    data = pvae.data.load("array", path=_npz(tmp_path, np.tile([0.0, 2.0, -1.0], 10)))
    assert data.num_classes == 3 and set(data.train.y.tolist()) <= {-1, 0, 2}


def test_fit_takes_labels_as_a_column_and_refuses_strings(digits):
    x, y = digits.train.x[:40], digits.train.y[:40]
    cvae = pvae.CVAE(64, 3, num_classes=10, hidden_dims=(16,), likelihood="gaussian")
    history = pvae.fit(cvae, (x, y[:, None]), epochs=1, progress=False)
    assert len(history) == 1
    with pytest.raises(TypeError, match="numpy.unique"):
        pvae.fit(cvae, (x.numpy(), np.array(["a"] * 40)), epochs=1, progress=False)
    nan_y = y.float()
    nan_y[0] = float("nan")
    with pytest.raises(ValueError, match="labels hold NaN"):
        pvae.fit(cvae, (x, nan_y), epochs=1, progress=False)
    with pytest.raises(ValueError, match="out of range: found 3000.*must be 0..9"):
        pvae.fit(cvae, (x, (y % 3 + 1) * 1000), epochs=1, progress=False)
    with pytest.raises(ValueError, match="whole numbers.*found 0.4"):
        pvae.fit(cvae, (x, torch.tensor([0.4, 1.6, 2.9, 1.0] * 10)), epochs=1, progress=False)


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


def test_sample_with_a_condition_vector():
    cvae = pvae.CVAE(5, 2, y_dim=3, hidden_dims=(8,), likelihood="gaussian")
    assert cvae.sample(4, y=torch.ones(3)).shape == (4, 5)
    assert cvae.sample(2, y=torch.ones(2, 3)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"shape \(3, 3\): give one vector of size y_dim=3"):
        cvae.sample(2, y=torch.ones(3, 3))
    with pytest.raises(ValueError, match="pass y"):
        cvae.sample(2, y=None)
    x = torch.randn(2, 5)
    z, dec = L.interpolate(cvae, x[0], x[1], steps=3, y_a=torch.ones(3), y_b=torch.zeros(3))
    assert dec.shape == (3, 5)
    assert L.traverse(cvae, x[0], steps=2, y=torch.ones(3))[1].shape == (2, 2, 5)


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
