"""A recording of :mod:`pvae.replay` turned into one Python function.

Replaying a list of :class:`~pvae.replay_ops.Op` s in a loop costs, per operation, the
loop's own work: reading the op's slots, building an argument list, storing the
outputs. On a small model (about 40 operations a step) that is a measurable part of
the step. :func:`compile_ops` writes the same calls, in the same order and with the
same arguments, as the straight-line source of one function (``v3 = f1(v0, k2)``,
each operand a local variable, each held object a name bound once) and compiles it,
so a replay runs as a hand-written step would: one Python call per tensor operation.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from pvae.replay_ops import Slot, _slots

#: What ``torch.broadcast_tensors(*tensors)`` calls once it has checked for overrides.
_BROADCAST = torch._C._VariableFunctions.broadcast_tensors


class _Writer:
    """Builds the source of the function and the namespace its names are bound in."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {}
        self.held: dict[int, str] = {}  # id of a held object -> its name

    def hold(self, value: Any) -> str:
        """A name for ``value`` (an argument held by reference, or a function)."""
        name = self.held.get(id(value))
        if name is None:
            name = self.held[id(value)] = f"k{len(self.held)}"
            self.names[name] = value
        return name

    def expr(self, template: Any) -> str:
        """Source text that evaluates to ``template`` with its slots filled (as
        :func:`pvae.replay_ops.fill` does: containers rebuilt with their own type)."""
        if isinstance(template, Slot):
            return f"v{template.index}"
        if isinstance(template, (list, tuple, dict)) and _has_slot(template):
            if isinstance(template, dict):
                items = ", ".join(f"{self.hold(k)}: {self.expr(v)}" for k, v in template.items())
                inner = "{" + items + "}"
                return inner if type(template) is dict else f"{self.hold(type(template))}({inner})"
            items = "".join(f"{self.expr(v)}, " for v in template)
            if type(template) is list:
                return f"[{items}]"
            if type(template) is tuple:
                return f"({items})"
            return f"{self.hold(type(template))}(({items}))"
        return self.hold(template)

    def call(self, func: Callable, args: tuple, kwargs: dict) -> str:
        parts = [self.expr(a) for a in args]
        if func is torch.functional.broadcast_tensors and not kwargs:
            # the same ATen call without its Python wrapper (7.6 -> 2.6 µs on one thread)
            return f"{self.hold(_BROADCAST)}(({''.join(p + ', ' for p in parts)}))"
        if func is F.relu and len(args) == 1 and set(kwargs) <= {"inplace"} and isinstance(
                kwargs.get("inplace", False), bool):  # what F.relu calls, without it
            return f"{self.hold(torch.relu_ if kwargs.get('inplace') else torch.relu)}({parts[0]})"
        for k, v in kwargs.items():
            if isinstance(k, str) and k.isidentifier():
                parts.append(f"{k}={self.expr(v)}")
            else:
                parts.append(f"**{{{self.hold(k)}: {self.expr(v)}}}")
        return f"{self.hold(func)}({', '.join(parts)})"


def _has_slot(template: Any) -> bool:
    if isinstance(template, Slot):
        return True
    if isinstance(template, (list, tuple)):
        return any(_has_slot(t) for t in template)
    if isinstance(template, dict):
        return any(_has_slot(t) for t in template.values())
    return False


def _last_uses(ops: list, result: int) -> dict[int, list[int]]:
    """Per operation, the slots read for the last time there (never ``result``)."""
    last: dict[int, int] = {}
    for i, op in enumerate(ops):
        for s in _slots((op.args, op.kwargs)):
            last[s] = i
    out: dict[int, list[int]] = {}
    for s, i in last.items():
        if s != result:
            out.setdefault(i, []).append(s)
    return out


def compile_ops(ops: list, result: int, num_inputs: int) -> Callable[[list], Any]:
    """``replay(inputs)``: the operations ``ops`` run in order on ``inputs`` (the values
    of slots ``0 .. num_inputs - 1``), returning the value of slot ``result``. Each value
    is let go after its last use, as the program itself lets its temporaries go (an
    evaluation chunk's intermediates are megabytes each: kept to the end, every chunk
    would take fresh memory from the system)."""
    w = _Writer()
    lines = ["def replay(inputs):"]
    if num_inputs:
        lines.append("    " + "".join(f"v{i}, " for i in range(num_inputs)) + "= inputs")
    last = _last_uses(ops, result)
    for i, op in enumerate(ops):
        call = w.call(op.func, op.args, op.kwargs)
        if op.out is None:
            lines.append(f"    {call}")
        elif isinstance(op.out, int):
            lines.append(f"    v{op.out} = {call}")
        else:
            lines.append(f"    t = {call}")
            lines.extend(f"    v{s} = t[{i}]" for i, s in enumerate(op.out) if s is not None)
            lines.append("    del t")
        lines.extend(f"    del v{s}" for s in sorted(last.get(i, ())))
    lines.append(f"    return v{result}")
    namespace = dict(w.names)
    exec(compile("\n".join(lines), "<pvae replay>", "exec"), namespace)  # noqa: S102
    return namespace["replay"]
