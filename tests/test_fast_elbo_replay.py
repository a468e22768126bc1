"""The replayed training step (pvae.replay through pvae.fast_elbo) equals Pyro's ELBOs.

Each case runs one ELBO instance over several steps, as ``fit`` does: the first step
runs the Pyro program, the second records it, later ones replay it. Every step's
loss and gradients are compared with Pyro's ``Trace_ELBO`` / ``TraceMeanField_ELBO``
on the same parameters and seed, and the parameters move by an Adam step in between,
so the replay is checked on updated parameters too.
"""

from __future__ import annotations

import contextlib

import numpy as np

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pvae
from pvae.elbos import LatentScale
from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO
from pvae.free_bits import FreeBits
from helpers import data_in_support

PAIRS = {"trace": (FastTrace_ELBO, Trace_ELBO),
         "meanfield": (FastTraceMeanField_ELBO, TraceMeanField_ELBO)}
N, D = 24, 6


def _step(elbo, model, args, seed, weight):
    """Loss and gradients of one step (the training loop's settings)."""
    pyro.set_rng_seed(seed)
    model.zero_grad(set_to_none=True)
    scale = LatentScale(weight) if weight != 1.0 else contextlib.nullcontext()
    with pyro.validation_enabled(False), model.unregistered(), scale:
        loss = elbo.differentiable_loss(model.model, model.guide, *args)
    loss.backward()
    return loss.item(), [None if p.grad is None else p.grad.clone()
                         for p in model.parameters()]


def _agree(got, want) -> None:
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    for a, b in zip(got[1], want[1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * b.abs().max().item() + 1e-7)


def run_steps(model, args, fast, reference, steps=4, weight=1.0, num_data=240):
    """Compare ``fast`` (one instance, all steps) with ``reference()`` (a fresh instance
    each step, so never replayed) step by step; returns ``fast``'s tape."""
    model.num_data = num_data
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for seed in range(steps):
        got = _step(fast, model, args, seed, weight)
        want = _step(reference(), model, args, seed, weight)
        _agree(got, want)
        for p, g in zip(model.parameters(), got[1]):
            p.grad = g
        opt.step()
    return fast.__dict__["_tape"]


def _models():
    return {
        "vae": lambda: pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian"),
        "vae-beta": lambda: pvae.VAE(D, 2, hidden_dims=(8,), beta=3.0),
        "vae-iaf": lambda: pvae.VAE(D, 2, hidden_dims=(8,), guide_flows=1),
        "vae-vamp": lambda: pvae.VAE(D, 2, hidden_dims=(8,), prior="vamp", prior_components=3),
        "vae-mog": lambda: pvae.VAE(D, 2, hidden_dims=(8,), prior="mog", prior_components=3),
        "hvae": lambda: pvae.HierarchicalVAE(D, (3, 2), hidden_dims=(8,), guide="top_down"),
        "cvae": lambda: pvae.CVAE(D, 2, num_classes=3, hidden_dims=(8,)),
        "ssvae-labelled": lambda: pvae.SemiSupervisedVAE(D, 3, z_dim=2, hidden_dims=(8,)),
    }


NOT_MEAN_FIELD = {"vae-iaf"}
LABELS = {"cvae", "ssvae-labelled"}
MODEL_CASES = [(name, elbo) for name in _models() for elbo in PAIRS
               if not (elbo == "meanfield" and name in NOT_MEAN_FIELD)]


@pytest.mark.parametrize("name,elbo", MODEL_CASES)
def test_every_model_replays_with_pyros_values_and_gradients(name, elbo):
    torch.manual_seed(0)
    model = _models()[name]()
    if name == "vae-iaf":  # the IAF's zero-valued control variate, not in Pyro's ELBO, off
        model.posterior.base_kl = False
    x = (torch.rand(N, D) > 0.5).float()
    args = (x, torch.arange(N) % 3) if name in LABELS else (x,)
    fast, reference = PAIRS[elbo]
    tape = run_steps(model, args, fast(), reference)
    assert tape.counts["replayed"] >= 2, tape.refused


def test_the_iaf_control_variate_replays_as_the_lean_path_computes_it():
    """With the base Gaussian's KL as a control variate (the IAF default, absent from
    Pyro's ELBO), replayed steps equal the lean path run afresh each step."""
    torch.manual_seed(0)
    model = pvae.VAE(D, 2, hidden_dims=(8,), guide_flows=2)
    assert model.posterior.base_kl
    x = (torch.rand(N, D) > 0.5).float()
    tape = run_steps(model, (x,), FastTrace_ELBO(), FastTrace_ELBO)
    assert tape.counts["replayed"] >= 2, tape.refused


@pytest.mark.parametrize("likelihood", pvae.likelihoods.names())
@pytest.mark.parametrize("elbo", list(PAIRS))
def test_every_likelihood_replays_with_pyros_values_and_gradients(likelihood, elbo):
    torch.manual_seed(0)
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood=likelihood)
    x = data_in_support(model.likelihood, N, D)
    tape = run_steps(model, (x,), PAIRS[elbo][0](), PAIRS[elbo][1])
    assert tape.counts["replayed"] >= 2, tape.refused


