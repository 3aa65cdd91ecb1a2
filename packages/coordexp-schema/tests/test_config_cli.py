"""``coordexp-config``: check, show, schema, docs (and the committed reference is current)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordexp_schema import TrainingConfig, load_config, parse_strict
from coordexp_schema.cli import main
from coordexp_schema.reference import reference_markdown
from coordexp_schema.yaml_files import parse_yaml_text

REPO = Path(__file__).resolve().parents[3]
SERVER_CONFIG = REPO / "configs/stage2_ab/vllm_server.yaml"


def test_committed_reference_is_up_to_date() -> None:
    committed = (REPO / "docs/configuration.md").read_text()
    assert committed == reference_markdown(), (
        "docs/configuration.md is stale: run `uv run coordexp-config docs > docs/configuration.md`"
    )


def test_reference_documents_every_key_and_removed_knob() -> None:
    text = reference_markdown()
    for needle in (
        "#### `rollout_matching.vllm.server.servers[]`",
        "| `group_port` | int | **required** |",
        "| `stage2_ab.channel_b.semantic_desc_gate` | removed: delete it.",
        "| `extra` | top-level `extra:` is not supported",
        "| `decode_batch_size` | int | `1` |",
    ):
        assert needle in text


@pytest.mark.parametrize("key", ["rollout_matching", "stage2_ab"])
def test_reference_lists_each_section_rejected_under_custom_extra(key: str) -> None:
    text = reference_markdown()
    assert f"| `custom.extra.{key}` | " in text
    assert f"move them to the top-level `{key}:` section" in text


def test_check_reports_ok_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(SERVER_CONFIG)]) == 0
    assert capsys.readouterr().out == f"{SERVER_CONFIG}: ok (stage2_ab_training)\n"
    assert main(["check", str(SERVER_CONFIG), "--override", "stage2_ab.schedule.b_ratio=2"]) == 2
    err = capsys.readouterr().err
    assert "stage2_ab.schedule.b_ratio (override 'stage2_ab.schedule.b_ratio=2')" in err
    assert "must be in [0, 1], got 2.0" in err


def test_show_prints_the_resolved_config_that_loads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(SERVER_CONFIG), "--override", "training.seed=5"]) == 0
    shown = capsys.readouterr().out
    path = tmp_path / "shown.yaml"
    path.write_text(shown)
    assert load_config(path) == load_config(SERVER_CONFIG, ["training.seed=5"])
    data, _ = parse_yaml_text(shown, "shown")
    assert data["rollout_matching"]["vllm"]["server"]["servers"][1]["group_port"] == 51216
    assert main(["show", str(SERVER_CONFIG), "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert parse_strict(TrainingConfig, as_json) == load_config(SERVER_CONFIG)


def test_schema_is_json_schema_of_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {
        "model",
        "quantization",
        "template",
        "data",
        "tuner",
        "training",
        "rlhf",
        "custom",
        "debug",
        "stage2_ab",
        "rollout_matching",
        "deepspeed",
        "global_max_length",
        "extends",
    }
    assert schema["required"] == ["model", "data", "training", "custom"]
    endpoint = schema["$defs"]["ServerEndpoint"]
    assert endpoint["required"] == ["base_url", "group_port"]
    assert endpoint["additionalProperties"] is False
    assert endpoint["properties"]["group_port"]["maximum"] == 65535
    decoding = schema["$defs"]["DecodingConfig"]["properties"]
    assert decoding["top_p"]["exclusiveMinimum"] == 0
    backend = schema["$defs"]["RolloutMatchingConfig"]["properties"]["rollout_backend"]
    assert backend["enum"] == ["hf", "vllm"]
    assert backend["default"] == "hf"
