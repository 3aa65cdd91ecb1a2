"""Metrics to ``<output_dir>/metrics.jsonl``: one JSON object per Trainer log event.

Each line holds ``step`` (optimizer step), ``epoch`` and the logged values (``loss``,
``learning_rate``, ``grad_norm``, the loss parts such as ``token_ce``/``soft_ce``/``gate``,
eval values prefixed ``eval_``). Only the main process writes. A resumed run appends to
the same file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

METRICS_FILE = "metrics.jsonl"


class JsonlMetrics(TrainerCallback):
    """Append every log event as one JSON line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_train_log: dict[str, float] = {}

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **_: Any,
    ) -> None:
        """Append ``logs`` with the step and epoch (main process only)."""
        if not logs:
            return
        if "loss" in logs:
            self.last_train_log = dict(logs)
        if not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": state.epoch}
        record.update({k: _jsonable(v) for k, v in logs.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics file, in order."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