@pytest.mark.parametrize("elbo", list(PAIRS))
def test_a_warm_up_weight_replays_even_as_it_changes_every_step(elbo):
    fast, reference = PAIRS[elbo]
    model = pvae.VAE(D, 2, hidden_dims=(8,), beta=2.0)
    x = (torch.rand(N, D) > 0.5).float()
    tape = run_steps(model, (x,), fast(), reference, weight=0.3)
    assert tape.counts["replayed"] >= 2
    elbo_instance = fast()
    for step, weight in enumerate((0.1, 0.2, 0.3, 0.4, 1.0, 0.0, 0.0)):  # as fit's warm-up
        _agree(_step(elbo_instance, model, (x,), step, weight),
               _step(reference(), model, (x,), step, weight))
    # the weight is an input: 0.3 and 0.4 replay what 0.2 recorded; 1 and 0 are new keys
    assert elbo_instance._tape.counts == {"run": 3, "recorded": 2, "replayed": 2}


@pytest.mark.parametrize("analytic", [False, True])
def test_free_bits_replays_with_its_own_values_and_gradients(analytic):
    model = pvae.VAE(D, 3, hidden_dims=(8,))
    x = (torch.rand(N, D) > 0.5).float()
    tape = run_steps(model, (x,), FreeBits(0.5, analytic=analytic),
                     lambda: FreeBits(0.5, analytic=analytic), num_data=N)
    assert tape.counts["replayed"] >= 2, tape.refused


@pytest.mark.parametrize("analytic", [False, True])
def test_a_free_bits_floor_changed_between_steps_is_not_replayed_stale(analytic):
    """The floor is the ELBO's setting, not the model's: it must be in the key too."""
    model = pvae.VAE(D, 3, hidden_dims=(8,))
    model.num_data = N
    x = (torch.rand(N, D) > 0.5).float()
    fast = FreeBits(0.5, analytic=analytic)
    for seed, floor in enumerate((0.5, 0.5, 0.5, 2.0, 4.0)):  # a schedule on the floor
        fast.free_bits = floor
        got = _step(fast, model, (x,), seed, 1.0)
        want = _step(FreeBits(floor, analytic=analytic), model, (x,), seed, 1.0)
        _agree(got, want)


class Masked(torch.nn.Module):
    """A Pyro program of one's own with a mask from the data and a learned scale; it
    declares its settings (``program_constants``), as pvae's models do."""

    def __init__(self) -> None:
        super().__init__()
        self.loc = torch.nn.Linear(D, 2)
        self.raw = torch.nn.Parameter(torch.zeros(2))
        self.num_data = None

    def program_constants(self) -> tuple:
        return (self.num_data,)

    def model(self, x):
        with pyro.plate("data", self.num_data, subsample=torch.arange(x.shape[0])):
            z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            with poutine.mask(mask=x[:, 0] > 0):  # a mask computed from the data
                pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1),
                            obs=x[:, :1])

    def guide(self, x):
        with pyro.plate("data", self.num_data, subsample=torch.arange(x.shape[0])):
            pyro.sample("z", dist.Normal(self.loc(x), torch.nn.functional.softplus(self.raw))
                        .to_event(1))

    @contextlib.contextmanager
    def unregistered(self):
        yield


@pytest.mark.parametrize("elbo", list(PAIRS))
def test_masks_replay_with_pyros_values_and_gradients(elbo):
    model = Masked()
    tape = run_steps(model, (torch.randn(N, D),), PAIRS[elbo][0](), PAIRS[elbo][1])
    assert tape.counts["replayed"] >= 2, tape.refused


