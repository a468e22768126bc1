"""The VAE as a plain Pyro program: sites, plate scaling, beta, handlers, every ELBO."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import (
    SVI,
    Predictive,
    RenyiELBO,
    Trace_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
)

import pvae


@pytest.fixture
def x(binary_digits):
    return binary_digits.train.x[:32]


def _traces(vae, x):
    g = poutine.trace(vae.guide).get_trace(x)
    m = poutine.trace(poutine.replay(vae.model, trace=g)).get_trace(x)
    return m, g


def test_sites_plate_and_shapes(x):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    m, g = _traces(vae, x)
    samples = {n for n, s in m.nodes.items() if s["type"] == "sample"}
    assert {"z", "x"} <= samples
    assert m.nodes["x"]["is_observed"] and torch.equal(m.nodes["x"]["value"], x)
    assert m.nodes["z"]["value"].shape == (32, 3)
    for tr in (m, g):
        assert [f.name for f in tr.nodes["z"]["cond_indep_stack"]] == ["data"]
    assert [f.name for f in m.nodes["x"]["cond_indep_stack"]] == ["data"]
    assert m.nodes["x"]["fn"].event_shape == (64,)


def test_plate_is_sized_to_the_data_set_and_scales_the_minibatch(x):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    vae.num_data = 320
    m, g = _traces(vae, x)
    assert m.nodes["x"]["scale"] == pytest.approx(10.0)
    assert g.nodes["z"]["scale"] == pytest.approx(10.0)
    # the scaled minibatch loss estimates the full-data loss: here, ten copies of the batch
    pyro.set_rng_seed(0)
    loss_scaled = TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
    vae.num_data = None
    pyro.set_rng_seed(0)
    loss_full = TraceMeanField_ELBO().loss(vae.model, vae.guide, x.repeat(10, 1))
    assert loss_scaled == pytest.approx(loss_full, rel=0.01)
    vae.num_data = 4
    with pytest.raises(ValueError, match="smaller than the batch"):
        vae.model(x)


def test_beta_scales_the_latent_site_in_model_and_guide(x):
    vae = pvae.VAE(64, 3, hidden_dims=(16,), beta=4.0)
    m, g = _traces(vae, x)
    assert m.nodes["z"]["scale"] == 4.0 and g.nodes["z"]["scale"] == 4.0
    assert m.nodes["x"]["scale"] == 1.0
    # TraceMeanField: loss = -recon + beta * KL exactly
    pyro.set_rng_seed(1)
    loss = TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(1)
    z_loc, z_scale = vae.encode(x)
    z = dist.Normal(z_loc, z_scale).sample()
    recon = vae.decode(z).log_prob(x).sum()
    kl = torch.distributions.kl_divergence(dist.Normal(z_loc, z_scale), dist.Normal(0.0, 1.0)).sum()
    assert loss == pytest.approx((-recon + 4.0 * kl).item(), rel=1e-4)


def test_generates_without_data():
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    out = vae.model(batch_size=5)
    assert out.shape == (5, 64) and set(out.unique().tolist()) <= {0.0, 1.0}
    tr = poutine.trace(vae.model).get_trace(None, batch_size=2)
    assert not tr.nodes["x"]["is_observed"]
    with pytest.raises(ValueError, match="needs data"):
        vae.guide()


@pytest.mark.parametrize("elbo", [Trace_ELBO(), TraceMeanField_ELBO(), TraceGraph_ELBO(),
                                  RenyiELBO(alpha=0.5, num_particles=2)],
                         ids=["trace", "meanfield", "tracegraph", "renyi"])
def test_trains_under_plain_pyro_svi(elbo, x):
    vae = pvae.VAE(64, 3, hidden_dims=(32,))
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
    losses = [svi.step(x) for _ in range(40)]
    assert losses[-1] < 0.8 * losses[0]


def test_two_models_in_one_process_do_not_share_the_param_store(x):
    a = pvae.VAE(64, 3, hidden_dims=(32,))
    SVI(a.model, a.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO()).step(x)
    b = pvae.VAE(64, 3, hidden_dims=(32,))
    before = [p.clone() for p in b.parameters()]
    SVI(b.model, b.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO()).step(x)
    assert any(not torch.equal(p, q) for p, q in zip(before, b.parameters()))


def test_predictive_posterior_and_prior(x):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    post = Predictive(vae.model, guide=vae.guide, num_samples=4)(x[:5])
    assert post["z"].shape == (4, 5, 3) and post["x"].shape == (4, 5, 64)
    prior = Predictive(vae.model, num_samples=6, return_sites=["z", "x"])(None, batch_size=3)
    assert prior["x"].shape == (6, 3, 64)
    par = Predictive(vae.model, guide=vae.guide, num_samples=4, parallel=True)(x[:5])
    assert par["z"].shape == (4, 5, 3)


def test_encode_decode_reconstruct_sample(x):
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    loc, scale = vae.encode(x)
    assert loc.shape == scale.shape == (32, 3) and (scale > 0).all()
    px = vae.decode(loc)
    assert isinstance(px, dist.Independent) and px.event_shape == (64,)
    mean = vae.decode(loc, mean=True)
    assert torch.allclose(mean, px.mean)
    assert vae.reconstruct(x).shape == x.shape
    assert vae.sample(7).shape == (7, 64)
    assert set(vae.sample(7, mean=False).unique().tolist()) <= {0.0, 1.0}


def test_convolutional_default_for_image_shapes(x):
    vae = pvae.VAE((1, 8, 8), 3, hidden_dims=(8, 16))
    assert isinstance(vae.encoder, pvae.nets.ConvEncoder)
    assert isinstance(vae.decoder, pvae.nets.ConvDecoder)
    xi = x.reshape(-1, 1, 8, 8)
    h = pvae.fit(vae, xi, epochs=2, seed=0)
    assert vae.reconstruct(xi).shape == xi.shape and len(h) == 2
    big = pvae.VAE((1, 28, 28), 4)
    assert big.decode(torch.randn(2, 4)).event_shape == (1, 28, 28)
    assert isinstance(pvae.VAE(64, 2).encoder, pvae.nets.MLPEncoder)


def test_custom_encoder_and_decoder():
    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(5, 4)

        def forward(self, x):
            loc, s = self.lin(x).chunk(2, -1)
            return loc, torch.nn.functional.softplus(s) + 1e-3

    dec = torch.nn.Linear(2, 5)
    vae = pvae.VAE(5, 2, likelihood=pvae.likelihoods.Gaussian(scale=0.5), encoder=Enc(),
                   decoder=dec)
    assert vae.decode(torch.zeros(1, 2), mean=True).shape == (1, 5)
    x = torch.randn(100, 5)
    h = pvae.fit(vae, x, epochs=5, seed=0, lr=1e-2)
    assert h[-1]["train_elbo"] > h[0]["train_elbo"]
    # pvae.load needs the model passed in
    assert vae.custom_parts() == ["a custom encoder", "a custom decoder"]


@pytest.mark.parametrize("bad", [dict(z_dim=0), dict(beta=0.0), dict(arch="rnn"),
                                 dict(arch="conv"), dict(x_dim=(0, 3))])
def test_bad_constructor_arguments(bad):
    kwargs = dict(x_dim=8, z_dim=2)
    kwargs.update(bad)
    with pytest.raises(ValueError):
        pvae.VAE(**kwargs)
