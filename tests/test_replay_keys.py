"""The replay's compiled recordings and its cached module-tree keys.

``pvae.replay_code`` turns a recording into one Python function; ``pvae.key_cache``
reuses a model's module-tree key while a snapshot of the tree is unchanged. Both must
change nothing: a compiled replay computes what the program computes, and a cached
key equals what walking the tree gives, after any change a user can make.
"""

from __future__ import annotations

import pytest
import torch

import pvae
from pvae.fast_elbo import FastTrace_ELBO, FastTraceMeanField_ELBO
from pvae import key_cache
from pvae.key_cache import TreeKeys
from pvae.program_key import module_tree
from pvae.replay import Tape
from test_fast_elbo_replay import D, N, _agree, _step, run_steps


def _program(x, p):
    a, b = (x * p).chunk(2, dim=0)  # a tuple of results
    with torch.no_grad():  # grad-mode switches: calls without a result
        c = torch.stack((a, b)).sum(dim=0, keepdim=False)
    d = torch.cat([a, b * 2, c], dim=0)  # a list of slots as one argument, keywords
    e = torch.einsum("i,i->", d, torch.ones(d.shape[0]))
    return e + torch.where(d > 0, d, torch.zeros_like(d)).sum()


def test_a_compiled_replay_equals_the_program_with_lists_tuples_and_keywords():
    p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0, 0.25]))
    tape = Tape()
    for step in range(4):
        x = torch.randn(4) + step
        got = tape("k", lambda x: _program(x, p), [x])
        (g,) = torch.autograd.grad(got, p)
        want = _program(x, p)
        (w,) = torch.autograd.grad(want, p)
        assert torch.equal(got, want) and torch.equal(g, w)
    assert tape.counts == {"run": 1, "recorded": 1, "replayed": 2}


def test_a_broadcast_of_equal_shapes_is_dropped_and_a_constant_changed_through_it_stays_fresh():
    def program(x):
        loc, scale = torch.broadcast_tensors(x, x * 2)  # returns x itself: an alias
        c = torch.zeros(3)
        c2, _ = torch.broadcast_tensors(c, torch.ones(3))
        c2.add_(x * 3)  # changes c through what broadcast_tensors returned
        return (loc * scale).sum() + c.sum()

    tape = Tape()
    for step in range(4):
        x = torch.randn(3) + step
        assert torch.equal(tape("k", program, [x]), program(x))
    assert tape.counts["replayed"] == 2
    ops = [getattr(op.func, "__name__", "") for op in next(iter(tape.recordings.values())).ops]
    assert ops.count("broadcast_tensors") == 1  # the one whose result is changed in place


def _tree_changes():
    """Changes a user may make between steps; each must show in the module-tree key."""
    def linear(m):
        return next(c for c in m.decoder.modules() if isinstance(c, torch.nn.Linear))

    def set_weight(m):
        linear(m).weight = torch.nn.Parameter(linear(m).weight.detach().clone())

    def swap_linear(m):
        parent = next(c for c in m.decoder.modules()
                      if any(isinstance(g, torch.nn.Linear) for g in c.children()))
        name = next(n for n, g in parent.named_children() if isinstance(g, torch.nn.Linear))
        old = getattr(parent, name)
        setattr(parent, name, torch.nn.Linear(old.in_features, old.out_features))

    def append_to_list(m):
        m.decoder.weights.append(2.0)  # in place: the list is the same object

    def store_often(m):
        for i in range(3000):
            m.decoder.settings_b = i

    def rename(m):
        value = m.decoder.settings_a
        del m.decoder.settings_a
        m.decoder.settings_b = value  # the same object under another name

    return {
        "beta": lambda m: setattr(m, "beta", 2.0),
        "num_data": lambda m: setattr(m, "num_data", 480),
        "eval": lambda m: m.eval(),
        "train, the decoder kept in eval": lambda m: m.train().decoder.eval(),
        "a parameter replaced": set_weight,
        "a network replaced deep down": swap_linear,
        "double": lambda m: m.double(),
        "float again": lambda m: m.float(),
        "frozen": lambda m: m.decoder.requires_grad_(False),
        "a tensor attribute replaced": lambda m: setattr(m.decoder, "temperature",
                                                         torch.tensor(2.0)),
        "a list changed in place": append_to_list,
        "an attribute renamed": rename,
        "a buffer added": lambda m: linear(m).register_buffer("b", torch.ones(1)),
        "a submodule added": lambda m: setattr(m.decoder, "extra", torch.nn.Identity()),
        "the likelihood's scale": lambda m: setattr(m.likelihood, "scale", 0.5),
        "a private number": lambda m: setattr(m.decoder, "_gain", 2.0),
        "a class swapped": lambda m: setattr(m.decoder.net[1], "__class__", torch.nn.Tanh),
        "a parameter of a network kept in a list": lambda m: setattr(
            m.decoder.spare[0], "weight", torch.nn.Parameter(torch.ones(D, D))),
        "a setting written into __dict__": lambda m: m.decoder.__dict__.__setitem__(
            "settings_b", 7),
        "a setting stored many times (the interpreter's specialised store)": store_often,
        "a __dict__ replaced as a whole": lambda m: setattr(
            m.decoder, "__dict__", {**m.decoder.__dict__, "settings_b": 9}),
    }


