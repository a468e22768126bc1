"""The module tree's part of a step's key, rebuilt only when the tree may have changed.

:func:`pvae.program_key.module_tree` walks every submodule and reads every attribute:
on a small model that walk costs about a tenth of a training step, and it gives the
same answer step after step. :class:`TreeKeys` keeps, per model, the answer and a
snapshot of what it was built from: every attribute dictionary of every module in the
tree (``__dict__`` but ``torch.nn.Module``'s own hook registries, which need only stay empty; ``_parameters``,
``_buffers``, ``_modules``), each entry's name and value held by reference, the
parameters' dtype, device and ``requires_grad``
(``model.double()`` changes a parameter's data in place, keeping its identity), and the
frozen value of each public container attribute (a list changed in place). When every
entry is still the same object (compared by identity in a few C-level passes, no Python
loop over the modules) and the rest still equals the snapshot, the answer is reused;
otherwise the tree is walked again. The answer is then the same as a walk would give:
the walk reads nothing that the snapshot does not hold (objects held by reference
cannot be freed, so an identity is never reused for a new value), assuming no one puts
a tensor in place of one of ``torch.nn.Module``'s hook registries (a registry replaced
by another dict is seen). Not seen, by the
walk either: a parameter's data swapped for data of another shape (``p.data = ...``).

On CPython 3.11 and 3.12 the check reads, instead of every entry, each dictionary's version
tag (PEP 509: a number that changes whenever an entry is added, removed or bound to another
object, and only then), a few microseconds for a small model's sixty dictionaries against
some fifty for the entries; :func:`_tags_work` tests at import that the tag behaves so on
this interpreter (and the identity comparison is used where it does not). Not on 3.13: an
attribute stored on an object whose ``__dict__`` still shares the object's inline values
does not move that dict's tag there (3.13.0: ``o.__dict__; o.a = 2`` leaves it), so the
self-test would fail. A module whose ``__dict__`` is replaced as a whole is seen either way.
"""

from __future__ import annotations

import ctypes
import itertools
import operator
import sys
import types
from itertools import chain, compress
from typing import Any, Callable, Optional

import torch

from pvae.program_key import MODULE_HOOKS, _frozen, _Unkeyable, module_tree

_STATE = operator.attrgetter("dtype", "device", "requires_grad")
_DICT = operator.attrgetter("__dict__")
_VALUE = operator.attrgetter("value")
#: Where CPython keeps a dict's version tag (``ma_version_tag``, PEP 509): after the object
#: header (reference count, type) and ``ma_used``.
_TAG_OFFSET = 3 * ctypes.sizeof(ctypes.c_ssize_t)


def _tag(d: dict) -> ctypes.c_uint64:
    """A live view of ``d``'s version tag (valid while ``d`` is alive: the caller holds it)."""
    return ctypes.c_uint64.from_address(id(d) + _TAG_OFFSET)


def _tags_work() -> bool:
    """Whether dicts' version tags change on every change of an entry and only then, on
    this interpreter (CPython 3.11 and 3.12 on 64 bits; tested, not assumed: on 3.13 a store
    into an object's inline values leaves its materialised ``__dict__``'s tag, module
    docstring)."""
    if sys.implementation.name != "cpython" or not (3, 11) <= sys.version_info[:2] <= (3, 12) \
            or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False

    class _Probe:
        pass

    probe = _Probe()
    probe.a = 1
    d = probe.__dict__
    changes = [lambda: d.__setitem__("a", object()), lambda: setattr(probe, "a", object()),
               lambda: d.__setitem__("b", 1), lambda: d.__delitem__("b"),
               lambda: d.update(c=2), lambda: d.pop("c"), lambda: d.setdefault("e", 3),
               lambda: delattr(probe, "e"), lambda: d.clear(), lambda: d.update(a=1)]
    tag = _tag(d)
    for change in changes:
        before = tag.value
        if tag.value != before:
            return False  # unchanged but read differently
        change()
        if tag.value == before:
            return False
    for _ in range(2000):  # a specialised attribute store (the interpreter's fast path)
        before = tag.value
        probe.a = _
        if tag.value == before:
            return False
    return True


