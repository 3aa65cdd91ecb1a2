"""Config sections → the trainer's own settings, and what Stage 1 does not support yet.

Shape and value checks belong to coordexp-schema; this module only refuses combinations the
Stage-1 trainer cannot run (a config-time fact about this code, checked before anything is
built) and translates sections into loss weights and parameter-group settings.
"""

from __future__ import annotations

from coordexp_schema import CustomConfig, TrainingConfig
from coordexp_train.losses import Stage1LossWeights
from coordexp_train.param_groups import GroupName, GroupSettings


class UnsupportedSetting(ValueError):
    """A valid config asks for something this trainer does not implement (yet)."""


def check_stage1_supported(cfg: TrainingConfig) -> None:
    """Refuse what the Stage-1 trainer cannot run, naming the dotted config path.

    Raises:
        UnsupportedSetting: another trainer variant, LoRA, or quantized weights.
    """
    variant = cfg.custom.trainer_variant
    if variant != "stage1_sft":
        raise UnsupportedSetting(
            f"custom.trainer_variant: {variant!r} is not implemented by this version of "
            "coordexp-train (only 'stage1_sft' is); use a Stage-1 config"
        )
    if cfg.tuner.train_type == "lora":
        raise UnsupportedSetting(
            "tuner.train_type: 'lora' is not supported yet (peft is not a dependency of "
            "coordexp-train); use 'full' with the tuner.freeze_* flags"
        )
    if cfg.quantization.mode != "none":
        raise UnsupportedSetting(
            f"quantization.mode: {cfg.quantization.mode!r} is not supported yet; use 'none'"
        )


def stage1_loss_weights(custom: CustomConfig) -> Stage1LossWeights:
    """The Stage-1 objective's weights from the ``custom`` section."""
    return Stage1LossWeights(
        text_ce_weight=custom.text_ce_weight,
        coord_ce_weight=custom.coord_ce_weight,
        soft_ce_weight=custom.soft_ce_weight,
        soft_ce_sigma=custom.soft_ce_sigma,
        soft_ce_truncation_radius=custom.soft_ce_truncation_radius,
        w1_weight=custom.w1_weight,
        gate_weight=custom.gate_weight,
        gate_temperature=custom.gate_temperature,
        text_gate_weight=custom.text_gate_weight,
        bbox_smoothl1_weight=custom.bbox_smoothl1_weight,
        bbox_ciou_weight=custom.bbox_ciou_weight,
    )


def group_settings(cfg: TrainingConfig) -> GroupSettings:
    """Frozen groups (``tuner.freeze_*``) and per-group learning rates (``training.*_lr``)."""
    t, tuner = cfg.training, cfg.tuner
    frozen: set[GroupName] = set()
    if tuner.freeze_vision_tower:
        frozen.add("vision_tower")
    if tuner.freeze_aligner:
        frozen.add("aligner")
    if tuner.freeze_llm:
        frozen.add("llm")
    rates: dict[GroupName, float] = {
        "vision_tower": t.vision_tower_lr if t.vision_tower_lr is not None else t.learning_rate,
        "aligner": t.aligner_lr if t.aligner_lr is not None else t.learning_rate,
        "llm": t.llm_lr if t.llm_lr is not None else t.learning_rate,
    }
    return GroupSettings(
        frozen=frozenset(frozen), learning_rates=rates, weight_decay=t.weight_decay
    )
