"""The fail-fast rules of the config contract (seeds 001, 002, 004), messages asserted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from coordexp_schema import ConfigError, TrainingConfig, parse_strict

Payload = Callable[..., dict[str, Any]]


def issues_of(payload: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_strict(TrainingConfig, payload)
    return {i.path: i.message for i in info.value.issues}


def test_minimal_payloads_of_every_variant_parse(payload: Payload) -> None:
    for variant in ("stage1_sft", "rollout_matching_sft", "stage2_ab_training"):
        cfg = parse_strict(TrainingConfig, payload(variant))
        assert cfg.custom.trainer_variant == variant


def test_unknown_top_level_key_fails(payload: Payload) -> None:
    p = payload()
    p["trainingg"] = {}
    assert issues_of(p) == {
        "trainingg": "Unknown top-level keys: ['trainingg']; did you mean 'training'?"
    }


@pytest.mark.parametrize(
    "section",
    [
        "model",
        "quantization",
        "template",
        "data",
        "tuner",
        "training",
        "rlhf",
        "custom",
        "debug",
        "deepspeed",
    ],
)
def test_unknown_key_in_each_section_fails(payload: Payload, section: str) -> None:
    p = payload()
    p.setdefault(section, {})["unknown_knob"] = 1
    ((path, message),) = issues_of(p).items()
    assert path == f"{section}.unknown_knob"
    assert message.startswith(f"Unknown {section} keys: ['unknown_knob']")


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ((), "rollout_matching.unknown_rollout_key"),
        (("decoding",), "rollout_matching.decoding.unknown_decoding_key"),
        (("vllm", "sync"), "rollout_matching.vllm.sync.unknown_sync_key"),
    ],
)
def test_unknown_rollout_keys_fail_with_nested_paths(
    payload: Payload, where: tuple[str, ...], path: str
) -> None:
    p = payload("rollout_matching_sft")
    node = p["rollout_matching"]
    for key in where:
        node = node.setdefault(key, {})
    node[path.rsplit(".", 1)[1]] = 1
    assert list(issues_of(p)) == [path]


def test_unknown_key_in_server_list_item_has_indexed_path(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    p["rollout_matching"]["vllm"] = {
        "mode": "server",
        "server": {
            "servers": [
                {"base_url": "http://10.0.0.1:8000", "group_port": 51216, "unknown_flag": True}
            ]
        },
    }
    assert issues_of(p) == {
        "rollout_matching.vllm.server.servers[0].unknown_flag": (
            "Unknown rollout_matching.vllm.server.servers[0] keys: ['unknown_flag']; "
            "accepted keys: ['base_url', 'group_port']"
        )
    }


def test_misspelt_decode_batch_size_suggests_the_right_key(payload: Payload) -> None:
    p = payload("rollout_matching_sft")
    p["rollout_matching"]["decode_batch_sise"] = 4
    assert issues_of(p)["rollout_matching.decode_batch_sise"].endswith(
        "did you mean 'decode_batch_size'?"
    )


@pytest.mark.parametrize(
    "key", ["reordered_gt_sft", "desc_ce_weight_matched", "semantic_desc_gate"]
)
def test_removed_channel_b_knobs_fail_with_removal_guidance(payload: Payload, key: str) -> None:
    p = payload("stage2_ab_training")
    p["stage2_ab"]["channel_b"] = {key: True}
    ((path, message),) = issues_of(p).items()
    assert path == f"stage2_ab.channel_b.{key}"
    assert message.startswith("removed: delete it.")


@pytest.mark.parametrize(
    ("key", "replacement"),
    [
        ("rollout_decode_batch_size", "rollout_matching.decode_batch_size"),
        ("rollouts_per_step", "training.effective_batch_size"),
        ("bbox_l1_weight", "stage2_ab.bbox_smoothl1_weight"),
        ("bbox_giou_weight", "stage2_ab.bbox_ciou_weight"),
    ],
)
def test_removed_knobs_name_their_replacement(payload: Payload, key: str, replacement: str) -> None:
    p = payload("stage2_ab_training")
    p["stage2_ab"]["channel_b"] = {key: 1}
    message = issues_of(p)[f"stage2_ab.channel_b.{key}"]
    assert message.startswith("removed: delete it.")
    assert replacement in message


def test_replaced_box_weights_also_fail_at_stage2_ab_level(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    p["stage2_ab"]["bbox_giou_weight"] = 1.0
    assert "stage2_ab.bbox_ciou_weight" in issues_of(p)["stage2_ab.bbox_giou_weight"]


def test_legacy_paired_server_form_fails_with_migration_example(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    p["rollout_matching"]["vllm"] = {
        "mode": "server",
        "server": {"base_url": ["http://a:8000"], "group_port": [51216]},
    }
    found = issues_of(p)
    for key in ("base_url", "group_port"):
        message = found[f"rollout_matching.vllm.server.{key}"]
        assert "vllm.server.servers[]" in message
        assert "- {base_url: http://10.0.0.1:8000, group_port: 51216}" in message


def test_rollout_settings_under_custom_extra_fail_with_guidance(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    p["custom"]["extra"] = {"rollout_matching": {"decode_batch_size": 4}}
    assert issues_of(p) == {
        "custom.extra.rollout_matching": (
            "rollout settings under custom.extra are not read; move them to the "
            "top-level `rollout_matching:` section (same keys)"
        )
    }


def test_stage2_ab_settings_under_custom_extra_fail_with_guidance(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    p["custom"]["extra"] = {"stage2_ab": {"schedule": {"b_ratio": 0.5}}}
    assert issues_of(p) == {
        "custom.extra.stage2_ab": (
            "Stage-2 AB settings under custom.extra are not read; move them to the "
            "top-level `stage2_ab:` section (same keys)"
        )
    }


def test_minor_toggle_under_custom_extra_is_accepted(payload: Payload) -> None:
    p = payload()
    p["custom"]["extra"] = {"some_minor_toggle": True}
    cfg = parse_strict(TrainingConfig, p)
    assert cfg.custom.extra == {"some_minor_toggle": True}


@pytest.mark.parametrize("value", [{}, {"a": 1}, None])
def test_top_level_extra_fails_even_when_empty(payload: Payload, value: object) -> None:
    p = payload()
    p["extra"] = value
    message = issues_of(p)["extra"]
    assert "custom.extra" in message
    assert "not even `{}`" in message


def test_stage2_ab_training_without_rollout_matching_fails(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    del p["rollout_matching"]
    assert issues_of(p) == {
        "rollout_matching": (
            "custom.trainer_variant stage2_ab_training requires the top-level "
            "`rollout_matching:` section (rollout backend, decoding, matching); add it"
        )
    }


def test_stage2_ab_training_without_stage2_ab_fails(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    del p["stage2_ab"]
    assert "schedule.b_ratio" in issues_of(p)["stage2_ab"]


def test_b_ratio_is_required_when_stage2_ab_is_present(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    p["stage2_ab"] = {"schedule": {}}
    assert issues_of(p) == {"stage2_ab.schedule.b_ratio": "missing required key (expected number)"}


def test_sections_unused_by_the_variant_fail(payload: Payload) -> None:
    p = payload("stage1_sft")
    p["rollout_matching"] = {}
    p["stage2_ab"] = {"schedule": {"b_ratio": 0.0}}
    found = issues_of(p)
    assert "does not roll out" in found["rollout_matching"]
    assert "does not read stage2_ab" in found["stage2_ab"]


def test_rlhf_is_reserved_and_must_stay_empty(payload: Payload) -> None:
    p = payload()
    p["rlhf"] = {}
    assert parse_strict(TrainingConfig, p).rlhf is not None
    p["rlhf"] = {"beta": 0.1}
    assert issues_of(p) == {"rlhf.beta": "Unknown rlhf keys: ['beta']; accepted keys: []"}
