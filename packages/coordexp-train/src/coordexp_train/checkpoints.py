"""Checkpoint folders of a run: where they are, which one to resume, the final save.

Layout under ``training.output_dir``::

    checkpoint-<step>/   Trainer checkpoints (weights, optimizer, scheduler, RNG, state)
    final/               the trained model + processor, loadable as ``model.model``
                         (a LoRA run: base weights with the adapter merged in)
    final_adapter/       a LoRA run's adapter alone (peft format)
    metrics.jsonl        see :mod:`coordexp_train.metrics_log`
"""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
FINAL_DIR = "final"
FINAL_ADAPTER_DIR = "final_adapter"
TRAINER_STATE = "trainer_state.json"


def checkpoints(output_dir: Path) -> tuple[Path, ...]:
    """Complete ``checkpoint-<step>`` folders (holding a trainer state), by step."""
    if not output_dir.is_dir():
        return ()
    found = [
        (int(m.group(1)), p)
        for p in output_dir.iterdir()
        if (m := CHECKPOINT_RE.match(p.name)) and (p / TRAINER_STATE).is_file()
    ]
    return tuple(p for _, p in sorted(found))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete ``checkpoint-<step>`` folder with the largest step, or None."""
    found = checkpoints(output_dir)
    return found[-1] if found else None


def resolve_resume(setting: str | None, output_dir: Path) -> Path | None:
    """Turn ``training.resume_from_checkpoint`` into a checkpoint folder (or None).

    ``latest`` picks the newest checkpoint under ``output_dir``; a path must be a
    checkpoint folder written by a previous run.

    Raises:
        FileNotFoundError: ``latest`` with no checkpoint, or a path that is not a checkpoint
            folder; the message names ``training.resume_from_checkpoint``.
    """
    if setting is None:
        return None
    if setting == "latest":
        found = latest_checkpoint(output_dir)
        if found is None:
            raise FileNotFoundError(
                f"training.resume_from_checkpoint is 'latest' but {output_dir} holds no "
                "checkpoint-<step>/ folder with a trainer_state.json; start without resuming "
                "(null) or point at a checkpoint folder"
            )
        return found
    path = Path(setting).expanduser()
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(
            f"training.resume_from_checkpoint: {setting!r} is not a checkpoint folder (no "
            f"{TRAINER_STATE} in it); give a checkpoint-<step>/ folder of a previous run, "
            "'latest', or null"
        )
    return path
