"""The semi-supervised VAE (``pvae.models.ssvae``): sites, batching of labelled and
unlabelled points, enumeration of the label, the balance term."""

import pyro
import pytest
import torch
from helpers import sites, ssvae
from pyro.infer import Predictive, Trace_ELBO, TraceEnum_ELBO, config_enumerate

import pvae


def test_ssvae_sites_labelled_and_unlabelled(xy):
    x, y = xy
    m = ssvae()
    lab = sites(m.model, x[:5], y[:5])
    assert set(lab) == {"y", "z", "x", "y_aux"} and lab["y"]["is_observed"]
    assert lab["y_aux"]["scale"] == 50.0
    g = pyro.poutine.trace(m.guide).get_trace(x[:5])
    unl = sites(pyro.poutine.replay(m.model, trace=g), x[:5])
    assert set(unl) == {"y", "z", "x"} and not unl["y"]["is_observed"]
    assert "enumerate" not in g.nodes["y"]["infer"]  # enumerated where asked for (elbo="enum")
    p = m.classify(x[:7])
    assert p.shape == (7, 10) and torch.allclose(p.sum(-1), torch.ones(7))
    assert m.sample(4, y=2).shape == (4, 64) and m.reconstruct(x[:3]).shape == (3, 64)
    post = Predictive(m.model, guide=m.guide, num_samples=2)(x[:5])
    assert post["y"].shape == (2, 5)


@pytest.mark.parametrize("labels", ["all", "none", "mixed"])
def test_ssvae_trains_on_labelled_unlabelled_and_mixed(labels, xy):
    x, y = xy
    y = {"all": y, "none": torch.full_like(y, -1), "mixed": torch.where(torch.arange(500) % 5 == 0, y, -1)}[labels]
    h = pvae.fit(ssvae(), (x, y), elbo="enum", epochs=4, batch_size=100, lr=3e-3, seed=0)
    assert h[-1]["train_elbo"] > h[0]["train_elbo"]
    if labels == "none":  # unlabelled: the ELBO runs over all points once per epoch
        assert len(h) == 4


@pytest.mark.parametrize("batching,labelled_size", [("paired", 30), ("balanced", 141)])
def test_ssvae_paired_and_balanced_batches(batching, labelled_size, xy):
    x, y = xy
    y = torch.where(torch.arange(500) < 30, y, -1)
    m = ssvae(batching=batching)
    steps = list(m.minibatches((x, y), 100, torch.Generator().manual_seed(0), False))
    assert len(steps) == m.num_steps((x, y), 100, False) == 5  # 470 unlabelled / 100
    for parts in steps:
        (unl, n_unl), (lab, n_lab) = parts
        assert len(unl) == 1 and n_unl == 470
        assert len(lab) == 2 and (lab[1] >= 0).all() and len(lab[0]) == 30
        # paired: each set scaled to its size; balanced: a labelled point weighs as much
        # as an unlabelled one (470 / 100 each)
        assert n_lab == labelled_size


