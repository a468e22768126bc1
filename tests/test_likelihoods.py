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


# -- every likelihood's density over the range a trained decoder produces ----------------------
# Each grid spans the decoder outputs (unconstrained, float32) a trained model can reach:
# logits in [-100, 100]; scales 1e-3 (the floor) to 1e4; concentrations 1e-3 to 1e4; means
# of counts 1e-6 to 1e4; inverse dispersions 1e-4 (the floor) to 1e8. The likelihood turns
# them into a distribution in float32; the reference is computed in float64 from the same
# (float32) parameter values. Where float32 cannot hold a log-density more exactly than the
# rounding of its largest term, the tolerance says so.
from scipy import integrate, special, stats  # noqa: E402
import numpy as np  # noqa: E402

LOGITS = [-100.0, -40.0, -16.0, -15.9, -3.0, -1e-5, 0.0, 1e-3, 0.7, 15.9, 16.0, 40.0, 100.0]
RAW_SCALE = [-30.0, -5.0, 0.0, 3.0, 100.0, 1e4]      # softplus + 1e-3: 1e-3 .. 1e4
RAW_CONC = [-30.0, -4.0, 0.0, 2.0, 100.0, 1e4]       # softplus + 1e-3: 1e-3 .. 1e4
RAW_MEAN = [-30.0, -5.0, 0.0, 3.0, 50.0, 1e4]        # softplus + 1e-6: 1e-6 .. 1e4
RAW_THETA = [-30.0, -5.0, 0.0, 3.0, 1e3, 1e8]        # softplus + 1e-4: 1e-4 .. 1e8


def _lik(name, **kwargs):
    return lk.get(name, **kwargs).setup((1,))


def _f32(v):
    return torch.tensor(v, dtype=torch.float32).reshape(-1, 1)


def _log_prob(lik, params, x):
    """log p(x) from the likelihood, float32 in and out, as float64 numpy, shape (P, X)."""
    params = tuple(_f32(p) for p in params) if isinstance(params, tuple) else _f32(params)
    d = lik(params)  # batch (P,), event (1,)
    xs = torch.as_tensor(np.asarray(x), dtype=torch.float32).reshape(-1, 1, 1)
    with torch.no_grad():
        return d.log_prob(xs).double().numpy().T


def _np(v):
    return np.asarray(torch.as_tensor(v, dtype=torch.float32), dtype=np.float64)


def _softplus64(raw, floor):
    # the parameter the likelihood uses, rounded to float32 as the likelihood holds it
    return _np(torch.nn.functional.softplus(torch.tensor(raw, dtype=torch.float32)) + floor)


