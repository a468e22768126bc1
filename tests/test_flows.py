"""Flow guides (``pvae.flows``): gated IAFs on the encoder's features h (Kingma et al. 2016)."""

import math

import pyro
import pyro.distributions.transforms as T
import pytest
import torch
from pyro import poutine

import pvae
from pvae.checkpoint import CheckpointError
from pvae.flows import GATE_BIAS, GatedIAF, GaussianPosterior, displacement_bound

MODELS = {
    "vae": (lambda: pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2), ("z",), False),
    "vae_conv": (lambda: pvae.VAE((1, 8, 8), 3, hidden_dims=(4, 8), guide_flows=2), ("z",), False),
    "cvae": (lambda: pvae.CVAE(64, 3, num_classes=10, hidden_dims=(16,), guide_flows=2),
             ("z",), True),
    "ssvae": (lambda: pvae.SemiSupervisedVAE(64, 10, z_dim=3, hidden_dims=(16,), guide_flows=2),
              ("z",), True),
    "hvae_bottom_up": (lambda: pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,),
                                                    guide_flows=2), ("z1", "z2"), False),
    "hvae_top_down": (lambda: pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,),
                                                   guide="top_down", guide_flows=2),
                      ("z1", "z2"), False),
}


def _batch(name, xy, n=8):
    x, y = xy
    x = x[:n].reshape(n, 1, 8, 8) if name == "vae_conv" else x[:n]
    return (x, y[:n]) if MODELS[name][2] else (x,)


def _randomise(module, std=0.3):
    """Move every flow's last layer off its zero initialisation (as training would)."""
    with torch.no_grad():
        for p in _last_layers(module):
            p.weight.normal_(0, std)
            p.bias.normal_(0, std)


def _last_layers(module):
    return [f.arn.layers[-1] for m in module.modules() if isinstance(m, GaussianPosterior)
            for f in m.flows]


def _base_and_flowed(fn, value):
    """The base Gaussian draw behind ``value`` (inverted through the cached flows)."""
    z = value
    for t in reversed(fn.transforms):
        z = t.inv(z)
    return z


def test_flow_guide_is_a_transformed_distribution(xy):
    x, _ = xy
    m = pvae.VAE(64, 3, guide_flows=2)
    g = poutine.trace(m.guide).get_trace(x[:4])
    fn = g.nodes["z"]["fn"]
    assert isinstance(fn, pyro.distributions.TransformedDistribution)
    assert len(fn.transforms) == 2 and all(isinstance(t, GatedIAF) for t in fn.transforms)
    assert any("posterior.flows.0.arn" in n for n, _ in m.named_parameters())
    assert m.posterior.context_dim == 400  # the default encoder's hidden layer: the paper's h
    ll = pvae.evaluate.log_likelihood(m, x[:10], num_samples=20)
    assert ll.shape == (10,) and torch.isfinite(ll).all()


@pytest.mark.parametrize("name", MODELS)
def test_each_flow_starts_near_the_identity(name, xy):
    """At initialisation every model's IAF moves each coordinate of z by exactly
    (1 - sigmoid(gate_bias)^2) |z| over its two flows: under 3.6 % of |z|, so less than
    0.18 for any |z| <= 5 (the displacement itself, not only the log-determinant)."""
    torch.manual_seed(0)
    make, sites, _ = MODELS[name]
    m = make()
    g = poutine.trace(m.guide).get_trace(*_batch(name, xy))
    gate = 1 / (1 + math.exp(-GATE_BIAS))
    for site in sites:
        fn, z = g.nodes[site]["fn"], g.nodes[site]["value"]
        z0 = _base_and_flowed(fn, z)
        moved = (z - z0).abs()
        assert torch.allclose(moved, (1 - gate ** 2) * z0.abs(), atol=1e-6), site
        assert (moved <= 0.036 * z0.abs() + 1e-6).all()
        assert (moved[z0.abs() <= 5] < 0.18).all()
        # and the log-determinant is the gates' alone: 2 * D * log sigmoid(gate_bias)
        ladj = sum(t.log_abs_det_jacobian(a, b) for t, a, b in
                   zip(fn.transforms, [z0, fn.transforms[0](z0)], [fn.transforms[0](z0), z]))
        assert torch.allclose(ladj, torch.full_like(ladj, 2 * z.shape[-1] * math.log(gate)))
    assert displacement_bound() == pytest.approx(1 - gate) and 1 - gate < 0.02


