"""The recorded operations of :mod:`pvae.replay` and the passes that make them cheaper.

An operation is :class:`Op`: a torch call with its arguments, in which a :class:`Slot`
stands for a value of the replay (an input or an earlier result). :func:`simplify`
folds constants, removes identities and drops unused results, changing no value and
no gradient (``tests/test_replay.py``, ``tests/test_fast_elbo_replay.py``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch


class Refused(Exception):
    """A recording that cannot be replayed (the reason in words)."""


class Slot:
    """A reference to the replay's value number ``index``."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class Op:
    """One recorded call: ``func(*args, **kwargs)`` with slots filled, outputs stored."""

    __slots__ = ("func", "args", "kwargs", "flat", "out")

    def __init__(self, func, args: tuple, kwargs: dict, out) -> None:
        self.func, self.args, self.kwargs, self.out = func, args, kwargs, out
        # the common case: slots only as top-level positional arguments, no kwargs slots
        self.flat = None
        if not has_slot(kwargs) and not any(
                has_slot(a) for a in args if not isinstance(a, Slot)):
            self.flat = [(i, a.index) for i, a in enumerate(args) if isinstance(a, Slot)]


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
    "_standard_gamma", "_sample_dirichlet", "dropout", "dropout_", "feature_dropout",
    "feature_dropout_", "_fused_dropout", "alpha_dropout",
    "feature_alpha_dropout", "dropout1d", "dropout2d", "dropout3d", "rrelu", "rrelu_",
    "native_dropout", "gumbel_softmax",
})


