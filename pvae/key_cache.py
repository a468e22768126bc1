"""The module tree's part of a step's key, rebuilt only when the tree may have changed.

:func:`pvae.program_key.module_tree` walks every submodule and reads every attribute:
on a small model that walk costs about a tenth of a training step, and it gives the
same answer step after step. :class:`TreeKeys` keeps, per model, the answer and a
snapshot of what it was built from: every attribute dictionary of every module in the
tree (``__dict__``, ``_parameters``, ``_buffers``, ``_modules``), each entry's name and
value held by reference, the parameters' dtype, device, shape and ``requires_grad``
(``model.double()`` changes a parameter's data in place, keeping its identity), and the
frozen value of each public container attribute (a list changed in place). When every
entry is still the same object (compared by identity in a few C-level passes, no Python
loop over the modules) and the rest still equals the snapshot, the answer is reused;
otherwise the tree is walked again. The answer is then the same as a walk would give:
the walk reads nothing that the snapshot does not hold (objects held by reference
cannot be freed, so an identity is never reused for a new value).
"""

from __future__ import annotations

import operator
import types
from itertools import chain
from typing import Any, Callable, Optional

import torch

from pvae.program_key import _frozen, _Unkeyable, module_tree

_STATE = operator.attrgetter("dtype", "device", "shape", "requires_grad")
_IMMUTABLE = (bool, int, float, complex, str, bytes, type(None), torch.Tensor, torch.dtype,
              torch.device, slice, type, types.FunctionType, types.BuiltinFunctionType)


def _fixed(v: Any) -> bool:
    """Whether ``v`` cannot change while it stays the same object (as the key reads it:
    a tensor by identity)."""
    if isinstance(v, (tuple, frozenset)):
        return all(map(_fixed, v))
    return isinstance(v, _IMMUTABLE)


def _tree_modules(owner: torch.nn.Module) -> list:
    """Every module under ``owner``, shared ones as often as the walk meets them."""
    out = [owner]
    for child in owner.__dict__["_modules"].values():
        if child is not None:
            out.extend(_tree_modules(child))
    return out


class _Snapshot:
    """What a module tree's key was built from; :meth:`same` says whether it still is."""

    __slots__ = ("dicts", "names", "values", "params", "states", "containers")

    def __init__(self, owner: torch.nn.Module) -> None:
        self.dicts = []
        for m in _tree_modules(owner):
            d = m.__dict__
            self.dicts += [d, d["_parameters"], d["_buffers"], d["_modules"]]
        self.names = tuple(chain.from_iterable(self.dicts))
        self.values = tuple(chain.from_iterable(map(dict.values, self.dicts)))
        self.params = [p for d in self.dicts[1::4] for p in d.values() if p is not None]
        self.states = tuple(map(_STATE, self.params))
        self.containers = [(d, k, _frozen(v)) for d in self.dicts[::4] for k, v in d.items()
                           if k[0] != "_" and not _fixed(v)]

    def same(self) -> bool:
        dicts = self.dicts
        if sum(map(len, dicts)) != len(self.values):
            return False
        if not all(map(operator.is_, chain.from_iterable(map(dict.values, dicts)), self.values)):
            return False
        if not all(map(operator.is_, chain.from_iterable(dicts), self.names)):
            return False
        if tuple(map(_STATE, self.params)) != self.states:
            return False
        try:
            return all(_frozen(d.get(k)) == v for d, k, v in self.containers)
        except _Unkeyable:
            return False


class TreeKeys:
    """:func:`pvae.program_key.module_tree`, remembered per owner module (the last
    ``size`` owners) and reused while the tree's snapshot is unchanged (module docstring).
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._trees: dict[int, tuple] = {}  # id(owner) -> (owner, snapshot, tree)
        #: How many trees were walked (``"walked"``) and reused (``"reused"``).
        self.counts = {"walked": 0, "reused": 0}

    def __call__(self, fn: Callable) -> Optional[tuple]:
        owner = getattr(fn, "__self__", None)
        if not isinstance(owner, torch.nn.Module):
            return ()
        entry = self._trees.get(id(owner))
        if entry is not None and entry[0] is owner and entry[1].same():
            self.counts["reused"] += 1
            return entry[2]
        self.counts["walked"] += 1
        tree = module_tree(fn)
        try:
            snapshot = _Snapshot(owner)
        except _Unkeyable:
            return tree
        self._trees.pop(id(owner), None)
        if len(self._trees) >= self.size:
            self._trees.pop(next(iter(self._trees)))
        self._trees[id(owner)] = (owner, snapshot, tree)
        return tree
