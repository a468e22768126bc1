"""Every check ``fit`` makes before any work (``pvae.train.checks``)."""

import pytest
import torch
from helpers import cvae, hvae, small_vae

import pvae


@pytest.mark.parametrize("make", [lambda: pvae.VAE(64, 3, guide_flows=2), hvae,
                                  lambda: cvae(guide_flows=1)])
def test_meanfield_refused_for_guides_that_are_not_mean_field(make, xy):
    x, y = xy
    m = make()
    data = (x, y) if "y" in m.batch_parts else x
    with pytest.raises(ValueError, match="not mean-field.*use elbo='trace'"):
        pvae.fit(m, data, elbo="meanfield", epochs=1)


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
    (dict(epochs=3, lr_steps=(0,)), r"lr_steps must be strictly increasing whole epochs >= 1"),
    (dict(epochs=5, lr_steps=(2, 2)), "lr_steps must be strictly increasing"),
    (dict(lr_steps=(1,), lr_factor=0), "lr_factor must be a positive number"),
    (dict(lr_factor=0.5), r"lr_factor=0.5 multiplies the learning rate at the epochs in "
                          r"lr_steps, and lr_steps is empty, so it would change nothing: give "
                          r"lr_steps \(e.g. lr_steps=\(60, 85\)\) or drop lr_factor"),
    (dict(adam_eps=0.0), r"adam_eps must be a positive number \(Adam's epsilon; torch's "
                         r"default 1e-08\), got 0.0"),
    (dict(adam_eps=float("inf")), "adam_eps must be a positive number"),
    (dict(optimizer="sgd", adam_eps=1e-4), r"adam_eps=0.0001 applies to optimizer 'adam' or "
                                           r"'adamw', and optimizer is 'sgd' \(which has no "
                                           r"epsilon\); drop adam_eps or choose 'adam' or 'adamw'"),
])
def test_bad_options(kwargs, message, x):
    with pytest.raises(ValueError, match=message):
        pvae.fit(small_vae(), x, **kwargs)


@pytest.mark.parametrize("data,message", [
    (torch.zeros(0, 64), "empty"),
    (torch.zeros(10, 63), r"shape \(10, 63\) but the model expects \(N, 64\); each data point must hold 64 values: build the model for this data \(x_dim=63\)"),
    (torch.zeros(10, 1, 8, 8), r"reshape it with x.reshape\(len\(x\), 64\) or build the model with x_dim=\(1, 8, 8\)"),
    (torch.zeros(10), r"shape \(10,\) but the model expects \(N, 64\); pass a batch of points, "
                      r"one per row"),
    ((torch.zeros(10, 64), torch.zeros(10)), "takes x alone"),
    (torch.zeros(10, 64, dtype=torch.complex64), "dtype"),
    (torch.utils.data.TensorDataset(torch.zeros(0, 64)), "empty"),
    ("x.npy", "must be a tensor"),
])
def test_bad_data_gets_a_clear_error(data, message):
    with pytest.raises((ValueError, TypeError), match=message):
        pvae.fit(small_vae(), data, epochs=1)
