"""Config → trainer settings: accumulation, arguments, parameter groups, checkpoints."""

from __future__ import annotations

import dataclasses
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch
from torch import nn

from coordexp_schema import parse_strict
from coordexp_schema.config import TrainingConfig
from coordexp_train.arguments import (
    BatchSizeError,
    gradient_accumulation_steps,
    training_arguments_kwargs,
)
from coordexp_train.checkpoints import latest_checkpoint, resolve_resume
from coordexp_train.param_groups import (
    GroupSettings,
    apply_freezing,
    group_of,
    optimizer_groups,
)
from coordexp_train.settings import (
    UnsupportedSetting,
    check_supported,
    group_settings,
    stage1_loss_weights,
)
from coordexp_train.stage1_trainer import MeanMeter


def _config(tmp_path: Path, **sections: dict[str, object]) -> TrainingConfig:
    data: dict[str, object] = {
        "model": {"model": "builtin:tiny-qwen3-vl"},
        "data": {"train_jsonl": str(tmp_path / "train.jsonl")},
        "training": {"output_dir": str(tmp_path / "out")},
        "custom": {"trainer_variant": "stage1_sft"},
    }
    for name, values in sections.items():
        merged = dict(data.get(name, {}))  # type: ignore[call-overload]
        merged.update(values)
        data[name] = merged
    return parse_strict(TrainingConfig, data)


@pytest.mark.parametrize(
    ("effective", "per_device", "world", "steps"),
    [(None, 2, 4, 1), (32, 2, 1, 16), (32, 2, 4, 4), (8, 8, 1, 1)],
)
def test_accumulation_reaches_the_effective_batch(
    effective: int | None, per_device: int, world: int, steps: int
) -> None:
    assert gradient_accumulation_steps(effective, per_device, world) == steps


def test_an_effective_batch_not_divisible_by_the_world_is_rejected_with_options() -> None:
    with pytest.raises(
        BatchSizeError, match=r"training.effective_batch_size 12 .* world size 4 .* use 8 or 16"
    ):
        gradient_accumulation_steps(12, 2, 4)


def test_training_arguments_map_the_config(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        training={
            "effective_batch_size": 8,
            "per_device_train_batch_size": 2,
            "lr_scheduler_type": "linear",
            "warmup_ratio": 0.1,
            "save_steps": 3,
            "max_steps": 7,
            "bf16": True,
            "gradient_checkpointing": True,
        },
    )
    kw = training_arguments_kwargs(cfg, world_size=2)
    assert kw["gradient_accumulation_steps"] == 2
    assert kw["lr_scheduler_type"] == "linear"
    assert kw["warmup_steps"] == 0.1
    assert kw["save_strategy"] == "steps"
    assert kw["save_steps"] == 3
    assert kw["max_steps"] == 7
    assert kw["bf16"] is True
    assert kw["gradient_checkpointing"] is True
    assert kw["deepspeed"] is None
    assert kw["remove_unused_columns"] is False


def test_deepspeed_section_passes_the_zero_config_to_the_trainer(tmp_path: Path) -> None:
    inline = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}
    cfg = _config(tmp_path, deepspeed={"enabled": True, "config": inline})
    assert training_arguments_kwargs(cfg, 1)["deepspeed"] == inline
    path = tmp_path / "zero3.json"
    path.write_text('{"zero_optimization": {"stage": 3}}')
    cfg = _config(tmp_path, deepspeed={"enabled": True, "config": str(path)})
    assert training_arguments_kwargs(cfg, 1)["deepspeed"] == str(path)


def test_a_missing_deepspeed_file_names_the_config_path(tmp_path: Path) -> None:
    cfg = _config(tmp_path, deepspeed={"enabled": True, "config": str(tmp_path / "nope.json")})
    with pytest.raises(FileNotFoundError, match=r"deepspeed.config: .*nope.json"):
        training_arguments_kwargs(cfg, 1)


def test_full_warmup_ratio_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path, training={"warmup_ratio": 1.0})
    with pytest.raises(UnsupportedSetting, match=r"training\.warmup_ratio"):
        training_arguments_kwargs(cfg, 1)


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        (
            {"tuner": {"train_type": "lora"}, "deepspeed": {"enabled": True, "config": {}}},
            r"tuner\.train_type: 'lora' with deepspeed\.enabled is not supported yet",
        ),
        (
            {"tuner": {"train_type": "lora"}, "quantization": {"mode": "4bit"}},
            r"quantization\.mode: '4bit' is not supported yet",
        ),
    ],
)
def test_unsupported_settings_fail_before_anything_is_built(
    tmp_path: Path, sections: dict[str, dict[str, object]], match: str
) -> None:
    with pytest.raises(UnsupportedSetting, match=match):
        check_supported(_config(tmp_path, **sections))