class _Decoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(),
                                       torch.nn.Linear(8, D))
        self.temperature = torch.tensor(1.0)
        self.weights = [1.0]
        self.settings_a = 3
        self._gain = 1.0
        self.spare = [torch.nn.Linear(D, D)]  # a network in a plain list, not a submodule

    def forward(self, z):
        return self.spare[0](self.net(z)) / self.temperature * self.weights[0] * self._gain


@pytest.mark.parametrize("tags", [True, False], ids=["version tags", "identities"])
def test_a_cached_tree_key_equals_the_walk_after_every_change(tags, monkeypatch):
    if tags and not key_cache.TAGS:
        pytest.skip("dict version tags do not behave as PEP 509 says on this interpreter")
    monkeypatch.setattr(key_cache, "TAGS", tags)
    model = pvae.VAE(D, 2, hidden_dims=(8,), decoder=_Decoder(), likelihood="gaussian",
                     likelihood_kwargs={"scale": 1.0})
    trees = TreeKeys()
    assert trees(model.model) == module_tree(model.model)
    assert (trees._trees[id(model)][1].tags is not None) == tags  # the check compared
    seen = {}  # name of the change -> (token before, token after)
    for name, change in _tree_changes().items():
        before = module_tree(model.model)
        for _ in range(2):
            assert trees(model.model) == before, name  # unchanged: reused
        walked = trees.counts["walked"]
        change(model)
        after = module_tree(model.model)
        assert after != before, name  # the change matters to the key
        assert trees(model.model) == after, name
        assert trees.counts["walked"] == walked + 1, name
        assert trees.token(model.model) == trees._tokens[after], name
        seen[name] = (trees._tokens[before], trees._tokens[after])
    assert trees.counts["reused"] >= 2 * len(_tree_changes())
    assert seen["float again"] == seen["double"][::-1]  # back to an earlier tree: its token


@pytest.mark.parametrize("elbo", [FastTrace_ELBO, FastTraceMeanField_ELBO])
def test_model_double_replays_with_pyros_values_in_float64(elbo):
    from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

    reference = Trace_ELBO if elbo is FastTrace_ELBO else TraceMeanField_ELBO
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian")
    x = torch.randn(N, D)
    fast = elbo()
    run_steps(model, (x,), fast, reference, steps=3)
    model.double()  # parameters keep their identity; their dtype changes
    x = x.double()
    before = dict(fast._tape.counts)
    for seed in range(4):
        got = _step(fast, model, (x,), seed, 1.0)
        assert all(g.dtype == torch.float64 for g in got[1] if g is not None)
        _agree(got, _step(reference(), model, (x,), seed, 1.0))
    assert fast._tape.counts["replayed"] == before["replayed"] + 2


@pytest.mark.parametrize("where", ["module", "global"])
def test_a_forward_hook_runs_every_step_and_replay_resumes_when_it_is_removed(where):
    """A replay runs recorded tensor operations, not the modules' calls: a model with a
    forward hook (on one of its modules, or a global module hook) runs its program every
    step, so the hook sees every step; removed, the steps replay again."""
    torch.manual_seed(0)
    model = pvae.VAE(D, 2, hidden_dims=(8,))
    x = (torch.rand(N, D) > 0.5).float()
    fast = FastTraceMeanField_ELBO()
    run_steps(model, (x,), fast, FastTraceMeanField_ELBO, steps=4)
    tape = fast._tape
    assert tape.counts["replayed"] >= 2
    seen = []

    def hook(module, inputs, output):
        seen.append(output.shape)

    if where == "module":
        handle = model.decoder.register_forward_hook(hook)
    else:
        handle = torch.nn.modules.module.register_module_forward_hook(
            lambda m, i, o: hook(m, i, o) if m is model.decoder else None)
    try:
        before = dict(tape.counts)
        for seed in range(3):
            _agree(_step(fast, model, (x,), seed, 1.0),
                   _step(FastTraceMeanField_ELBO(), model, (x,), seed, 1.0))
        assert len(seen) == 6  # the decoder ran in every step of both
        assert tape.counts["replayed"] == before["replayed"]
    finally:
        handle.remove()
    before = dict(tape.counts)
    for seed in range(3):
        _step(fast, model, (x,), seed, 1.0)
    assert tape.counts["replayed"] >= before["replayed"] + 2


