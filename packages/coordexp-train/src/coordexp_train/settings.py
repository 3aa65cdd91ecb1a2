"""Config sections → the trainers' own settings, and what the trainers do not support yet.

Shape and value checks belong to coordexp-schema; this module only refuses combinations the
trainers cannot run (a config-time fact about this code, checked before anything is
built) and translates sections into loss weights, parameter-group settings and the Stage-2
settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from coordexp_parse import FieldOrder
from coordexp_schema import (
    ChannelBConfig,
    CustomConfig,
    RolloutMatchingConfig,
    Stage2ABConfig,
    TrainingConfig,
    TunerConfig,
)
from coordexp_train.losses import Stage1LossWeights
from coordexp_train.param_groups import GroupName, GroupSettings


class UnsupportedSetting(ValueError):
    """A valid config asks for something this trainer does not implement (yet)."""


def check_supported(cfg: TrainingConfig) -> None:
    """Refuse what the trainers cannot run, naming the dotted config path.

    Raises:
        UnsupportedSetting: quantized weights, ``rollout_matching.decode_mode: beam`` (no
            rollout backend implements beam search) or ``rollout_matching.offload.enabled``
            (not implemented); DeepSpeed with a Stage-2 variant (its engine counts every
            backward as a micro-step, and a Stage-2 micro-batch runs one backward per pack)
            or with LoRA (the final merge needs whole weights); a ``tuner.lora_rank`` above
            vLLM's largest ``max_lora_rank`` with ``rollout_matching.vllm.enable_lora``;
            LoRA with ``vllm.sync.mode: adapter`` and no ``fallback_to_full`` while the
            coord-token rows train (they are not LoRA matrices; see
            :mod:`coordexp_train.model.lora`).
    """
    rollout = cfg.rollout_matching
    if rollout is not None and cfg.deepspeed.enabled:
        raise UnsupportedSetting(
            f"deepspeed.enabled with custom.trainer_variant: {cfg.custom.trainer_variant!r} "
            "is not supported yet (a Stage-2 micro-batch runs one backward per pack, which "
            "DeepSpeed would count as accumulation steps); use torchrun DDP "
            "(deepspeed.enabled: false)"
        )
    if rollout is not None and rollout.offload.enabled:
        raise UnsupportedSetting(
            "rollout_matching.offload.enabled: offloading the training model or optimizer "
            "during rollouts is not implemented yet; set it to false (use "
            "rollout_matching.vllm.sleep_level to free a colocated engine's memory instead)"
        )
    if rollout is not None and rollout.decode_mode == "beam":
        raise UnsupportedSetting(
            "rollout_matching.decode_mode: 'beam' is not supported by the rollout backends; "
            "use greedy or sample"
        )
    if cfg.tuner.train_type == "lora" and cfg.deepspeed.enabled:
        raise UnsupportedSetting(
            "tuner.train_type: 'lora' with deepspeed.enabled is not supported yet (the final "
            "save merges the adapters into whole weights, which ZeRO shards); LoRA's optimizer "
            "state is small: use torchrun DDP (deepspeed.enabled: false)"
        )
    if rollout is not None and rollout.rollout_backend == "vllm" and rollout.vllm.enable_lora:
        vllm_max_lora_rank(cfg.tuner.lora_rank)
    if cfg.tuner.train_type == "lora" and rollout is not None:
        _check_adapter_sync(cfg.tuner, rollout)
    if cfg.quantization.mode != "none":
        raise UnsupportedSetting(
            f"quantization.mode: {cfg.quantization.mode!r} is not supported yet; use 'none'"
        )


def _check_adapter_sync(tuner: TunerConfig, rollout: RolloutMatchingConfig) -> None:
    sync = rollout.vllm.sync
    strict_adapter = sync.mode == "adapter" and not sync.fallback_to_full
    if rollout.rollout_backend == "vllm" and strict_adapter and not tuner.freeze_llm:
        raise UnsupportedSetting(
            "rollout_matching.vllm.sync.mode: adapter with fallback_to_full: false cannot "
            "sync this run: under LoRA the coord-token rows of the embedding and LM head "
            "train too (tuner.freeze_llm: false), and vLLM serves LoRA matrices only; set "
            "rollout_matching.vllm.sync.fallback_to_full: true (merged weights are sent) or "
            "sync.mode: full"
        )


#: The ``max_lora_rank`` values a vLLM engine accepts (vLLM's ``LoRAConfig``).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def vllm_max_lora_rank(lora_rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that serves adapters of ``lora_rank``.

    Raises:
        UnsupportedSetting: ``lora_rank`` is above vLLM's largest value.
    """
    for allowed in VLLM_LORA_RANKS:
        if allowed >= lora_rank:
            return allowed
    raise UnsupportedSetting(
        f"tuner.lora_rank: {lora_rank} is above the largest LoRA rank vLLM serves "
        f"({VLLM_LORA_RANKS[-1]}) and rollout_matching.vllm.enable_lora is true; use a rank "
        f"<= {VLLM_LORA_RANKS[-1]} or enable_lora: false"
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


@dataclass(frozen=True)
class Stage2Settings:
    """What the Stage-2 trainer reads from the config (both rollout variants).

    Attributes:
        rollout: the normalised ``rollout_matching`` section (``rollout_matching_cfg``).
        b_ratio: ``stage2_ab.schedule.b_ratio``; 1.0 for ``rollout_matching_sft`` (every
            step is a Channel-B step).
        stage2_ab: the ``stage2_ab`` section; None for ``rollout_matching_sft``.
        channel_b: the Channel-B mask policy (``stage2_ab.channel_b``, or its defaults).
        weights: the coordinate terms of both channels: ``custom``'s, with the box weights
            of ``stage2_ab`` when that section is present.
        pack_capacity: post-rollout pack capacity (``training.packing_length`` or
            ``global_max_length``).
        pack_min_fill_ratio: ``training.packing_min_fill_ratio`` (carry within a step).
        pack_drop_last: ``training.packing_drop_last`` (at the end of a step).
        rollout_seed: base seed of rollout sampling (``rollout_matching.decoding.seed``,
            else ``training.seed``); the optimizer step is added to it.
        weight_sync_every_steps: ``stage2_ab.weight_sync_every_steps`` (1 without it).
        field_order: ``template.object_field_order`` of injected objects.
        shared_engine: the rollout engine is one server fleet shared by every rank
            (``rollout_backend: vllm`` with ``vllm.mode: server``): rank 0 alone pushes
            weights and the other ranks wait; otherwise each rank syncs its own engine.
    """

    rollout: RolloutMatchingConfig
    b_ratio: float
    stage2_ab: Stage2ABConfig | None
    channel_b: ChannelBConfig
    weights: Stage1LossWeights
    pack_capacity: int
    pack_min_fill_ratio: float
    pack_drop_last: bool
    rollout_seed: int
    weight_sync_every_steps: int
    field_order: FieldOrder
    shared_engine: bool


def stage2_settings(cfg: TrainingConfig) -> Stage2Settings:
    """The Stage-2 settings of a ``rollout_matching_sft`` / ``stage2_ab_training`` config.

    Raises:
        UnsupportedSetting: ``cfg`` has no ``rollout_matching`` section (a Stage-1 config).
    """
    rollout = cfg.rollout_matching
    if rollout is None:
        raise UnsupportedSetting(
            f"custom.trainer_variant: {cfg.custom.trainer_variant!r} has no rollout_matching "
            "section; the Stage-2 trainer needs rollout_matching_sft or stage2_ab_training"
        )
    ab = cfg.stage2_ab
    weights = stage1_loss_weights(cfg.custom)
    if ab is not None:
        weights = dataclasses.replace(
            weights,
            bbox_smoothl1_weight=ab.bbox_smoothl1_weight,
            bbox_ciou_weight=ab.bbox_ciou_weight,
        )
    seed = rollout.decoding.seed
    return Stage2Settings(
        rollout=rollout,
        b_ratio=ab.schedule.b_ratio if ab is not None else 1.0,
        stage2_ab=ab,
        channel_b=ab.channel_b if ab is not None else ChannelBConfig(),
        weights=weights,
        pack_capacity=cfg.training.packing_length or cfg.global_max_length,
        pack_min_fill_ratio=cfg.training.packing_min_fill_ratio,
        pack_drop_last=cfg.training.packing_drop_last,
        rollout_seed=seed if seed is not None else cfg.training.seed,
        weight_sync_every_steps=ab.weight_sync_every_steps if ab is not None else 1,
        field_order=cfg.template.object_field_order,
        shared_engine=rollout.rollout_backend == "vllm" and rollout.vllm.mode == "server",
    )
