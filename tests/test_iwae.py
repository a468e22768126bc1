"""The per-data-point importance-weighted bound and DReG: the facts the issue names."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO

import pvae
from pvae.iwae import IWAE


@pytest.fixture(scope="module")
def trained(binary_digits):
    pyro.set_rng_seed(0)
    vae = pvae.VAE(64, 4, hidden_dims=(32,))
    pvae.fit(vae, binary_digits.train.x, epochs=5, seed=0)
    return vae, binary_digits.test.x[:64]


def test_k1_equals_the_standard_elbo(trained):
    vae, x = trained
    pyro.set_rng_seed(3)
    a = IWAE(num_particles=1).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    b = Trace_ELBO().loss(vae.model, vae.guide, x)
    assert a == pytest.approx(b, rel=1e-6)


def test_matches_renyi_alpha0_when_every_site_is_in_the_plate(trained):
    vae, x = trained
    pyro.set_rng_seed(4)
    a = IWAE(num_particles=8).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(4)
    b = RenyiELBO(alpha=0.0, num_particles=8).loss(vae.model, vae.guide, x)
    assert a == pytest.approx(b, rel=1e-5)


def test_bound_increases_with_k(trained):
    vae, x = trained
    means = []
    for k in (1, 5, 50):
        pyro.set_rng_seed(0)
        means.append(-sum(IWAE(num_particles=k).loss(vae.model, vae.guide, x) for _ in range(10)) / 10)
    assert means[0] < means[1] < means[2]
    ll = pvae.evaluate.log_likelihood(vae, x, num_samples=2000).sum().item()
    assert means[2] < ll + 1.0  # still a lower bound (up to Monte Carlo error)


def test_scales_to_the_full_data_set(trained):
    vae, x = trained
    with vae.scaled_to(640):
        pyro.set_rng_seed(5)
        scaled = IWAE(num_particles=4).loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(5)
    plain = IWAE(num_particles=4).loss(vae.model, vae.guide, x)
    assert scaled == pytest.approx(10 * plain, rel=1e-6)


def _global_pair(vae):
    """A model with a global site outside the data plate (q = prior, no effect on x)."""

    def model(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        return vae.model(x)

    def guide(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        return vae.guide(x)

    return vae, model, guide


def test_per_data_point_with_a_global_site_where_renyi_mixes_the_batch(trained):
    vae, x = trained
    x = x[:32]
    vae, model, guide = _global_pair(vae)
    reps, k = 30, 10
    torch.manual_seed(0)
    iwae_global = sum(-IWAE(num_particles=k).loss(model, guide, x) for _ in range(reps)) / reps
    iwae_local = sum(-IWAE(num_particles=k).loss(vae.model, vae.guide, x) for _ in range(reps)) / reps
    renyi_global = sum(-RenyiELBO(alpha=0.0, num_particles=k).loss(model, guide, x)
                       for _ in range(reps)) / reps
    # the global site adds exactly log p(g) - log q(g) = 0: the same per-point bound
    assert iwae_global == pytest.approx(iwae_local, abs=2.0)
    # Renyi combines particles across the batch (log mean_k prod_n w_nk): a looser bound,
    # between the ELBO and the per-point IWAE bound (measured: -1141 vs -1133, ELBO -1150)
    elbo = sum(-Trace_ELBO().loss(vae.model, vae.guide, x) for _ in range(reps)) / reps
    assert elbo < renyi_global < iwae_global - 4, (renyi_global, iwae_global, elbo)


def test_trains_every_model_and_refuses_scaled_sites(binary_digits):
    x, y = binary_digits.train.x[:400], binary_digits.train.y[:400]
    for m, data in [(pvae.VAE(64, 3, hidden_dims=(32,)), x),
                    (pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(32,)), x),
                    (pvae.CVAE(64, 3, num_classes=10, hidden_dims=(32,)), (x, y)),
                    (pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(32,)),
                     (x, torch.where(torch.arange(400) < 50, y, -1))),
                    (pvae.VAE(64, 3, hidden_dims=(32,), guide_flows=1), x)]:
        torch.manual_seed(0)
        h = pvae.fit(m, data, elbo="iwae:5", epochs=6, batch_size=100, lr=3e-3, seed=0)
        assert h[-1]["train_elbo"] > h[0]["train_elbo"] + 3, type(m).__name__
    with pytest.raises(ValueError, match="beta != 1 and kl_warmup"):
        pvae.fit(pvae.VAE(64, 3, beta=2.0), x, elbo="iwae:5", epochs=1)
    vae = pvae.VAE(64, 3)
    with pyro.poutine.scale(scale=2.0), pytest.raises(ValueError, match="scaled by 2"):
        IWAE(5).loss(vae.model, vae.guide, x[:10])


def test_enumerates_the_semi_supervised_label_exactly(binary_digits):
    x = binary_digits.test.x[:16]
    m = pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(32,))
    # K=1 with enumeration: log sum_y p(x, y, z_y) / q(z_y | x, y), computed by hand
    pyro.set_rng_seed(0)
    loss = IWAE(num_particles=1).loss(m.model, m.guide, x)
    pyro.set_rng_seed(0)
    terms = []
    eps = torch.randn(10, 1, 16, 3)  # the enumerated draw: one z per label and point
    for k in range(10):
        yk = torch.full((16,), k)
        loc, scale = m.encode(x, yk)
        z = loc + scale * eps[k, 0]
        lq = dist.Normal(loc, scale).log_prob(z).sum(-1)
        lp = (dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - math.log(10)
              + m.decode(z, yk).log_prob(x))
        terms.append(lp - lq)
    expected = -torch.logsumexp(torch.stack(terms), 0).sum().item()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_dreg_is_unbiased_and_raises_the_encoder_snr(trained):
    vae, x = trained
    x = x[:16]
    stats = pvae.evaluate.gradient_stats(vae, x, ["iwae:20", "iwae_dreg:20"], num_estimates=60)
    assert stats["iwae_dreg:20"]["encoder"]["snr"] > 1.5 * stats["iwae:20"]["encoder"]["snr"]
    # model (decoder) gradients are the same estimator
    assert stats["iwae_dreg:20"]["decoder"]["snr"] == pytest.approx(
        stats["iwae:20"]["decoder"]["snr"], rel=0.3)

    def draws(elbo, reps=300):
        out = []
        torch.manual_seed(1)
        for _ in range(reps):
            vae.zero_grad()
            elbo.differentiable_loss(vae.model, vae.guide, x).backward()
            out.append(torch.cat([p.grad.flatten() for p in vae.encoder.parameters()]))
        return torch.stack(out)

    plain, dreg = draws(IWAE(5)), draws(IWAE(5, dreg=True))
    # the same expectation: per coordinate, the difference of means is within its standard error
    se = (plain.var(0) / len(plain) + dreg.var(0) / len(dreg)).sqrt()
    used = se > 0
    z = ((plain.mean(0) - dreg.mean(0)) / se)[used]
    # (coordinates share draws, so their z are correlated: check the spread, not the mean)
    assert z.abs().median() < 1.0 and (z.abs() > 4).float().mean() < 0.01
    # and a much smaller variance (measured: about 20x at K=5)
    assert (plain.var(0)[used] / dreg.var(0)[used].clamp_min(1e-12)).median() > 5
    vae.zero_grad()
    with pytest.raises(ValueError, match="separate model and guide parameters"):
        lvae = pvae.HierarchicalVAE(64, (4, 2), guide="top_down")
        IWAE(3, dreg=True).differentiable_loss(lvae.model, lvae.guide, x)


def test_semi_supervised_classifier_learns_under_iwae(binary_digits):
    x, y = binary_digits.train.x[:30], binary_digits.train.y[:30]
    m = pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,))
    m.zero_grad()
    IWAE(3).differentiable_loss(m.model, m.guide, x, y).backward()
    grads = [p.grad for p in m.classifier.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # the auxiliary term


def test_dreg_refused_where_its_weights_would_be_biased(binary_digits, trained):
    x = binary_digits.train.x[:20]
    ss = pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,))
    with pytest.raises(ValueError, match="global sites or enumerated labels"):
        IWAE(3, dreg=True).differentiable_loss(ss.model, ss.guide, x)
    vae, _ = trained
    _, model, guide = _global_pair(vae)
    with pytest.raises(ValueError, match="global sites or enumerated labels"):
        IWAE(3, dreg=True).differentiable_loss(model, guide, x)


def test_dreg_with_a_learned_likelihood_scale(binary_digits):
    """The likelihood's parameters belong to the model, not the guide."""
    vae = pvae.VAE(64, 3, hidden_dims=(16,), likelihood="gaussian")
    x = binary_digits.train.x[:20]
    loss = IWAE(4, dreg=True).differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    assert vae.likelihood.raw_scale.grad is not None
    stats = pvae.evaluate.gradient_stats(vae, x, ["trace"], num_estimates=3)["trace"]
    n_enc = sum(p.numel() for p in vae.encoder.parameters())
    assert stats["encoder"]["num_params"] == n_enc


def test_model_latents_the_guide_does_not_propose_are_refused(binary_digits):
    import pyro.distributions as dist

    def model(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("a", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x[:, 0])

    def guide(x):
        pass

    with pytest.raises(ValueError, match="guide has no site of that name"):
        pvae.evaluate.elbo((model, guide), binary_digits.train.x[:5])
