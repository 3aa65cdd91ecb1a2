"""Properties over the whole schema (hypothesis).

* Inserting one unknown key into any schema-owned mapping of a valid config yields
  exactly one issue, whose path is that key's dotted path.
* For random valid configs, dump-then-load (as data and as YAML text) is the identity.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coordexp_schema import ConfigError, TrainingConfig, load_config, parse_strict
from coordexp_schema.dump import to_data, to_yaml
from coordexp_schema.fields import field_bounds, rejected_keys
from coordexp_schema.strict import init_fields, is_union, type_hints
from coordexp_schema.yaml_files import parse_yaml_text

REPO = Path(__file__).resolve().parents[3]
BASES = [
    to_data(load_config(REPO / name))
    for name in (
        "configs/stage2_ab/vllm_server.yaml",
        "configs/stage1/qwen3vl_2b_lora.yaml",
        "configs/rollout_matching/vllm_colocate.yaml",
    )
]
Step = str | int


def _section_class(tp: Any) -> type | None:
    for c in [tp, *get_args(tp)] if is_union(tp) else [tp]:
        if isinstance(c, type) and dataclasses.is_dataclass(c):
            return c
    return None


def schema_mappings(cls: type, data: Any, steps: tuple[Step, ...] = ()) -> list[Any]:
    """(steps, dataclass) of every mapping in ``data`` that the schema owns."""
    found: list[Any] = [(steps, cls)]
    hints = type_hints(cls)
    for f in init_fields(cls):
        value = data.get(f.name)
        tp = hints[f.name]
        if get_origin(tp) is tuple and isinstance(value, list):
            item_cls = _section_class(get_args(tp)[0])
            if item_cls is not None:
                for i, item in enumerate(value):
                    found += schema_mappings(item_cls, item, (*steps, f.name, i))
        section = _section_class(tp)
        if section is not None and isinstance(value, dict):
            found += schema_mappings(section, value, (*steps, f.name))
    return found


def dotted(steps: tuple[Step, ...]) -> str:
    out = ""
    for s in steps:
        out = f"{out}[{s}]" if isinstance(s, int) else (f"{out}.{s}" if out else s)
    return out


def node_at(data: Any, steps: tuple[Step, ...]) -> Any:
    for s in steps:
        data = data[s]
    return data


MAPPINGS = [
    (i, steps, cls)
    for i, b in enumerate(BASES)
    for steps, cls in schema_mappings(TrainingConfig, b)
]
KEY = st.from_regex(r"[a-z][a-z0-9_]{0,14}", fullmatch=True)


def test_the_walk_reaches_nested_list_items() -> None:
    paths = {dotted(steps) for _, steps, _ in MAPPINGS}
    assert "rollout_matching.vllm.server.servers[1]" in paths
    assert "stage2_ab.channel_b" in paths
    assert "" in paths


@settings(max_examples=80, deadline=None)
@given(target=st.sampled_from(MAPPINGS), key=KEY)
def test_one_unknown_key_anywhere_gives_exactly_one_issue_at_its_path(
    target: tuple[int, tuple[Step, ...], type], key: str
) -> None:
    base, steps, cls = target
    known = {f.name for f in init_fields(cls)} | set(rejected_keys(cls))
    assume(key not in known)
    data = copy.deepcopy(BASES[base])
    node_at(data, steps)[key] = 1
    with pytest.raises(ConfigError) as info:
        parse_strict(TrainingConfig, data)
    (issue,) = info.value.issues
    assert issue.path == dotted((*steps, key))
    assert f"keys: [{key!r}]" in issue.message


def leaf_strategy(tp: Any, bounds: Any) -> st.SearchStrategy[Any] | None:
    """Values of a scalar field type within its bounds; None for non-leaf types."""
    if is_union(tp):
        inner = [a for a in get_args(tp) if a is not type(None)]
        if len(inner) != 1:
            return None
        sub = leaf_strategy(inner[0], bounds)
        return None if sub is None else st.one_of(st.none(), sub)
    if get_origin(tp) is Literal:
        return st.sampled_from(get_args(tp))
    if get_origin(tp) is tuple:
        (item,) = [a for a in get_args(tp) if a is not Ellipsis]
        if get_origin(item) is Literal:
            return st.lists(st.sampled_from(get_args(item)), unique=True)
        if item is str:
            return st.lists(st.text(min_size=1, max_size=8), max_size=3)
        return None
    low = bounds.ge if bounds.ge is not None else bounds.gt
    high = bounds.le if bounds.le is not None else bounds.lt
    if tp is bool:
        return st.booleans()
    if tp is int:
        lo = -(10**6) if low is None else math.floor(low) + (1 if bounds.gt is not None else 0)
        hi = 10**6 if high is None else math.ceil(high) - (1 if bounds.lt is not None else 0)
        return st.integers(lo, hi)
    if tp is float:
        return st.floats(
            min_value=-1e6 if low is None else low,
            max_value=1e6 if high is None else high,
            exclude_min=bounds.gt is not None,
            exclude_max=bounds.lt is not None,
            allow_nan=False,
        )
    if tp is str:
        tricky = st.sampled_from(["1e5", "-2E+3", "on", "null", "0x1F", "'q'", "a: b", "[x]"])
        return st.one_of(tricky, st.text(min_size=1, max_size=30))
    return None


def leaves(cls: type, data: Any, steps: tuple[Step, ...] = ()) -> list[Any]:
    found: list[Any] = []
    hints = type_hints(cls)
    for f in init_fields(cls):
        tp = hints[f.name]
        section = _section_class(tp)
        if section is not None and get_origin(tp) is not tuple:
            if isinstance(data.get(f.name), dict):
                found += leaves(section, data[f.name], (*steps, f.name))
            continue
        strategy = leaf_strategy(tp, field_bounds(f))
        if strategy is not None:
            found.append(((*steps, f.name), strategy))
    return found


LEAVES = [
    (i, steps, strat) for i, b in enumerate(BASES) for steps, strat in leaves(TrainingConfig, b)
]


@st.composite
def valid_configs(draw: st.DrawFn) -> TrainingConfig:
    base = draw(st.integers(0, len(BASES) - 1))
    data = copy.deepcopy(BASES[base])
    candidates = [(steps, strat) for i, steps, strat in LEAVES if i == base]
    for steps, strat in draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=4)):
        node_at(data, steps[:-1])[steps[-1]] = draw(strat)
    try:
        return parse_strict(TrainingConfig, data)
    except ConfigError:
        assume(False)
        raise


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(cfg=valid_configs())
def test_dump_then_load_is_identity(cfg: TrainingConfig) -> None:
    assert parse_strict(TrainingConfig, to_data(cfg)) == cfg
    text = to_yaml(cfg)
    data, _ = parse_yaml_text(text, "dumped")
    assert parse_strict(TrainingConfig, data) == cfg
