"""The ``training`` section: optimisation, cadence, packing, checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from coordexp_schema.fields import knob


@dataclass(frozen=True, kw_only=True)
class TrainingArgs:
    """Optimiser, schedule, batch sizes, logging/eval/save cadence and packing."""

    output_dir: str = knob(doc="Run folder: checkpoints, metrics, monitor dumps.")
    num_train_epochs: float = knob(1.0, gt=0, doc="Passes over the training data.")
    max_steps: int | None = knob(
        None, gt=0, doc="Optimizer steps to run; when set it overrides `num_train_epochs`."
    )
    per_device_train_batch_size: int = knob(1, gt=0, doc="Samples per forward on one device.")
    per_device_eval_batch_size: int = knob(1, gt=0, doc="Samples per eval forward on one device.")
    effective_batch_size: int | None = knob(
        None,
        gt=0,
        doc=(
            "Raw samples per optimizer step over all devices; gradient accumulation is "
            "derived from it. null: per-device batch × world size (no accumulation)."
        ),
    )
    learning_rate: float = knob(1e-5, gt=0, doc="Peak learning rate of every parameter group.")
    vision_tower_lr: float | None = knob(
        None, gt=0, doc="Learning rate of the vision encoder; null: `learning_rate`."
    )
    aligner_lr: float | None = knob(
        None, gt=0, doc="Learning rate of the vision-to-language merger; null: `learning_rate`."
    )
    llm_lr: float | None = knob(
        None, gt=0, doc="Learning rate of the language model; null: `learning_rate`."
    )
    lr_scheduler_type: Literal["cosine", "linear", "constant"] = knob(
        "cosine", doc="Decay after warm-up."
    )
    warmup_ratio: float = knob(0.0, ge=0, le=1, doc="Warm-up length as a fraction of all steps.")
    warmup_steps: int = knob(0, ge=0, doc="Warm-up length in steps (exclusive with the ratio).")
    weight_decay: float = knob(0.0, ge=0, doc="AdamW weight decay.")
    max_grad_norm: float | None = knob(
        1.0, gt=0, doc="Clip the global gradient norm to this; null: no clipping."
    )
    bf16: bool = knob(False, doc="Autocast to bfloat16 (needs hardware support).")
    gradient_checkpointing: bool = knob(False, doc="Recompute activations to save memory.")
    logging_steps: int = knob(10, gt=0, doc="Log metrics every N optimizer steps.")
    eval_steps: int | None = knob(
        None, gt=0, doc="Evaluate every N optimizer steps; null: no periodic evaluation."
    )
    save_steps: int | None = knob(
        None, gt=0, doc="Save a checkpoint every N optimizer steps; null: only at the end."
    )
    save_total_limit: int | None = knob(
        None, gt=0, doc="Keep at most N checkpoints (oldest deleted first); null: keep all."
    )
    seed: int = knob(42, doc="Seed of every random choice of the run (data order, init, rollouts).")
    packing: bool = knob(
        False,
        doc=(
            "Stage 1: pack several dataset samples into one fixed-capacity sequence. "
            "Stage 2 always packs its teacher-forced samples after the rollout."
        ),
    )
    packing_length: int | None = knob(
        None, gt=0, doc="Capacity of one pack in tokens; null: `global_max_length`."
    )
    packing_min_fill_ratio: float = knob(
        0.0,
        ge=0,
        le=1,
        doc=(
            "A pack filled below this fraction of its capacity is carried to the end of the "
            "epoch (Stage 1) or to the next micro-batch of the optimizer step (Stage 2, "
            "post-rollout) and packed again."
        ),
    )
    packing_drop_last: bool = knob(
        False,
        doc=(
            "At the end of the epoch (Stage 1) or of the optimizer step (Stage 2), drop (and "
            "report) the packs still below `packing_min_fill_ratio` instead of training on them."
        ),
    )
    packing_oversize: Literal["error", "own_pack"] = knob(
        "error",
        doc=(
            "Stage 1: a sample longer than `packing_length` stops the run with an error "
            "naming it, or gets a pack of its own. Stage 2 drops (and counts) a rollout "
            "sample longer than `packing_length`, never truncating it."
        ),
    )
    resume_from_checkpoint: str | None = knob(
        None,
        doc="A checkpoint folder, `latest` (the newest under `output_dir`), or null: start fresh.",
    )
    report_to: tuple[Literal["jsonl", "tensorboard"], ...] = knob(
        ("jsonl",), doc="Metric sinks (`jsonl` writes `<output_dir>/metrics.jsonl`)."
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """Cross-field rules of the section."""
        if self.warmup_ratio > 0 and self.warmup_steps > 0:
            yield (
                "warmup_steps",
                (
                    f"set either warmup_ratio ({self.warmup_ratio}) or warmup_steps "
                    f"({self.warmup_steps}), not both"
                ),
            )
        ebs = self.effective_batch_size
        if ebs is not None and ebs % self.per_device_train_batch_size:
            yield (
                "effective_batch_size",
                (
                    f"must be a multiple of per_device_train_batch_size "
                    f"({self.per_device_train_batch_size}), got {ebs}"
                ),
            )
        if len(set(self.report_to)) != len(self.report_to):
            yield "report_to", f"lists a sink twice: {list(self.report_to)}"
        if not self.output_dir.strip():
            yield "output_dir", "must be a folder path, got ''"