def _changes():
    """Structure changes mid-training, each applied to (model, args) in place."""
    def batch(model, args):
        args[0] = args[0][:N // 2]

    def beta(model, args):
        model.beta = 2.5

    def num_data(model, args):
        model.num_data = 480

    def evaluation(model, args):
        model.eval()

    def decoder(model, args):
        model.decoder = pvae.VAE(D, 2, hidden_dims=(5,)).decoder

    return [batch, beta, num_data, evaluation, decoder]


@pytest.mark.parametrize("elbo", list(PAIRS))
def test_a_structure_change_mid_training_runs_the_program_then_replays_again(elbo):
    fast_cls, reference = PAIRS[elbo]
    model = pvae.VAE(D, 2, hidden_dims=(8,))
    args = [(torch.rand(N, D) > 0.5).float()]
    fast = fast_cls()
    run_steps(model, tuple(args), fast, reference, steps=3)
    for change in _changes():
        change(model, args)
        before = dict(fast._tape.counts)
        for seed in range(3):
            _agree(_step(fast, model, tuple(args), seed, 1.0),
                   _step(reference(), model, tuple(args), seed, 1.0))
        counts = fast._tape.counts
        assert counts["run"] == before["run"] + 1, change.__name__  # the changed step
        assert counts["recorded"] == before["recorded"] + 1, change.__name__
        assert counts["replayed"] == before["replayed"] + 1, change.__name__


def test_a_sequence_model_is_replayed_with_pyros_values():
    # with validation off its program reads no value (the packed encoder included), so it
    # is replayed; tests/test_seq_fast_replay.py varies the lengths between steps
    model = pvae.SequenceVAE(x_dim=2, z_dim=2, hidden_dim=4)
    x, lengths = torch.randn(6, 5, 2), torch.tensor([5, 3, 4, 1, 2, 5])
    tape = run_steps(model, (x, lengths), FastTraceMeanField_ELBO(), TraceMeanField_ELBO,
                     num_data=60)
    assert tape.counts["replayed"] == 2 and tape.refused is None


def test_parameters_registered_with_pyro_are_never_replayed_so_svi_trains():
    model = pvae.VAE(D, 2, hidden_dims=(8,))
    x = (torch.rand(N, D) > 0.5).float()
    elbo = FastTrace_ELBO()
    svi = pyro.infer.SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.01}), elbo)
    with pyro.validation_enabled(False):
        for _ in range(4):
            before = [p.detach().clone() for p in model.parameters()]
            svi.step(x)
            assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert elbo._tape.counts["replayed"] == 0  # SVI's parameter trace: a handler, no key
    elbo = FastTrace_ELBO()
    with pyro.validation_enabled(False):
        for _ in range(3):  # registered (no unregistered()), outside SVI: refused
            elbo.differentiable_loss(model.model, model.guide, x)
    assert elbo._tape.counts["replayed"] == 0
    assert "parameter store" in elbo._tape.refused


class ReadsValues(Masked):
    def model(self, x):
        if x.sum() > 0:  # Python control flow on the data's values
            x = x * 2
        super().model(x)


def test_a_program_that_reads_tensor_values_is_not_replayed():
    tape = run_steps(ReadsValues(), (torch.randn(N, D),), FastTrace_ELBO(), Trace_ELBO)
    assert tape.counts["replayed"] == 0 and "__bool__" in tape.refused


def _deep_changes():
    """Changes below the model's own attributes: each must give a new key, or the replay
    would keep the recorded value (a fixed scale is a number in the recording)."""
    def fixed_scale(model, args):
        model.likelihood.scale = 0.5

    def deeper_network(model, args):
        parent = next(m for m in model.decoder.modules()
                      if any(isinstance(c, torch.nn.Linear) for c in m.children()))
        name = next(n for n, c in parent.named_children() if isinstance(c, torch.nn.Linear))
        old = getattr(parent, name)
        setattr(parent, name, torch.nn.Linear(old.in_features, old.out_features))

    def one_submodule_to_eval(model, args):
        model.decoder.eval()

    return [fixed_scale, deeper_network, one_submodule_to_eval]