@pytest.mark.parametrize("copy", [
    lambda w: w + 0, lambda w: w * 1.0, lambda w: w / 1, lambda w: w.t().contiguous().t()])
def test_a_copy_whose_source_is_changed_in_place_afterwards_stays_a_copy(copy):
    """``h = w * 1`` (or ``+ 0``, ``/ 1``, ``contiguous()`` of a non-contiguous w) is a new
    tensor: changing w in place afterwards must not change h in a replay either."""
    p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))

    def program(z):
        w = (z * p).unsqueeze(1).expand(3, 2).clone()
        h = copy(w)
        w.mul_(3.0)
        return (h + w).pow(2).sum()

    tape = Tape()
    for step in range(4):
        z = torch.randn(3) + step
        got = tape("k", program, [z])
        (g,) = torch.autograd.grad(got, p)
        want = program(z)
        (w,) = torch.autograd.grad(want, p)
        assert torch.equal(got, want) and torch.equal(g, w)
    assert tape.counts["replayed"] == 2


def test_a_plain_settings_object_whose_attributes_may_change_is_never_replayed():
    """An object hashed by identity (a user's settings class) may change its attributes
    without changing its identity: a model holding one runs its program every step."""
    class Settings:
        gain = 1.0

    class Decoder(_Decoder):
        def forward(self, z):
            return super().forward(z) * self.settings.gain

    decoder = Decoder()
    decoder.settings = Settings()
    model = pvae.VAE(D, 2, hidden_dims=(8,), decoder=decoder, likelihood="gaussian")
    assert module_tree(model.model) is None
    x = (torch.rand(N, D) > 0.5).float()
    fast = FastTraceMeanField_ELBO()
    run_steps(model, (x,), fast, FastTraceMeanField_ELBO, steps=2)
    decoder.settings.gain = 3.0
    run_steps(model, (x,), fast, FastTraceMeanField_ELBO, steps=2)
    assert fast._tape.counts["replayed"] == 0


def test_version_tags_are_read_on_cpython_3_11_and_3_12():
    """The cheap check is the one in use where the interpreter allows it (its self-test);
    not on 3.13, where a store into an object's inline values leaves its dict's tag."""
    import sys

    cpython = sys.implementation.name == "cpython" and (3, 11) <= sys.version_info[:2] <= (3, 12)
    assert key_cache.TAGS == cpython
    d = {"a": 1}
    tag = key_cache._tag(d)
    before = tag.value
    assert tag.value == before
    d["a"] = object()
    assert tag.value != before


def test_the_self_test_rejects_a_tag_that_does_not_move(monkeypatch):
    """CPython 3.13.0 stores ``o.a = 2`` into the object's inline values without moving
    the tag of ``o.__dict__``; an interpreter that does so must fail the self-test."""
    import ctypes

    frozen = ctypes.c_uint64(7)
    monkeypatch.setattr(key_cache, "_tag", lambda d: frozen)
    assert not key_cache._tags_work()


