"""Every test a spec names exists, and every capability the workspace promises has a spec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "openspec" / "specs").glob("*/spec.md"))
REFERENCE = re.compile(r"`((?:packages|tests)/[\w./-]+\.py)::(\w+)(?:\[[^\]`]*\])?`")

CAPABILITIES = {
    "workspace",
    "config-schema",
    "rollout-parsing",
    "matching",
    "packing",
    "rollout-backends",
    "stage1-training",
    "rollout-matching-sft",
    "stage2-ab-training",
    "evaluation",
}


def test_every_capability_has_a_spec() -> None:
    assert {spec.parent.name for spec in SPECS} == CAPABILITIES


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name)
def test_every_named_test_exists(spec: Path) -> None:
    missing = []
    for path, name in REFERENCE.findall(spec.read_text()):
        test_file = ROOT / path
        if not test_file.exists() or not re.search(
            rf"^\s*(?:async\s+)?def {name}\(", test_file.read_text(), re.MULTILINE
        ):
            missing.append(f"{path}::{name}")
    assert missing == []


def test_reference_pattern_finds_references_and_misses() -> None:
    text = "proven by `tests/test_openspec_references.py::test_every_named_test_exists[x]`"
    assert REFERENCE.findall(text) == [
        ("tests/test_openspec_references.py", "test_every_named_test_exists")
    ]