def test_default_initialisation_is_not_near_the_identity():
    """The check above can fail: PyTorch's default last layer and gate bias 2 (pvae before
    the fix) move z by far more than the bound."""
    torch.manual_seed(0)
    post = GaussianPosterior(4, 2, context_dim=6, identity_init=False, gate_bias=2.0)
    q = post(torch.zeros(200, 4), torch.ones(200, 4), torch.randn(200, 6))
    z = q.rsample()
    z0 = _base_and_flowed(q, z)
    assert ((z - z0).abs() > 0.036 * z0.abs() + 0.01).float().mean() > 0.5


@pytest.mark.parametrize("name", MODELS)
def test_the_flows_use_the_encoder_features(name, xy):
    """h reaches the flows: with the same base draw, other features move z differently."""
    torch.manual_seed(0)
    make, sites, _ = MODELS[name]
    m = make()
    _randomise(m)
    post = m.posterior if hasattr(m, "posterior") else m.posteriors[0]
    d, c = post.z_dim, post.context_dim
    assert c is not None
    loc, scale = torch.zeros(5, d), torch.ones(5, d)
    h1, h2 = torch.randn(5, c), torch.randn(5, c)
    z0 = torch.randn(5, d)
    za = z0
    for t in post(loc, scale, h1).transforms:
        za = t(za)
    zb = z0
    for t in post(loc, scale, h2).transforms:
        zb = t(zb)
    assert (za - zb).abs().max() > 1e-3
    with pytest.raises(ValueError, match="features h of width"):
        post(loc, scale, None)


def test_the_guide_passes_the_encoders_hidden_layer(xy):
    x, _ = xy
    m = pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=1)
    seen = {}
    real = m.posterior.forward

    def spy(loc, scale, context=None):
        seen["h"] = context
        return real(loc, scale, context)

    m.posterior.forward = spy
    m.guide(x[:6])
    _, h = m.encoder.net.with_hidden(x[:6])
    assert torch.equal(seen["h"], h)


def test_log_det_equals_the_autograd_jacobian():
    torch.manual_seed(0)
    post = GaussianPosterior(5, 2, context_dim=3)
    _randomise(post, std=0.5)
    h = torch.randn(3)
    for flow in post(torch.zeros(5), torch.ones(5), h).transforms:
        z = torch.randn(5)
        jac = torch.autograd.functional.jacobian(flow._call, z)
        order = flow.arn.permutation
        assert torch.allclose(jac[order][:, order].triu(1), torch.zeros(5, 5), atol=1e-6)
        y = flow(z)
        assert torch.allclose(flow.log_abs_det_jacobian(z, y), torch.linalg.slogdet(jac)[1],
                              atol=1e-5)
        # the inverse, without the cache, undoes the flow
        fresh = GatedIAF(flow.arn, h, flow.gate_bias, flow.output_scale)
        assert torch.allclose(fresh._inverse(y), z, atol=1e-5)


