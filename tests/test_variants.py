"""CVAE, semi-supervised VAE, hierarchical VAE and flow guides: sites, training, handlers, checks."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, Trace_ELBO, TraceEnum_ELBO, config_enumerate

import pvae


@pytest.fixture
def xy(binary_digits):
    return binary_digits.train.x[:500], binary_digits.train.y[:500]


def sites(fn, *args):
    tr = poutine.trace(fn).get_trace(*args)
    return {n: s for n, s in tr.nodes.items() if s["type"] == "sample" and n != "data"}


def cvae(**kw):
    return pvae.CVAE(64, 3, num_classes=10, hidden_dims=(32,), **kw)


def ssvae(**kw):
    return pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(32,), **kw)


def hvae(**kw):
    return pvae.HierarchicalVAE(64, (6, 3), hidden_dims=(32,), **kw)


# ---- each variant trains and improves its ELBO, with Trace_ELBO and (mean-field) TraceMeanField --
@pytest.mark.parametrize("make,data,elbos", [
    (cvae, "xy", ["trace", "meanfield"]),
    (lambda: pvae.CVAE(64, 3, y_dim=8, hidden_dims=(32,), learned_prior=False), "xcond",
     ["trace", "meanfield"]),
    (ssvae, "xy_partial", ["enum", "trace", "meanfield"]),
    (lambda: ssvae(balance_weight=20.0), "xy_partial", ["enum", "trace"]),
    (lambda: hvae(guide="top_down"), "x", ["trace", "meanfield"]),
    (hvae, "x", ["trace"]),
    (lambda: pvae.VAE(64, 3, hidden_dims=(32,), guide_flows=2), "x", ["trace"]),
    (lambda: cvae(guide_flows=1), "xy", ["trace"]),
], ids=["cvae", "cvae-vector", "ssvae", "ssvae-balance", "hvae-topdown", "hvae-bottomup",
        "vae-iaf", "cvae-iaf"])
def test_variants_train_and_improve(make, data, elbos, xy):
    x, y = xy
    batch = {"x": x, "xy": (x, y), "xcond": (x, x[:, ::8].clone()),
             "xy_partial": (x, torch.where(torch.arange(500) < 100, y, -1))}[data]
    for elbo in elbos:
        torch.manual_seed(0)
        h = pvae.fit(make(), batch, elbo=elbo, epochs=8, batch_size=100, lr=3e-3, seed=0)
        assert h[-1]["train_elbo"] > h[0]["train_elbo"] + 3, (elbo, h["train_elbo"])


# ---- site names and plain-Pyro use -----------------------------------------------------------------
def test_cvae_sites_predictive_and_conditional_samples(xy):
    x, y = xy
    m = cvae()
    s = sites(m.model, x[:5], y[:5])
    assert set(s) == {"y", "z", "x"} and s["y"]["is_observed"] and s["y"]["mask"] is False
    assert set(sites(m.guide, x[:5], y[:5])) == {"z"}
    post = Predictive(m.model, guide=m.guide, num_samples=3)(x[:5], y[:5])
    assert post["z"].shape == (3, 5, 3)
    prior = Predictive(m.model, num_samples=2, return_sites=["y", "x"])(None, None, batch_size=4)
    assert prior["y"].shape == (2, 4) and prior["x"].shape == (2, 4, 64)
    assert m.sample(6, y=3).shape == (6, 64) and m.sample(3, y=torch.tensor([0, 1, 2])).shape == (3, 64)
    assert m.reconstruct(x[:4], y[:4]).shape == (4, 64)


def test_cvae_learned_prior_depends_on_the_label():
    m = cvae()
    loc0, _ = m.prior(m.features(torch.tensor([0])))
    loc1, _ = m.prior(m.features(torch.tensor([1])))
    assert not torch.allclose(loc0, loc1)
    flat = cvae(learned_prior=False)
    assert torch.equal(flat.prior(flat.features(torch.tensor([4])))[0], torch.zeros(1, 3))


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


def test_hvae_sites_order_and_per_layer_kl(xy):
    x, _ = xy
    m = hvae(guide="top_down")
    assert m.latent_sites == ("z1", "z2")
    g = poutine.trace(m.guide).get_trace(x[:5])
    mt = sites(poutine.replay(m.model, trace=g), x[:5])
    assert list(mt) == ["z2", "z1", "x"]
    assert [n for n in g.nodes if n.startswith("z")] == ["z2", "z1"]  # top-down: model order
    assert mt["z1"]["value"].shape == (5, 6) and mt["z2"]["value"].shape == (5, 3)
    bu = hvae()
    assert bu.guide_type == "bottom_up"  # the default
    gb = poutine.trace(bu.guide).get_trace(x[:5])
    assert [n for n in gb.nodes if n.startswith("z")] == ["z1", "z2"]
    h = pvae.fit(m, x, epochs=2, seed=0)
    assert {"kl_z1", "kl_z2"} <= set(h[-1])
    assert h[-1]["kl"] == pytest.approx(h[-1]["kl_z1"] + h[-1]["kl_z2"], rel=1e-4)
    assert [t.shape for t in m.encode(x[:4])] == [(4, 6), (4, 3)]
    assert m.sample(3).shape == (3, 64) and m.reconstruct(x[:2]).shape == (2, 64)
    post = Predictive(m.model, guide=m.guide, num_samples=2)(x[:5])
    assert post["z1"].shape == (2, 5, 6)


@pytest.mark.parametrize("make", [lambda: pvae.VAE(64, 3, guide_flows=2), hvae,
                                  lambda: cvae(guide_flows=1)])
def test_meanfield_refused_for_guides_that_are_not_mean_field(make, xy):
    x, y = xy
    m = make()
    data = (x, y) if "y" in m.batch_parts else x
    with pytest.raises(ValueError, match="not mean-field.*use elbo='trace'"):
        pvae.fit(m, data, elbo="meanfield", epochs=1)


def test_flow_guide_is_a_transformed_distribution(xy):
    x, _ = xy
    m = pvae.VAE(64, 3, guide_flows=2)
    g = poutine.trace(m.guide).get_trace(x[:4])
    assert isinstance(g.nodes["z"]["fn"], pyro.distributions.TransformedDistribution)
    assert len(g.nodes["z"]["fn"].transforms) == 3  # two IAFs and a permutation between
    assert any("posterior.flows" in n for n, _ in m.named_parameters())
    ll = pvae.evaluate.log_likelihood(m, x[:10], num_samples=20)
    assert ll.shape == (10,) and torch.isfinite(ll).all()


def test_every_variant_evaluates_and_round_trips(xy, tmp_path):
    x, y = xy
    for m, data in [(cvae(), (x[:20], y[:20])), (ssvae(), (x[:20],)), (hvae(), (x[:20],)),
                    (pvae.VAE(64, 3, guide_flows=1), (x[:20],))]:
        ll = pvae.evaluate.log_likelihood(m, data, num_samples=10)
        elbo = pvae.evaluate.elbo(m, data, num_samples=10)
        assert ll.shape == elbo.shape == (20,) and torch.isfinite(ll).all()
        m.save(tmp_path / "m.pt")
        back = pvae.load(tmp_path / "m.pt")
        assert type(back) is type(m) and back.hparams == m.hparams


@pytest.mark.parametrize("make,data,message", [
    (cvae, lambda x, y: (x, y + 10), r"labels out of range: found 1\d.*num_classes=10"),
    (cvae, lambda x, y: (x, -y - 1), r"labels out of range"),
    (cvae, lambda x, y: (x, torch.nn.functional.one_hot(y, 10)), r"one-hot labels pass y.argmax"),
    (cvae, lambda x, y: (x, y[:-1]), r"x has 500 rows but a second part has shape \(499,\)"),
    (cvae, lambda x, y: x, r"trains on pairs"),
    (lambda: pvae.CVAE(64, 3, y_dim=8), lambda x, y: (x, x[:, :7]), r"condition has shape \(500, 7\).*y_dim=8"),
    (ssvae, lambda x, y: (x, y + 1), r"-1 \(unlabelled\) or 0..9"),
    (ssvae, lambda x, y: (x, y - 2), r"labels out of range: found -2"),
    (lambda: pvae.SemiSupervisedVAE(64, 5), lambda x, y: (x, y), r"found 9.*num_classes=5"),
    (hvae, lambda x, y: (x, y), r"takes x alone"),
])
def test_bad_labels_and_conditions(make, data, message, xy):
    x, y = xy
    with pytest.raises(ValueError, match=message):
        pvae.fit(make(), data(x, y), epochs=1)


def test_bad_variant_arguments():
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        pvae.CVAE(64, 3)
    with pytest.raises(ValueError, match="exactly one of num_classes"):
        pvae.CVAE(64, 3, num_classes=3, y_dim=2)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        pvae.SemiSupervisedVAE(64, 1)
    with pytest.raises(ValueError, match=r"balance_weight must be non-negative \(0 turns"):
        pvae.SemiSupervisedVAE(64, 10, balance_weight=-1.0)
    with pytest.raises(ValueError, match="guide must be"):
        pvae.HierarchicalVAE(64, guide="sideways")
    with pytest.raises(ValueError, match="guide_flows"):
        pvae.VAE(64, 2, guide_flows=-1)


def test_features_draws_codes_without_gradients_and_means_equal_embed(digits):
    torch.manual_seed(0)
    m1 = pvae.VAE(64, 6, hidden_dims=(32,))
    x = pvae.data.binarize(digits.test.x[:40])
    draw = pvae.latent.Features(m1)
    a, b = draw(x), draw(x)
    assert a.shape == (40, 6) and not a.requires_grad
    assert not torch.allclose(a, b)  # a fresh draw each call
    means = pvae.latent.Features(m1, sample=False, batch_size=7)(x)  # in several chunks
    torch.testing.assert_close(means, m1.embed(x))
    # the draws scatter around the means with the posterior's scales
    loc, scale = m1.encode(x)
    draws = torch.stack([draw(x) for _ in range(400)])
    torch.testing.assert_close(draws.mean(0), loc, atol=0.25, rtol=0)
    torch.testing.assert_close(draws.std(0), scale, atol=0.1, rtol=0.15)
    # an input transform runs first
    flipped = pvae.latent.Features(m1, sample=False, transform=lambda t: 1 - t)(x)
    torch.testing.assert_close(flipped, m1.embed(1 - x))
    assert pvae.latent.Features(m1)(x[:0]).shape == (0, 6)
    for guide in ("bottom_up", "top_down"):  # the main site is z1, whatever the guide's order
        hv = pvae.HierarchicalVAE(64, z_dims=(5, 3), hidden_dims=(16,), guide=guide)
        assert pvae.latent.Features(hv).site == "z1"
        torch.testing.assert_close(pvae.latent.Features(hv, sample=False)(x), hv.embed(x))
        assert pvae.latent.Features(hv, site="z2")(x).shape == (40, 3)


def test_features_errors():
    with pytest.raises(ValueError, match="no latent site 'w'.*'z'"):
        pvae.latent.Features(pvae.VAE(64, 2), site="w")
    hv = pvae.HierarchicalVAE(64, z_dims=(5, 3), hidden_dims=(16,))
    with pytest.raises(ValueError, match="main latent site 'z1'; for 'z2' use sample=True"):
        pvae.latent.Features(hv, site="z2", sample=False)
    with pytest.raises(ValueError, match="flows.*sample=True"):
        pvae.latent.Features(pvae.VAE(64, 2, guide_flows=1), sample=False)
    with pytest.raises(ValueError, match="unconditional"):
        pvae.latent.Features(pvae.CVAE(64, 2, num_classes=3))
    with pytest.raises(TypeError, match="trained pvae model"):
        pvae.latent.Features(torch.nn.Linear(3, 2))


def test_stacked_m1_m2_trains_on_codes_and_classifies(digits):
    """Kingma et al.'s M1+M2: the semi-supervised M2 trained on a VAE's codes."""
    d = pvae.data.load("digits", flatten=True, binarize="dynamic", num_labelled=50, seed=0)
    torch.manual_seed(0)
    m1 = pvae.VAE(64, 8, hidden_dims=(128,), activation="softplus")
    pvae.fit(m1, d.train.x, elbo="meanfield", epochs=30, batch_size=64, lr=3e-3,
             transform=d.transform, seed=0)
    m2 = pvae.SemiSupervisedVAE(8, 10, z_dim=4, hidden_dims=(64,), likelihood="gaussian",
                                likelihood_kwargs={"scale": "predicted"})
    h = pvae.fit(m2, (d.train.x, d.train.y), elbo="enum", epochs=30, batch_size=64, lr=3e-3,
                 transform=pvae.latent.Features(m1, transform=d.transform), seed=0)
    assert h[-1]["train_elbo"] > h[0]["train_elbo"] + 10
    codes = pvae.latent.Features(m1, sample=False)(d.test.x)
    probs = m2.classify(codes)
    assert probs.shape == (len(d.test.y), 10)
    stacked = (probs.argmax(-1) == d.test.y).float().mean()
    # the same M2 on the 50 labelled codes alone: the unlabelled images must add to it
    # (measured 0.76 against 0.68 here)
    labelled = d.train.y >= 0
    alone = pvae.SemiSupervisedVAE(8, 10, z_dim=4, hidden_dims=(64,), likelihood="gaussian",
                                   likelihood_kwargs={"scale": "predicted"})
    pvae.fit(alone, (d.train.x[labelled], d.train.y[labelled]), elbo="enum", epochs=30,
             batch_size=64, lr=3e-3, transform=pvae.latent.Features(m1, transform=d.transform),
             seed=0)
    supervised = (alone.classify(codes).argmax(-1) == d.test.y).float().mean()
    assert stacked > supervised + 0.03, (stacked, supervised)


def test_code_data_holds_a_models_codes_and_decodes_them_to_the_source(digits):
    torch.manual_seed(0)
    m1 = pvae.VAE(64, 6, hidden_dims=(32,))
    coded = pvae.latent.code_data(digits, m1)
    assert coded.x_shape == (6,) and coded.image_shape is None
    assert coded.encoder is m1 and coded.source is digits and coded.num_classes == 10
    # evaluation splits: the posterior means, labels kept; training inputs stay raw
    torch.testing.assert_close(coded.test.x, m1.embed(digits.test.x))
    torch.testing.assert_close(coded.val.x, m1.embed(digits.val.x))
    assert torch.equal(coded.test.y, digits.test.y) and coded.train is digits.train
    a, b = coded.transform(digits.train.x[:5]), coded.transform(digits.train.x[:5])
    assert a.shape == (5, 6) and not torch.allclose(a, b)  # fresh codes each step
    back = coded.decode(coded.test.x[:3])
    assert back.shape == (3, 64)
    torch.testing.assert_close(back, m1.decode_mean(coded.test.x[:3]))
    # plain data: decode is the identity
    torch.testing.assert_close(digits.decode(digits.test.x[:2]), digits.test.x[:2])


def test_code_data_errors(digits):
    images = pvae.data.load("digits", flatten=False)
    with pytest.raises(ValueError, match=r"encodes data of shape \(64,\), but digits has shape "
                                         r"\(1, 8, 8\)"):
        pvae.latent.code_data(images, pvae.VAE(64, 2))
    with pytest.raises(ValueError, match="guide flows.*without guide_flows"):
        pvae.latent.code_data(digits, pvae.VAE(64, 2, guide_flows=1))
    with pytest.raises(ValueError, match="unconditional"):
        pvae.latent.code_data(digits, pvae.CVAE(64, 2, num_classes=10))


# -- what models declare, and the registry that builds them by name -------------------------------
@pytest.mark.parametrize("make,parts,code_dim,classifies", [
    (lambda: pvae.VAE(64, 3), ("x",), 3, False), (cvae, ("x", "y"), 3, False),
    (ssvae, ("x", "y"), 3, True), (hvae, ("x",), 6, False)])
def test_models_declare_their_batches_codes_and_classifier(make, parts, code_dim, classifies):
    m = make()
    assert m.batch_parts == parts and m.code_dim == code_dim
    assert isinstance(m, pvae.models.Classifier) == classifies
    assert type(m).batch_parts == parts  # declared on the class
    assert m.embed(*((torch.rand(4, 64),) + ((torch.arange(4),) if "y" in parts else ()))
                   ).shape == (4, code_dim)


def test_mean_field_is_read_from_the_posteriors():
    assert pvae.VAE(64, 3).mean_field and cvae().mean_field and ssvae().mean_field
    assert not pvae.VAE(64, 3, guide_flows=1).mean_field and not ssvae(guide_flows=1).mean_field
    assert hvae(guide="top_down").mean_field and not hvae().mean_field


def test_models_are_built_by_name_with_their_options_checked():
    assert pvae.models.names() == ["cvae", "hvae", "ssvae", "vae"]
    m = pvae.models.get("ssvae", x_dim=64, num_classes=10, z_dim=3)
    assert type(m) is pvae.SemiSupervisedVAE and m.z_dim == 3
    assert pvae.models.get(type(m).config_name, **m.hparams).hparams == m.hparams
    with pytest.raises(ValueError, match="unknown model 'gan'; valid names are: cvae, hvae"):
        pvae.models.get("gan", x_dim=64)
    with pytest.raises(ValueError, match="model 'vae' has no option 'z_dims'; its options are: "
                                         "x_dim, z_dim"):
        pvae.models.get("vae", x_dim=64, z_dims=(3, 2))


def test_a_pair_of_callables_is_evaluated_as_the_model_is(xy):
    x, _ = xy
    m = pvae.VAE(64, 3)
    pyro.set_rng_seed(0)
    a = pvae.evaluate.elbo(m, x[:20], num_samples=2)
    pyro.set_rng_seed(0)
    b = pvae.evaluate.elbo((m.model, m.guide), x[:20], num_samples=2)
    assert torch.allclose(a, b)
