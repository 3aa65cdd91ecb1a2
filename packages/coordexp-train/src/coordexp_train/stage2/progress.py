"""The Stage-2 progress bar: Stage 1's bar plus one line per training log event."""

from __future__ import annotations

from typing import Any

from transformers import TrainerControl, TrainerState, TrainingArguments

from coordexp_train.progress import ProgressBar

#: Values of a training log shown on its line, in order, when present.
LINE_KEYS = (
    "loss",
    "token_ce",
    "soft_ce",
    "bbox_ciou",
    "rollout_len_mean",
    "matched",
    "fp",
    "fn",
    "dropped",
    "truncated",
    "packs",
    "dropped/too_long",
    "weight_sync",
    "time/cpu_share",
)


def log_line(step: int, logs: dict[str, float]) -> str:
    """``step <n> <A|B> key=value …`` for a training log (see :data:`LINE_KEYS`)."""
    channel = "B" if logs.get("channel_b", 0.0) == 1.0 else "A"
    values = " ".join(f"{k}={logs[k]:.4g}" for k in LINE_KEYS if k in logs)
    return f"step {step} {channel} {values}"


class Stage2ProgressBar(ProgressBar):
    """Writes :func:`log_line` above the bar for every training log (main process)."""

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Update the postfix as Stage 1 does, then write the step's line."""
        super().on_log(args, state, control, logs=logs, **kwargs)
        if self._bar is not None and logs and "loss" in logs:
            self._bar.write(log_line(state.global_step, logs))
