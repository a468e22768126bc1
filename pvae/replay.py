"""Record a step's tensor operations once, then replay them: the ELBOs' fast path.

A training step of a pvae model runs the same Pyro program on a new minibatch of the
same shape: the same sites, distributions, plates, scales and masks, so the same
tensor operations in the same order. :class:`Tape` runs a function once under a
``torch.overrides.TorchFunctionMode`` that records every torch call (functions,
tensor methods, factories, random draws, grad-mode switches) with its arguments,
marking which arguments are the step's inputs and which are earlier results. Later
calls with the same *structure key* replay that list directly: no messengers,
distribution objects, plates or module look-ups, only the tensor operations. Random
draws are operations too, replayed in the recorded order, so a replayed step draws
exactly what the Pyro program would have drawn (the same values under the same seed).

What the key must hold (the caller builds it, :func:`step_key`): everything the
program's Python control flow reads besides tensor values, i.e. the callables, the
input shapes, dtypes and devices, non-tensor arguments, the models' declared program
constants (``num_data``, ``beta``, train/eval mode, ...), the KL warm-up weight, the
grad mode and the identity of every parameter. A new key is recorded afresh (after
it is seen twice, so a key used once, such as a warm-up weight that changes every
step, never pays for a recording).

A recording is refused, and the caller falls back to running the program each step,
when the function reads tensor values into Python (``.item()``, ``bool(tensor)``,
``.tolist()``: its control flow may then depend on the data), when a tensor with a
gradient history comes from outside the recorded operations, or when the result is
not a recorded tensor. Tensors from outside that are leaves (parameters, buffers,
constants) are held by reference, so in-place updates (the optimiser's) are seen;
a tensor attribute *replaced* by another object between steps is not, so a program
that stores per-step tensors on its module must not be replayed (its key changes
or it reads them through the inputs).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Optional

import torch
from torch.overrides import TorchFunctionMode

#: Calls whose result is a tensor's value read into Python: control flow may depend on it.
_READS_VALUES = frozenset({
    "item", "tolist", "__bool__", "__float__", "__int__", "__index__", "__complex__",
    "numpy", "__array__", "is_nonzero", "equal", "allclose", "data_ptr", "__iter__",
    "__contains__", "__reduce_ex__", "__deepcopy__", "__format__", "__repr__",
})


#: Factories that make the same tensor from the same arguments: their results, and those
#: of deterministic operations on them alone, are computed once, at the recording.
_CONSTANT_FACTORIES = frozenset({
    "tensor", "as_tensor", "scalar_tensor", "zeros", "ones", "full", "arange", "linspace",
    "logspace", "eye",
})
#: Operations that draw random numbers: never folded or dropped, so that a replay draws
#: what the program would have drawn.
_RANDOM = frozenset({
    "normal", "normal_", "uniform_", "bernoulli", "bernoulli_", "exponential_", "geometric_",
    "log_normal_", "cauchy_", "random_", "randn", "rand", "randint", "randperm",
    "randn_like", "rand_like", "randint_like", "multinomial", "poisson", "binomial",
    "_standard_gamma", "_sample_dirichlet", "dropout", "dropout_", "alpha_dropout",
    "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d", "rrelu", "rrelu_",
    "native_dropout", "gumbel_softmax",
})


def _in_place(name: str) -> bool:
    return (name.endswith("_") and not name.endswith("__")) or name == "__setitem__" or (
        name.startswith("__i") and name.endswith("__"))


def _map(template: Any, leaf: Callable[[Any], Any]) -> Any:
    """``template`` (nested lists, tuples, dicts) with ``leaf`` applied to each leaf."""
    if isinstance(template, (list, tuple)):
        return type(template)(_map(t, leaf) for t in template)
    if isinstance(template, dict):
        return {k: _map(v, leaf) for k, v in template.items()}
    return leaf(template)


def _flat_values(template: Any) -> list:
    """The leaves of ``template`` in order."""
    if isinstance(template, (list, tuple)):
        return [v for t in template for v in _flat_values(t)]
    if isinstance(template, dict):
        return [v for t in template.values() for v in _flat_values(t)]
    return [template]


def _slots(template: Any) -> list[int]:
    return [v.index for v in _flat_values(template) if isinstance(v, _Slot)]


def _has_slot(template: Any) -> bool:
    return any(isinstance(v, _Slot) for v in _flat_values(template))


def _substitute(template: Any, replace: dict) -> Any:
    return _map(template, lambda v: replace.get(v.index, v) if isinstance(v, _Slot) else v)


def _fill(template: Any, values: list) -> Any:
    return _map(template, lambda v: values[v.index] if isinstance(v, _Slot) else v)


def _outs(op: "_Op") -> list[int]:
    if op.out is None:
        return []
    return [op.out] if isinstance(op.out, int) else [s for s in op.out if s is not None]


#: Views that return their input unchanged when the shape asked for is the input's.
_VIEWS = frozenset({"expand", "expand_as", "reshape", "view", "view_as", "contiguous",
                    "broadcast_to"})
#: Arithmetic whose result is its tensor operand exactly when the other is this number.
_IDENTITY = {"add": 0.0, "sub": 0.0, "mul": 1.0, "div": 1.0, "true_divide": 1.0, "pow": 1.0}


def _is(value: Any, number: float) -> bool:
    """Whether ``value`` (a number or a constant tensor) is ``number`` everywhere."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == number
    if isinstance(value, torch.Tensor) and not value.requires_grad and value.numel() > 0:
        return bool((value == number).all())
    return False


