"""Normalised config → plain data (and YAML text) that loads back to an equal config."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from coordexp_schema.strict import init_fields
from coordexp_schema.yaml_files import StrictYamlDumper


def to_data(value: object) -> Any:
    """Plain YAML data of a config value: dataclasses → dicts, tuples → lists.

    Every field is written, defaults included, so the result documents the whole
    effective config; ``parse_strict(type(cfg), to_data(cfg)) == cfg`` for any parsed
    config ``cfg``.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_data(getattr(value, f.name)) for f in init_fields(type(value))}
    if isinstance(value, tuple | list):
        return [to_data(v) for v in value]
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    return value


def to_yaml(value: object) -> str:
    """YAML text of :func:`to_data`, keys in schema order."""
    return yaml.dump(
        to_data(value), Dumper=StrictYamlDumper, sort_keys=False, allow_unicode=True, width=100
    )
