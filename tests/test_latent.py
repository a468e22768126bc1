"""Latent-space tools (``pvae.latent``): shapes, endpoints, one-dimension traversals,
every model type, features and code data."""

import pytest
import torch

import pvae
from pvae import latent


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


@pytest.fixture(scope="module")
def cvae(binary_digits):
    torch.manual_seed(0)
    m = pvae.CVAE(64, 3, num_classes=10, hidden_dims=(32,))
    pvae.fit(m, (binary_digits.train.x, binary_digits.train.y), epochs=3, seed=0)
    return m


def test_encode_shapes_for_every_model(binary_digits, vae2, cvae):
    x, y = binary_digits.test.x[:50], binary_digits.test.y[:50]
    assert latent.encode(vae2, x).shape == (50, 2)
    assert latent.encode(cvae, x, y).shape == (50, 3)
    ss = pvae.SemiSupervisedVAE(64, 10, z_dim=4, hidden_dims=(16,))
    assert latent.encode(ss, x).shape == (50, 4)  # labels predicted where not given
    hv = pvae.HierarchicalVAE(64, (5, 2), hidden_dims=(16,))
    assert latent.encode(hv, x).shape == (50, 5)
    with pytest.raises(ValueError, match="needs the condition y"):
        latent.encode(cvae, x)


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_decode_to_the_reconstructions(binary_digits, vae2, method):
    xa, xb = binary_digits.test.x[0], binary_digits.test.x[1]
    z, dec = latent.interpolate(vae2, xa, xb, steps=7, method=method)
    assert z.shape == (7, 2) and dec.shape == (7, 64)
    torch.testing.assert_close(dec[0], vae2.reconstruct(xa[None])[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dec[-1], vae2.reconstruct(xb[None])[0], rtol=1e-4, atol=1e-5)
    if method == "slerp":  # the norm interpolates between the ends' norms (on the sphere)
        za, zb = z[0].norm(), z[-1].norm()
        assert ((z.norm(dim=1) - torch.minimum(za, zb)) > -1e-4).all()


def test_conditional_interpolation(binary_digits, cvae):
    x, y = binary_digits.test.x, binary_digits.test.y
    z, dec = latent.interpolate(cvae, x[0], x[1], steps=5, y_a=y[0], y_b=y[1])
    torch.testing.assert_close(dec[0], cvae.reconstruct(x[:1], y[:1])[0], rtol=1e-4, atol=1e-5)


def test_traversal_changes_only_one_dimension(binary_digits, cvae):
    x, y = binary_digits.test.x[3], binary_digits.test.y[3]
    z, dec = latent.traverse(cvae, x, dims=[0, 2], steps=6, y=y)
    assert z.shape == (2, 6, 3) and dec.shape == (2, 6, 64)
    z0 = latent.encode(cvae, x[None], y.reshape(1))[0]
    for row, d in enumerate([0, 2]):
        others = [k for k in range(3) if k != d]
        assert torch.allclose(z[row][:, others], z0[others].expand(6, 2))
        assert torch.allclose(z[row][:, d], torch.linspace(-2.5, 2.5, 6))


def test_manifold_grid_and_embedding(vae2, binary_digits):
    z, dec = latent.manifold(vae2, n=5)
    assert z.shape == (25, 2) and dec.shape == (25, 64)
    assert z[0, 0] < z[1, 0] and z[0, 1] > z[5, 1]  # z1 to the right, z2 up
    with pytest.raises(ValueError, match="2-D latent space"):
        latent.manifold(pvae.VAE(64, 3))
    zz = torch.randn(60, 6)
    for method, used in [("auto", "PCA"), ("pca", "PCA"), ("tsne", "t-SNE")]:
        coords, got = latent.embed_2d(zz, method)
        assert coords.shape == (60, 2) and got == used
    assert latent.embed_2d(torch.randn(10, 2))[1] == "latent"


# -- every latent tool on every model type ---------------------------------------------------
MODEL_TYPES = ["vae", "cvae_classes", "cvae_vector", "ssvae", "hvae"]


def _model_and_conditions(kind, n):
    """An untrained model with a 2-D main latent, and one condition per data point (or None)."""
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    if kind == "vae":
        return pvae.VAE(64, 2, hidden_dims=(16,)), None
    if kind == "cvae_classes":
        return pvae.CVAE(64, 2, num_classes=10, hidden_dims=(16,)), torch.arange(n) % 10
    if kind == "cvae_vector":
        return pvae.CVAE(64, 2, y_dim=3, hidden_dims=(16,)), torch.randn(n, 3, generator=g)
    if kind == "ssvae":  # a label where known, -1 where not (then predicted)
        return (pvae.SemiSupervisedVAE(64, 10, z_dim=2, hidden_dims=(16,)),
                torch.where(torch.arange(n) % 3 != 2, torch.arange(n) % 10, -1))
    return pvae.HierarchicalVAE(64, (2, 3), hidden_dims=(16,)), None


def _recon(model, x, y):
    return model.reconstruct(x[None]) if y is None else model.reconstruct(x[None], y[None])


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_latent_tools_take_numpy_inputs_as_tensors(binary_digits, kind):
    x = binary_digits.test.x[:2]
    model, y = _model_and_conditions(kind, len(x))
    y0 = None if y is None else y[0].numpy()
    z, decoded = latent.traverse(model, x[0].numpy(), y=y0, dims=[0], steps=3)
    z_t, decoded_t = latent.traverse(model, x[0], y=None if y is None else y[0], dims=[0], steps=3)
    torch.testing.assert_close(z, z_t)
    y1 = None if y is None else y[1].numpy()
    _, path = latent.interpolate(model, x[0].numpy(), x[1].numpy(), y_a=y0, y_b=y1, steps=3)
    assert path.shape[0] == 3


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_every_latent_tool_works_for_every_model_type(binary_digits, kind):
    x = binary_digits.test.x[:6]
    model, y = _model_and_conditions(kind, len(x))
    z = latent.encode(model, x, y)
    assert z.shape == (6, 2) and torch.isfinite(z).all()
    torch.testing.assert_close(latent.encode(model, x[:1], None if y is None else y[:1])[0], z[0])
    y0, y1 = (None, None) if y is None else (y[0], y[1])
    for method in ("linear", "slerp"):
        zs, dec = latent.interpolate(model, x[0], x[1], steps=5, method=method, y_a=y0, y_b=y1)
        assert zs.shape == (5, 2) and dec.shape == (5, 64)
        torch.testing.assert_close(zs[0], z[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(zs[-1], z[1], rtol=1e-5, atol=1e-6)
        # the first end decodes (with the first input's condition) to its reconstruction
        torch.testing.assert_close(dec[0], _recon(model, x[0], y0)[0], rtol=1e-4, atol=1e-5)
    if y is not None:  # decoding with the second input's condition: its reconstruction
        _, dec = latent.interpolate(model, x[0], x[1], steps=3, y_a=y0, y_b=y1, y=y1)
        torch.testing.assert_close(dec[-1], _recon(model, x[1], y1)[0], rtol=1e-4, atol=1e-5)
    zt, dec = latent.traverse(model, x[2], dims=[1], steps=4, y=None if y is None else y[2])
    assert zt.shape == (1, 4, 2) and dec.shape == (1, 4, 64)
    if kind == "ssvae":  # y[2] is -1: decoded with the label q(y|x) predicts, as reconstruct does
        z2 = zt[0].clone()
        z2[:, 1] = z[2, 1]
        torch.testing.assert_close(model.decode_mean(z2[:1], model.classify(x[2:3]).argmax(-1)),
                                   _recon(model, x[2], y[2]), rtol=1e-4, atol=1e-5)
    assert torch.allclose(zt[0, :, 0], z[2, 0].expand(4))
    assert torch.allclose(zt[0, :, 1], torch.linspace(-2.5, 2.5, 4))
    zm, dec = latent.manifold(model, n=3, y=None if y is None else y[0])
    assert zm.shape == (9, 2) and dec.shape == (9, 64) and torch.isfinite(dec).all()
    coords, _ = latent.embed_2d(z)
    assert coords.shape == (6, 2)


@pytest.mark.parametrize("kind", ["cvae_classes", "cvae_vector"])
def test_latent_tools_ask_for_a_cvaes_condition(binary_digits, kind):
    x = binary_digits.test.x[:2]
    model, y = _model_and_conditions(kind, 2)
    with pytest.raises(ValueError, match="needs the condition y"):
        latent.interpolate(model, x[0], x[1])
    with pytest.raises(ValueError, match="needs the condition y"):
        latent.traverse(model, x[0])
    with pytest.raises(ValueError, match="decodes with a condition: pass y"):
        latent.manifold(model, n=2)
    wrong = torch.zeros(5) if kind == "cvae_vector" else torch.tensor([1, 2])
    with pytest.raises(ValueError, match="condition of one data point"):
        latent.traverse(model, x[0], y=wrong)
    with pytest.raises(ValueError, match="condition of one data point"):
        latent.interpolate(model, x[0], x[1], y_a=y[0], y_b=wrong)
    with pytest.raises(ValueError, match=r"one per decoded point \(shape \(4,"):
        latent.interpolate(model, x[0], x[1], steps=4, y_a=y[0], y_b=y[1], y=y)
    with pytest.raises(ValueError, match="y has 2 rows for 1 inputs"):
        latent.encode(model, x[:1], y)
    with pytest.raises(ValueError, match=r"dims must be latent dimensions in 0..1, got \[2\]"):
        latent.traverse(model, x[0], y=y[0], dims=[2])


@pytest.mark.parametrize("kind", MODEL_TYPES)
def test_features_and_code_data_take_unconditional_models_and_refuse_the_others(digits, kind):
    model, _ = _model_and_conditions(kind, 1)
    if "y" in model.batch_parts:  # a label or a condition: the declared batch parts
        with pytest.raises(ValueError, match="takes an unconditional model"):
            latent.Features(model)
        with pytest.raises(ValueError, match="takes an unconditional model"):
            latent.code_data(digits, model)
        return
    codes = latent.Features(model, sample=False)(digits.test.x[:5])
    torch.testing.assert_close(codes, latent.encode(model, digits.test.x[:5]))
    coded = latent.code_data(digits, model)
    assert coded.test.x.shape == (len(digits.test), 2)


def test_stacking_refuses_a_sequence_model_naming_encode_with_lengths():
    model = pvae.SequenceVAE(x_dim=1, z_dim=2, hidden_dim=4)
    seqs = pvae.data.Sequences(torch.randn(4, 3, 1), torch.tensor([3, 2, 1, 3]))
    data = pvae.data.Data(name="toy", train=seqs, val=None, test=seqs, x_shape=(3, 1),
                          step_dim=1)
    for run in (lambda: latent.Features(model), lambda: latent.code_data(data, model)):
        with pytest.raises(ValueError, match=r"sequences.*encode\(model, x, lengths=lengths\)"):
            run()
    z, (x, lengths) = latent.manifold(model, n=3)  # a sequence model decodes (x, lengths)
    assert z.shape == (9, 2) and x.shape[0] == lengths.shape[0] == 9


def test_manifold_of_a_learned_prior_spans_that_priors_quantiles():
    """With a mixture prior far from N(0, I) the grid follows p(z), not N(0, 1)."""
    torch.manual_seed(0)
    m = pvae.VAE(64, 2, hidden_dims=(8,), prior="mog", prior_components=2)
    with torch.no_grad():
        for name, p in m.latent_prior.named_parameters():
            if "loc" in name:
                p.fill_(10.0)
    z, _ = pvae.latent.manifold(m, n=5)
    assert z.shape == (25, 2)
    assert (z > 5).all()  # N(0, 1)'s quantiles 0.05 .. 0.95 lie within +-1.65