def _alias(op: "_Op", keep: list) -> Optional[list[tuple[int, int]]]:
    """``(result slot, operand slot)`` pairs when ``op`` returns its operands unchanged (a
    view to the same shape, adding 0, multiplying by 1, broadcasting equal shapes)."""
    name = getattr(op.func, "__name__", "")
    args, out = op.args, op.out

    def same(o: int, a: Any) -> bool:
        return (isinstance(a, _Slot) and keep[o].shape == keep[a.index].shape
                and keep[o].dtype == keep[a.index].dtype)

    if name == "broadcast_tensors" and isinstance(out, tuple) and not op.kwargs:
        if len(args) == len(out) and all(o is not None and same(o, a) for o, a in zip(out, args)):
            return [(o, a.index) for o, a in zip(out, args)]
        return None
    if not isinstance(out, int) or op.kwargs or not args:
        return None
    if name in _VIEWS and same(out, args[0]):
        return [(out, args[0].index)]
    if name in _IDENTITY and len(args) == 2:
        number = _IDENTITY[name]
        if same(out, args[0]) and _is(args[1], number):
            return [(out, args[0].index)]
        if name in ("add", "mul") and same(out, args[1]) and _is(args[0], number):
            return [(out, args[1].index)]
    return None


def _simplify(ops: list, keep: list, result: int) -> tuple[list, int]:
    """The recorded operations made cheaper without changing a value or a gradient:
    constants folded (computed once, at the recording), identities removed (a view to
    the same shape, ``+ 0``, ``* 1``, ``/ 1``), and operations whose results are never
    used dropped; random draws, in-place operations and calls without a result
    (grad-mode switches) always stay, in order. Returns the operations and the slot of
    the result."""
    mutated: set[int] = set()
    for op in reversed(ops):  # what an in-place op changes, and (conservatively) its sources
        name = getattr(op.func, "__name__", "")
        if _in_place(name) or "out" in op.kwargs:
            mutated.update(_slots(op.args[:1]) + _slots(op.kwargs.get("out")))
        if any(s in mutated for s in _outs(op)):
            mutated.update(_slots(op.args) + _slots(op.kwargs))
    replace: dict[int, Any] = {}  # slot -> a constant tensor or the _Slot it equals
    folded: set[int] = set()  # ids of the folded constants
    kept = []
    for op in ops:
        name = getattr(op.func, "__name__", "")
        args = _slots(op.args) + _slots(op.kwargs)
        if args and any(s in replace for s in args):
            op = _Op(op.func, _substitute(op.args, replace), _substitute(op.kwargs, replace),
                     op.out)
            args = _slots(op.args) + _slots(op.kwargs)
        plain = (op.out is not None and not _in_place(name) and name not in _RANDOM
                 and "generator" not in op.kwargs and not any(s in mutated for s in _outs(op)))
        tensors = [v for v in _flat_values((op.args, op.kwargs)) if isinstance(v, torch.Tensor)]
        if plain and not args and all(id(v) in folded for v in tensors) and (
                tensors or name in _CONSTANT_FACTORIES):
            replace.update((s, keep[s]) for s in _outs(op))
            folded.update(id(keep[s]) for s in _outs(op))
            continue
        aliases = _alias(op, keep) if plain else None
        if aliases is not None:
            replace.update((o, _Slot(a)) for o, a in aliases)
            continue
        kept.append(op)
    if result in replace:
        if not isinstance(replace[result], _Slot):
            raise _Refused("the result is a constant")
        result = replace[result].index
    live = {result}
    out = []
    for op in reversed(kept):
        name = getattr(op.func, "__name__", "")
        if (op.out is None or _in_place(name) or name in _RANDOM or "generator" in op.kwargs
                or any(s in live for s in _outs(op))):
            live.update(_slots(op.args) + _slots(op.kwargs))
            out.append(op)
    return out[::-1], result


