"""Sections about the model itself: ``model``, ``quantization``, ``template``, ``tuner``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from coordexp_schema.fields import knob

BUILTIN_TINY_MODEL = "builtin:tiny-qwen3-vl"


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which checkpoint to train and how to load it."""

    model: str = knob(
        doc=(
            "A local Qwen3-VL checkpoint directory (with the 1000 coord tokens in its "
            f"tokenizer) or `{BUILTIN_TINY_MODEL}`, the tiny model built locally for the CPU "
            "demo. The path is checked when training starts, not when the config loads."
        )
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = knob(
        "auto", doc="Weights dtype at load time; `auto` keeps the checkpoint's dtype."
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] = knob(
        "sdpa", doc="Attention kernel passed to transformers."
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """``model`` must not be blank."""
        if not self.model.strip():
            yield "model", "must be a checkpoint path or 'builtin:tiny-qwen3-vl', got ''"


@dataclass(frozen=True, kw_only=True)
class QuantizationConfig:
    """Weight quantization at load time (bitsandbytes); off by default."""

    mode: Literal["none", "4bit", "8bit"] = knob(
        "none",
        doc=(
            "`none`, or load the base weights in 4-bit / 8-bit (LoRA training only; the "
            "trainers refuse quantized weights in this release)."
        ),
    )
    quant_type: Literal["nf4", "fp4"] = knob("nf4", doc="4-bit data type.")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = knob(
        "bfloat16", doc="Dtype of the matmuls on quantized weights."
    )
    double_quant: bool = knob(True, doc="Quantize the 4-bit quantization constants too.")


@dataclass(frozen=True, kw_only=True)
class TemplateConfig:
    """How samples are rendered into chat messages."""

    system_prompt: str | None = knob(
        None, doc="System prompt; null uses the built-in prompt of `prompt_variant`."
    )
    prompt_variant: Literal["default", "short"] = knob(
        "default",
        doc=(
            "User prompt: `default` spells out the answer format (one-line JSON, "
            "`object_N` keys, coord tokens); `short` is a one-sentence instruction."
        ),
    )
    object_field_order: Literal["desc_first", "geometry_first"] = knob(
        "desc_first", doc="Order of `desc` and the geometry inside each answer object."
    )
    max_pixels: int = knob(
        1_048_576, gt=0, doc="Images larger than this many pixels are resized down."
    )
    min_pixels: int | None = knob(
        None, gt=0, doc="Images smaller than this many pixels are resized up; null: none."
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """``min_pixels`` must not exceed ``max_pixels``."""
        if self.min_pixels is not None and self.min_pixels > self.max_pixels:
            yield "min_pixels", f"must be <= max_pixels ({self.max_pixels}), got {self.min_pixels}"


@dataclass(frozen=True, kw_only=True)
class TunerConfig:
    """Which parameters train: full fine-tuning or LoRA, and which parts are frozen."""

    train_type: Literal["full", "lora"] = knob(
        "full",
        doc=(
            "Full fine-tuning, or LoRA adapters (peft); under LoRA the 1000 coord-token "
            "rows of the embedding and LM head train too unless `freeze_llm`."
        ),
    )
    lora_rank: int = knob(8, gt=0, doc="LoRA rank.")
    lora_alpha: int = knob(32, gt=0, doc="LoRA scaling numerator (scale = alpha / rank).")
    lora_dropout: float = knob(0.05, ge=0, lt=1, doc="Dropout on the LoRA input.")
    lora_target_modules: tuple[str, ...] = knob(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        doc=(
            "Names of the linear modules that get LoRA adapters, matched as peft matches a "
            "list (the last name components); only in parts the `freeze_*` flags leave free."
        ),
    )
    freeze_vision_tower: bool = knob(
        True, doc="Keep the vision encoder's weights fixed (under LoRA: no adapters there)."
    )
    freeze_aligner: bool = knob(
        False, doc="Keep the vision-to-language merger fixed (under LoRA: no adapters there)."
    )
    freeze_llm: bool = knob(
        False,
        doc=(
            "Keep the language model's weights fixed (under LoRA: no adapters there, and the "
            "coord-token rows stay fixed too)."
        ),
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """Something must train; LoRA needs target modules."""
        if self.freeze_vision_tower and self.freeze_aligner and self.freeze_llm:
            yield (
                "",
                (
                    "freeze_vision_tower, freeze_aligner and freeze_llm are all true: nothing "
                    "would train; unfreeze at least one part"
                ),
            )
        if self.train_type == "lora" and not self.lora_target_modules:
            yield "lora_target_modules", "LoRA needs at least one target module"
