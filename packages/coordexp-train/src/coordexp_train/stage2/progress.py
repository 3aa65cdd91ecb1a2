"""The Stage-2 progress bar: the channel and match counts in the postfix, a line per log."""

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


#: Counts of a training log shown in the bar's postfix after the loss, when present.
POSTFIX_KEYS = ("matched", "fp", "fn", "dropped")


def postfix(logs: dict[str, float]) -> dict[str, str]:
    """The bar's postfix for a training log: channel, loss, learning rate, match counts."""
    out = {
        "ch": "B" if logs.get("channel_b", 0.0) == 1.0 else "A",
        "loss": f"{logs['loss']:.4f}",
        "lr": f"{logs.get('learning_rate', 0.0):.2e}",
    }
    out.update({k: f"{logs[k]:.3g}" for k in POSTFIX_KEYS if k in logs})
    return out


class Stage2ProgressBar(ProgressBar):
    """Stage 1's bar with :func:`postfix`, writing :func:`log_line` for every training log."""

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Print eval logs as Stage 1 does; for a training log, the postfix and its line."""
        super().on_log(args, state, control, logs=logs, **kwargs)
        if self._bar is not None and logs and "loss" in logs:
            self._bar.set_postfix(postfix(logs))
            self._bar.write(log_line(state.global_step, logs))
