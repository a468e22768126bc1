"""The JIT ELBOs: one compilation per signature, losses equal to the eager ones
whatever num_data, beta and the KL warm-up weight are, and every model trains."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pyro
import pyro.distributions as dist
import pyro.infer
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

import pvae
from pvae.elbos import (
    FixedJitTraceMeanField_ELBO, JitTrace_ELBO, JitTraceMeanField_ELBO, LatentScale, make_elbo,
)

ROOT = Path(__file__).resolve().parents[1]
EAGER = {"jit_trace": Trace_ELBO, "jit_meanfield": TraceMeanField_ELBO}
JIT_NAMES = list(EAGER)


@pytest.fixture
def traces(monkeypatch):
    """Counts calls of torch.jit.trace (one per compiled graph)."""
    count = [0]
    original = torch.jit.trace

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "trace", counting)
    return count


def _binary(n=200, d=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) < 0.3).float()


def _same_seed(elbo, vae, *batch, seed=1):
    pyro.set_rng_seed(seed)
    return elbo.loss(vae.model, vae.guide, *batch)


# -- 1. compiled once ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", JIT_NAMES)
def test_fit_compiles_once_in_20_steps(name, traces):
    vae = pvae.VAE(20, 3, hidden_dims=(16,))
    history = pvae.fit(vae, _binary(), elbo=name, epochs=2, batch_size=20, seed=0)  # 2 x 10 steps
    assert traces[0] == 1
    assert all(math.isfinite(r["train_elbo"]) for r in history)


@pytest.mark.parametrize("cls", [JitTrace_ELBO, JitTraceMeanField_ELBO,
                                 FixedJitTraceMeanField_ELBO])
def test_pyro_svi_compiles_once_in_20_steps(cls, traces):
    vae = pvae.VAE(20, 3, hidden_dims=(16,))
    x = _binary(20)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), cls(ignore_jit_warnings=True))
    losses = [svi.step(x) for _ in range(20)]
    assert traces[0] == 1
    assert losses[-1] < losses[0]  # it trains


def test_pyro_meanfield_class_recompiles_every_call(traces):
    """Why the fixed class exists: Pyro's own never finds its cached graph."""
    vae = pvae.VAE(20, 3, hidden_dims=(16,))
    elbo = pyro.infer.JitTraceMeanField_ELBO(ignore_jit_warnings=True)
    for _ in range(3):
        elbo.differentiable_loss(vae.model, vae.guide, _binary(20))
    assert traces[0] == 3


def test_new_bound_method_each_call_reuses_the_graph(traces):
    vae = pvae.VAE(20, 3, hidden_dims=(16,))
    elbo = make_elbo("jit_trace")
    for _ in range(5):
        elbo.differentiable_loss(vae.model, vae.guide, _binary(20))  # vae.model: new object
    assert traces[0] == 1 and elbo.num_compiled == 1


def test_a_second_model_gets_its_own_graph():
    """Pyro's class reuses the first model's graph for any later model."""
    a, b = pvae.VAE(20, 3, hidden_dims=(16,)), pvae.VAE(20, 3, hidden_dims=(8,))
    x = _binary(10)
    elbo = make_elbo("jit_trace")
    elbo.loss(a.model, a.guide, x)
    for vae in (a, b):
        elbo.loss(vae.model, vae.guide, x)
        assert _same_seed(elbo, vae, x) == pytest.approx(_same_seed(Trace_ELBO(), vae, x),
                                                         rel=1e-5)
    assert elbo.num_compiled == 2


# -- 2. num_data, beta and the warm-up weight stay right ----------------------------------------
@pytest.mark.parametrize("name", JIT_NAMES)
def test_a_setting_inside_the_likelihood_compiles_a_new_graph(name, traces):
    """A fixed Gaussian scale is a constant of the compiled graph: changing it on the
    likelihood (not on the model) must not reuse the old graph."""
    vae = pvae.VAE(20, 3, hidden_dims=(16,), likelihood="gaussian",
                   likelihood_kwargs={"scale": 1.0})
    x = torch.randn(5, 20)
    jit, eager = make_elbo(name), EAGER[name]()
    for scale in (1.0, 0.5):
        vae.likelihood.scale = scale
        jit.loss(vae.model, vae.guide, x)
        assert _same_seed(jit, vae, x) == pytest.approx(_same_seed(eager, vae, x), rel=1e-5)
    assert jit.num_compiled == 2