@pytest.mark.parametrize("n_lab", [30, 250, 0, 500])
def test_ssvae_separate_batches_cover_every_point_once_with_equal_weight(n_lab, xy):
    x, y = xy
    y = torch.where(torch.arange(500) < n_lab, y, -1)
    m = ssvae(batching="separate")
    steps = list(m.minibatches((x, y), 100, torch.Generator().manual_seed(0), False))
    assert len(steps) == m.num_steps((x, y), 100, False)
    seen, kinds = [], []
    for parts in steps:
        assert len(parts) == 1  # each step is all labelled or all unlabelled
        (batch, n_part), = parts
        labelled = len(batch) == 2
        assert not labelled or (batch[1] >= 0).all()
        kinds.append(labelled)
        # every point weighs N / batch_size, whatever its step (to rounding)
        assert n_part / len(batch[0]) == pytest.approx(500 / 100, rel=0.02)
        seen.append(batch[0])
    assert sum(kinds) == -(-n_lab // 100)
    assert torch.cat(seen).shape[0] == 500  # each point once per epoch
    assert sorted(map(tuple, torch.cat(seen).tolist())) == sorted(map(tuple, x.tolist()))
    if 0 < n_lab < 500:  # the labelled steps are spread out evenly, not bunched together
        where = [i for i, k in enumerate(kinds) if k]
        spacing = len(kinds) / len(where)
        assert 0 < where[0] <= spacing
        assert all(abs(b - a - spacing) <= 1 for a, b in zip(where, where[1:]))


def test_ssvae_rejects_an_unknown_batching():
    with pytest.raises(ValueError, match="batching must be 'separate', 'paired' or 'balanced'"):
        ssvae(batching="mixed")


def test_enumeration_equals_the_label_sum_weighted_by_the_classifier(xy):
    """Enumerated unlabelled loss == sum_y q(y|x) [labelled loss(x, y) + log q(y|x)]."""
    x, _ = xy
    x = x[:6]
    m = ssvae(aux_weight=0.0)
    n = 4000  # particles; each labelled loss is an average over z
    enum = TraceEnum_ELBO(max_plate_nesting=1, num_particles=n, vectorize_particles=True)
    pyro.set_rng_seed(0)
    loss_enum = enum.differentiable_loss(m.model, config_enumerate(m.guide), x).item()
    q = m.classify(x)  # (6, 10)
    trace = Trace_ELBO(num_particles=n, vectorize_particles=True)
    expected = 0.0
    for k in range(10):
        yk = torch.full((6,), k)
        # per-point labelled losses, weighted by q(y=k|x); the y site's prior is in both
        for i in range(6):
            lk = trace.loss(m.model, m.guide, x[i : i + 1], yk[i : i + 1])
            expected += q[i, k].item() * (lk + torch.log(q[i, k]).item())
    assert loss_enum == pytest.approx(expected, rel=2e-3)


def test_enumeration_gives_the_classifier_the_exact_gradient(xy):
    """d/d(classifier) of the enumerated loss == that of -sum_y q(y|x) [ELBO(x, y)] - H(q).

    ELBO(x, y) does not depend on the classifier, so its gradient comes only through the
    q(y|x) weights and the entropy: what drives q(y|x) towards p(y|x) on unlabelled data.
    """
    x, _ = xy
    x = x[:5]
    m = ssvae(aux_weight=0.0)
    n = 4000
    enum = TraceEnum_ELBO(max_plate_nesting=1, num_particles=n, vectorize_particles=True)
    params = list(m.classifier.parameters())
    pyro.set_rng_seed(0)
    grads = torch.autograd.grad(enum.differentiable_loss(m.model, config_enumerate(m.guide), x),
                                params)
    trace = Trace_ELBO(num_particles=n, vectorize_particles=True)
    with torch.no_grad():  # ELBO(x, y) per point and label, without the classifier
        elbos = torch.tensor([[-trace.loss(m.model, m.guide, x[i : i + 1], torch.tensor([k]))
                               for k in range(10)] for i in range(5)])
    logq = torch.log_softmax(m.classifier_logits(x), -1)
    q = logq.exp()
    expected = torch.autograd.grad(-((q * elbos).sum() - (q * logq).sum()), params,
                                   retain_graph=True)
    entropy_only = torch.autograd.grad((q * logq).sum(), params)  # what a detached q would give
    flat = lambda gs: torch.cat([g.reshape(-1) for g in gs])  # noqa: E731
    g, e, wrong = flat(grads), flat(expected), flat(entropy_only)
    assert (g - e).norm() < 0.1 * e.norm()  # Monte Carlo error in the ELBO(x, y) differences
    assert (wrong - e).norm() > 0.5 * e.norm()  # the check can tell a wrong gradient


@pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")  # the labelled case
def test_balance_term_is_the_kl_of_the_mean_classifier_from_the_prior(xy):
    """balance_weight w adds w * N * KL(mean_n q(y|x_n) || uniform) to the loss of an
    unlabelled batch, value and gradient, and nothing to a labelled one or to log p(x)."""
    x, y = xy
    x, y = x[:40], y[:40]
    torch.manual_seed(0)
    m = ssvae(balance_weight=5.0)
    with torch.no_grad():
        m.classifier[-1].bias[0] += 2.0  # q(y|x) leans to class 0: a KL well away from 0
    off = ssvae()
    off.load_state_dict(m.state_dict())
    assert "y_balance" in sites(m.model, x) and "y_balance" not in sites(m.model, x, y)
    assert "y_balance" not in sites(off.model, x)

    def kl_of_mean(model):
        q = torch.softmax(model.classifier_logits(x), -1).mean(0)
        return torch.distributions.kl_divergence(torch.distributions.Categorical(probs=q),
                                                 torch.distributions.Categorical(logits=torch.zeros(10)))

    def loss_and_grads(model, *data):
        pyro.set_rng_seed(0)  # the same z draws for both models
        loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(
            model.model, config_enumerate(model.guide), *data)
        return loss, torch.autograd.grad(loss, list(model.classifier.parameters()))

    kl = kl_of_mean(m)
    assert kl.item() > 0.1
    (l_on, g_on), (l_off, g_off) = loss_and_grads(m, x), loss_and_grads(off, x)
    assert (l_on - l_off).item() == pytest.approx(5.0 * 40 * kl.item(), rel=1e-4)
    g_kl = torch.autograd.grad(5.0 * 40 * kl, list(m.classifier.parameters()))
    for a, b, c in zip(g_on, g_off, g_kl):
        torch.testing.assert_close(a - b, c, rtol=1e-3, atol=1e-3)
    assert loss_and_grads(m, x, y)[0].item() == pytest.approx(loss_and_grads(off, x, y)[0].item())
    pyro.set_rng_seed(0)
    e_on = pvae.evaluate.elbo(m, (x,), num_samples=5)
    pyro.set_rng_seed(0)
    e_off = pvae.evaluate.elbo(off, (x,), num_samples=5)
    torch.testing.assert_close(e_on, e_off)
