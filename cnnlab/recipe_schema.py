"""The recipe's JSON Schema, read off the same typed schema the loader checks (config.py), so
editors complete and check recipe files as cnnlab will: `cnnlab schema > recipe.schema.json`,
then `#:schema recipe.schema.json` as a recipe's first line (Taplo, Even Better TOML)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Literal

from cnnlab.config import Range, Recipe

_PLAIN = {int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"},
          bool: {"type": "boolean"}, dict: {"type": "object"}}


def recipe_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a recipe file."""
    schema = _object(Recipe)
    schema["required"] = []  # a file's name stands in for a missing `name`
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "cnnlab recipe", **schema}


def _object(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = dataclasses.fields(cls)
    return {"type": "object", "additionalProperties": False,
            "properties": {f.name: _type(hints[f.name]) for f in fields},
            "required": [f.name for f in fields if f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING]}


def _type(hint: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(hint):
        return _object(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [_type(option) for option in typing.get_args(hint) if option is not type(None)]
        return options[0] if len(options) == 1 else {"anyOf": options}
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        schema = dict(_type(base))
        for limit in (e for e in extras if isinstance(e, Range)):
            if limit.low is not None:
                schema["exclusiveMinimum" if limit.open_low else "minimum"] = limit.low
            if limit.high is not None:
                schema["exclusiveMaximum" if limit.open_high else "maximum"] = limit.high
        return schema
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin is list:
        (item,) = typing.get_args(hint)
        return {"type": "array", "items": _type(item)}
    return dict(_PLAIN[hint])
