"""The ``stage2_ab`` section: the A/B schedule, Channel A soft self-context, Channel B."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from coordexp_schema.fields import knob


def _removed(guidance: str) -> str:
    return f"removed: delete it. {guidance}".rstrip()


_BOX_WEIGHT_REPLACED = {
    "bbox_l1_weight": _removed("Use stage2_ab.bbox_smoothl1_weight instead."),
    "bbox_giou_weight": _removed("Use stage2_ab.bbox_ciou_weight instead."),
}


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Which channel runs at each optimizer step (deterministic)."""

    b_ratio: float = knob(
        ge=0,
        le=1,
        doc=(
            "Fraction of optimizer steps that run Channel B: step s is B iff "
            "floor((s+1)·r) > floor(s·r); 0 = always A, 1 = always B."
        ),
    )


@dataclass(frozen=True, kw_only=True)
class ChannelBConfig:
    """Channel B: rollout, match, inject missed objects, train teacher-forced."""

    REJECTED_KEYS: ClassVar[Mapping[str, str]] = {
        "reordered_gt_sft": _removed(
            "Channel B always trains on the rollout prefix plus injected missed objects."
        ),
        "desc_ce_weight_matched": _removed(
            "Matched objects' desc tokens are always masked; the tail's desc tokens use "
            "stage2_ab.channel_b.desc_ce_weight."
        ),
        "semantic_desc_gate": _removed("There is no semantic desc gate any more."),
        "mode": _removed("Channel B has a single (synchronous) mode."),
        "async": _removed("Channel B rollouts are synchronous."),
        "rollouts_per_step": _removed("Rollouts per step follow training.effective_batch_size."),
        "enable_pipeline": _removed("There is no rollout pipeline option."),
        "rollout_decode_batch_size": _removed(
            "Use rollout_matching.decode_batch_size, the single source of truth."
        ),
        **_BOX_WEIGHT_REPLACED,
    }

    stop_neutral: bool = knob(
        True,
        doc="Mask the CE of the outermost closing `}` and of `<|im_end|>` in Channel B targets.",
    )
    drop_invalid_struct_ce_multiplier: float = knob(
        1.0,
        ge=1,
        le=4,
        doc=(
            "Multiply the tail's structure-token CE weights for samples whose rollout had "
            "invalid objects dropped."
        ),
    )
    desc_ce_weight: float = knob(
        1.0, ge=0, doc="CE weight of `desc` tokens of injected (missed) objects."
    )


@dataclass(frozen=True, kw_only=True)
class Stage2ABConfig:
    """Stage-2 AB trainer: Channel A (soft self-context) mixed with Channel B (rollouts)."""

    REJECTED_KEYS: ClassVar[Mapping[str, str]] = _BOX_WEIGHT_REPLACED

    schedule: ScheduleConfig = knob(doc="The A/B step schedule.")
    n_softctx_iter: int = knob(
        2, ge=1, doc="Channel A forward passes per step (1 = plain teacher forcing)."
    )
    softctx_mode: Literal["soft", "straight_through"] = knob(
        "soft",
        doc=(
            "Channel A coord-slot embeddings: the softmax-weighted mixture of coord embeddings "
            "(`soft`) or the argmax embedding with the mixture's gradient (`straight_through`)."
        ),
    )
    softctx_grad_mode: Literal["unroll", "em_detach"] = knob(
        "unroll", doc="Back-propagate through the mixture (`unroll`) or stop it (`em_detach`)."
    )
    softctx_temperature: float = knob(
        1.0, gt=0, doc="Softmax temperature of the Channel A mixture."
    )
    channel_b: ChannelBConfig = knob(factory=ChannelBConfig, doc="Channel B options.")
    bbox_smoothl1_weight: float = knob(1.0, ge=0, doc="SmoothL1 on expectation-decoded boxes.")
    bbox_ciou_weight: float = knob(1.0, ge=0, doc="CIoU loss on expectation-decoded boxes.")
    coord_ce_weight: float = knob(0.0, ge=0, doc="Token CE on coord tokens.")
    coord_el1_weight: float = knob(0.0, ge=0, doc="L1 on expectation-decoded coordinates.")
    coord_ehuber_weight: float = knob(
        0.0, ge=0, doc="Huber loss on expectation-decoded coordinates."
    )
    coord_ehuber_delta: float = knob(0.001, gt=0, doc="Huber threshold (normalised units).")
    coord_entropy_weight: float = knob(
        0.0, ge=0, doc="Entropy of the coord-bin distribution (sharpening)."
    )
    weight_sync_every_steps: int = knob(
        1,
        ge=1,
        doc=(
            "A Channel-B step first pushes the trained weights to the rollout engine when "
            "the engine's are N or more optimizer steps old (1: before every B step that "
            "follows an update); A steps never sync."
        ),
    )
