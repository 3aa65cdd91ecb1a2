"""Sections ``custom`` (trainer variant, coordinate losses), ``rlhf``, ``debug``, ``deepspeed``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from coordexp_schema.fields import knob

TrainerVariant = Literal["stage1_sft", "rollout_matching_sft", "stage2_ab_training"]


@dataclass(frozen=True, kw_only=True)
class CustomConfig:
    """The trainer to run and its token/coordinate loss weights."""

    trainer_variant: TrainerVariant = knob(
        doc="`stage1_sft`, `rollout_matching_sft` or `stage2_ab_training`."
    )
    coord_token_mode: Literal["added", "special"] = knob(
        "added",
        doc=(
            "How the 1000 `<|coord_k|>` tokens are registered in the tokenizer: `added` "
            "(ordinary added tokens, kept by `decode(skip_special_tokens=True)`) or `special`."
        ),
    )
    text_ce_weight: float = knob(1.0, ge=0, doc="Token cross-entropy weight on non-coord tokens.")
    coord_ce_weight: float = knob(0.0, ge=0, doc="Token cross-entropy weight on coord tokens.")
    bbox_smoothl1_weight: float = knob(
        0.0, ge=0, doc="SmoothL1 between expectation-decoded boxes and the truth."
    )
    bbox_ciou_weight: float = knob(
        0.0, ge=0, doc="CIoU loss between expectation-decoded boxes and the truth."
    )
    soft_ce_weight: float = knob(
        1.0, ge=0, doc="Cross-entropy to a Gaussian target over the coord bins."
    )
    soft_ce_sigma: float = knob(2.0, gt=0, doc="Standard deviation of the soft-CE target, in bins.")
    soft_ce_truncation_radius: int | None = knob(
        None, gt=0, doc="Zero the soft-CE target beyond this many bins; null: no truncation."
    )
    w1_weight: float = knob(
        1.0, ge=0, doc="1-Wasserstein distance between predicted and target bin distributions."
    )
    gate_weight: float = knob(
        1.0, ge=0, doc="Coord-vocab gate: −log of the coord-token mass at coord positions."
    )
    gate_temperature: float = knob(1.0, gt=0, doc="Softmax temperature of the gate term.")
    text_gate_weight: float = knob(
        0.0, ge=0, doc="Text-side mirror of the gate: −log(1 − coord mass) at text positions."
    )
    extra: dict[str, Any] = knob(
        factory=dict,
        doc=(
            "Free-form mapping for minor experimental toggles; the only place a config may "
            "hold keys the schema does not declare."
        ),
    )

    #: Canonical sections that must not hide in ``extra``: key → guidance (also listed by
    #: the configuration reference).
    EXTRA_REJECTED: ClassVar[Mapping[str, str]] = {
        "rollout_matching": (
            "rollout settings under custom.extra are not read; move them to the top-level "
            "`rollout_matching:` section (same keys)"
        ),
        "stage2_ab": (
            "Stage-2 AB settings under custom.extra are not read; move them to the top-level "
            "`stage2_ab:` section (same keys)"
        ),
    }

    def validate(self) -> Iterator[tuple[str, str]]:
        """Canonical sections must not hide in ``extra`` (see :attr:`EXTRA_REJECTED`)."""
        for key, guidance in self.EXTRA_REJECTED.items():
            if key in self.extra:
                yield f"extra.{key}", guidance


@dataclass(frozen=True, kw_only=True)
class RlhfConfig:
    """Reserved for preference training; it declares no keys yet, so it must stay empty."""


@dataclass(frozen=True, kw_only=True)
class DebugConfig:
    """Diagnostics that cost time; all off by default."""

    log_level: Literal["debug", "info", "warning", "error"] = knob(
        "info", doc="Level of the run's Python logger."
    )
    detect_anomaly: bool = knob(False, doc="Run backward under `torch.autograd.detect_anomaly`.")
    dump_batches: int = knob(
        0, ge=0, doc="Write the first N batches, decoded, under `<output_dir>/debug/`."
    )


@dataclass(frozen=True, kw_only=True)
class DeepSpeedConfig:
    """DeepSpeed ZeRO through accelerate/transformers."""

    enabled: bool = knob(False, doc="Train under DeepSpeed.")
    config: str | dict[str, Any] | None = knob(
        None, doc="A DeepSpeed JSON config file path, or the config inline as a mapping."
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """An enabled DeepSpeed needs a config."""
        if self.enabled and self.config is None:
            yield "config", "deepspeed.enabled is true: give a config file path or a mapping"
        if isinstance(self.config, str) and not self.config.strip():
            yield "config", "must be a file path or a mapping, got ''"