#: Operations whose result's shape depends on tensor values: later shapes, recorded as
#: numbers, could go stale, so a program using them is not replayed.
_VALUE_SHAPED = frozenset({
    "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive", "bincount",
    "repeat_interleave", "masked_scatter", "histc", "histogram",
})


def _value_shaped(name: str, args: tuple) -> bool:
    """Whether a call's result has a shape set by tensor values (``x[mask]`` included)."""
    if name in _VALUE_SHAPED:
        return True
    if name == "__getitem__" and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
    return name == "where" and len(args) == 1


class _Refused(Exception):
    """A recording that cannot be replayed (the reason in words)."""


class _Slot:
    """A reference to the replay's value number ``index``."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _Op:
    """One recorded call: ``func(*args, **kwargs)`` with slots filled, outputs stored."""

    __slots__ = ("func", "args", "kwargs", "flat", "out")

    def __init__(self, func, args: tuple, kwargs: dict, out) -> None:
        self.func, self.args, self.kwargs, self.out = func, args, kwargs, out
        # the common case: slots only as top-level positional arguments, no kwargs slots
        self.flat = None
        if not _has_slot(kwargs) and not any(
                _has_slot(a) for a in args if not isinstance(a, _Slot)):
            self.flat = [(i, a.index) for i, a in enumerate(args) if isinstance(a, _Slot)]


class _Recorder(TorchFunctionMode):
    """Run a function, recording its torch calls as :class:`_Op` s."""

    def __init__(self, inputs: list) -> None:
        super().__init__()
        self.slots: dict[int, int] = {id(t): i for i, t in enumerate(inputs)}
        self.keep: list = list(inputs)  # held, so that no recorded tensor's id is reused
        self.ops: list[_Op] = []
        self.refused: Optional[str] = None

    def _template(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            slot = self.slots.get(id(value))
            if slot is not None:
                return _Slot(slot)
            if value.grad_fn is not None:
                raise _Refused("a tensor with a gradient history came from outside the step")
            return value  # a parameter, buffer or constant: held by reference
        if isinstance(value, (list, tuple)):
            return type(value)(self._template(v) for v in value)
        if isinstance(value, dict):
            return {k: self._template(v) for k, v in value.items()}
        return value

    def _outputs(self, out: Any) -> Any:
        if isinstance(out, torch.Tensor):
            self.slots[id(out)] = len(self.keep)
            self.keep.append(out)
            return len(self.keep) - 1
        return tuple(self._outputs(o) if isinstance(o, torch.Tensor) else None for o in out)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.refused is not None:
            return out
        try:
            self._record(func, args, kwargs, out)
        except _Refused as e:
            self.refused = str(e)
        return out

    def _record(self, func, args, kwargs, out) -> None:
        name = getattr(func, "__name__", "")
        if name in _READS_VALUES:
            raise _Refused(f"the program reads a tensor's value into Python ({name})")
        if _value_shaped(name, args):
            raise _Refused(f"a result's shape depends on tensor values ({name})")
        tensors = isinstance(out, torch.Tensor) or (
            isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out))
        if not tensors and out is not None:
            return  # a query of shapes, dtypes or devices: fixed by the structure key
        if isinstance(out, (tuple, list)) and not all(
                isinstance(o, (torch.Tensor, type(None), int, float, bool)) for o in out):
            raise _Refused(f"{name} returned a structure the replay cannot rebuild")
        self.ops.append(_Op(func, self._template(args), self._template(kwargs),
                            None if out is None else self._outputs(out)))


class _Recording:
    """A replayable list of operations and the slot of the result."""

    __slots__ = ("ops", "result", "size", "num_inputs")

    def __init__(self, ops: list, result: int, size: int, num_inputs: int) -> None:
        self.ops, self.result, self.size, self.num_inputs = ops, result, size, num_inputs

    def __call__(self, inputs: list) -> torch.Tensor:
        values = list(inputs)
        values.extend([None] * (self.size - self.num_inputs))
        for op in self.ops:
            if op.flat is not None:
                if op.flat:
                    args = list(op.args)
                    for i, s in op.flat:
                        args[i] = values[s]
                else:
                    args = op.args
                out = op.func(*args, **op.kwargs)
            else:
                out = op.func(*_fill(op.args, values), **_fill(op.kwargs, values))
            where = op.out
            if where is None:
                continue
            if isinstance(where, int):
                values[where] = out
            else:
                for s, o in zip(where, out):
                    if s is not None:
                        values[s] = o
        return values[self.result]


class Tape:
    """Recordings of a function, one per structure key; see the module docstring.

    ``tape(key, fn, inputs)`` returns ``fn(*inputs)``: computed by ``fn`` itself the
    first times a key is seen (recorded the second time) and replayed afterwards.
    ``fn`` must return a tensor. ``key=None`` always runs ``fn``. At most
    ``max_keys`` recordings are kept (the oldest dropped first); ``max_keys=0`` never
    records (every call runs ``fn``: the path before this module, for comparisons).
    """

    def __init__(self, max_keys: int = 16) -> None:
        self.max_keys = max_keys
        self.recordings: dict[Hashable, Optional[_Recording]] = {}
        self.seen: dict[Hashable, None] = {}
        #: Why the last refused recording was refused (``None``: none refused).
        self.refused: Optional[str] = None
        #: Counts of calls ``"run"``, ``"recorded"`` and ``"replayed"``.
        self.counts = {"run": 0, "recorded": 0, "replayed": 0}
        self._recorder: Optional[_Recorder] = None

    def refuse(self, reason: str) -> None:
        """Called by the function being recorded: do not replay this recording."""
        if self._recorder is not None and self._recorder.refused is None:
            self._recorder.refused = reason

    def __call__(self, key: Optional[Hashable], fn: Callable[..., torch.Tensor],
                 inputs: list) -> torch.Tensor:
        if key is not None and self.max_keys > 0:
            if key in self.recordings:
                recording = self.recordings[key]
                if recording is not None:  # None: refused, the function runs each time
                    self.counts["replayed"] += 1
                    return recording(inputs)
            elif key in self.seen:
                return self._record(key, fn, inputs)
            else:
                self.seen[key] = None
                if len(self.seen) > 4 * self.max_keys:
                    self.seen.pop(next(iter(self.seen)))
        self.counts["run"] += 1
        return fn(*inputs)

    def _record(self, key: Hashable, fn: Callable, inputs: list) -> torch.Tensor:
        recorder = self._recorder = _Recorder(inputs)
        try:
            with recorder:
                result = fn(*inputs)
        finally:
            self._recorder = None
        self.counts["recorded"] += 1
        slot = recorder.slots.get(id(result)) if isinstance(result, torch.Tensor) else None
        if recorder.refused is None and slot is None:
            recorder.refused = "the result is not a tensor computed in the step"
        self.refused = recorder.refused
        if len(self.recordings) >= self.max_keys:
            self.recordings.pop(next(iter(self.recordings)))
        recording = None
        if recorder.refused is None:
            try:
                ops, slot = _simplify(recorder.ops, recorder.keep, slot)
                recording = _Recording(ops, slot, len(recorder.keep), len(inputs))
            except _Refused as e:
                self.refused = str(e)
        self.recordings[key] = recording
        return result
