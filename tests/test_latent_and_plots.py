"""Latent-space tools and figures: shapes, endpoints, one-dimension traversals, PNG output."""

import pytest
import torch
from PIL import Image

import pvae
from pvae import latent, plots
from pvae.cli import main


@pytest.fixture(scope="module")
def vae2(binary_digits):
    torch.manual_seed(0)
    m = pvae.VAE(64, 2, hidden_dims=(32,))
    pvae.fit(m, binary_digits.train.x, epochs=5, seed=0)
    return m


@pytest.fixture(scope="module")
def cvae(binary_digits):
    torch.manual_seed(0)
    m = pvae.CVAE(64, 3, num_classes=10, hidden_dims=(32,))
    pvae.fit(m, (binary_digits.train.x, binary_digits.train.y), epochs=3, seed=0)
    return m


def test_encode_shapes_for_every_model(binary_digits, vae2, cvae):
    x, y = binary_digits.test.x[:50], binary_digits.test.y[:50]
    assert latent.encode(vae2, x).shape == (50, 2)
    assert latent.encode(cvae, x, y).shape == (50, 3)
    ss = pvae.SemiSupervisedVAE(64, 10, z_dim=4, hidden_dims=(16,))
    assert latent.encode(ss, x).shape == (50, 4)  # labels predicted where not given
    hv = pvae.HierarchicalVAE(64, (5, 2), hidden_dims=(16,))
    assert latent.encode(hv, x).shape == (50, 5)
    with pytest.raises(ValueError, match="needs the condition y"):
        latent.encode(cvae, x)


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_decode_to_the_reconstructions(binary_digits, vae2, method):
    xa, xb = binary_digits.test.x[0], binary_digits.test.x[1]
    z, dec = latent.interpolate(vae2, xa, xb, steps=7, method=method)
    assert z.shape == (7, 2) and dec.shape == (7, 64)
    torch.testing.assert_close(dec[0], vae2.reconstruct(xa[None])[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dec[-1], vae2.reconstruct(xb[None])[0], rtol=1e-4, atol=1e-5)
    if method == "slerp":  # the norm interpolates between the ends' norms (on the sphere)
        za, zb = z[0].norm(), z[-1].norm()
        assert ((z.norm(dim=1) - torch.minimum(za, zb)) > -1e-4).all()


def test_conditional_interpolation(binary_digits, cvae):
    x, y = binary_digits.test.x, binary_digits.test.y
    z, dec = latent.interpolate(cvae, x[0], x[1], steps=5, y_a=y[0], y_b=y[1])
    torch.testing.assert_close(dec[0], cvae.reconstruct(x[:1], y[:1])[0], rtol=1e-4, atol=1e-5)


def test_traversal_changes_only_one_dimension(binary_digits, cvae):
    x, y = binary_digits.test.x[3], binary_digits.test.y[3]
    z, dec = latent.traverse(cvae, x, dims=[0, 2], steps=6, y=y)
    assert z.shape == (2, 6, 3) and dec.shape == (2, 6, 64)
    z0 = latent.encode(cvae, x[None], y.reshape(1))[0]
    for row, d in enumerate([0, 2]):
        others = [k for k in range(3) if k != d]
        assert torch.allclose(z[row][:, others], z0[others].expand(6, 2))
        assert torch.allclose(z[row][:, d], torch.linspace(-2.5, 2.5, 6))


def test_manifold_grid_and_embedding(vae2, binary_digits):
    z, dec = latent.manifold(vae2, n=5)
    assert z.shape == (25, 2) and dec.shape == (25, 64)
    assert z[0, 0] < z[1, 0] and z[0, 1] > z[5, 1]  # z1 to the right, z2 up
    with pytest.raises(ValueError, match="2-D latent space"):
        latent.manifold(pvae.VAE(64, 3))
    zz = torch.randn(60, 6)
    for method, used in [("auto", "PCA"), ("pca", "PCA"), ("tsne", "t-SNE")]:
        coords, got = latent.embed_2d(zz, method)
        assert coords.shape == (60, 2) and got == used
    assert latent.embed_2d(torch.randn(10, 2))[1] == "latent"


def _png(path, min_w=200, min_h=150):
    w, h = Image.open(path).size
    assert path.stat().st_size > 2000 and w >= min_w and h >= min_h, (path, w, h)


def test_every_figure_function_writes_a_png(tmp_path, vae2, binary_digits):
    x, y = binary_digits.test.x[:100], binary_digits.test.y[:100]
    shape = (1, 8, 8)
    h = pvae.fit(pvae.VAE(64, 2, hidden_dims=(8,)), binary_digits.train.x[:200], epochs=2)
    _png(plots.training_curves(h, tmp_path / "curves.png"), 600, 200)
    _png(plots.reconstructions(vae2, x, tmp_path / "rec.png", image_shape=shape))
    _png(plots.prior_samples(vae2, tmp_path / "s.png", image_shape=shape, n=16))
    _png(plots.latent_scatter(latent.encode(vae2, x), tmp_path / "lat.png", labels=y))
    _, dec = latent.interpolate(vae2, x[0], x[1])
    _png(plots.interpolation_strip(dec, tmp_path / "int.png", image_shape=shape), 300, 50)
    _, dec = latent.traverse(vae2, x[0], steps=5)
    _png(plots.traversal_grid(dec, tmp_path / "tr.png", dims=[0, 1], image_shape=shape), 200, 100)
    _, dec = latent.manifold(vae2, n=6)
    _png(plots.manifold_grid(dec, 6, tmp_path / "man.png", image_shape=shape))
    _png(plots.anomaly_histogram(torch.randn(100), torch.randn(30) + 3, 1.5, tmp_path / "an.png"))
    hist = {"trace": h, "meanfield": h}
    _png(plots.estimator_curves(hist, tmp_path / "est.png"), 600, 200)
    hh = [{"epoch": 1, "kl_z1": 1.0, "kl_z2": 0.5}, {"epoch": 2, "kl_z1": 1.5, "kl_z2": 0.4}]
    _png(plots.layer_kl(hh, tmp_path / "kl.png"))
    # non-image data: per-feature figures, chosen from the data shape
    table = torch.randn(300, 5)
    tv = pvae.VAE(5, 2, likelihood="gaussian", hidden_dims=(8,))
    _png(plots.reconstructions(tv, table, tmp_path / "trec.png"))
    _png(plots.prior_samples(tv, tmp_path / "ts.png", data=table))
    _, dec = latent.interpolate(tv, table[0], table[1])
    _png(plots.interpolation_strip(dec, tmp_path / "tint.png"), 100, 100)


def test_plot_and_sample_commands(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--quiet", "--set", "model.z_dim=2",
                 "--set", "train.epochs=3", "--set", "evaluate.num_samples=5"]) == 0
    assert main(["plot", "--run", str(run)]) == 0
    for name in ("curves", "reconstructions", "samples", "latent", "interpolation", "traversal",
                 "manifold"):
        _png(run / f"{name}.png")
    assert main(["plot", "--run", str(run), "--kind", "latent", "--method", "tsne"]) == 0
    assert main(["plot", "--run", str(run), "--kind", "layer_kl"]) == 2
    assert "does not apply" in capsys.readouterr().err
    assert main(["sample", "--run", str(run), "-n", "12"]) == 0
    import numpy as np

    arr = np.load(run / "sample-n12-seed0.npy")
    assert arr.shape == (12, 64) and 0 <= arr.min() and arr.max() <= 1
    _png(run / "sample-n12-seed0.png", 100, 100)
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
    _png(run / "conditional.png")


