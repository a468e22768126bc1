"""Record a step's tensor operations once, then replay them: the ELBOs' fast path.

A training step of a pvae model runs the same Pyro program on a new minibatch of the
same shape: the same sites, distributions, plates, scales and masks, so the same
tensor operations in the same order. :class:`Tape` runs a function once under a
``torch.overrides.TorchFunctionMode`` that records every torch call (functions,
tensor methods, factories, random draws, grad-mode switches) with its arguments,
marking which arguments are the step's inputs and which are earlier results. Later
calls with the same *structure key* replay that list directly: no messengers,
distribution objects, plates or module look-ups, only the tensor operations, written
out as one straight-line Python function (:mod:`pvae.replay_code`). Random
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
``.tolist()``: its control flow may then depend on the data), when it draws from
Python's or NumPy's random streams (a number a replay would repeat), when a tensor with a
gradient history comes from outside the recorded operations, when a custom
``torch.autograd.Function``'s output is used (its forward's operations are seen, its
backward is not), or when the result is not a recorded tensor. Tensors from outside that are leaves (parameters, buffers,
constants) are held by reference, so in-place updates (the optimiser's) are seen;
a tensor *replaced* by another object between steps is not, so the key must change
when that happens (:func:`pvae.program_key.module_tree` holds every module's tensor
attributes by identity, and parameters' dtype and device, which ``model.double()``
changes in place; :class:`pvae.key_cache.TreeKeys` walks the tree again only when a
snapshot of it changed). A module's forward and backward hooks are calls, not tensor
operations, and would not run in a replay: a model with a hook on any of its modules,
or while a global module hook is registered, is not replayed
(:data:`pvae.program_key.MODULE_HOOKS`). Not seen: a tensor reached otherwise (a
global), and a parameter's data swapped for data of another shape (``p.data = ...``).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Hashable, Optional

import numpy as np
import torch
from torch.autograd.function import BackwardCFunction
from torch.overrides import TorchFunctionMode

from pvae.replay_code import compile_ops
from pvae.replay_ops import Op, Refused, Slot, simplify

#: Calls whose result is a tensor's value read into Python: control flow may depend on it.
_READS_VALUES = frozenset({
    "item", "tolist", "__bool__", "__float__", "__int__", "__index__", "__complex__",
    "numpy", "__array__", "is_nonzero", "equal", "allclose", "data_ptr", "__iter__",
    "__contains__", "__reduce_ex__", "__deepcopy__", "__format__", "__repr__",
})
#: Calls whose effect lives outside tensors (a hook's handle): a replay would lose it.
_OUTSIDE_EFFECTS = frozenset({"register_hook", "register_post_accumulate_grad_hook"})


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


class _Recorder(TorchFunctionMode):
    """Run a function, recording its torch calls as :class:`~pvae.replay_ops.Op` s."""

    def __init__(self, inputs: list) -> None:
        super().__init__()
        self.slots: dict[int, int] = {id(t): i for i, t in enumerate(inputs)}
        self.keep: list = list(inputs)  # held, so that no recorded tensor's id is reused
        self.ops: list[Op] = []
        self.refused: Optional[str] = None

    def _template(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            slot = self.slots.get(id(value))
            if slot is not None:
                if isinstance(value.grad_fn, BackwardCFunction):
                    raise Refused("a custom autograd.Function's output: a replay of the "
                                  "operations inside its forward would lose its backward")
                return Slot(slot)
            if value.grad_fn is not None:
                raise Refused("a tensor with a gradient history came from outside the step")
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
        except Refused as e:
            self.refused = str(e)
        return out

    def _record(self, func, args, kwargs, out) -> None:
        name = getattr(func, "__name__", "")
        if name in _READS_VALUES:
            raise Refused(f"the program reads a tensor's value into Python ({name})")
        if name in _OUTSIDE_EFFECTS:
            raise Refused(f"the program sets up state outside tensors ({name})")
        if _value_shaped(name, args):
            raise Refused(f"a result's shape depends on tensor values ({name})")
        tensors = isinstance(out, torch.Tensor) or (
            isinstance(out, (tuple, list)) and any(isinstance(o, torch.Tensor) for o in out))
        if not tensors and out is not None:
            return  # a query of shapes, dtypes or devices: fixed by the structure key
        if isinstance(out, (tuple, list)) and not all(
                isinstance(o, (torch.Tensor, type(None), int, float, bool)) for o in out):
            raise Refused(f"{name} returned a structure the replay cannot rebuild")
        self.ops.append(Op(func, self._template(args), self._template(kwargs),
                            None if out is None else self._outputs(out)))


class _Recording:
    """A replayable list of operations and the slot of the result, compiled to one
    function (:func:`pvae.replay_code.compile_ops`)."""

    __slots__ = ("ops", "result", "size", "num_inputs", "run")

    def __init__(self, ops: list, result: int, size: int, num_inputs: int) -> None:
        self.ops, self.result, self.size, self.num_inputs = ops, result, size, num_inputs
        self.run = compile_ops(ops, result, num_inputs)

    def __call__(self, inputs: list) -> torch.Tensor:
        return self.run(inputs)


_UNSEEN = object()  # a key without a recording


def _other_streams() -> tuple:
    """Where Python's and NumPy's global random streams stand (their states, hashed)."""
    _, keys, pos, *_ = np.random.get_state()
    return hash(random.getstate()), hash(keys.tobytes()), pos


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
            recording = self.recordings.get(key, _UNSEEN)
            if recording is not _UNSEEN:
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
        streams = _other_streams()
        try:
            with recorder:
                result = fn(*inputs)
        finally:
            self._recorder = None
        self.counts["recorded"] += 1
        if recorder.refused is None and _other_streams() != streams:
            # a number drawn outside torch is a constant to the recording: it would repeat
            recorder.refused = "the program draws from Python's or NumPy's random numbers"
        slot = recorder.slots.get(id(result)) if isinstance(result, torch.Tensor) else None
        if recorder.refused is None and slot is not None:
            try:
                recorder._template(result)
            except Refused as e:
                recorder.refused = str(e)
        if recorder.refused is None and slot is None:
            recorder.refused = "the result is not a tensor computed in the step"
        self.refused = recorder.refused
        if len(self.recordings) >= self.max_keys:
            self.recordings.pop(next(iter(self.recordings)))
        recording = None
        if recorder.refused is None:
            try:
                ops, slot = simplify(recorder.ops, recorder.keep, slot)
                recording = _Recording(ops, slot, len(recorder.keep), len(inputs))
            except Refused as e:
                self.refused = str(e)
        self.recordings[key] = recording
        return result