#: Whether :class:`_Snapshot` compares version tags (:func:`_tags_work`).
TAGS = _tags_work()
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


#: What ``torch.nn.Module`` keeps in every instance's ``__dict__`` for its own bookkeeping
#: (registries and the like, changed in place): the walk reads none of them, so the
#: snapshot does not compare them either. Not the forward and backward hook registries
#: (:data:`~pvae.program_key.MODULE_HOOKS`), which the walk reads: one replaced by a fresh
#: dict (``m._forward_hooks = OrderedDict()``, an idiom to drop every hook) and then given
#: a hook must be seen, as the snapshot holds the old, empty one.
_BOOKKEEPING = frozenset(torch.nn.Module().__dict__) - {"training", "_parameters", "_buffers",
                                                         "_modules", *MODULE_HOOKS}
_SUBDICTS = ("_parameters", "_buffers", "_modules")


class _Snapshot:
    """What a module tree's key was built from; :meth:`same` says whether it still is."""

    __slots__ = ("dicts", "lens", "getters", "values", "subdicts", "sublens", "subnames",
                 "subvalues", "params", "states", "containers", "hooks", "modules", "classes",
                 "tags", "versions", "kept", "subkept")

    def __init__(self, owner: torch.nn.Module) -> None:
        modules = self.modules = _tree_modules(owner)
        self.classes = tuple(map(type, modules))  # ``m.__class__ = ...`` changes forward
        self.dicts = [m.__dict__ for m in modules]
        self.lens = tuple(map(len, self.dicts))
        # each module's entries but the bookkeeping, fetched by name in one C call
        self.getters = [operator.itemgetter(*(k for k in d if k not in _BOOKKEEPING))
                        for d in self.dicts]  # "training" and the three dicts: 2+ names
        self.kept = [operator.call(g, d) for g, d in zip(self.getters, self.dicts)]
        self.values = tuple(chain.from_iterable(self.kept))
        self.subdicts = [d[k] for d in self.dicts for k in _SUBDICTS]
        self.sublens = tuple(map(len, self.subdicts))
        self.subnames = tuple(chain.from_iterable(self.subdicts))
        self.subvalues = tuple(chain.from_iterable(map(dict.values, self.subdicts)))
        self.subkept = [(tuple(d), tuple(d.values())) for d in self.subdicts]
        self.params = [p for d in self.subdicts[::3] for p in d.values() if p is not None]
        self.states = tuple(map(_STATE, self.params))
        self.containers = [(d, k, _frozen(v)) for d in self.dicts for k, v in d.items()
                           if k[0] != "_" and not _fixed(v)]
        # the hook registries, empty when the walk succeeded (a hook makes it unkeyable)
        self.hooks = [d[k] for d in self.dicts for k in MODULE_HOOKS if k in d]
        # version tags, where every dict is a plain dict (an OrderedDict reorders unseen)
        everything = self.dicts + self.subdicts
        self.tags = [_tag(d) for d in everything] if TAGS and all(
            type(d) is dict for d in everything) else None
        self.versions = tuple(map(_VALUE, self.tags)) if self.tags is not None else None

    def _dict_same(self, k: int) -> bool:
        """Whether the ``k``-th dict (module dicts, then the ``_SUBDICTS``) holds the same
        objects under the same names as at the snapshot."""
        n = len(self.dicts)
        if k < n:
            d = self.dicts[k]
            try:
                now = self.getters[k](d)
            except KeyError:
                return False  # an entry renamed
            return len(d) == self.lens[k] and all(map(operator.is_, now, self.kept[k]))
        d = self.subdicts[k - n]
        names, values = self.subkept[k - n]
        return len(d) == len(names) and all(map(operator.is_, d, names)) and all(
            map(operator.is_, d.values(), values))

    def _entries_same(self) -> bool:
        """Whether every entry of every dict is still the same object under its name."""
        if self.tags is not None:  # a changed entry changes its dict's tag
            now = tuple(map(_VALUE, self.tags))
            if now == self.versions:
                return True
            # changed and changed back (``scaled_to`` sets ``num_data`` and restores it):
            # the dicts whose tag moved are compared entry by entry
            moved = compress(range(len(now)), map(operator.ne, now, self.versions))
            if all(map(self._dict_same, moved)):
                self.versions = now
                return True
            return False
        if tuple(map(len, self.dicts)) != self.lens or tuple(
                map(len, self.subdicts)) != self.sublens:
            return False  # an entry added or removed
        try:
            if not all(map(operator.is_, chain.from_iterable(
                    map(operator.call, self.getters, self.dicts)), self.values)):
                return False  # an entry replaced
        except KeyError:
            return False  # an entry renamed
        subdicts = self.subdicts
        return (all(map(operator.is_, chain.from_iterable(map(dict.values, subdicts)),
                        self.subvalues))
                and all(map(operator.is_, chain.from_iterable(subdicts), self.subnames)))

    def same(self) -> bool:
        """Whether every entry is still the same object (and each public container and
        parameter state still equal): then a walk would give the snapshot's tree."""
        if any(self.hooks) or tuple(map(type, self.modules)) != self.classes or not all(
                map(operator.is_, map(_DICT, self.modules), self.dicts)):
            return False  # a hook registered, a class swapped, a ``__dict__`` replaced
        if not self._entries_same():
            return False  # an entry added, removed, renamed or replaced
        if tuple(map(_STATE, self.params)) != self.states:
            return False
        try:
            return all(_frozen(d.get(k)) == v for d, k, v in self.containers)
        except _Unkeyable:
            return False