@pytest.mark.parametrize("name", JIT_NAMES)
def test_jit_loss_equals_eager_as_settings_change(name, traces):
    vae = pvae.VAE(20, 3, hidden_dims=(16,))
    x = _binary(5)
    jit, eager = make_elbo(name), EAGER[name]()
    jit.loss(vae.model, vae.guide, x)  # compiled with num_data None, beta 1, no warm-up
    seen = []
    for num_data, beta, weight in [(None, 1.0, 1.0), (20, 1.0, 1.0), (100, 1.0, 1.0),
                                   (None, 3.0, 1.0), (20, 0.5, 1.0), (20, 1.0, 0.1),
                                   (20, 1.0, 0.3), (None, 2.0, 0.25), (None, 1.0, 1.0)]:
        vae.num_data, vae.beta = num_data, beta
        with LatentScale(weight):
            jit.loss(vae.model, vae.guide, x)  # compiles this signature if new
            got, want = _same_seed(jit, vae, x), _same_seed(eager, vae, x)
        assert got == pytest.approx(want, rel=1e-5), (num_data, beta, weight)
        seen.append(got)
    assert len(set(seen)) == len(seen) - 1  # every setting changed the loss (the last repeats)
    assert seen[-1] == pytest.approx(seen[0], rel=1e-6)
    # num_data and beta each compile once per value; the warm-up weight never does
    assert traces[0] == jit.num_compiled == 6


@pytest.mark.parametrize("name", JIT_NAMES)
def test_num_data_scales_the_jit_loss(name):
    """The issue's example: num_data = 20 for a batch of 5 is 4 times the unscaled loss."""
    vae = pvae.VAE(20, 3, hidden_dims=(16,))
    x = _binary(5)
    jit = make_elbo(name)
    jit.loss(vae.model, vae.guide, x)
    unscaled = _same_seed(jit, vae, x)
    vae.num_data = 20
    jit.loss(vae.model, vae.guide, x)
    assert _same_seed(jit, vae, x) == pytest.approx(4 * unscaled, rel=1e-5)


