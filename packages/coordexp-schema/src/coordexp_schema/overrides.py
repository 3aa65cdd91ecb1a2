"""Dotted command-line overrides: ``training.learning_rate=1e-5``, ``a.servers[0].base_url=…``.

The value is read as YAML (so ``true``, ``3``, ``1e-5``, ``[a, b]``, ``null`` mean what they
mean in a config file); the result is validated by the same schema as the file.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from coordexp_schema.issues import ConfigError, ConfigIssue
from coordexp_schema.yaml_files import Locations, parse_yaml_text

_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\])*)")


def parse_override_key(key: str) -> list[str | int]:
    """Split ``a.b[2].c`` into ``["a", "b", 2, "c"]``.

    Raises:
        ValueError: when ``key`` is not a dotted path of names with optional ``[index]``.
    """
    steps: list[str | int] = []
    for part in key.split("."):
        m = _SEGMENT.fullmatch(part)
        if m is None:
            raise ValueError(f"{key!r} is not a dotted key path like training.learning_rate")
        steps.append(m.group(1))
        steps.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return steps


def apply_overrides(
    data: Mapping[str, Any], overrides: Iterable[str], locations: Locations | None = None
) -> tuple[dict[str, Any], Locations]:
    """Apply ``key=value`` overrides in order to a copy of ``data``.

    Missing intermediate mappings are created; list items must already exist.

    Returns:
        The new data and ``locations`` with each overridden path pointing at its override.

    Raises:
        ConfigError: listing every malformed override.
    """
    result = copy.deepcopy(dict(data))
    where = dict(locations or {})
    issues: list[ConfigIssue] = []
    for text in overrides:
        label = f"override {text!r}"
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            issues.append(ConfigIssue("", "expected key.path=value", label))
            continue
        try:
            steps = parse_override_key(key)
            value, _ = parse_yaml_text(raw, label)
        except ValueError as exc:
            found = exc.issues if isinstance(exc, ConfigError) else [ConfigIssue(key, str(exc))]
            issues.extend(ConfigIssue(i.path or key, i.message, label) for i in found)
            continue
        problem = _set(result, steps, value)
        if problem is not None:
            issues.append(ConfigIssue(key, problem, label))
            continue
        where[key] = label
    if issues:
        raise ConfigError(issues, source="overrides")
    return result, where


def _set(root: dict[str, Any], steps: list[str | int], value: Any) -> str | None:
    node: Any = root
    walked = ""
    for step, nxt in zip(steps, [*steps[1:], None], strict=True):
        last = nxt is None
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                size = len(node) if isinstance(node, list) else 0
                return f"{walked} has no item [{step}] (it has {size}); edit the file to add items"
            if last:
                node[step] = value
                return None
            walked = f"{walked}[{step}]"
            node = node[step]
        else:
            if not isinstance(node, dict):
                return f"{walked} is not a mapping, so it has no key {step!r}"
            walked = f"{walked}.{step}" if walked else step
            if last:
                node[step] = value
                return None
            if node.get(step) is None:
                node[step] = [] if isinstance(nxt, int) else {}
            node = node[step]
    return None
