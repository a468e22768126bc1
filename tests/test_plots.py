"""Figures (``pvae.plots``): every figure function writes a PNG."""

import torch
from helpers import assert_png

import pvae
from pvae import latent, plots


def test_every_figure_function_writes_a_png(tmp_path, vae2, binary_digits):
    x, y = binary_digits.test.x[:100], binary_digits.test.y[:100]
    shape = (1, 8, 8)
    h = pvae.fit(pvae.VAE(64, 2, hidden_dims=(8,)), binary_digits.train.x[:200], epochs=2)
    assert_png(plots.training_curves(h, tmp_path / "curves.png"), 600, 200)
    assert_png(plots.reconstructions(vae2, x, tmp_path / "rec.png", image_shape=shape))
    assert_png(plots.prior_samples(vae2, tmp_path / "s.png", image_shape=shape, n=16))
    assert_png(plots.latent_scatter(latent.encode(vae2, x), tmp_path / "lat.png", labels=y))
    _, dec = latent.interpolate(vae2, x[0], x[1])
    assert_png(plots.interpolation_strip(dec, tmp_path / "int.png", image_shape=shape), 300, 50)
    _, dec = latent.traverse(vae2, x[0], steps=5)
    assert_png(plots.traversal_grid(dec, tmp_path / "tr.png", dims=[0, 1], image_shape=shape), 200, 100)
    _, dec = latent.manifold(vae2, n=6)
    assert_png(plots.manifold_grid(dec, 6, tmp_path / "man.png", image_shape=shape))
    assert_png(plots.anomaly_histogram(torch.randn(100), torch.randn(30) + 3, 1.5, tmp_path / "an.png"))
    hist = {"trace": h, "meanfield": h}
    assert_png(plots.estimator_curves(hist, tmp_path / "est.png"), 600, 200)
    hh = [{"epoch": 1, "kl_z1": 1.0, "kl_z2": 0.5}, {"epoch": 2, "kl_z1": 1.5, "kl_z2": 0.4}]
    assert_png(plots.layer_kl(hh, tmp_path / "kl.png"))
    # non-image data: per-feature figures, chosen from the data shape
    table = torch.randn(300, 5)
    tv = pvae.VAE(5, 2, likelihood="gaussian", hidden_dims=(8,))
    assert_png(plots.reconstructions(tv, table, tmp_path / "trec.png"))
    assert_png(plots.prior_samples(tv, tmp_path / "ts.png", data=table))
    _, dec = latent.interpolate(tv, table[0], table[1])
    assert_png(plots.interpolation_strip(dec, tmp_path / "tint.png"), 100, 100)
