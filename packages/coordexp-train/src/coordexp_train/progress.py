"""A terminal progress bar over optimizer steps, showing loss, learning rate and ETA."""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class ProgressBar(TrainerCallback):
    """tqdm bar on the main process: one tick per optimizer step.

    The postfix shows the latest logged ``loss`` and ``learning_rate``; tqdm shows elapsed
    time, rate and the ETA. Log lines other than training logs (eval, the final summary)
    are written above the bar.
    """

    def __init__(self) -> None:
        self._bar: Any = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        """Open the bar at the current step (resumed runs start part-way)."""
        if state.is_world_process_zero:
            self._bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step")

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        """Advance to the current optimizer step."""
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **_: Any,
    ) -> None:
        """Show the latest loss and learning rate; print eval results above the bar."""
        if self._bar is None or not logs:
            return
        if "loss" in logs:
            self._bar.set_postfix(
                loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', 0.0):.2e}"
            )
        elif any(k.startswith("eval_") for k in logs):
            self._bar.write(" ".join(f"{k}={v:.4g}" for k, v in logs.items()))

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
