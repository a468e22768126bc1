"""pvae.replay.Tape: recorded tensor operations replayed with the eager values."""

import torch

from pvae.replay import Tape


def _program(x, p):
    noise = torch.randn_like(x)  # a random draw: replayed, not frozen
    with torch.no_grad():
        frozen = p * 3  # no gradient through here, in the replay too
    buf = torch.zeros(3)
    buf.add_(x[:3])  # in-place on a constant: must not be folded away
    return ((x + noise) * p).sum() + (frozen * x).sum() + buf.sum() + (x / torch.ones(3)).sum()


def test_replay_equals_running_the_function():
    p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
    tape = Tape()
    for step in range(4):
        x = torch.randn(3) + step
        torch.manual_seed(step)
        got = tape("key", lambda x: _program(x, p), [x])
        (g,) = torch.autograd.grad(got, p)
        torch.manual_seed(step)
        want = _program(x, p)
        (w,) = torch.autograd.grad(want, p)
        assert torch.equal(got, want) and torch.equal(g, w)
        with torch.no_grad():
            p.add_(0.1)  # an optimiser's in-place update is seen by the replay
    assert tape.counts == {"run": 1, "recorded": 1, "replayed": 2}


def test_keys_are_recorded_once_seen_twice_and_none_always_runs():
    tape = Tape()
    x = torch.ones(2)
    tape("a", lambda x: x * 2, [x])
    tape("b", lambda x: x * 3, [x])
    assert not tape.recordings
    assert torch.equal(tape("a", lambda x: x * 2, [x]), x * 2)
    assert "a" in tape.recordings
    for _ in range(2):
        tape(None, lambda x: x * 4, [x])
    assert tape.counts["run"] == 4 and tape.counts["replayed"] == 0


def test_reading_values_into_python_refuses_the_recording():
    tape = Tape()

    def f(x):
        return x * 2 if x.sum().item() > 0 else x * 3

    for _ in range(3):
        assert torch.equal(tape("k", f, [torch.ones(2)]), torch.ones(2) * 2)
    assert tape.recordings["k"] is None and "item" in tape.refused
    assert torch.equal(tape("k", f, [-torch.ones(2)]), -torch.ones(2) * 3)  # still runs


def test_a_result_shaped_by_tensor_values_refuses_the_recording():
    tape = Tape()

    def f(x):
        return x[x > 0].sum() * 2  # how many elements are kept depends on the values

    for x in (torch.tensor([1.0, -1.0]), torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 3.0])):
        assert torch.equal(tape("k", f, [x]), x[x > 0].sum() * 2)
    assert tape.recordings["k"] is None and "shape" in tape.refused


def test_a_frozen_parameter_at_zero_or_one_is_not_dropped_as_an_identity():
    """A parameter frozen at 0 (an IAF's zero-initialised output, a flow frozen for the
    first epochs) looks like "+ 0" at the recording; thawed and updated, the replay
    must see its new value and give it a gradient."""
    bias = torch.nn.Parameter(torch.zeros(3), requires_grad=False)
    gain = torch.nn.Parameter(torch.ones(3), requires_grad=False)
    tape = Tape()
    x = torch.randn(3)
    f = lambda x: ((x + bias) * gain).sum()  # noqa: E731
    for _ in range(3):
        tape("k", f, [x])
    assert tape.counts["replayed"] == 1
    bias.requires_grad_(True)
    gain.requires_grad_(True)
    with torch.no_grad():
        bias.add_(0.5)
        gain.mul_(2.0)
    got = tape("k", f, [x])
    (gb, gg) = torch.autograd.grad(got, (bias, gain))
    want = f(x)
    (wb, wg) = torch.autograd.grad(want, (bias, gain))
    assert torch.equal(got, want) and torch.equal(gb, wb) and torch.equal(gg, wg)


def test_a_program_drawing_from_python_or_numpy_random_numbers_is_not_replayed():
    """A number drawn outside torch enters the recording as a constant: a replay would
    repeat the recording's draw where the program draws anew each step."""
    import random

    import numpy as np

    for draw in (lambda: np.random.rand(), lambda: random.random()):
        tape = Tape()
        x = torch.ones(2)
        values = [tape("key", lambda x: x * torch.tensor(draw()), [x]) for _ in range(4)]
        assert tape.counts["replayed"] == 0 and "random" in tape.refused
        assert len({float(v[0]) for v in values}) == 4


class _StraightThrough(torch.autograd.Function):
    """Round forward, identity backward (a straight-through estimator)."""

    @staticmethod
    def forward(ctx, x):
        return x.round()

    @staticmethod
    def backward(ctx, grad):
        return grad


def test_a_custom_autograd_function_is_not_replayed_without_its_backward():
    """The mode sees the operations inside a Function's forward but not its backward: a
    replay would differentiate ``round`` (zero) instead of passing the gradient through."""
    p = torch.nn.Parameter(torch.tensor([0.3, 1.7]))
    tape = Tape()
    for step in range(4):
        got = tape("key", lambda x: (_StraightThrough.apply(x * p) * x).sum(), [torch.ones(2)])
        (g,) = torch.autograd.grad(got, p)
        assert torch.equal(g, torch.ones(2))
    assert tape.counts["replayed"] == 0 and "autograd.Function" in tape.refused


def test_an_in_place_functional_on_a_constant_keeps_the_constant_fresh():
    """``F.dropout(c, inplace=True)`` changes ``c`` though its name has no trailing
    underscore: ``c`` must not be folded into one tensor that each replay drops again."""
    def program(x):
        c = torch.ones(100)
        torch.nn.functional.dropout(c, 0.5, True, inplace=True)
        return x * c.sum()

    tape = Tape()
    for step in range(5):
        x = torch.ones(())
        torch.manual_seed(step)
        got = tape("key", program, [x])
        torch.manual_seed(step)
        assert torch.equal(got, program(x))
    assert tape.counts["replayed"] == 3


def test_feature_dropout_of_a_constant_draws_afresh_at_every_replay():
    """Dropout on a tensor made inside the step is a random draw, not a constant to fold."""
    tape = Tape()
    f = lambda x: (torch.feature_dropout(torch.ones(8, 6), 0.5, True) * x).sum()  # noqa: E731
    x = torch.ones(8, 6)
    for seed in range(5):
        torch.manual_seed(seed)
        got = tape("k", f, [x])
        torch.manual_seed(seed)
        assert torch.equal(got, f(x))
    assert tape.counts["replayed"] == 3


def test_relu_and_broadcast_tensors_replay_without_their_python_wrappers():
    """The replay calls the ATen functions F.relu and torch.broadcast_tensors call."""
    import torch.nn.functional as F

    def program(x, b):
        h = F.relu(x * 1.5) + F.relu(x - 1, inplace=True)
        u, v = torch.broadcast_tensors(h, b)
        return (u * v).sum()

    b = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
    tape = Tape()
    for step in range(3):
        x = torch.randn(4, 3)
        got = tape("k", lambda x: program(x, b), [x])
        (g,) = torch.autograd.grad(got, b)
        want = program(x, b)
        (w,) = torch.autograd.grad(want, b)
        assert torch.equal(got, want) and torch.equal(g, w)
    (recording,) = tape.recordings.values()
    names = recording.run.__globals__.values()
    assert torch.relu in names and torch.relu_ in names and F.relu not in names
    assert torch.functional.broadcast_tensors not in names
