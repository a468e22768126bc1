"""What a Pyro program's run depends on besides tensor values: the key under which the
ELBOs' fast path (:mod:`pvae.replay`, :mod:`pvae.fast_elbo`) and the JIT ELBOs
(:mod:`pvae.elbos`) reuse a recorded or compiled loss.

Two calls with equal keys run the same tensor operations in the same order (the
same sites, distributions, plates, scales and masks), so a loss recorded or compiled
at one may be reused at the other. :class:`LatentScale` (KL warm-up) lives here
because the warm-up weight is part of the key.
"""

from __future__ import annotations

import functools
import operator
import types
from typing import Any, Callable, Optional

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.util import site_is_subsample


class LatentScale(Messenger):
    """Multiply the scale of every latent (unobserved) sample site: KL warm-up."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and not site_is_subsample(msg):
            msg["scale"] = msg["scale"] * self.factor


def signature(args: tuple) -> tuple:
    """What a run depends on in its positional arguments: tensors' shapes, dtypes and
    devices, other values as they are."""
    return tuple((tuple(a.shape), a.dtype, a.device) if isinstance(a, torch.Tensor) else a
                 for a in args)


def keywords(kwargs: dict) -> tuple:
    """Keyword arguments as a hashable key (tensors by shape, dtype and device)."""
    out = []
    for name, value in sorted(kwargs.items()):
        (value,) = signature((value,))
        try:
            hash(value)
        except TypeError:
            value = repr(value)
        out.append((name, value))
    return tuple(out)


def _declares(fn: Callable) -> bool:
    """Whether ``fn`` is a bound method of an object that declares its program constants."""
    return callable(getattr(getattr(fn, "__self__", None), "program_constants", None))


def program_constants(fn: Callable) -> Any:
    """The Python settings a model's program reads when it runs (``num_data``, ``beta``...),
    declared by the object a bound method belongs to; ``None`` for plain functions."""
    declare = getattr(getattr(fn, "__self__", None), "program_constants", None)
    return declare() if callable(declare) else None


def latent_weight() -> float:
    """The product of the active :class:`LatentScale` factors (KL warm-up), 1 for none."""
    weight = 1.0
    for handler in _PYRO_STACK:
        if isinstance(handler, LatentScale):
            weight = weight * float(handler.factor)
    return weight


_PLAIN = (bool, int, float, str, type(None))
#: Private flags that change no tensor operation: pvae's switch of Pyro's parameter
#: registration (:meth:`pvae.models.base.PVAEModel.unregistered`), set and unset around
#: every training step.
_NOT_READ = frozenset({"_register_params"})
#: Objects keyed by identity that cannot change behind it (functions and classes).
_BY_IDENTITY = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                functools.partial, torch.dtype, torch.device)


#: Containers longer than this are not copied into every step's key (a per-step log
#: appended to by the program would make each key longer than the last).
_LONGEST = 64


class _Unkeyable(Exception):
    """An attribute whose value a key cannot hold (an unhashable object of unknown kind)."""


def _frozen(v: Any) -> Any:
    """A hashable stand-in for an attribute's value that changes when the value does: a
    tensor by identity (one *replaced* between steps shows; the recording holds the old
    one, so its identity is not reused), numbers of any kind (numpy's too), containers
    element by element. Raises :class:`_Unkeyable` for an unhashable object of another kind
    or a container of more than ``_LONGEST`` items."""
    if isinstance(v, torch.Tensor):
        return ("tensor", id(v))
    if isinstance(v, (list, tuple, dict, set)) and len(v) > _LONGEST:
        raise _Unkeyable(f"a {type(v).__name__} of {len(v)} items")  # a log that grows
    if isinstance(v, (set, frozenset)):
        return (frozenset, frozenset(map(_frozen, v)))
    if isinstance(v, (list, tuple)):
        return (v.__class__, tuple(map(_frozen, v)))
    if isinstance(v, dict):
        return (dict, tuple((k, _frozen(x)) for k, x in v.items()))
    if isinstance(v, slice):
        return (slice, v.start, v.stop, v.step)
    if isinstance(v, torch.nn.Module):  # a network kept in a list: walked as a submodule is
        out: list = []
        _module_states(v, out)
        return ("module", tuple(out))
    if type(v).__hash__ is object.__hash__ and not isinstance(v, _BY_IDENTITY):
        # hashed by identity: a change to its attributes (``cfg.scale = 3``) would not show
        raise _Unkeyable(f"a {type(v).__name__} object, whose attributes may change")
    try:
        hash(v)
    except TypeError:
        raise _Unkeyable(type(v).__name__) from None
    return v  # numbers, strings, functions, classes: compared as they compare


#: ``torch.nn.Module``'s hook registries, per module and global: a replay runs the recorded
#: tensor operations, not the modules' calls, so no hook would run. A module with a hook (or
#: any global module hook) is therefore never replayed: its program runs every step.
MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
#: The global registries, read from ``torch.nn.modules.module`` at every key (not held:
#: ``module._global_forward_hooks = OrderedDict()`` rebinds one, and the next
#: ``register_module_forward_hook`` writes into the new dict).
_GLOBAL_HOOKS = operator.attrgetter(*("_global" + k for k in MODULE_HOOKS))


def module_hooks(d: dict) -> bool:
    """Whether the module whose ``__dict__`` is ``d`` has a forward or backward hook."""
    return any(d.get(k) for k in MODULE_HOOKS)


def _module_states(m: torch.nn.Module, out: list) -> None:
    """Append the state of ``m`` and of its submodules, depth first, to ``out``; a module
    with a hook cannot be keyed (:data:`MODULE_HOOKS`)."""
    d = m.__dict__
    if module_hooks(d):
        raise _Unkeyable
    out.append(id(m))
    out.append(m.__class__)  # ``m.__class__ = ...`` changes what forward does
    out.append(d.get("training"))
    params = d["_parameters"].values()
    out.extend(map(id, params))
    out.extend([p is not None and p.requires_grad for p in params])  # a branch may read it
    # model.double() / .to(device) swap a parameter's data and keep its identity
    out.extend([None if p is None else (p.dtype, p.device) for p in params])
    out.extend(map(id, d["_buffers"].values()))
    for k, v in d.items():
        if k[0] == "_":  # private attributes: tensors and plain values (nn.Module's own
            if isinstance(v, torch.Tensor):  # bookkeeping, registries and caches, is not read)
                out.append((k, id(v)))
            elif v.__class__ in _PLAIN and k not in _NOT_READ:
                out.append((k, v))
        elif v.__class__ in _PLAIN:
            out.append((k, v))
        else:
            out.append((k, _frozen(v)))
    for child in d["_modules"].values():
        if child is not None:
            _module_states(child, out)
        out.append(None)  # where a module's children end: the tree's shape is in the key


def module_tree(fn: Callable) -> Optional[tuple]:
    """What the networks under the module a bound method belongs to contribute: every
    submodule's identity, train/eval mode, parameters (by identity, with ``requires_grad``:
    a likelihood's ``log_prob`` takes a no-gradient path on frozen inputs, and dtype and
    device: ``model.double()`` changes them in place), buffers and
    attributes (numbers, flags, strings, containers of them, and plain tensor attributes
    by identity), at every depth. A network replaced (``vae.decoder = ...`` or deeper), a
    submodule switched to eval mode alone, a setting changed on one (a likelihood's fixed
    scale, a numpy number, a list of weights) or a tensor attribute replaced
    (``decoder.temperature = torch.tensor(...)``) shows as a new key. ``None`` when an
    attribute is an unhashable object of another kind (what the program reads from it
    cannot be keyed), an object hashed by identity whose own attributes may change (a
    settings object: ``cfg.scale = 3`` would not show), or a module has a forward or
    backward hook (:data:`MODULE_HOOKS`): such a model is not replayed. Each module's
    class and private plain values (``m._gain``) are in the key, and networks kept in
    plain lists are walked as submodules are."""
    owner = getattr(fn, "__self__", None)
    if not isinstance(owner, torch.nn.Module):
        return ()
    out: list = []
    try:
        _module_states(owner, out)
    except _Unkeyable:
        return None
    return tuple(out)


#: Where :func:`step_key` puts the KL warm-up weight (the fast path keys on it by position).
WEIGHT_AT = 4


def step_key(model: Callable, guide: Callable, args: tuple, kwargs: dict,
             trees: Callable[[Callable], Optional[tuple]] = None) -> Optional[tuple]:
    """The key of one ELBO evaluation of ``model``/``guide`` on ``args``/``kwargs`` (with
    the grad mode, default dtype and autocast state, :func:`numerics`; the module trees
    from ``trees``, default :func:`module_tree`: :class:`pvae.key_cache.TreeKeys` gives the
    same trees without walking an unchanged one again), or
    ``None`` when the run may depend on more than a key can hold: a Pyro handler other
    than :class:`LatentScale` around the call, or a plain function (not a pvae model's
    bound method) for model or guide, whose settings are not declared, or while a global
    module hook is registered (``torch.nn.modules.module.register_module_forward_hook``
    and the like: no hook runs in a replay)."""
    if any(not isinstance(h, LatentScale) for h in _PYRO_STACK) or any(
            _GLOBAL_HOOKS(torch.nn.modules.module)):
        return None
    owner = getattr(model, "__self__", None)
    same = owner is not None and owner is getattr(guide, "__self__", None)  # one object's pair
    if not (_declares(model) and (same or _declares(guide))):
        return None
    # the module tree holds every plain attribute of the owner (the program constants
    # included) and of its submodules, so the constants are not computed again here
    trees = trees or module_tree  # or TreeKeys.token: the same key, cheaper
    model_tree = trees(model)
    guide_tree = () if same else trees(guide)
    if model_tree is None or guide_tree is None:
        return None
    return (model, guide, signature(args), keywords(kwargs), latent_weight(),
            torch.is_grad_enabled(), model_tree, guide_tree, numerics())


def numerics() -> tuple:
    """The global settings that choose the operations' dtypes: the default dtype (of the
    constants a program makes) and autocast (mixed precision), on or off and its dtype,
    for CPU and CUDA. A step recorded under ``torch.autocast`` is not replayed without it."""
    if not torch._C._is_any_autocast_enabled():  # the common case, in one call
        return torch.get_default_dtype(), None, None
    return (torch.get_default_dtype(),
            *(torch.get_autocast_dtype(d) if torch.is_autocast_enabled(d) else None
              for d in ("cpu", "cuda")))