def test_flow_log_prob_integrates_like_a_density():
    """The flowed density is normalised: E_p[q(z)/p(z)] = 1 for a wide Normal p (this
    scores points the flows did not draw, so it exercises the inverse too)."""
    torch.manual_seed(0)
    post = GaussianPosterior(2, 2, context_dim=2)
    _randomise(post, std=0.5)
    q = post(torch.zeros(1, 2), torch.ones(1, 2), torch.randn(1, 2))
    p = torch.distributions.Normal(0.0, 3.0)
    z = p.sample((20000, 1, 2))
    ratio = (q.log_prob(z) - p.log_prob(z).sum(-1)).exp()
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("name", MODELS)
def test_meanfield_is_refused_with_flows(name, xy):
    make, _, _ = MODELS[name]
    with pytest.raises(ValueError, match="not mean-field.*elbo='trace'"):
        pvae.fit(make(), _batch(name, xy, 20), elbo="meanfield", epochs=1)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_with_flows(name, xy):
    make, _, _ = MODELS[name]
    m = make()
    elbo = "enum" if name == "ssvae" else "trace"
    batch = _batch(name, xy, 64)
    if name == "ssvae":  # half the labels hidden: the enumerated label meets h
        batch = (batch[0], torch.where(torch.arange(64) % 2 == 0, batch[1], -1))
    h = pvae.fit(m, batch if len(batch) > 1 else batch[0], elbo=elbo, epochs=1, batch_size=32,
                 seed=0)
    assert math.isfinite(h[-1]["train_elbo"])


def test_save_and_load_keep_the_flows(tmp_path, xy):
    x, _ = xy
    torch.manual_seed(0)
    m = pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2)
    _randomise(m)
    m.save(str(tmp_path / "m.pt"))
    back = pvae.load(str(tmp_path / "m.pt"))
    assert back.hparams["guide_flows"] == 2 and back.posterior.num_flows == 2
    for (k, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    z = torch.randn(6, 3)
    loc, scale, h = m.encoder.with_hidden(x[:6])
    assert torch.allclose(m.posterior(loc, scale, h).log_prob(z),
                          back.posterior(loc, scale, h).log_prob(z), atol=1e-5)


def test_an_old_flow_checkpoint_is_refused_clearly(tmp_path):
    """Checkpoints from before the flows took h (Pyro's conditional affine autoregressive
    flows on (loc, log scale)) cannot be loaded silently into the new flows."""
    m = pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2)
    old_flows = torch.nn.ModuleList(
        T.conditional_affine_autoregressive(3, 6, hidden_dims=[32, 32], stable=True)
        for _ in range(2))
    state = {k: v for k, v in m.state_dict().items() if not k.startswith("posterior.flows")}
    state.update({f"posterior.flows.{k}": v for k, v in old_flows.state_dict().items()})
    record = pvae.checkpoint.model_record(m)
    record["state_dict"] = state
    torch.save(record, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"conditioned on \(loc, log scale\).*retrain"):
        pvae.load(str(tmp_path / "old.pt"))


def test_a_custom_encoder_conditions_the_flows_on_loc_and_scale(xy):
    x, _ = xy

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 6)

        def forward(self, x):
            out = self.lin(x)
            return out[:, :3], torch.nn.functional.softplus(out[:, 3:]) + 1e-3

    m = pvae.VAE(64, 3, encoder=Enc(), guide_flows=1)
    assert m.posterior.context_dim is None
    g = poutine.trace(m.guide).get_trace(x[:5])
    assert g.nodes["z"]["value"].shape == (5, 3)


def test_bad_flow_options_are_refused():
    with pytest.raises(ValueError, match="guide_flows must be"):
        GaussianPosterior(3, -1)
    with pytest.raises(ValueError, match="must each be >= z_dim"):
        GaussianPosterior(8, 1, hidden_dims=(4,))
    with pytest.raises(ValueError, match="context_dim"):
        GaussianPosterior(3, 1, context_dim=0)


@pytest.mark.parametrize("detach", [True, False])
def test_detached_context_trains_no_encoder_through_the_flows(detach):
    torch.manual_seed(0)
    post = GaussianPosterior(3, 2, context_dim=4, detach_context=detach)
    _randomise(post)
    h = torch.randn(5, 4, requires_grad=True)
    q = post(torch.zeros(5, 3), torch.ones(5, 3), h)
    q.rsample().sum().backward()
    assert (h.grad is None) == detach
    assert post.flows[0].arn.layers[-1].weight.grad is not None  # the flows still learn