def test_every_change_to_a_dict_moves_its_tag_where_tags_are_used():
    """Random adds, replacements, removals, updates and clears on instance dictionaries
    (few and many attributes, each ``__dict__`` materialised first, as the snapshot holds
    it): wherever an entry changed, the tag moved."""
    import random

    if not key_cache.TAGS:
        pytest.skip("dict version tags are not read on this interpreter")

    class Many:
        def __init__(self) -> None:
            for i in range(25):
                object.__setattr__(self, f"a{i}", i)

    class Few:
        pass

    rng = random.Random(0)
    objects = [Many(), Many(), Few(), Few()]
    values = [0, 1, None, "s", 2.5, True, object(), object()]
    names = [f"a{i}" for i in range(30)]
    for _ in range(20000):
        o = rng.choice(objects)
        d = o.__dict__
        k, v = rng.choice(names), rng.choice(values)
        change = rng.choice([
            lambda: setattr(o, k, v), lambda: object.__setattr__(o, k, v),
            lambda: d.__setitem__(k, v), lambda: d.pop(k, None), lambda: d.update({k: v}),
            lambda: d.setdefault(k, v), lambda: d.__ior__({k: v}),
            lambda: d.popitem() if d else None, lambda: vars(o).update(**{k: v}),
            lambda: d.clear() if rng.random() < 0.02 else None])
        tag = key_cache._tag(d)
        before, entries = tag.value, list(d.items())
        change()
        now = list(d.items())
        changed = len(now) != len(entries) or any(
            a[0] != b[0] or a[1] is not b[1] for a, b in zip(now, entries))
        assert tag.value != before or not changed


def test_a_setting_changed_and_changed_back_is_reused_without_a_walk():
    """``scaled_to`` sets ``num_data`` and restores it around every training step: the
    dict's version tag moves, its entries do not, so the tree is not walked again."""
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian")
    trees = TreeKeys()
    before = trees(model.model)
    walked = trees.counts["walked"]
    for n in (480, 960, 480):
        with model.scaled_to(n):
            pass
        assert trees(model.model) == before == module_tree(model.model)
    assert trees.counts["walked"] == walked
    model.beta = 2.0  # a real change is still seen
    assert trees(model.model) == module_tree(model.model) != before
    assert trees.counts["walked"] == walked + 1


@pytest.mark.parametrize("tags", [True, False], ids=["version tags", "identities"])
def test_a_hook_registry_replaced_then_given_a_hook_is_not_replayed_stale(tags, monkeypatch):
    """``m._forward_hooks = OrderedDict()`` (an idiom to drop every hook) then a new hook:
    the snapshot held the old, empty registry, and a replay would skip the hook (here
    zeroing the decoder's output), so the cached tree must not be reused."""
    import collections

    if tags and not key_cache.TAGS:
        pytest.skip("dict version tags are not read on this interpreter")
    monkeypatch.setattr(key_cache, "TAGS", tags)
    torch.manual_seed(0)
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian")
    x = torch.randn(N, D)
    fast = FastTraceMeanField_ELBO()
    run_steps(model, (x,), fast, FastTraceMeanField_ELBO, steps=3)
    assert fast._tape.counts["replayed"] >= 1
    model.decoder._forward_hooks = collections.OrderedDict()
    seen = []

    def zero(module, inputs, output):
        seen.append(1)
        return output * 0 if isinstance(output, torch.Tensor) else tuple(o * 0 for o in output)

    model.decoder.register_forward_hook(zero)
    before = dict(fast._tape.counts)
    for seed in range(2):
        _agree(_step(fast, model, (x,), seed, 1.0),
               _step(FastTraceMeanField_ELBO(), model, (x,), seed, 1.0))
    assert len(seen) == 4  # the hook ran in every step of both
    assert fast._tape.counts["replayed"] == before["replayed"]


def test_a_global_hook_registry_rebound_then_given_a_hook_is_not_replayed_stale(monkeypatch):
    """``torch.nn.modules.module._global_forward_hooks = OrderedDict()`` then
    ``register_module_forward_hook``: the hook is in the new dict, which the key reads."""
    import collections

    torch.manual_seed(0)
    model = pvae.VAE(D, 2, hidden_dims=(8,), likelihood="gaussian")
    x = torch.randn(N, D)
    fast = FastTraceMeanField_ELBO()
    run_steps(model, (x,), fast, FastTraceMeanField_ELBO, steps=3)
    monkeypatch.setattr(torch.nn.modules.module, "_global_forward_hooks",
                        collections.OrderedDict())  # restored after the test
    seen = []

    def zero(module, inputs, output):
        if module is model.decoder:
            seen.append(1)
            return output * 0 if isinstance(output, torch.Tensor) else tuple(
                o * 0 for o in output)

    torch.nn.modules.module.register_module_forward_hook(zero)
    before = dict(fast._tape.counts)
    for seed in range(2):
        _agree(_step(fast, model, (x,), seed, 1.0),
               _step(FastTraceMeanField_ELBO(), model, (x,), seed, 1.0))
    assert len(seen) == 4
    assert fast._tape.counts["replayed"] == before["replayed"]
