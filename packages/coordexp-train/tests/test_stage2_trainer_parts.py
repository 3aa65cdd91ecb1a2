"""The Stage-2 trainer's parts: settings, post-rollout packing, the log line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_schema import ChannelBConfig, TrainingConfig, parse_strict
from coordexp_train.data.encode import EncodedSample
from coordexp_train.settings import UnsupportedSetting, check_supported, stage2_settings
from coordexp_train.stage2.channel_b_targets import ChannelBTargets
from coordexp_train.stage2.post_pack import PostRolloutPacker
from coordexp_train.stage2.progress import log_line, postfix
from coordexp_train.stage2.teacher_forced import TeacherForcedSample
from coordexp_train.stage2.timing import PhaseTimes


def _config(variant: str, **sections: dict[str, object]) -> TrainingConfig:
    data: dict[str, object] = {
        "model": {"model": "builtin:tiny-qwen3-vl"},
        "data": {"train_jsonl": "train.jsonl"},
        "training": {"output_dir": "out", "seed": 9},
        "custom": {"trainer_variant": variant, "bbox_ciou_weight": 0.25},
        "rollout_matching": {"rollout_backend": "hf"},
        **sections,
    }
    return parse_strict(TrainingConfig, data)


def test_rollout_matching_sft_is_all_channel_b_with_the_seed_003_policy() -> None:
    s = stage2_settings(_config("rollout_matching_sft"))
    assert s.b_ratio == 1.0
    assert s.stage2_ab is None
    assert s.channel_b == ChannelBConfig()
    assert s.channel_b.stop_neutral  # seed 003's default
    assert s.weights.bbox_ciou_weight == 0.25  # custom's weights without stage2_ab
    assert s.pack_capacity == 4096  # global_max_length without training.packing_length
    assert s.rollout_seed == 9  # training.seed without rollout_matching.decoding.seed
    assert s.weight_sync_every_steps == 1
    assert not s.shared_engine  # HF: every rank rolls out on its own model


def test_stage2_ab_settings_come_from_its_section() -> None:
    cfg = _config(
        "stage2_ab_training",
        stage2_ab={
            "schedule": {"b_ratio": 0.25},
            "bbox_ciou_weight": 2.0,
            "channel_b": {"stop_neutral": False},
            "weight_sync_every_steps": 3,
        },
        training={"output_dir": "out", "packing_length": 2048},
        rollout_matching={"decoding": {"seed": 4}},
    )
    s = stage2_settings(cfg)
    assert (s.b_ratio, s.weights.bbox_ciou_weight, s.channel_b.stop_neutral) == (0.25, 2.0, False)
    assert (s.pack_capacity, s.rollout_seed, s.weight_sync_every_steps) == (2048, 4, 3)


@pytest.mark.parametrize(("mode", "shared"), [("server", True), ("colocate", False)])
def test_only_a_server_fleet_is_one_engine_shared_by_the_ranks(mode: str, shared: bool) -> None:
    vllm: dict[str, object] = {"mode": mode}
    if mode == "server":
        vllm["server"] = {"servers": [{"base_url": "http://10.0.0.1:8000", "group_port": 51216}]}
    cfg = _config(
        "rollout_matching_sft", rollout_matching={"rollout_backend": "vllm", "vllm": vllm}
    )
    assert stage2_settings(cfg).shared_engine is shared


def test_a_stage1_config_has_no_stage2_settings(tmp_path: Path) -> None:
    cfg = _config("stage1_sft", rollout_matching=None)  # type: ignore[arg-type]
    with pytest.raises(UnsupportedSetting, match="has no rollout_matching section"):
        stage2_settings(cfg)


def test_beam_rollouts_are_refused_before_anything_is_built() -> None:
    cfg = _config("rollout_matching_sft", rollout_matching={"decode_mode": "beam", "num_beams": 2})
    with pytest.raises(UnsupportedSetting, match=r"rollout_matching\.decode_mode: 'beam'"):
        check_supported(cfg)


def test_offloading_during_rollouts_is_refused_until_implemented() -> None:
    cfg = _config(
        "rollout_matching_sft",
        rollout_matching={
            "rollout_backend": "vllm",
            "vllm": {"mode": "colocate"},
            "offload": {"enabled": True, "offload_optimizer": True},
        },
    )
    with pytest.raises(UnsupportedSetting, match=r"rollout_matching\.offload\.enabled: .* set it"):
        check_supported(cfg)


def test_deepspeed_is_refused_for_the_stage2_trainer() -> None:
    cfg = _config(
        "stage2_ab_training",
        stage2_ab={"schedule": {"b_ratio": 0.5}},
        deepspeed={"enabled": True, "config": {"zero_optimization": {"stage": 2}}},
    )
    with pytest.raises(
        UnsupportedSetting,
        match=r"deepspeed\.enabled with custom\.trainer_variant: 'stage2_ab_training'",
    ):
        check_supported(cfg)


def _forced(length: int, index: int) -> TeacherForcedSample:
    ids = torch.zeros(length, dtype=torch.long)
    empty = torch.zeros(0, dtype=torch.long)
    sample = EncodedSample(
        input_ids=ids,
        labels=ids,
        position_ids=torch.zeros(3, length, dtype=torch.long),
        pixel_values=torch.zeros(0, 4),
        image_grid_thw=torch.zeros(0, 3, dtype=torch.long),
        coord_positions=empty,
        coord_bins=empty,
        coord_object=empty,
        box_slots=empty.reshape(0, 4),
        source=f"mem.jsonl:{index + 1}",
        index=index,
        num_objects=0,
    )
    targets = ChannelBTargets((), (), (), (), (), (), 0)
    return TeacherForcedSample(sample, targets, 1)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(1, 300), max_size=24), capacity=st.integers(1, 256))
def test_packs_respect_the_capacity_and_too_long_samples_are_dropped_not_cut(
    lengths: list[int], capacity: int
) -> None:
    samples = [_forced(n, i) for i, n in enumerate(lengths)]
    packed = PostRolloutPacker(capacity).add(samples, end_of_step=True)
    assert [s.sample.index for s in packed.too_long] == [
        i for i, n in enumerate(lengths) if n > capacity
    ]
    kept = [s.sample.index for p in packed.packs for s in p]
    assert sorted(kept) == [i for i, n in enumerate(lengths) if n <= capacity]
    for pack in packed.packs:
        assert pack
        assert sum(s.sample.length for s in pack) <= capacity
    assert packed.underfilled == ()
    again = PostRolloutPacker(capacity).add(samples, end_of_step=True)
    assert [[s.sample.index for s in p] for p in again.packs] == [
        [s.sample.index for s in p] for p in packed.packs
    ]


def test_a_bad_capacity_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"training\.packing_length must be >= 1, got 0"):
        PostRolloutPacker(0)


def test_under_filled_packs_wait_for_the_next_micro_batch_of_the_step() -> None:
    packer = PostRolloutPacker(100, min_fill_ratio=0.9)
    first = packer.add([_forced(95, 0), _forced(30, 1)], end_of_step=False)
    assert [[s.sample.index for s in p] for p in first.packs] == [[0]]  # 30 tokens wait
    last = packer.add([_forced(60, 2)], end_of_step=True)
    assert [[s.sample.index for s in p] for p in last.packs] == [[1, 2]]
    assert last.underfilled == ()


def test_under_filled_packs_are_dropped_at_the_end_of_the_step_under_drop_last() -> None:
    packer = PostRolloutPacker(100, min_fill_ratio=0.9, drop_last=True)
    result = packer.add([_forced(95, 0), _forced(30, 1)], end_of_step=True)
    assert [[s.sample.index for s in p] for p in result.packs] == [[0]]
    assert [s.sample.index for s in result.underfilled] == [1]
    # nothing is left waiting for the next step
    assert packer.add([], end_of_step=True) == type(result)((), (), ())


def test_phase_times_add_up_per_name() -> None:
    times = PhaseTimes()
    for _ in range(3):
        with times.phase("parse"):
            pass
    with pytest.raises(RuntimeError), times.phase("match"):
        raise RuntimeError("timed even when the phase fails")
    assert list(times.seconds) == ["parse", "match"]
    assert times.total() == pytest.approx(sum(times.seconds.values()))


def test_the_log_line_names_the_channel_and_the_rollout_counts() -> None:
    line = log_line(7, {"channel_b": 1.0, "loss": 1.5, "matched": 3.0, "fn": 1.0, "lr": 2.0})
    assert line == "step 7 B loss=1.5 matched=3 fn=1"
    assert log_line(8, {"channel_b": 0.0, "loss": 2.0}) == "step 8 A loss=2"


def test_the_postfix_shows_the_channel_loss_and_match_counts() -> None:
    logs = {"channel_b": 1.0, "loss": 1.5, "learning_rate": 1e-4, "fp": 2.0, "rollouts": 4.0}
    assert postfix(logs) == {"ch": "B", "loss": "1.5000", "lr": "1.00e-04", "fp": "2"}
    assert postfix({"channel_b": 0.0, "loss": 2.0})["ch"] == "A"
