"""Gradient statistics of ELBO estimators (``pvae.gradients``)."""

import pytest

import pvae


def test_gradient_stats_groups_and_more_particles_less_variance(binary_digits):
    vae = pvae.VAE(64, 4, hidden_dims=(32,))
    x = binary_digits.train.x[:32]
    s1 = pvae.evaluate.gradient_stats(vae, x, ["trace"], num_estimates=30)["trace"]
    s8 = pvae.evaluate.gradient_stats(vae, x, ["trace"], num_estimates=30, num_particles=8)["trace"]
    enc = sum(p.numel() for p in vae.encoder.parameters())
    assert s1["encoder"]["num_params"] == enc
    assert s1["decoder"]["num_params"] == sum(p.numel() for p in vae.decoder.parameters())
    assert s8["encoder"]["variance"] < s1["encoder"]["variance"]
    assert s8["decoder"]["snr"] > s1["decoder"]["snr"]
    assert all(p.grad is None for p in vae.parameters())  # leaves no gradients behind


def test_variances_over_one_draw_are_refused_before_any_work(binary_digits, tmp_path):
    vae = pvae.VAE(64, 4, hidden_dims=(16,))
    x = binary_digits.train.x[:16]
    with pytest.raises(ValueError, match="num_estimates must be an int >= 2.*got 1"):
        pvae.evaluate.gradient_stats(vae, x, ["trace"], num_estimates=1)
    trained = []
    with pytest.raises(ValueError, match="snr_estimates must be an int >= 2.*got 1"):
        pvae.compare(lambda: trained.append(1) or vae, x, ["trace"], snr_estimates=1,
                     out=tmp_path / "cmp")
    assert trained == [] and not (tmp_path / "cmp").exists()