# -- every latent tool on every model type ---------------------------------------------------
MODEL_TYPES = ["vae", "cvae_classes", "cvae_vector", "ssvae", "hvae"]


def _model_and_conditions(kind, n):
    """An untrained model with a 2-D main latent, and one condition per data point (or None)."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    if kind == "vae":
        return pvae.VAE(64, 2, hidden_dims=(16,)), None
    if kind == "cvae_classes":
        return pvae.CVAE(64, 2, num_classes=10, hidden_dims=(16,)), torch.arange(n) % 10
    if kind == "cvae_vector":
        return pvae.CVAE(64, 2, y_dim=3, hidden_dims=(16,)), torch.randn(n, 3, generator=g)
    if kind == "ssvae":  # a label where known, -1 where not (then predicted)
        return (pvae.SemiSupervisedVAE(64, 10, z_dim=2, hidden_dims=(16,)),
                torch.where(torch.arange(n) % 3 != 2, torch.arange(n) % 10, -1))
    return pvae.HierarchicalVAE(64, (2, 3), hidden_dims=(16,)), None


def _recon(model, x, y):
    return model.reconstruct(x[None]) if y is None else model.reconstruct(x[None], y[None])


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_every_latent_tool_works_for_every_model_type(binary_digits, kind):
    x = binary_digits.test.x[:6]
    model, y = _model_and_conditions(kind, len(x))
    z = latent.encode(model, x, y)
    assert z.shape == (6, 2) and torch.isfinite(z).all()
    torch.testing.assert_close(latent.encode(model, x[:1], None if y is None else y[:1])[0], z[0])
    y0, y1 = (None, None) if y is None else (y[0], y[1])
    for method in ("linear", "slerp"):
        zs, dec = latent.interpolate(model, x[0], x[1], steps=5, method=method, y_a=y0, y_b=y1)
        assert zs.shape == (5, 2) and dec.shape == (5, 64)
        torch.testing.assert_close(zs[0], z[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(zs[-1], z[1], rtol=1e-5, atol=1e-6)
        # the first end decodes (with the first input's condition) to its reconstruction
        torch.testing.assert_close(dec[0], _recon(model, x[0], y0)[0], rtol=1e-4, atol=1e-5)
    if y is not None:  # decoding with the second input's condition: its reconstruction
        _, dec = latent.interpolate(model, x[0], x[1], steps=3, y_a=y0, y_b=y1, y=y1)
        torch.testing.assert_close(dec[-1], _recon(model, x[1], y1)[0], rtol=1e-4, atol=1e-5)
    zt, dec = latent.traverse(model, x[2], dims=[1], steps=4, y=None if y is None else y[2])
    assert zt.shape == (1, 4, 2) and dec.shape == (1, 4, 64)
    if kind == "ssvae":  # y[2] is -1: decoded with the label q(y|x) predicts, as reconstruct does
        z2 = zt[0].clone()
        z2[:, 1] = z[2, 1]
        torch.testing.assert_close(model.decode_mean(z2[:1], model.classify(x[2:3]).argmax(-1)),
                                   _recon(model, x[2], y[2]), rtol=1e-4, atol=1e-5)
    assert torch.allclose(zt[0, :, 0], z[2, 0].expand(4))
    assert torch.allclose(zt[0, :, 1], torch.linspace(-2.5, 2.5, 4))
    zm, dec = latent.manifold(model, n=3, y=None if y is None else y[0])
    assert zm.shape == (9, 2) and dec.shape == (9, 64) and torch.isfinite(dec).all()
    coords, _ = latent.embed_2d(z)
    assert coords.shape == (6, 2)


@pytest.mark.parametrize("kind", ["cvae_classes", "cvae_vector"])
def test_latent_tools_ask_for_a_cvaes_condition(binary_digits, kind):
    x = binary_digits.test.x[:2]
    model, y = _model_and_conditions(kind, 2)
    with pytest.raises(ValueError, match="needs the condition y"):
        latent.interpolate(model, x[0], x[1])
    with pytest.raises(ValueError, match="needs the condition y"):
        latent.traverse(model, x[0])
    with pytest.raises(ValueError, match="decodes with a condition: pass y"):
        latent.manifold(model, n=2)
    wrong = torch.zeros(5) if kind == "cvae_vector" else torch.tensor([1, 2])
    with pytest.raises(ValueError, match="condition of one data point"):
        latent.traverse(model, x[0], y=wrong)
    with pytest.raises(ValueError, match="condition of one data point"):
        latent.interpolate(model, x[0], x[1], y_a=y[0], y_b=wrong)
    with pytest.raises(ValueError, match=r"one per decoded point \(shape \(4,"):
        latent.interpolate(model, x[0], x[1], steps=4, y_a=y[0], y_b=y[1], y=y)
    with pytest.raises(ValueError, match="y has 2 rows for 1 inputs"):
        latent.encode(model, x[:1], y)
    with pytest.raises(ValueError, match=r"dims must be latent dimensions in 0..1, got \[2\]"):
        latent.traverse(model, x[0], y=y[0], dims=[2])


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_features_and_code_data_take_unconditional_models_and_refuse_the_others(digits, kind):
    model, _ = _model_and_conditions(kind, 1)
    if "y" in model.batch_parts:
        with pytest.raises(ValueError, match="takes an unconditional model"):
            latent.Features(model)
        with pytest.raises(ValueError, match="takes an unconditional model"):
            latent.code_data(digits, model)
        return
    codes = latent.Features(model, sample=False)(digits.test.x[:5])
    torch.testing.assert_close(codes, latent.encode(model, digits.test.x[:5]))
    coded = latent.code_data(digits, model)
    assert coded.test.x.shape == (len(digits.test), 2)
