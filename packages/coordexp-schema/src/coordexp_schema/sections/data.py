"""The ``data`` section: where samples come from and how bad records are handled."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from coordexp_schema.fields import knob


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Training and validation data (JSONL records; see the data contract)."""

    train_jsonl: str = knob(doc="Training records, one JSON object per line.")
    val_jsonl: str | None = knob(None, doc="Validation records; null: no validation set.")
    image_root: str | None = knob(
        None,
        doc=(
            "Folder that relative image paths resolve against; null: the folder of the "
            "JSONL file that names them."
        ),
    )
    train_sample_limit: int | None = knob(
        None, gt=0, doc="Use only the first N training records; null: all."
    )
    val_sample_limit: int | None = knob(
        None, gt=0, doc="Use only the first N validation records; null: all."
    )
    num_workers: int = knob(0, ge=0, doc="DataLoader worker processes (0: main process).")
    on_invalid: Literal["error", "skip"] = knob(
        "error",
        doc=(
            "A record that breaks the data contract stops the run (`error`, naming file and "
            "line) or is skipped and counted (`skip`)."
        ),
    )
    object_order: Literal["sorted", "random"] = knob(
        "sorted",
        doc=(
            "Object order in training targets: `sorted` (top-to-bottom, then "
            "left-to-right) or `random` (reshuffled per sample, seeded)."
        ),
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """Paths must not be blank."""
        for name in ("train_jsonl", "val_jsonl", "image_root"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                yield name, "must be a path, got ''"
