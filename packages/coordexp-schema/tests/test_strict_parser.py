"""The generic strict parser on small purpose-built schemas."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest

from coordexp_schema import ConfigError, parse_strict
from coordexp_schema.fields import knob


@dataclass(frozen=True, kw_only=True)
class Leaf:
    name: str = knob(doc="a name")
    port: int = knob(1, ge=1, le=65535, doc="a port")


@dataclass(frozen=True, kw_only=True)
class Node:
    flag: bool = knob(False, doc="a flag")
    ratio: float = knob(0.5, ge=0, le=1, doc="a ratio")
    mode: Literal["a", "b"] = knob("a", doc="a mode")
    level: Literal[0, 1, 2] = knob(0, doc="a level")
    placement: Literal["colocate", "server"] = knob("colocate", doc="a placement")
    limit: int | None = knob(None, gt=0, doc="a limit")
    leaves: tuple[Leaf, ...] = knob((), doc="leaves")
    table: dict[str, int] = knob(factory=dict, doc="a table")
    free: dict[str, Any] = knob(factory=dict, doc="free")
    either: str | dict[str, Any] | None = knob(None, doc="either")


def issues_of(payload: object) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_strict(Node, payload)
    return [(i.path, i.message) for i in info.value.issues]


def test_valid_payload_parses_into_frozen_normalised_instance() -> None:
    node = parse_strict(
        Node,
        {"ratio": 1, "leaves": [{"name": "x", "port": 80}], "table": {"k": 3}, "level": 2},
    )
    assert node.ratio == 1.0
    assert isinstance(node.ratio, float)
    assert node.leaves == (Leaf(name="x", port=80),)
    assert node.table == {"k": 3}
    with pytest.raises(AttributeError):
        node.flag = True  # type: ignore[misc]


def test_unknown_key_in_list_item_names_the_indexed_path() -> None:
    found = issues_of({"leaves": [{"name": "x"}, {"name": "y", "unknown_flag": 1}]})
    assert found == [
        (
            "leaves[1].unknown_flag",
            "Unknown leaves[1] keys: ['unknown_flag']; accepted keys: ['name', 'port']",
        )
    ]


def test_unknown_key_suggests_the_close_known_key() -> None:
    (issue,) = issues_of({"ratoi": 0.1})
    assert issue == ("ratoi", "Unknown top-level keys: ['ratoi']; did you mean 'ratio'?")


def test_unknown_key_with_parent_path_uses_the_seed_wording() -> None:
    with pytest.raises(ConfigError) as info:
        parse_strict(Leaf, {"name": "x", "colour": 1}, path="a.b[0]")
    assert info.value.issues[0].path == "a.b[0].colour"
    assert info.value.issues[0].message.startswith("Unknown a.b[0] keys: ['colour']")


def test_every_problem_is_reported_in_one_error() -> None:
    found = issues_of({"flag": "yes", "mode": "c", "limit": "3", "leaves": [{"port": 0}], "zzz": 1})
    paths = [p for p, _ in found]
    assert sorted(paths) == ["flag", "leaves[0].name", "limit", "mode", "zzz"]


def test_type_errors_name_expected_and_received() -> None:
    found = dict(issues_of({"flag": 1, "limit": "3", "ratio": True, "leaves": {"a": 1}}))
    assert found["flag"] == "expected bool, got int 1"
    assert found["limit"] == "expected int or null, got string '3'"
    assert found["ratio"] == "expected number, got bool true"
    assert found["leaves"] == "expected list of mapping, got a mapping"


def test_bool_is_not_an_int_and_strings_are_not_coerced() -> None:
    assert dict(issues_of({"limit": True})) == {"limit": "expected int or null, got bool true"}
    assert dict(issues_of({"level": True}))["level"].startswith("expected one of 0, 1, 2")


def test_literal_rejects_non_members_with_a_suggestion() -> None:
    assert dict(issues_of({"placement": "serer", "mode": "A"})) == {
        "placement": "expected one of 'colocate', 'server', got string 'serer'; "
        "did you mean 'server'?",
        "mode": "expected one of 'a', 'b', got string 'A'",
    }


def test_missing_required_field_is_reported_with_its_path() -> None:
    assert issues_of({"leaves": [{}]}) == [
        ("leaves[0].name", "missing required key (expected string)")
    ]


def test_bounds_are_checked_after_shape() -> None:
    found = dict(issues_of({"ratio": 1.5, "limit": 0, "leaves": [{"name": "x", "port": 70000}]}))
    assert found == {
        "ratio": "must be in [0, 1], got 1.5",
        "limit": "must be > 0, got 0",
        "leaves[0].port": "must be in [1, 65535], got 70000",
    }


def test_non_finite_numbers_are_rejected() -> None:
    assert dict(issues_of({"ratio": float("nan")})) == {
        "ratio": "expected a finite number, got nan"
    }


def test_union_picks_the_member_matching_the_shape() -> None:
    assert parse_strict(Node, {"either": "ds.json"}).either == "ds.json"
    assert parse_strict(Node, {"either": {"zero": 2}}).either == {"zero": 2}
    assert dict(issues_of({"either": 3})) == {
        "either": "expected string or mapping of string to any value or null, got int 3"
    }


def test_mapping_values_are_typed_with_key_paths() -> None:
    assert dict(issues_of({"table": {"k": "v"}})) == {"table.k": "expected int, got string 'v'"}


def test_free_mapping_accepts_any_keys_and_is_a_copy() -> None:
    source: dict[str, Any] = {"free": {"x": [1, {"y": 2}]}}
    node = parse_strict(Node, source)
    source["free"]["x"][1]["y"] = 3
    assert node.free == {"x": [1, {"y": 2}]}


def test_non_mapping_payload_is_a_type_error() -> None:
    assert issues_of([1]) == [("", "expected mapping, got a list")]
