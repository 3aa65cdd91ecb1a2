"""JSON Schema (draft 2020-12) of the whole config, derived from the dataclasses.

Editors use it for completion and inline errors (e.g. the YAML language server's
``# yaml-language-server: $schema=...`` comment). Cross-field rules are not expressible
here; ``coordexp-config check`` applies them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, get_args, get_origin

from coordexp_schema.config import TrainingConfig
from coordexp_schema.fields import field_bounds, field_doc, is_required
from coordexp_schema.strict import init_fields, is_union, type_hints

_PRIMITIVES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of ``TrainingConfig`` with one ``$defs`` entry per section class."""
    defs: dict[str, Any] = {}
    root = _dataclass_schema(TrainingConfig, defs)
    root["properties"]["extends"] = {
        "description": "Base config file(s), relative to this file; merged under it.",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "CoordExp training config",
        **root,
        "$defs": defs,
    }


def _dataclass_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in init_fields(cls):
        prop = _type_schema(hints[f.name], defs)
        doc = field_doc(f)
        if doc:
            prop["description"] = doc
        bounds = field_bounds(f)
        for key, limit in (
            ("minimum", bounds.ge),
            ("exclusiveMinimum", bounds.gt),
            ("maximum", bounds.le),
            ("exclusiveMaximum", bounds.lt),
        ):
            if limit is not None:
                prop[key] = limit
        if is_required(f):
            required.append(f.name)
        elif f.default is not dataclasses.MISSING and not dataclasses.is_dataclass(f.default):
            prop["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
        properties[f.name] = prop
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if cls.__doc__:
        schema["description"] = cls.__doc__.strip().splitlines()[0]
    if required:
        schema["required"] = required
    return schema


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = get_origin(tp)
    if tp is Any:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}
            defs[tp.__name__] = _dataclass_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if is_union(tp):
        return {"anyOf": [_type_schema(a, defs) for a in get_args(tp)]}
    if origin in (tuple, list):
        return {"type": "array", "items": _type_schema(get_args(tp)[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(get_args(tp)[1], defs)}
    if tp in _PRIMITIVES:
        return {"type": _PRIMITIVES[tp]}
    raise TypeError(f"unsupported schema type {tp!r}")