def _cb_ref(t, x):
    t = t[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_c = np.where(t == 0, np.log(2.0), np.log(np.abs(t) / np.abs(np.tanh(t / 2))))
    return log_c + x * t - np.logaddexp(0.0, t)


def test_continuous_bernoulli_is_exact_past_the_old_clamp():
    # the values the silent-faults report gave: log C(t) + log(1 - sigmoid(t)) at x = 0
    lik = _lik("continuous_bernoulli")
    got = _log_prob(lik, [-40.0, -200.0], [0.0])[:, 0]
    assert got == pytest.approx([3.6889, 5.2983], abs=1e-4)


def _grid_check(name, lik, params, x, ref, atol, rtol=1e-5):
    got = _log_prob(lik, params, x)
    want = ref
    err = np.abs(got - want)
    bad = err > atol + rtol * np.abs(want)
    assert not bad.any(), (name, np.argwhere(bad)[:5], got[bad][:5], want[bad][:5])


def test_bernoulli_and_continuous_bernoulli_match_float64_and_normalise():
    t = _np(LOGITS)
    x01 = np.array([0.0, 1.0])
    _grid_check("bernoulli", _lik("bernoulli"), LOGITS, x01,
                x01 * t[:, None] - np.logaddexp(0.0, t[:, None]), atol=1e-5)
    assert np.exp(_log_prob(_lik("bernoulli"), LOGITS, x01)).sum(1) == pytest.approx(1.0, abs=1e-6)
    xs = np.concatenate([[0.0, 1e-6, 0.01, 0.3, 0.5, 0.999, 1.0]])
    _grid_check("continuous_bernoulli", _lik("continuous_bernoulli"), LOGITS, xs,
                _cb_ref(t, _np(xs)), atol=2e-5)
    # integrates to 1 over [0, 1] (a fine grid: the density's width is 1/|t| >= 0.01)
    grid = np.linspace(0.0, 1.0, 200_001)
    dens = np.exp(_log_prob(_lik("continuous_bernoulli"), LOGITS, grid))
    assert integrate.trapezoid(dens, grid, axis=1) == pytest.approx(1.0, abs=1e-4)


def test_continuous_bernoulli_gradient_matches_float64():
    t = torch.tensor(LOGITS, dtype=torch.float32, requires_grad=True)
    x = torch.full_like(t, 0.2)
    g32, = torch.autograd.grad(_lik("continuous_bernoulli")(t.reshape(-1, 1)).log_prob(
        x.reshape(-1, 1)).sum(), t)
    t64 = t.detach().double().requires_grad_()
    safe = torch.where(t64 == 0, torch.ones_like(t64), t64)
    log_c = torch.where(t64 == 0, t64 * 0 + np.log(2.0),
                        torch.log(safe.abs()) - torch.log(torch.tanh(safe.abs() / 2)))
    ref = log_c + 0.2 * t64 - torch.nn.functional.softplus(t64)
    g64, = torch.autograd.grad(ref.sum(), t64)
    # d log C / dt at 0 is 0 (even function); the float64 where-branch gives it exactly
    assert g32.double().numpy() == pytest.approx(g64.numpy(), abs=1e-5)
    # past the old clamp the normaliser still has its gradient: d/dt log|t| = 1/t
    assert g32[0].item() == pytest.approx(1 / -100 + 0.2 - 0.0, abs=1e-6)


@pytest.mark.parametrize("name,family", [("gaussian", stats.norm), ("laplace", stats.laplace)])
def test_location_scale_match_float64_and_normalise(name, family):
    lik = _lik(name, scale="predicted")
    locs = [-1e3, -1.0, 0.0, 2.5, 1e3]
    params = (sum([[m] * len(RAW_SCALE) for m in locs], []), RAW_SCALE * len(locs))
    loc, scale = _np(params[0]), _softplus64(params[1], 1e-3)
    x = np.array([-1e3, -2.0, 0.0, 0.001, 2.5, 1e3])
    # float32 rounds (x - loc) / scale to ~6e-8 relative: the tolerance scales with its square
    z2 = ((x[None] - loc[:, None]) / scale[:, None]) ** 2
    ref = family.logpdf(x[None], loc[:, None], scale[:, None])
    _grid_check(name, lik, params, x, ref, atol=1e-5 + 1e-6 * z2)
    for m, s in [(0.0, -30.0), (2.5, 0.0), (1e3, 1e4)]:  # each integrates to 1
        sc = float(_softplus64([s], 1e-3)[0])
        mass, _ = integrate.quad(lambda v: np.exp(_log_prob(lik, ([m], [s]), [v])[0, 0]),
                                 m - 60 * sc, m + 60 * sc, points=[m], limit=400)
        assert mass == pytest.approx(1.0, abs=1e-4)


def test_beta_matches_float64_and_normalises():
    lik = _lik("beta")
    a_raw = sum([[r] * len(RAW_CONC) for r in RAW_CONC], [])
    b_raw = RAW_CONC * len(RAW_CONC)
    a, b = _softplus64(a_raw, 1e-3), _softplus64(b_raw, 1e-3)
    x = np.array([1e-4, 0.01, 0.3, 0.5, 0.7, 0.99, 1 - 1e-4])
    ref = stats.beta.logpdf(_np(x)[None], a[:, None], b[:, None])
    # float32 lgamma of concentrations near 1e4 carries ~1e-2 nats of rounding, as does
    # (a - 1) log x at |log x| ~ 9: the tolerance is a few float32 ulps of those terms
    scale_terms = (np.abs(special.gammaln(a + b))[:, None]
                   + np.abs((a[:, None] - 1) * np.log(_np(x)[None]))
                   + np.abs((b[:, None] - 1) * np.log1p(-_np(x)[None])))
    _grid_check("beta", lik, (a_raw, b_raw), x, ref, atol=1e-5 + 4e-7 * scale_terms)
    for ra, rb in [(0.0, 0.0), (2.0, 100.0), (3.0, 3.0)]:  # concentrations >= 0.69
        mass, _ = integrate.quad(lambda v: np.exp(_log_prob(lik, ([ra], [rb]), [v])[0, 0]),
                                 0, 1, limit=400)
        assert mass == pytest.approx(1.0, abs=1e-4)


def test_categorical_matches_float64_and_normalises():
    lik = lk.get("categorical", num_levels=5).setup((1,))
    g = torch.Generator().manual_seed(0)
    logits = (torch.rand(40, 1, 5, generator=g) * 200 - 100)  # [-100, 100]
    x = torch.arange(5.0).reshape(5, 1, 1)
    with torch.no_grad():
        got = lik(logits).log_prob(x).double().numpy()  # (5, 40)
    ref = special.log_softmax(logits.double().numpy()[:, 0], axis=-1).T
    assert np.abs(got - ref).max() < 1e-5 * np.maximum(1, np.abs(ref)).max()
    assert np.exp(got).sum(0) == pytest.approx(1.0, abs=1e-5)


def _count_grid():
    mu_raw = sum([[r] * len(RAW_THETA) for r in RAW_MEAN], [])
    th_raw = RAW_THETA * len(RAW_MEAN)
    return mu_raw, th_raw, _softplus64(mu_raw, 1e-6), _softplus64(th_raw, 1e-4)


COUNTS = np.array([0, 1, 2, 5, 9, 10, 11, 30, 100, 1000, 10_000], dtype=np.float64)


def _count_tolerance(mu, x):
    # float32 rounding of the log-pmf's largest terms, x log mu and lgamma(x + 1)
    return 1e-4 + 3e-7 * (np.abs(x[None] * np.log(mu[:, None])) + special.gammaln(x + 1)[None]
                          + mu[:, None])


def test_poisson_matches_float64_and_normalises():
    lik = _lik("poisson")
    raw = RAW_MEAN
    rate = _softplus64(raw, 1e-6)
    ref = stats.poisson.logpmf(COUNTS[None], rate[:, None])
    _grid_check("poisson", lik, raw, COUNTS, ref, atol=_count_tolerance(rate, COUNTS))
    ks = np.arange(0, 12_001)
    assert np.exp(_log_prob(lik, raw, ks)).sum(1) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", ["negative_binomial", "zero_inflated_negative_binomial"])
def test_negative_binomials_match_float64_and_normalise(name):
    mu_raw, th_raw, mu, theta = _count_grid()
    lik = _lik(name, dispersion="predicted")
    m, t, k = mu[:, None], theta[:, None], COUNTS[None]
    # float64 reference; scipy's nbinom takes p = theta / (theta + mu), and 1 - p loses its
    # digits when theta / mu > 1e6, so the reference writes log(1 - p) as log1p-free terms
    nb = (special.gammaln(k + t) - special.gammaln(t) - special.gammaln(k + 1)
          - t * np.log1p(m / t) + k * (np.log(m) - np.log(m + t)))
    usable = (theta / mu < 1e6)[:, None]
    scipy_nb = stats.nbinom.logpmf(k, t, t / (t + m))
    assert np.allclose(nb[usable[:, 0]], scipy_nb[usable[:, 0]], rtol=1e-9, atol=1e-6)
    if name == "negative_binomial":
        params, ref = (mu_raw, th_raw), nb
    else:
        zi = [(-3.0 + 6.0 * i / len(mu_raw)) for i in range(len(mu_raw))]  # pi 0.05 .. 0.95
        params = (mu_raw, zi, th_raw)
        lpi = -np.logaddexp(0, -_np(zi))[:, None]
        l1pi = -np.logaddexp(0, _np(zi))[:, None]
        ref = np.where(COUNTS[None] == 0, np.logaddexp(lpi, l1pi + nb), l1pi + nb)
    _grid_check(name, lik, params, COUNTS, ref, atol=_count_tolerance(mu, COUNTS))
    # the pmf sums to 1 wherever its mass lies within 0..200,000 (a tiny theta with a large
    # mean puts mass out to astronomically large counts; those rows are matched above only)
    upper = stats.nbinom.ppf(1 - 1e-9, theta, theta / (theta + mu))
    rows = np.flatnonzero(upper < 200_000)
    assert len(rows) >= 25
    ks = np.arange(0, 200_001)
    sub = tuple([p[i] for i in rows] for p in params)
    assert np.exp(_log_prob(lik, sub, ks)).sum(1) == pytest.approx(1.0, abs=1e-5)


def test_count_gradients_match_float64():
    # the gradient a decoder trains on, against autograd through the float64 formula
    x = torch.tensor([0.0, 3.0, 9.0, 10.0, 50.0, 1000.0]).reshape(-1, 1, 1)
    mu = torch.tensor([1e-3, 2.0, 40.0, 1e3]).reshape(1, -1, 1)
    th = torch.tensor([1e-3, 0.5, 9.5, 10.5, 1e3, 1e6]).reshape(1, 1, -1)
    from pvae.distributions import NegativeBinomial, PoissonRate
    m32, t32 = mu.clone().requires_grad_(), th.clone().requires_grad_()
    g32 = torch.autograd.grad(NegativeBinomial(m32, t32).log_prob(x).sum(), [m32, t32])
    m64, t64 = mu.double().requires_grad_(), th.double().requires_grad_()
    x64 = x.double()
    ref = (torch.lgamma(x64 + t64) - torch.lgamma(t64) - torch.lgamma(x64 + 1)
           - t64 * torch.log1p(m64 / t64) - x64 * torch.log1p(t64 / m64))
    g64 = torch.autograd.grad(ref.sum(), [m64, t64])
    for a, b in zip(g32, g64):
        assert torch.allclose(a.double(), b, rtol=1e-3, atol=1e-4)
    r32 = mu.reshape(-1).clone().requires_grad_()
    g, = torch.autograd.grad(PoissonRate(r32).log_prob(x.reshape(-1, 1)).sum(), r32)
    assert torch.allclose(g.double(), (x.reshape(-1, 1).double() / mu.reshape(-1).double()
                                       - 1).sum(0), rtol=1e-4)


def test_every_likelihood_has_a_density_grid_test():
    # a new likelihood must join the grids above
    covered = {"bernoulli", "continuous_bernoulli", "gaussian", "laplace", "beta", "categorical",
               "poisson", "negative_binomial", "zero_inflated_negative_binomial"}
    assert set(lk.names()) == covered