def test_output_scale_scales_the_networks_outputs():
    torch.manual_seed(0)
    post = GaussianPosterior(3, 1, context_dim=4, output_scale=0.1)
    _randomise(post)
    h, z = torch.randn(4), torch.randn(3)
    (flow,) = post(torch.zeros(3), torch.ones(3), h).transforms
    m, s = flow.arn(z, h)
    m2, logit = flow._params(z)
    assert torch.allclose(m2, 0.1 * m) and torch.allclose(logit, 0.1 * s + GATE_BIAS)


def test_the_whole_flow_scores_its_samples_by_the_change_of_variables():
    """log q(z) as the ELBO computes it (a sample scored through the cached flows) equals the
    base Normal's log-density at z0 minus log |det dz/dz0| of the whole chain of flows,
    the Jacobian by autograd; and the chain is autoregressive in each flow's own order,
    the order reversed from one flow to the next."""
    torch.manual_seed(1)
    d, c = 4, 3
    post = GaussianPosterior(d, 2, context_dim=c)
    _randomise(post, std=0.5)
    loc, scale, h = torch.randn(d), torch.rand(d) + 0.5, torch.randn(c)
    orders = [f.arn.permutation.tolist() for f in post.flows]
    assert orders == [list(range(d)), list(range(d))[::-1]]
    q = post(loc, scale, h)
    base = torch.distributions.Normal(loc, scale)

    def chain(z0):
        for t in q.transforms:
            z0 = GatedIAF(t.arn, h, t.gate_bias, t.output_scale)._call(z0)
        return z0

    for _ in range(3):
        z = q.rsample()
        z0 = _base_and_flowed(q, z)
        jac = torch.autograd.functional.jacobian(chain, z0.detach())
        assert torch.allclose(chain(z0), z, atol=1e-6)
        brute = base.log_prob(z0).sum() - torch.linalg.slogdet(jac)[1]
        assert torch.allclose(q.log_prob(z), brute, atol=1e-5)
        # a fresh distribution (no cache) inverts z and gives the same density
        assert torch.allclose(post(loc, scale, h).log_prob(z.detach()), brute, atol=1e-4)
    # each flow alone is triangular in its order, so the chain of two (opposite orders)
    # is not triangular in either: coordinate 0 depends on the last through flow 2 (a
    # structural zero would be exactly 0; the entries are small at output scale 0.1)
    assert jac[0, d - 1].abs() > 1e-7 and jac[d - 1, 0].abs() > 1e-7


def _identity_flows(model, gate_bias=40.0):
    """Flows that are exactly the identity (gate 1 in float32, m = 0)."""
    z_dim, ctx = model.posterior.z_dim, model.posterior.context_dim
    model.posterior = GaussianPosterior(z_dim, 2, ctx, gate_bias=gate_bias)
    return model


def test_the_base_kl_control_variate_gives_the_mean_field_gradient(xy):
    """With flows at the identity, the trace ELBO of the IAF guide has the loss value of
    the Monte Carlo KL but the gradient of the analytic KL (pvae's meanfield)."""
    from pvae.elbos import make_elbo

    x, _ = xy
    x = x[:16]
    torch.manual_seed(0)
    plain = pvae.VAE(64, 3, hidden_dims=(16,))
    flowed = _identity_flows(pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2))
    flowed.load_state_dict(plain.state_dict(), strict=False)

    def loss_and_grads(m, name, base_kl=True):
        m.posterior.base_kl = base_kl
        pyro.set_rng_seed(3)
        m.zero_grad()
        loss = make_elbo(name).differentiable_loss(m.model, m.guide, x)
        loss.backward()
        return loss.item(), {k: p.grad.clone() for k, p in m.named_parameters()
                             if not k.startswith("posterior.")}

    mf_loss, mf = loss_and_grads(plain, "meanfield")
    trace_loss, trace = loss_and_grads(plain, "trace")
    cv_loss, cv = loss_and_grads(flowed, "trace")
    mc_loss, mc = loss_and_grads(flowed, "trace", base_kl=False)
    assert cv_loss == pytest.approx(mc_loss, rel=1e-6)  # the control variate's value is 0
    assert cv_loss == pytest.approx(trace_loss, rel=1e-5)
    assert mf_loss != pytest.approx(trace_loss, rel=1e-3)
    for k in mf:
        assert torch.allclose(cv[k], mf[k], atol=1e-4), k
        assert torch.allclose(mc[k], trace[k], atol=1e-4), k
    assert not all(torch.allclose(mc[k], mf[k], atol=1e-4) for k in mf)