def test_loss_weights_come_from_the_custom_section(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path, custom={"gate_weight": 0.25, "soft_ce_sigma": 3.5, "bbox_ciou_weight": 2.0}
    )
    weights = stage1_loss_weights(cfg.custom)
    assert (weights.gate_weight, weights.soft_ce_sigma, weights.bbox_ciou_weight) == (
        0.25,
        3.5,
        2.0,
    )
    fields = {f.name for f in dataclasses.fields(weights)}
    # every Stage-1 loss knob of the schema reaches the loss
    schema_knobs = {f.name for f in dataclasses.fields(cfg.custom)} - {
        "trainer_variant",
        "coord_token_mode",
        "extra",
    }
    assert schema_knobs <= fields


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("model.visual.blocks.0.attn.qkv.weight", "vision_tower"),
        ("model.visual.patch_embed.proj.weight", "vision_tower"),
        ("model.visual.merger.linear_fc1.weight", "aligner"),
        ("model.visual.deepstack_merger_list.0.norm.weight", "aligner"),
        ("model.language_model.layers.0.mlp.up_proj.weight", "llm"),
        ("lm_head.weight", "llm"),
        ("base_model.model.model.visual.merger.mlp.0.weight", "aligner"),
    ],
)
def test_parameters_are_grouped_by_name(name: str, group: str) -> None:
    assert group_of(name) == group


class _Toy(nn.Module):
    """Named like a Qwen-VL model: model.visual.{blocks,merger}, model.language_model, lm_head."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.visual = nn.Module()
        self.model.visual.blocks = nn.Linear(3, 3)
        self.model.visual.merger = nn.Linear(3, 4)
        self.model.language_model = nn.Linear(4, 4)
        self.lm_head = nn.Linear(4, 5, bias=False)


def test_freezing_and_per_group_learning_rates(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        tuner={"freeze_vision_tower": True, "freeze_aligner": False, "freeze_llm": False},
        training={"learning_rate": 1e-4, "aligner_lr": 5e-4, "weight_decay": 0.1},
    )
    settings = group_settings(cfg)
    model = _Toy()
    counts = apply_freezing(model, settings.frozen)
    assert counts == {"vision_tower": 0, "aligner": 16, "llm": 20 + 20}
    assert not model.model.visual.blocks.weight.requires_grad
    groups = {g["name"]: g for g in optimizer_groups(model, settings)}
    assert set(groups) == {"aligner/decay", "aligner/no_decay", "llm/decay", "llm/no_decay"}
    assert groups["aligner/decay"]["lr"] == 5e-4
    assert groups["llm/decay"]["lr"] == 1e-4
    assert groups["llm/no_decay"]["weight_decay"] == 0.0
    assert groups["llm/decay"]["weight_decay"] == 0.1
    optimizer = torch.optim.AdamW(optimizer_groups(model, settings))
    assert len(optimizer.param_groups) == 4


def test_freezing_everything_is_an_error() -> None:
    with pytest.raises(ValueError, match="every parameter is frozen"):
        apply_freezing(_Toy(), frozenset({"vision_tower", "aligner", "llm"}))


def _checkpoint(root: Path, step: int) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text("{}")
    return path


def test_latest_checkpoint_is_the_largest_step(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 9)
    newest = _checkpoint(tmp_path, 10)
    (tmp_path / "checkpoint-11").mkdir()  # incomplete: no trainer state
    assert latest_checkpoint(tmp_path) == newest
    assert resolve_resume("latest", tmp_path) == newest
    assert resolve_resume(str(newest), tmp_path) == newest
    assert resolve_resume(None, tmp_path) is None


def test_resume_errors_name_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="resume_from_checkpoint is 'latest'"):
        resolve_resume("latest", tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"training\.resume_from_checkpoint: .* not a checkpoint"
    ):
        resolve_resume(str(tmp_path), tmp_path)


def test_group_settings_default_to_the_main_learning_rate(tmp_path: Path) -> None:
    settings = group_settings(_config(tmp_path, training={"learning_rate": 3e-5}))
    assert settings.learning_rates == {"vision_tower": 3e-5, "aligner": 3e-5, "llm": 3e-5}
    assert settings == GroupSettings(
        frozen=frozenset({"vision_tower"}), learning_rates=settings.learning_rates, weight_decay=0.0
    )


def test_tensorboard_is_reported_to_only_when_asked_for_and_installed(tmp_path: Path) -> None:
    installed = any(find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))
    asked = _config(tmp_path, training={"report_to": ["jsonl", "tensorboard"]})
    assert training_arguments_kwargs(asked, 1)["report_to"] == (
        ["tensorboard"] if installed else []
    )
    not_asked = _config(tmp_path, training={"report_to": ["jsonl"]})
    assert training_arguments_kwargs(not_asked, 1)["report_to"] == []


def test_mean_meter_weights_resets_and_reduces() -> None:
    meter = MeanMeter(("a", "b"))
    meter.add({"a": torch.tensor(1.0), "ignored": 5.0})
    meter.add({"a": 4.0, "b": torch.tensor(2.0)}, weight=3.0)
    assert meter.pop() == {"a": pytest.approx((1.0 + 12.0) / 4.0), "b": 2.0}
    assert meter.pop() == {}  # reset; names never seen are left out
    meter.add({"b": 1.0})
    # a reduction that doubles sums and weights (two identical processes) keeps the mean
    assert meter.pop(lambda t: t * 2) == {"b": 1.0}