class TreeKeys:
    """:func:`pvae.program_key.module_tree`, remembered per owner module (the last
    ``size`` owners) and reused while the tree's snapshot is unchanged (module docstring).

    ``trees(fn)`` gives the tree; ``trees.token(fn)`` a small stand-in for it, equal for
    equal trees (within this object), so that a key holding it is hashed and compared
    without going over the whole tree every step.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._trees: dict[int, tuple] = {}  # id(owner) -> (owner, snapshot, tree, token)
        self._tokens: dict[tuple, tuple] = {}  # tree -> its token
        self._numbers = itertools.count()  # a token's number is never given twice
        #: How many trees were walked (``"walked"``) and reused (``"reused"``).
        self.counts = {"walked": 0, "reused": 0}

    def __call__(self, fn: Callable) -> Optional[tuple]:
        return self._entry(fn)[0]

    def token(self, fn: Callable) -> Optional[tuple]:
        """``("tree", n)``, the same ``n`` for equal trees; ``()`` and ``None`` as the tree."""
        return self._entry(fn)[1]

    def _entry(self, fn: Callable) -> tuple:
        owner = getattr(fn, "__self__", None)
        if not isinstance(owner, torch.nn.Module):
            return (), ()
        entry = self._trees.get(id(owner))
        if entry is not None and entry[0] is owner and entry[1].same():
            self.counts["reused"] += 1
            return entry[2], entry[3]
        self.counts["walked"] += 1
        tree = module_tree(fn)
        if tree is None:
            return None, None
        token = self._tokens.get(tree)
        if token is None:
            token = self._tokens[tree] = ("tree", next(self._numbers))
            if len(self._tokens) > 16 * self.size:  # a tree dropped here gets a new number
                self._tokens.pop(next(iter(self._tokens)))
        try:
            snapshot = _Snapshot(owner)
        except _Unkeyable:
            return tree, token
        self._trees.pop(id(owner), None)
        if len(self._trees) >= self.size:
            self._trees.pop(next(iter(self._trees)))
        self._trees[id(owner)] = (owner, snapshot, tree, token)
        return tree, token