#: Calls that return an operand itself when there is nothing to do (``x.contiguous()`` of a
#: contiguous ``x``, ``x.float()`` of a float ``x``, ``broadcast_tensors`` of equal shapes)
#: without changing it: returning an operand is not, for them, the mark of an in-place call.
_RETURNS_OPERAND = frozenset({
    "broadcast_tensors", "contiguous", "to", "type", "type_as", "float", "double", "half",
    "bfloat16", "cpu", "cuda",
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
    return [v.index for v in _flat_values(template) if isinstance(v, Slot)]


def has_slot(template: Any) -> bool:
    return any(isinstance(v, Slot) for v in _flat_values(template))


def _substitute(template: Any, replace: dict) -> Any:
    return _map(template, lambda v: replace.get(v.index, v) if isinstance(v, Slot) else v)


def fill(template: Any, values: list) -> Any:
    return _map(template, lambda v: values[v.index] if isinstance(v, Slot) else v)


def _outs(op: "Op") -> list[int]:
    if op.out is None:
        return []
    return [op.out] if isinstance(op.out, int) else [s for s in op.out if s is not None]


#: Views that return their input unchanged when the shape asked for is the input's.
_VIEWS = frozenset({"expand", "expand_as", "reshape", "view", "view_as", "contiguous",
                    "broadcast_to"})
#: Arithmetic whose result is its tensor operand exactly when the other is this number.
_IDENTITY = {"add": 0.0, "sub": 0.0, "mul": 1.0, "div": 1.0, "true_divide": 1.0, "pow": 1.0}


def _is(value: Any, number: float, folded: set) -> bool:
    """Whether ``value`` (a number or a tensor folded at the recording) is ``number``
    everywhere. A tensor held by reference (a parameter, frozen or not, or a buffer) is
    never an identity: it may be thawed or updated in place after the recording."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value == number
    if isinstance(value, torch.Tensor) and id(value) in folded and value.numel() > 0:
        return bool((value == number).all())
    return False


def _alias(op: "Op", keep: list, folded: set) -> Optional[list[tuple[int, int]]]:
    """``(result slot, operand slot)`` pairs when ``op`` returns its operands unchanged (a
    view to the same shape, adding 0, multiplying by 1, broadcasting equal shapes)."""
    name = getattr(op.func, "__name__", "")
    args, out = op.args, op.out

    def same(o: int, a: Any) -> bool:
        return (isinstance(a, Slot) and keep[o].shape == keep[a.index].shape
                and keep[o].dtype == keep[a.index].dtype)

    if name == "broadcast_tensors" and isinstance(out, tuple) and not op.kwargs:
        if len(args) == len(out) and all(o is not None and same(o, a) for o, a in zip(out, args)):
            return [(o, a.index) for o, a in zip(out, args)]
        return None
    if not isinstance(out, int) or op.kwargs or not args:
        return None
    if name in _VIEWS and same(out, args[0]) and _same_view(keep[out], keep[args[0].index]):
        return [(out, args[0].index)]  # not ``contiguous()``'s copy of a strided tensor
    if name in _IDENTITY and len(args) == 2:
        number = _IDENTITY[name]
        if same(out, args[0]) and _is(args[1], number, folded):
            return [(out, args[0].index)]
        if name in ("add", "mul") and same(out, args[1]) and _is(args[0], number, folded):
            return [(out, args[1].index)]
    return None


#: Views whose chains may end where they began (``reshape`` to ``(N, 1, D)`` then
#: ``squeeze``): such a chain is its first tensor.
_VIEW_CHAIN = frozenset({"reshape", "view", "squeeze", "unsqueeze", "flatten", "unflatten",
                         "expand", "view_as", "reshape_as", "expand_as", "broadcast_to"})


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype
            and a.storage_offset() == b.storage_offset()
            and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())


def _view_of_root(op: "Op", name: str, keep: list, roots: dict) -> Optional[list]:
    """``[(result, root)]`` when ``op`` ends a chain of views that gives back the tensor
    the chain began with (same shape, strides and storage); otherwise notes the chain."""
    if name not in _VIEW_CHAIN or not isinstance(op.out, int) or not op.args or not isinstance(
            op.args[0], Slot):
        return None
    root = roots.get(op.args[0].index, op.args[0].index)
    out, first = keep[op.out], keep[root]
    if out.untyped_storage().data_ptr() != first.untyped_storage().data_ptr():
        return None  # a copy, not a view
    if _same_view(out, first):
        return [(op.out, root)]
    roots[op.out] = root
    return None


def simplify(ops: list, keep: list, result: int) -> tuple[list, int]:
    """The recorded operations made cheaper without changing a value or a gradient:
    constants folded (computed once, at the recording), identities removed (a view to
    the same shape, ``+ 0``, ``* 1``, ``/ 1``), and operations whose results are never
    used dropped; random draws, in-place operations (by name, ``out=``, or returning
    their first operand itself: ``F.dropout(c, inplace=True)``) and calls without a result
    (grad-mode switches) always stay, in order. Returns the operations and the slot of
    the result."""
    def in_place(op: Op, name: str) -> bool:  # by name, or returning its operand itself
        return _in_place(name) or "out" in op.kwargs or (  # F.dropout(inplace=True)
            name not in _RETURNS_OPERAND
            and any(keep[o] is keep[a] for o in _outs(op) for a in _slots(op.args[:1])))

    mutated: set[int] = set()
    for op in reversed(ops):  # what an in-place op changes, and (conservatively) its sources
        name = getattr(op.func, "__name__", "")
        if in_place(op, name):
            mutated.update(_slots(op.args[:1]) + _slots(op.kwargs.get("out")))
        if any(s in mutated for s in _outs(op)):
            mutated.update(_slots(op.args) + _slots(op.kwargs))
    replace: dict[int, Any] = {}  # slot -> a constant tensor or the Slot it equals
    folded: set[int] = set()  # ids of the folded constants
    roots: dict[int, int] = {}  # a view's slot -> the slot it is a view of, through views
    kept = []
    for op in ops:
        name = getattr(op.func, "__name__", "")
        args = _slots(op.args) + _slots(op.kwargs)
        if args and any(s in replace for s in args):
            op = Op(op.func, _substitute(op.args, replace), _substitute(op.kwargs, replace),
                     op.out)
            args = _slots(op.args) + _slots(op.kwargs)
        plain = (op.out is not None and not in_place(op, name) and name not in _RANDOM
                 and "generator" not in op.kwargs and not any(s in mutated for s in _outs(op)))
        tensors = [v for v in _flat_values((op.args, op.kwargs)) if isinstance(v, torch.Tensor)]
        if plain and not args and all(id(v) in folded for v in tensors) and (
                tensors or name in _CONSTANT_FACTORIES):
            replace.update((s, keep[s]) for s in _outs(op))
            folded.update(id(keep[s]) for s in _outs(op))
            continue
        aliases = _alias(op, keep, folded) if plain else None
        if aliases is None and plain:
            aliases = _view_of_root(op, name, keep, roots)
        if aliases is not None and any(a in mutated for _, a in aliases):
            aliases = None  # ``y = h * 1`` then ``h.mul_(2)``: y must stay a copy of h before
        if aliases is not None:
            replace.update((o, Slot(a)) for o, a in aliases)
            continue
        kept.append(op)
    if result in replace:
        if not isinstance(replace[result], Slot):
            raise Refused("the result is a constant")
        result = replace[result].index
    live = {result}
    out = []
    for op in reversed(kept):
        name = getattr(op.func, "__name__", "")
        if (op.out is None or in_place(op, name) or name in _RANDOM or "generator" in op.kwargs
                or any(s in live for s in _outs(op))):
            live.update(_slots(op.args) + _slots(op.kwargs))
            out.append(op)
    return out[::-1], result
