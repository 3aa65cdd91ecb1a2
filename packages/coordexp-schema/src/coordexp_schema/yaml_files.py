"""Reading config YAML: strict syntax, key locations, and ``extends`` resolution.

YAML is read with PyYAML's safe loader plus two rules: floats follow YAML 1.2 (``1e-5`` is
a number, not a string) and a key repeated in one mapping is an error instead of a silent
overwrite. Every key's ``file:line:column`` is recorded under its dotted path so schema
errors can point at the line that caused them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from coordexp_schema.issues import ConfigError, ConfigIssue

Locations = dict[str, str]
"""Dotted config path → where it was written (``file:line:column`` or an override)."""


class StrictYamlLoader(yaml.SafeLoader):
    """Safe loader whose floats follow YAML 1.2 (``1e-5``, ``-2E+3`` are floats)."""


class StrictYamlDumper(yaml.SafeDumper):
    """Safe dumper that quotes strings :class:`StrictYamlLoader` would read as floats."""


_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
for _cls in (StrictYamlLoader, StrictYamlDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789"))


def parse_yaml_text(text: str, name: str) -> tuple[Any, Locations]:
    """Parse one YAML document.

    Args:
        text: the YAML source.
        name: file name (or other label) used in locations and messages.

    Returns:
        The data (None for an empty document) and the location of every mapping key.

    Raises:
        ConfigError: on a syntax error (with line and column) or a duplicate key.
    """
    loader = StrictYamlLoader(text)
    loader.name = name
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        locations: Locations = {}
        issues: list[ConfigIssue] = []
        _walk(node, "", name, locations, issues)
        if issues:
            raise ConfigError(issues, source=name)
        return loader.construct_document(node), locations
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            [ConfigIssue("", f"YAML syntax error: {problem}", where)], source=name
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue("", f"YAML error: {exc}", name)], source=name) from None
    finally:
        loader.dispose()


def _mark(name: str, node: yaml.Node) -> str:
    return f"{name}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _walk(node: yaml.Node, path: str, name: str, out: Locations, issues: list[ConfigIssue]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, str] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            sub = f"{path}.{key}" if path else key
            where = _mark(name, key_node)
            if key in seen:
                issues.append(
                    ConfigIssue(sub, f"duplicate key (first written at {seen[key]})", where)
                )
                continue
            seen[key] = where
            out[sub] = where
            _walk(value_node, sub, name, out, issues)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = f"{path}[{i}]"
            out[sub] = _mark(name, item)
            _walk(item, sub, name, out, issues)


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` over ``base``: mappings merge key by key, anything else is replaced.

    Lists are replaced whole and ``null`` in ``top`` replaces the base value. Inputs are
    not modified.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in top.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_yaml_with_extends(path: str | Path) -> tuple[dict[str, Any], Locations]:
    """Read a config file and the files it ``extends``, merged (later wins).

    ``extends`` is a path or a list of paths relative to the file that names it; bases are
    merged in the order listed, then the file itself on top.

    Raises:
        ConfigError: for a missing or unreadable file (naming the file that asked for it),
            an ``extends`` cycle (with the chain), a non-mapping document, YAML errors.
    """
    return _load(Path(path), (), None)


def _load(
    path: Path, chain: tuple[Path, ...], asked_by: str | None
) -> tuple[dict[str, Any], Locations]:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise ConfigError([ConfigIssue("extends", f"extends cycle: {cycle}", asked_by)])
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        reason = "does not exist" if missing else f"cannot be read: {exc}"
        if asked_by is None:
            raise ConfigError([ConfigIssue("", f"config file {path} {reason}")]) from None
        raise ConfigError(
            [ConfigIssue("extends", f"base config {path} {reason}", asked_by)]
        ) from None
    data, locations = parse_yaml_text(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else type(data).__name__
        message = f"a config file must hold a mapping at the top, got {kind}"
        raise ConfigError([ConfigIssue("", message, str(path))])
    bases = _extends_list(data.pop("extends", None), locations.get("extends", str(path)))
    merged: dict[str, Any] = {}
    merged_locations: Locations = {}
    for base in bases:
        base_data, base_locations = _load(
            path.parent / base, (*chain, resolved), locations.get("extends", str(path))
        )
        merged = deep_merge(merged, base_data)
        merged_locations.update(base_locations)
    merged_locations.update(
        (k, v) for k, v in locations.items() if k != "extends" and not k.startswith("extends[")
    )
    return deep_merge(merged, data), merged_locations


def _extends_list(value: object, where: str) -> Sequence[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ConfigError(
        [ConfigIssue("extends", "expected a file path or a list of file paths", where)]
    )
