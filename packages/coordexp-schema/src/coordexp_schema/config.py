"""``TrainingConfig``: the whole config, one attribute per section, and cross-section rules."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar

from coordexp_schema.fields import knob
from coordexp_schema.sections.custom import CustomConfig, DebugConfig, DeepSpeedConfig, RlhfConfig
from coordexp_schema.sections.data import DataConfig
from coordexp_schema.sections.model import (
    ModelConfig,
    QuantizationConfig,
    TemplateConfig,
    TunerConfig,
)
from coordexp_schema.sections.rollout import RolloutMatchingConfig
from coordexp_schema.sections.stage2_ab import Stage2ABConfig
from coordexp_schema.sections.training import TrainingArgs

ROLLOUT_VARIANTS = ("rollout_matching_sft", "stage2_ab_training")


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """A complete, validated CoordExp config (frozen).

    Sections absent from the YAML take their defaults; ``stage2_ab`` and
    ``rollout_matching`` are None when absent.
    """

    REJECTED_KEYS: ClassVar[Mapping[str, str]] = {
        "extra": (
            "top-level `extra:` is not supported (not even `{}`); put minor experimental "
            "toggles under custom.extra, the only free-form bucket, and canonical settings in "
            "their own sections"
        ),
    }

    model: ModelConfig = knob(doc="The checkpoint and how to load it.")
    quantization: QuantizationConfig = knob(
        factory=QuantizationConfig, doc="Weight quantization (off by default)."
    )
    template: TemplateConfig = knob(factory=TemplateConfig, doc="Prompt and answer rendering.")
    data: DataConfig = knob(doc="Training and validation data.")
    tuner: TunerConfig = knob(factory=TunerConfig, doc="Full fine-tuning or LoRA; freezing.")
    training: TrainingArgs = knob(doc="Optimisation, cadence, packing, checkpoints.")
    rlhf: RlhfConfig = knob(factory=RlhfConfig, doc="Reserved; must be empty.")
    custom: CustomConfig = knob(doc="Trainer variant and coordinate loss weights.")
    debug: DebugConfig = knob(factory=DebugConfig, doc="Diagnostics.")
    stage2_ab: Stage2ABConfig | None = knob(
        None, doc="Stage-2 AB trainer options; required by `stage2_ab_training`."
    )
    rollout_matching: RolloutMatchingConfig | None = knob(
        None,
        doc=(
            "Rollouts, matching and the rollout backend; required by `rollout_matching_sft` "
            "and `stage2_ab_training`. The trainer receives it unchanged as "
            "`rollout_matching_cfg`."
        ),
    )
    deepspeed: DeepSpeedConfig = knob(factory=DeepSpeedConfig, doc="DeepSpeed ZeRO.")
    global_max_length: int = knob(
        4096, gt=0, doc="Longest tokenised sample (prompt + answer) the run accepts."
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """Rules that span sections."""
        variant = self.custom.trainer_variant
        if variant in ROLLOUT_VARIANTS and self.rollout_matching is None:
            yield (
                "rollout_matching",
                (
                    f"custom.trainer_variant {variant} requires the top-level `rollout_matching:` "
                    "section (rollout backend, decoding, matching); add it"
                ),
            )
        if variant not in ROLLOUT_VARIANTS and self.rollout_matching is not None:
            yield (
                "rollout_matching",
                (
                    f"custom.trainer_variant {variant} does not roll out, so this section would be "
                    "ignored; remove it (or `rollout_matching: null` over an extended base)"
                ),
            )
        if variant == "stage2_ab_training" and self.stage2_ab is None:
            yield (
                "stage2_ab",
                (
                    "custom.trainer_variant stage2_ab_training requires the `stage2_ab:` section "
                    "with at least schedule.b_ratio"
                ),
            )
        if variant != "stage2_ab_training" and self.stage2_ab is not None:
            yield (
                "stage2_ab",
                (
                    f"custom.trainer_variant {variant} does not read stage2_ab; remove it "
                    "(or `stage2_ab: null` over an extended base)"
                ),
            )
        yield from self._training_rules()
        yield from self._rollout_rules()

    def _training_rules(self) -> Iterator[tuple[str, str]]:
        if self.training.eval_steps is not None and self.data.val_jsonl is None:
            yield "training.eval_steps", "periodic evaluation needs data.val_jsonl"
        if self.quantization.mode != "none" and self.tuner.train_type != "lora":
            yield (
                "quantization.mode",
                (
                    f"quantized weights ({self.quantization.mode}) cannot be fully fine-tuned; "
                    "set tuner.train_type: lora or quantization.mode: none"
                ),
            )
        if self.training.bf16 and self.model.dtype == "float16":
            yield "training.bf16", "model.dtype is float16: use bf16 with bfloat16 or auto"
        if self.deepspeed.enabled and self.quantization.mode != "none":
            yield "deepspeed.enabled", "DeepSpeed cannot train quantized weights here"

    def _rollout_rules(self) -> Iterator[tuple[str, str]]:
        rollout = self.rollout_matching
        if rollout is None or rollout.rollout_backend != "vllm":
            return
        if rollout.vllm.sync.mode == "adapter":
            if self.tuner.train_type != "lora":
                yield (
                    "rollout_matching.vllm.sync.mode",
                    ("adapter sync needs tuner.train_type: lora; use full or auto"),
                )
            if not rollout.vllm.enable_lora:
                yield (
                    "rollout_matching.vllm.enable_lora",
                    ("vllm.sync.mode adapter needs enable_lora: true"),
                )