def test_the_base_kl_control_variate_has_mean_zero():
    """Its gradient averages to zero over draws (the estimator stays unbiased), for flows
    away from the identity; and there is none for a prior without a closed-form KL."""
    torch.manual_seed(0)
    post = GaussianPosterior(2, 2, context_dim=2)
    _randomise(post, std=0.5)
    loc = torch.tensor([0.3, -0.5], requires_grad=True)
    scale = torch.tensor([0.7, 1.4], requires_grad=True)
    n = 50000
    q = post(loc.expand(n, 2), scale.expand(n, 2), torch.randn(2).expand(n, 2))
    prior = pyro.distributions.Normal(torch.zeros(n, 2), 1.0).to_event(1)
    z = q.rsample()
    term = q.kl_control_variate(z, prior)
    assert term.shape == (n,) and torch.all(term == 0)
    # (the term reads only the base draw z0 and (loc, scale), not the flows' weights)
    for g in torch.autograd.grad(term.mean(), [loc, scale], retain_graph=True):
        assert g.abs().max() < 0.02
    # the per-draw gradients are not zero: the term does change the estimator
    one = torch.autograd.grad(term[0], [loc])[0]
    assert one.abs().max() > 0.05
    mixture = pyro.distributions.MixtureSameFamily(
        pyro.distributions.Categorical(torch.ones(2)),
        pyro.distributions.Normal(torch.zeros(2, 2), 1.0).to_event(1))
    assert q.kl_control_variate(z[:1], mixture) is None


def test_train_flows_freezes_and_thaws_the_flows_only(xy):
    from pvae.flows import train_flows

    x, _ = xy
    m = pvae.VAE(64, 3, hidden_dims=(16,), guide_flows=2)
    assert train_flows(m, False) == 2
    flows0 = [p.clone() for p in m.posterior.parameters()]
    enc0 = [p.clone() for p in m.encoder.parameters()]
    pvae.fit(m, x[:64], epochs=1, batch_size=32, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(flows0, m.posterior.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(enc0, m.encoder.parameters()))
    train_flows(m)
    pvae.fit(m, x[:64], epochs=1, batch_size=32, seed=0)
    assert not all(torch.equal(a, b) for a, b in zip(flows0, m.posterior.parameters()))
    with pytest.raises(ValueError, match="no guide flows.*guide_flows=N"):
        train_flows(pvae.VAE(64, 3, hidden_dims=(16,)))


@pytest.mark.parametrize("guide, applied", [("top_down", True), ("bottom_up", False)])
def test_the_control_variate_only_where_the_guide_keeps_the_models_order(guide, applied, xy):
    """The bottom-up guide draws z1 before z2, on which p(z1 | z2) depends: the base-KL
    control variate would bias the gradient there, so the Monte Carlo KL is kept."""
    from pvae.elbos import make_elbo

    x = xy[0][:16]
    torch.manual_seed(0)
    m = pvae.HierarchicalVAE(64, (4, 2), hidden_dims=(16,), guide=guide, guide_flows=2)
    _randomise(m)
    grads = []
    for base_kl in (True, False):
        for post in m.modules():
            if isinstance(post, GaussianPosterior):
                post.base_kl = base_kl
        pyro.set_rng_seed(0)
        m.zero_grad()
        make_elbo("trace").differentiable_loss(m.model, m.guide, x).backward()
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    same = all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))
    assert same is not applied
