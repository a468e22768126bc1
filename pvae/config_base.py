"""The base of every config section (:mod:`pvae.config`): strict, no unknown keys."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator


def _list_to_tuple(value: Any) -> Any:
    # YAML gives lists; strict validation takes only tuples for a tuple field
    return tuple(value) if isinstance(value, list) else value


#: A YAML list of whole numbers, held as a tuple.
IntList = Annotated[tuple[int, ...], BeforeValidator(_list_to_tuple)]


class _Section(BaseModel):
    """Strict: no unknown keys, no type coercion; a null section is its defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_defaults(cls, values: Any) -> Any:
        return {} if values is None else values