@pytest.mark.parametrize("elbo", list(PAIRS))
def test_a_change_inside_a_network_or_likelihood_runs_the_program_again(elbo):
    fast_cls, reference = PAIRS[elbo]
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood_kwargs={"scale": 1.0},
                     likelihood="gaussian")
    args = (torch.randn(N, D),)
    fast = fast_cls()
    run_steps(model, args, fast, reference, steps=3)
    for change in _deep_changes():
        change(model, None)
        before = dict(fast._tape.counts)
        for seed in range(3):
            _agree(_step(fast, model, args, seed, 1.0), _step(reference(), model, args, seed, 1.0))
        assert fast._tape.counts["run"] == before["run"] + 1, change.__name__


class _SettingsDecoder(torch.nn.Module):
    """A user's decoder whose output depends on attributes that are not parameters,
    buffers nor plain Python numbers: each, changed between steps, must show in the key."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(2, D)
        self.temperature = torch.tensor(1.0)  # a plain tensor attribute, replaced
        self.weights = [1.0]  # a list of numbers
        self.gain = np.float32(1.0)  # a numpy number (not a Python float)

    def forward(self, z):
        return self.lin(z) / self.temperature * self.weights[0] * float(self.gain)


@pytest.mark.parametrize("setting", ["temperature", "weights", "gain"])
def test_a_replaced_tensor_list_or_numpy_attribute_is_not_replayed_stale(setting):
    values = {"temperature": lambda s: torch.tensor(1.0 + s), "weights": lambda s: [1.0 + s],
              "gain": lambda s: np.float32(1.0 + s)}[setting]
    model = pvae.VAE(D, 2, hidden_dims=(8,), decoder=_SettingsDecoder())
    x = (torch.rand(N, D) > 0.5).float()
    fast = FastTrace_ELBO()
    for seed in range(5):
        if seed >= 2:  # after a recording: a new value every step (a user's callback)
            setattr(model.decoder, setting, values(seed))
        _agree(_step(fast, model, (x,), seed, 1.0), _step(Trace_ELBO(), model, (x,), seed, 1.0))


def test_an_attribute_a_key_cannot_hold_turns_the_replay_off():
    class Settings:  # unhashable: what the program reads from it cannot be keyed
        __hash__ = None
        temperature = 1.0

    decoder = _SettingsDecoder()
    decoder.settings = Settings()
    model = pvae.VAE(D, 2, hidden_dims=(8,), decoder=decoder)
    tape = run_steps(model, ((torch.rand(N, D) > 0.5).float(),), FastTrace_ELBO(), Trace_ELBO)
    assert tape.counts["replayed"] == 0



def test_a_step_recorded_under_autocast_is_not_replayed_after_it_ends():
    """Mixed precision (``torch.autocast``) chooses the operations' dtypes without showing
    in the inputs: steps after it ends must equal Pyro's."""
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian")
    x = torch.randn(N, D)
    fast = FastTrace_ELBO()
    for seed in range(6):
        def numerics():
            return torch.autocast("cpu", dtype=torch.bfloat16) if seed < 3 else \
                contextlib.nullcontext()
        with numerics():
            got = _step(fast, model, (x,), seed, 1.0)
        with numerics():
            want = _step(Trace_ELBO(), model, (x,), seed, 1.0)
        _agree(got, want)


def test_a_default_dtype_change_is_not_replayed_with_the_old_constants():
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian")
    x = torch.randn(N, D)
    fast = FastTrace_ELBO()
    dtypes = []
    try:
        for seed in range(5):
            if seed == 3:
                torch.set_default_dtype(torch.float64)
            pyro.set_rng_seed(seed)
            with pyro.validation_enabled(False), model.unregistered():
                dtypes.append(fast.differentiable_loss(model.model, model.guide, x).dtype)
    finally:
        torch.set_default_dtype(torch.float32)
    assert dtypes == [torch.float32] * 3 + [torch.float64] * 2  # as the program computes


def test_networks_frozen_when_recorded_then_thawed_get_pyros_gradients():
    """The likelihood's ``log_prob`` takes a no-gradient path when its logits need none."""
    model = pvae.VAE(D, 2, hidden_dims=(8,), prior="mog", prior_components=3)
    x = (torch.rand(N, D) > 0.5).float()
    fast = FastTrace_ELBO()
    for seed in range(6):
        for net in (model.encoder, model.decoder):  # only the prior trains at first
            net.requires_grad_(seed >= 3)
        _agree(_step(fast, model, (x,), seed, 1.0), _step(Trace_ELBO(), model, (x,), seed, 1.0))