@pytest.mark.parametrize("name", JIT_NAMES)
def test_semisupervised_weights_stay_right(name):
    """Every setting the program reads counts, not only num_data and beta."""
    model = pvae.SemiSupervisedVAE(20, 3, z_dim=3, hidden_dims=(16,))
    x = _binary(6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    jit, eager = make_elbo(name), EAGER[name]()
    seen = []
    with pyro.validation_enabled(False):  # the guide marks y for enumeration
        for aux, balance in [(50.0, 0.0), (5.0, 0.0), (5.0, 20.0)]:
            model.aux_weight, model.balance_weight = aux, balance
            for batch in ((x, y), (x,)):
                jit.loss(model.model, model.guide, *batch)
                got = _same_seed(jit, model, *batch)
                assert got == pytest.approx(_same_seed(eager, model, *batch), rel=1e-5)
                seen.append(got)
    assert seen[0] != seen[2]  # labelled: aux_weight
    assert seen[3] != seen[5]  # unlabelled: balance_weight
    assert jit.num_compiled == 6


@pytest.mark.parametrize("name", JIT_NAMES)
def test_vectorised_particles_equal_eager(name):
    vae = pvae.VAE(20, 3, hidden_dims=(16,))
    x = _binary(8)
    cls = {"jit_trace": JitTrace_ELBO, "jit_meanfield": JitTraceMeanField_ELBO}[name]
    jit = cls(3, vectorize_particles=True, max_plate_nesting=1, ignore_jit_warnings=True)
    eager = EAGER[name](3, vectorize_particles=True, max_plate_nesting=1)
    jit.loss(vae.model, vae.guide, x)
    assert _same_seed(jit, vae, x) == pytest.approx(_same_seed(eager, vae, x), rel=1e-5)


def _latent_weight():
    """The scale the active handlers give a latent site: the KL warm-up weight."""
    with poutine.trace() as tr:
        pyro.sample("probe", dist.Delta(torch.zeros(())))  # draws no random number
    return float(tr.trace.nodes["probe"]["scale"])


class _Spy:
    """Wraps a pvae JIT ELBO: at each already-compiled call, the eager loss of the same
    draw (same RNG state, same handlers around it) and the warm-up weight."""

    def __init__(self, name):
        self.elbo, self.eager = make_elbo(name), EAGER[name]()
        self.pairs, self.weights = [], []

    def __getattr__(self, attr):
        return getattr(self.elbo, attr)

    def differentiable_loss(self, model, guide, *args):
        before = self.elbo.num_compiled
        rng = torch.get_rng_state()
        out = self.elbo.differentiable_loss(model, guide, *args)
        if self.elbo.num_compiled == before:
            after = torch.get_rng_state()
            torch.set_rng_state(rng)
            with torch.no_grad():
                want = self.eager.differentiable_loss(model, guide, *args).item()
            torch.set_rng_state(after)
            self.pairs.append((out.item(), want))
        self.weights.append(_latent_weight())
        return out


@pytest.mark.parametrize("name", JIT_NAMES)
@pytest.mark.parametrize("kind", ["vae_beta", "ssvae"])
def test_fit_with_warmup_matches_eager_at_every_step(name, kind, monkeypatch):
    y = None
    if kind == "vae_beta":
        model, data = pvae.VAE(20, 3, hidden_dims=(16,), beta=2.0), _binary(120)
    else:  # labelled and unlabelled parts, each with its own num_data
        x = _binary(120)
        y = torch.randint(0, 3, (120,), generator=torch.Generator().manual_seed(0))
        y[30:] = -1
        model, data = pvae.SemiSupervisedVAE(20, 3, z_dim=3, hidden_dims=(16,)), (x, y)
    spy = _Spy(name)
    monkeypatch.setattr(pvae.elbos, "make_elbo", lambda *a, **k: spy)
    history = pvae.fit(model, data, elbo=name, epochs=3, batch_size=20, kl_warmup=3, seed=0)
    assert len(spy.pairs) >= 10
    for got, want in spy.pairs:
        assert got == pytest.approx(want, rel=1e-4)
    weights = [r["kl_weight"] for r in history]
    assert weights == sorted(weights) and weights[0] < weights[-1] == 1.0
    assert len(set(spy.weights)) > 10  # a new weight nearly every step
    assert spy.elbo.num_compiled <= 3  # VAE: 1; SSVAE: labelled and unlabelled parts


# -- 3. every model, several epochs --------------------------------------------------------------
MODELS = {
    "vae": lambda: pvae.VAE(20, 3, hidden_dims=(16,)),
    "vae_flows": lambda: pvae.VAE(20, 3, hidden_dims=(16,), guide_flows=2),
    "cvae": lambda: pvae.CVAE(20, 3, num_classes=3, hidden_dims=(16,)),
    "ssvae": lambda: pvae.SemiSupervisedVAE(20, 3, z_dim=3, hidden_dims=(16,),
                                            balance_weight=5.0),
    "ssvae_separate": lambda: pvae.SemiSupervisedVAE(20, 3, z_dim=3, hidden_dims=(16,),
                                                     batching="separate"),
    "hvae_bottom_up": lambda: pvae.HierarchicalVAE(20, z_dims=(4, 2), hidden_dims=(16,),
                                                   guide="bottom_up"),
    "hvae_top_down": lambda: pvae.HierarchicalVAE(20, z_dims=(4, 2), hidden_dims=(16,),
                                                  guide="top_down"),
}


@pytest.mark.parametrize("name", JIT_NAMES)
@pytest.mark.parametrize("kind", list(MODELS))
def test_every_model_trains_with_jit(kind, name, traces):
    model = MODELS[kind]()
    x = _binary(120)
    y = torch.randint(0, 3, (120,), generator=torch.Generator().manual_seed(0))
    if kind.startswith("ssvae"):
        y[30:] = -1
    data = (x, y) if "y" in model.batch_parts else x
    if name == "jit_meanfield" and not model.mean_field:
        with pytest.raises(ValueError, match="not mean-field"):
            pvae.fit(model, data, elbo=name, epochs=1)
        assert traces[0] == 0
        return
    history = pvae.fit(model, data, elbo=name, epochs=4, batch_size=20, kl_warmup=2, seed=0)
    assert len(history) == 4 and all(math.isfinite(r["train_elbo"]) for r in history)
    assert traces[0] <= 2  # one per kind of batch (labelled, unlabelled)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semisupervised_jit_trace_on_digits(binary_digits, seed):
    """Pyro's JitTrace_ELBO crashed here in epoch 1 for seeds 0 and 2 (TorchScript shape
    errors: one compiled function shared by the labelled and unlabelled graphs)."""
    x, y = binary_digits.train.x, binary_digits.train.y.clone()
    y[100:] = -1
    torch.manual_seed(seed)
    model = pvae.SemiSupervisedVAE(64, 10, z_dim=8, hidden_dims=(64,))
    history = pvae.fit(model, (x, y), elbo="jit_trace", epochs=1, batch_size=64, seed=seed)
    assert math.isfinite(history[-1]["train_elbo"])


# -- Pyro's own JIT ELBOs are refused at every entry point that takes an ELBO -----------------
@pytest.mark.parametrize("cls", [pyro.infer.JitTrace_ELBO, pyro.infer.JitTraceMeanField_ELBO,
                                 pyro.infer.JitTraceGraph_ELBO])
def test_pyro_jit_elbos_refused(cls, tmp_path):
    vae = pvae.VAE(20, 3, hidden_dims=(16,))
    x = _binary(40)
    before = [p.detach().clone() for p in vae.parameters()]
    with pytest.raises(ValueError, match="jit_trace"):
        pvae.fit(vae, x, elbo=cls(), epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="bakes the data plate's size"):
        pvae.gradients.gradient_stats(vae, x, [cls()], num_estimates=2)
    with pytest.raises(ValueError, match="jit_meanfield"):
        make_elbo(cls())
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))
    assert not any(tmp_path.iterdir())


# -- 4. the benchmark runs -----------------------------------------------------------------------
def test_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("jit_benchmark", ROOT / "benchmarks" / "jit.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "JIT.md"
    result = bench.main(["--smoke", "--out", str(out)])
    text = out.read_text()
    for name in ("trace", "meanfield", "jit_trace", "jit_meanfield"):
        assert f"| {name} |" in text
        assert result["median"][name] > 0
    assert f"jit_trace / trace = {result['ratio']['jit_trace']:.2f}" in text
    assert "torch" in text and "pyro" in text
