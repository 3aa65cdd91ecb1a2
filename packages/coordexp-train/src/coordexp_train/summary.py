"""The end-of-run summary: where everything is and how training ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RunSummary:
    """What a finished run produced.

    Attributes:
        output_dir: the run folder.
        final_model: the saved model + processor (loadable as ``model.model``).
        metrics_file: the JSONL metrics.
        tensorboard_dir: TensorBoard event files, or None when not written.
        checkpoints: the ``checkpoint-<step>`` folders left in ``output_dir``.
        model_source: the checkpoint folder training started from.
        train_files: the records files used.
        num_samples: training samples used.
        skipped: per split, the report of samples left out (``data.on_invalid: skip``).
        global_step: optimizer steps done (including resumed ones).
        train_loss: mean training loss over this session's steps.
        final_logs: the last training log event (loss, its parts, learning rate).
        runtime_s: wall-clock seconds of ``train()``.
    """

    output_dir: Path
    final_model: Path
    metrics_file: Path
    tensorboard_dir: Path | None
    checkpoints: tuple[Path, ...]
    model_source: Path
    train_files: tuple[str, ...]
    num_samples: int
    global_step: int
    train_loss: float
    final_logs: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    runtime_s: float = 0.0

    def render(self) -> str:
        """A short human-readable report (what the CLI prints)."""
        parts = ", ".join(
            f"{k}={v:.4f}"
            for k, v in self.final_logs.items()
            if k not in {"epoch", "learning_rate", "grad_norm"} and isinstance(v, float)
        )
        lines = [
            "Training finished.",
            f"  steps:         {self.global_step} in {self.runtime_s:.1f} s",
            f"  mean loss:     {self.train_loss:.4f}",
            f"  last log:      {parts or '-'}",
            f"  final model:   {self.final_model}",
            f"  metrics:       {self.metrics_file}",
            f"  checkpoints:   {', '.join(str(p) for p in self.checkpoints) or '-'}",
            f"  started from:  {self.model_source}",
            f"  data:          {', '.join(self.train_files)} ({self.num_samples} samples)",
        ]
        for split, report in self.skipped.items():
            lines.append(f"  {split}: {report}")
        if self.tensorboard_dir is not None:
            lines.append(f"  tensorboard:   tensorboard --logdir {self.tensorboard_dir}")
        return "\n".join(lines)
