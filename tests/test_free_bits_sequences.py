"""Free bits on the sequence VAE (``pvae.fit(SequenceVAE, (x, lengths), free_bits=...)``):
the floor acts on the per-sequence latent site ``"z"`` only, the masked observed site
``"x"`` enters as in the plain ELBO, and the site's scale (beta, KL warm-up) is kept."""

import math

import pytest
import torch

import pvae
from pvae.fast_elbo import FastTraceMeanField_ELBO, _record
from pvae.free_bits import FreeBits, free_bits_terms

V, T, N, Z = 5, 7, 24, 4


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (N, T), generator=g)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[0] = T
    return x, lengths


def _model(**kw):
    torch.manual_seed(0)
    return pvae.SequenceVAE(vocab_size=V, z_dim=Z, hidden_dim=8, embedding_dim=4, **kw)


def _loss_and_grads(m, elbo, x, lengths, seed=1):
    m.zero_grad()
    torch.manual_seed(seed)
    loss = elbo.differentiable_loss(m.model, m.guide, x, lengths)
    loss.backward()
    return loss.item(), [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                         for p in m.parameters()]


def _kl(m, x, lengths):
    """Analytic KL(q(z_j | x_b) || N(0, 1)) per sequence and dimension, (N, Z)."""
    loc, scale = m.encode(x, lengths)
    return 0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()


def test_sequence_free_bits_floors_only_the_dimensions_below_lambda():
    """The gradient is the plain ELBO's minus the floored dimensions' KL gradient; the value
    reported is the ELBO."""
    m, (x, lengths) = _model(), _data()
    kl = _kl(m, x, lengths).detach().mean(0)
    ordered = kl.sort().values
    lam = float((ordered[1] + ordered[2]) / 2)
    below = kl < lam
    assert 0 < below.sum() < Z
    plain_value, plain = _loss_and_grads(m, FastTraceMeanField_ELBO(), x, lengths)
    value, fb = _loss_and_grads(m, FreeBits(lam, analytic=True), x, lengths)
    m.zero_grad()
    _kl(m, x, lengths)[:, below].sum().backward()
    floored = [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
               for p in m.parameters()]
    assert value == pytest.approx(plain_value, rel=1e-6)
    for a, b, c in zip(fb, plain, floored):
        assert torch.allclose(a, b - c, atol=1e-5)
    assert any(not torch.allclose(a, b, atol=1e-5) for a, b in zip(fb, plain))


def test_sequence_free_bits_never_reads_padding():
    """Other padding ids beyond the lengths change neither the loss nor its gradient."""
    m, (x, lengths) = _model(word_dropout=0.3), _data()
    m.train()
    other = torch.where(torch.arange(T) < lengths[:, None], x, (x + 1) % V)
    assert not torch.equal(other, x)
    elbo = FreeBits(0.5, analytic=False)
    value, grads = _loss_and_grads(m, elbo, x, lengths)
    value2, grads2 = _loss_and_grads(m, elbo, other, lengths)
    assert value == value2
    assert all(torch.equal(a, b) for a, b in zip(grads, grads2))


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_sequence_free_bits_objective_is_the_masked_likelihood_minus_the_scaled_floor(beta):
    """A huge lambda floors every dimension: the objective is log p(x | z) over the real
    steps and end events (the observed site, as scored) minus N * Z * beta * lambda."""
    m, (x, lengths) = _model(beta=beta), _data()
    lam = 1e4
    model_sites, guide_sites = _record(m.model, m.guide, (x, lengths), {})
    assert set(model_sites) == {"z", "x"} and set(guide_sites) == {"z"}
    _, objective = free_bits_terms(model_sites, guide_sites, lam, analytic=True)
    site = model_sites["x"]
    recon = site["fn"].log_prob(site["value"]).sum()
    assert (objective - recon).item() == pytest.approx(-N * Z * beta * lam, rel=1e-6)


def test_fit_free_bits_keeps_the_sequence_kl_from_collapsing():
    """On random ids (nothing for z to carry but the sequences themselves) the plain ELBO
    collapses the KL (under 0.1 nats per sequence); with free bits of 0.3 nats per dimension
    (and word dropout) nothing pushes a dimension below the floor and the KL stays at half
    the floor of Z * 0.3 nats or above."""
    x, lengths = _data(seed=3)
    kls = {}
    for fb in (0.0, 0.3):
        m = _model(word_dropout=0.2)
        h = pvae.fit(m, (x, lengths), epochs=20, batch_size=N, lr=1e-2, elbo="meanfield",
                     free_bits=fb, kl_warmup=2, seed=0, progress=False, logger=None)
        assert math.isfinite(h[-1]["train_elbo"])
        m.eval()
        kls[fb] = _kl(m, x, lengths).mean(0).sum().item()
    assert kls[0.0] < 0.1
    assert kls[0.3] > 0.5 * Z * 0.3
