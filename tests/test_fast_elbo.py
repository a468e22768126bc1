"""The lean Trace/TraceMeanField ELBOs give Pyro's values and gradients exactly."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pvae
from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO


def models():
    return [
        ("vae", pvae.VAE(64, 3, hidden_dims=(16,)), False),
        ("vae-beta", pvae.VAE(64, 3, hidden_dims=(16,), beta=3.0), False),
        ("vae-gaussian", pvae.VAE(64, 3, hidden_dims=(16,), likelihood="gaussian"), False),
        ("vae-iaf", pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=1), False),
        ("hvae", pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,), guide="top_down"), False),
        ("cvae", pvae.CVAE(64, 3, num_classes=10, hidden_dims=(16,)), True),
        ("ssvae-unlabelled", pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,)), False),
        ("ssvae-labelled", pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,)), True),
    ]


NOT_MEAN_FIELD = ("vae-iaf", "ssvae-unlabelled")
CASES = [(i, pair) for i, (name, _, _) in enumerate(models())
         for pair in ((FastTrace_ELBO, Trace_ELBO), (FastTraceMeanField_ELBO, TraceMeanField_ELBO))
         if not (pair[1] is TraceMeanField_ELBO and name in NOT_MEAN_FIELD)]


@pytest.mark.parametrize("index,pair", CASES,
                         ids=[f"{models()[i][0]}-{p[1].__name__}" for i, p in CASES])
def test_same_loss_and_gradients_as_pyro(index, pair, binary_digits):
    name, model, labels = models()[index]
    fast_cls, pyro_cls = pair
    x, y = binary_digits.train.x[:40], binary_digits.train.y[:40]
    args = (x, y) if labels else (x,)
    model.num_data = 400
    if name == "vae-iaf":  # the IAF's zero-valued control variate (tests/test_flows.py) off
        model.posterior.base_kl = False
    grads = []
    for cls in (fast_cls, pyro_cls):
        pyro.set_rng_seed(0)
        model.zero_grad()
        loss = cls().differentiable_loss(model.model, model.guide, *args)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() if p.grad is not None else None
                                    for p in model.parameters()]))
    (fast_loss, fast_g), (pyro_loss, pyro_g) = grads
    assert fast_loss == pytest.approx(pyro_loss, rel=1e-5)
    for a, b in zip(fast_g, pyro_g):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_falls_back_to_pyro_for_several_particles_and_discrete_sites(binary_digits):
    x = binary_digits.train.x[:20]
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    for elbo in (FastTrace_ELBO(num_particles=3, vectorize_particles=True),):
        pyro.set_rng_seed(0)
        a = elbo.loss(vae.model, vae.guide, x)
        pyro.set_rng_seed(0)
        b = Trace_ELBO(num_particles=3, vectorize_particles=True).loss(vae.model, vae.guide, x)
        assert a == pytest.approx(b, rel=1e-6)
    ss = pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,))
    pyro.set_rng_seed(0)
    a = FastTrace_ELBO().differentiable_loss(ss.model, ss.guide, x)  # y sampled: score function
    pyro.set_rng_seed(0)
    b = Trace_ELBO().differentiable_loss(ss.model, ss.guide, x)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_fit_skips_registration_only_for_the_lean_elbos(binary_digits):
    x = binary_digits.train.x[:200]
    vae = pvae.VAE(64, 3, hidden_dims=(16,))
    pvae.fit(vae, x, epochs=1)
    assert len(pyro.get_param_store()) == 0  # lean path: nothing in the global store
    assert vae.__dict__.get("_register_params", True)  # restored after fit
    pvae.fit(vae, x, epochs=1, elbo="tracegraph")
    assert len(pyro.get_param_store()) > 0  # Pyro's ELBOs see the parameters


def test_random_subsampling_and_auxiliary_guide_sites_match_pyro():
    import pyro.distributions as dist

    data = torch.randn(10)
    loc = torch.nn.Parameter(torch.zeros(10))

    def model(x):
        with pyro.plate("data", 10, subsample_size=3) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])

    def guide(x):
        pyro.sample("aux", dist.Normal(0.0, 2.0), infer={"is_auxiliary": True})  # guide-only
        with pyro.plate("data", 10, subsample_size=3) as idx:
            pyro.sample("z", dist.Normal(loc[idx], 1.0))

    for fast_cls, pyro_cls in ((FastTrace_ELBO, Trace_ELBO),
                               (FastTraceMeanField_ELBO, TraceMeanField_ELBO)):
        pyro.set_rng_seed(3)
        a = fast_cls().differentiable_loss(model, guide, data).item()
        pyro.set_rng_seed(3)
        b = pyro_cls().differentiable_loss(model, guide, data).item()
        assert a == pytest.approx(b, rel=1e-5), fast_cls.__name__
