"""Every YAML config shipped under configs/ loads (configs/demo/ included).

Files named ``base.yaml`` are partial bases: each must be extended by a shipped config,
which loads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coordexp_schema import load_config
from coordexp_schema.yaml_files import parse_yaml_text

REPO = Path(__file__).resolve().parents[3]
ALL = sorted((REPO / "configs").rglob("*.yaml"))
BASES = [p for p in ALL if p.name == "base.yaml"]
RUNNABLE = [p for p in ALL if p.name != "base.yaml"]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


@pytest.mark.parametrize("path", RUNNABLE, ids=_ids(RUNNABLE))
def test_shipped_config_loads(path: Path) -> None:
    load_config(path)


@pytest.mark.parametrize("base", BASES, ids=_ids(BASES))
def test_every_base_is_extended_by_a_shipped_config(base: Path) -> None:
    extended: set[Path] = set()
    for path in ALL:
        data, _ = parse_yaml_text(path.read_text(), str(path))
        names = data.get("extends") or []
        for name in [names] if isinstance(names, str) else names:
            extended.add((path.parent / name).resolve())
    assert base.resolve() in extended


def test_configs_are_shipped_for_every_variant() -> None:
    variants = {load_config(p).custom.trainer_variant for p in RUNNABLE}
    assert variants == {"stage1_sft", "rollout_matching_sft", "stage2_ab_training"}


def test_stage2_server_config_has_two_servers() -> None:
    cfg = load_config(REPO / "configs/stage2_ab/vllm_server.yaml")
    assert cfg.custom.trainer_variant == "stage2_ab_training"
    assert cfg.rollout_matching is not None
    assert cfg.rollout_matching.rollout_backend == "vllm"
    assert cfg.rollout_matching.vllm.mode == "server"
    assert len(cfg.rollout_matching.vllm.server.servers) == 2
