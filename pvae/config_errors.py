"""Configuration errors: pydantic's validation errors in pvae's words.

Every error names the dotted key (``'model.z_dim'``), the value and what is
allowed; an unknown key is told the closest valid one. :mod:`pvae.config`
raises them.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any, Literal, Optional

from pydantic import ValidationError


class ConfigError(ValueError):
    """A configuration that cannot be used."""


_TYPE_WORDS = {  # pydantic error type -> what the key must be
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
    "string_type": "a string", "tuple_type": "a list", "list_type": "a list",
    "dict_type": "a mapping", "finite_number": "a finite number",
}


def _field(root, loc: tuple) -> Any:
    """The pydantic ``FieldInfo`` at ``loc`` (section, key) of the model ``root``, or None."""
    cls: Any = root
    info = None
    for part in loc:
        fields = getattr(cls, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        cls = info.annotation
    return info


def _range_words(root, loc: tuple) -> str:
    """The range a field's constraints allow, in words: 'a positive int', 'in [0, 1)'."""
    info = _field(root, loc)
    bound = {}  # pydantic keeps Field(ge=..., gt=..., lt=...) as metadata objects
    for m in info.metadata:
        bound.update({k: getattr(m, k) for k in ("ge", "gt", "lt") if hasattr(m, k)})
    ge, gt, lt = bound.get("ge"), bound.get("gt"), bound.get("lt")
    if ge is not None and lt is not None:
        words = f"in [{ge:g}, {lt:g})"
    elif ge == 1 and info.annotation in (int, Optional[int]):
        words = "a positive int"
    elif gt == 0:
        words = "positive"
    elif ge is not None:
        words = f">= {ge:g}"
    else:  # pragma: no cover - every constrained field is one of the above
        words = "in range"
    nullable = type(None) in typing.get_args(info.annotation)
    return words + (" or null" if nullable else "")


def _key(loc: tuple) -> str:
    """``('model', 'hidden_dims', 1)`` -> ``'model.hidden_dims[1]'``."""
    return (".".join(p for p in loc if isinstance(p, str))
            + "".join(f"[{p}]" for p in loc if isinstance(p, int)))


def _unknown(root, loc: tuple) -> ConfigError:
    where, key = loc[:-1], str(loc[-1])
    section = _field(root, where).annotation if where else root
    valid = list(section.model_fields) if section is not None else []
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    prefix = "".join(f"{p}." for p in where)
    return ConfigError(f"unknown config key {prefix + key!r}{hint} Valid keys: {', '.join(valid)}")


def config_error(err: ValidationError, root) -> ConfigError:
    """The first of pydantic's errors validating the model ``root`` (a whole config) as a
    :class:`ConfigError` naming the key and the value (an unknown key first: a misspelt key
    is the likeliest cause of the rest)."""
    e = sorted(err.errors(), key=lambda e: e["type"] not in ("extra_forbidden", "invalid_key"))[0]
    kind, loc, value = e["type"], tuple(e["loc"]), e.get("input")
    cause = (e.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):  # a rule of ours, raised in a validator
        return cause
    if kind in ("extra_forbidden", "invalid_key"):
        return _unknown(root, loc)
    if kind in ("model_type", "model_attributes_type", "dict_type") and len(loc) == 1:
        return ConfigError(f"config section {loc[0]!r} must be a mapping, got {value!r}")
    key = _key(loc)
    if kind == "literal_error":
        allowed = ", ".join(map(repr, typing.get_args(_literal(root, loc))))
        null = ", or null" if type(None) in typing.get_args(_field(root, loc).annotation) else ""
        return ConfigError(f"config key {key!r} must be one of {allowed}{null}, got {value!r}")
    if kind in _TYPE_WORDS:
        return ConfigError(f"config key {key!r} must be {_TYPE_WORDS[kind]}, got {value!r}")
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return ConfigError(f"config key {key!r} must be {_range_words(root, loc)}, got {value!r}")
    return ConfigError(f"config key {key!r}: {e['msg']}, got {value!r}")  # any other kind


def _literal(root, loc: tuple) -> Any:
    """The ``Literal[...]`` type of the field at ``loc`` (inside ``Optional``)."""
    tp = _field(root, loc).annotation
    if typing.get_origin(tp) is Literal:
        return tp
    return next(a for a in typing.get_args(tp) if typing.get_origin(a) is Literal)
