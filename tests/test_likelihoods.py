"""Likelihoods: registry, support checks with clear errors, and each one trains on its data."""

import pytest
import torch

import pvae
from pvae import likelihoods as lk

ALL = [
    "bernoulli", "beta", "categorical", "continuous_bernoulli", "gaussian", "laplace",
    "negative_binomial", "poisson", "zero_inflated_negative_binomial",
]


def test_registry_lists_every_likelihood():
    assert lk.names() == sorted(ALL)
    for name in ALL:
        assert lk.get(name).name == name


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown likelihood 'gausian'.*gaussian.*poisson"):
        lk.get("gausian")
    with pytest.raises(ValueError, match="valid names"):
        pvae.VAE(4, 2, likelihood="nope")


def test_instance_is_used_as_given():
    g = lk.Gaussian(scale=0.5)
    vae = pvae.VAE(6, 2, likelihood=g)
    assert vae.likelihood is g
    px = vae.decode(torch.zeros(3, 2))
    assert torch.allclose(px.base_dist.scale, torch.tensor(0.5))
    assert vae.hparams["likelihood_kwargs"] == {"scale": 0.5}


@pytest.mark.parametrize("bad", [0.0, -1.0, "fixed"])
def test_bad_gaussian_scale(bad):
    with pytest.raises(ValueError, match="scale"):
        lk.Gaussian(scale=bad)


def _counts(n=600, d=12, seed=0, zero_inflate=0.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    w = torch.randn(2, d, generator=g)
    rate = torch.exp(0.8 * z @ w + 1.0)
    x = torch.poisson(torch.distributions.Gamma(2.0, 2.0 / rate).sample())
    if zero_inflate:
        x = x * (torch.rand(n, d, generator=g) > zero_inflate)
    return x


def _table(n=600, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=g)
    return z @ torch.randn(2, d, generator=g) + 0.1 * torch.randn(n, d, generator=g)


def data_for(name, digits, binary_digits):
    x = digits.train.x[:600]
    return {
        "bernoulli": (binary_digits.train.x[:600], {}),
        "continuous_bernoulli": (x, {}),
        "beta": (x.clamp(0.01, 0.99), {}),
        "categorical": ((x * 16).round(), {"num_levels": 17}),
        "gaussian": (_table(), {}),
        "laplace": (_table(), {"scale": "predicted"}),
        "poisson": (_counts(), {}),
        "negative_binomial": (_counts(), {}),
        "zero_inflated_negative_binomial": (_counts(zero_inflate=0.3), {"dispersion": "predicted"}),
    }[name]


@pytest.mark.parametrize("name", ALL)
def test_every_likelihood_trains_and_improves_its_elbo(name, digits, binary_digits):
    x, kwargs = data_for(name, digits, binary_digits)
    train, held_out = x[:500], x[500:]
    vae = pvae.VAE(x.shape[1], 2, hidden_dims=(64,), likelihood=name, likelihood_kwargs=kwargs)
    before = pvae.evaluate.elbo(vae, held_out, num_samples=4).mean().item()
    history = pvae.fit(vae, train, epochs=15, batch_size=64, lr=3e-3, seed=0)
    after = pvae.evaluate.elbo(vae, held_out, num_samples=4).mean().item()
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]
    # a clear gain on held-out data, relative to the starting point's scale
    assert after > before + 0.05 * abs(before) + 1.0, (before, after)
    # means have the data's shape and lie in the support's range
    m = vae.reconstruct(held_out)
    assert m.shape == held_out.shape and torch.isfinite(m).all()


@pytest.mark.parametrize("scale", [0.3, "learned", "predicted"])
def test_gaussian_scale_options_all_train(scale):
    x = _table()
    vae = pvae.VAE(12, 2, hidden_dims=(32,), likelihood="gaussian",
                   likelihood_kwargs={"scale": scale})
    h = pvae.fit(vae, x, epochs=8, batch_size=100, lr=3e-3, seed=0)
    assert h[-1]["train_elbo"] > h[0]["train_elbo"]
    learned = [n for n, _ in vae.named_parameters() if "raw_scale" in n]
    assert bool(learned) == (scale == "learned")


BAD_SUPPORT = [
    ("bernoulli", torch.tensor([[0.0, 0.5]]), r"values in \[0, 1\] that are not 0 or 1.*binarise.*continuous_bernoulli"),
    ("bernoulli", torch.tensor([[0.0, 255.0]]), r"outside \[0, 1\].*divide by 255"),
    ("continuous_bernoulli", torch.tensor([[-0.1, 0.5]]), r"outside \[0, 1\]"),
    ("beta", torch.tensor([[0.0, 0.5]]), r"outside the open interval \(0, 1\).*clamp"),
    ("categorical", torch.tensor([[0.5, 3.0]]), r"not whole levels in 0..255.*quantise"),
    ("categorical", torch.tensor([[300.0, 3.0]]), r"not whole levels"),
    ("poisson", torch.tensor([[1.5, 2.0]]), r"not whole numbers.*gaussian"),
    ("negative_binomial", torch.tensor([[-1.0, 2.0]]), r"negative values"),
    ("zero_inflated_negative_binomial", torch.tensor([[0.2, 2.0]]), r"not whole numbers"),
]


@pytest.mark.parametrize("name,x,message", BAD_SUPPORT)
def test_data_outside_support_is_refused_before_training(name, x, message, tmp_path):
    vae = pvae.VAE(2, 1, hidden_dims=(4,), likelihood=name)
    before = [p.clone() for p in vae.parameters()]
    with pytest.raises(ValueError, match=f"likelihood '{name}': data has .*{message}"):
        pvae.fit(vae, x.repeat(10, 1), epochs=1, checkpoint_dir=tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ALL)
def test_nan_and_inf_are_refused(name):
    vae = pvae.VAE(2, 1, hidden_dims=(4,), likelihood=name)
    with pytest.raises(ValueError, match="NaN or infinite"):
        pvae.fit(vae, torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), epochs=1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        pvae.fit(vae, torch.tensor([[0.0, float("inf")], [1.0, 1.0]]), epochs=1)


def test_custom_decoder_returns_parameters_directly():
    # negative binomial with predicted dispersion: the decoder returns (raw mean, raw theta)
    class Dec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2 * 5)

        def forward(self, z):
            a, b = self.lin(z).chunk(2, -1)
            return a, b

    vae = pvae.VAE(5, 2, likelihood="negative_binomial",
                   likelihood_kwargs={"dispersion": "predicted"}, decoder=Dec())
    px = vae.decode(torch.randn(7, 2))
    assert px.batch_shape == (7,) and px.event_shape == (5,)
    h = pvae.fit(vae, _counts(d=5)[:200], epochs=3, seed=0)
    assert len(h) == 3


def test_categorical_event_shape_for_images():
    vae = pvae.VAE((1, 8, 8), 2, hidden_dims=(8, 8), likelihood="categorical",
                   likelihood_kwargs={"num_levels": 4})
    px = vae.decode(torch.randn(5, 3, 2))
    assert px.batch_shape == (5, 3) and px.event_shape == (1, 8, 8)
    assert vae.sample(2).shape == (2, 1, 8, 8)
    assert vae.sample(2).max() <= 3
