"""``load_config``: YAML file (+ ``extends``) + overrides → a validated ``TrainingConfig``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from coordexp_schema.config import TrainingConfig
from coordexp_schema.issues import ConfigError, ConfigIssue
from coordexp_schema.overrides import apply_overrides
from coordexp_schema.strict import parse_strict
from coordexp_schema.yaml_files import Locations, load_yaml_with_extends


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> TrainingConfig:
    """Load, merge, override and strictly validate a config file.

    Args:
        path: the YAML config file.
        overrides: ``dotted.key=value`` strings applied in order after ``extends``.

    Returns:
        The frozen, normalised config. Loading does not touch the filesystem beyond the
        YAML files (checkpoint and data paths are checked when training starts).

    Raises:
        ConfigError: every problem found, each with its dotted path and, where known,
            the ``file:line:column`` or override that wrote it.
    """
    data, locations = load_config_data(path, overrides)
    return parse_config_data(data, locations, source=str(path))


def load_config_data(
    path: str | Path, overrides: Iterable[str] = ()
) -> tuple[dict[str, Any], Locations]:
    """The merged, overridden YAML data of a config file, before schema validation."""
    data, locations = load_yaml_with_extends(path)
    return apply_overrides(data, overrides, locations)


def parse_config_data(
    data: Mapping[str, Any], locations: Locations | None = None, source: str | None = None
) -> TrainingConfig:
    """Validate merged config data; issues get locations from ``locations`` where known."""
    try:
        return parse_strict(TrainingConfig, data)
    except ConfigError as exc:
        located = [_locate(issue, locations or {}) for issue in exc.issues]
        raise ConfigError(located, source=source) from None


def _locate(issue: ConfigIssue, locations: Locations) -> ConfigIssue:
    path = issue.path
    while path:
        if path in locations:
            return ConfigIssue(issue.path, issue.message, locations[path])
        path = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
        if path == issue.path:
            break
    return issue
