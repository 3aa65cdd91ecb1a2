"""The Stage-1 trainer's data: the pipeline's datasets, plus a collator for the Trainer.

The datasets come from :mod:`coordexp_train.data` (``datasets_from_config``; built-in
``builtin:<name>/<split>`` datasets are written on first use). The collator turns encoded
samples (or packs of them) into a :class:`~coordexp_train.data.batch.Batch` and hands it
to ``transformers.Trainer`` as a mapping of its fields, so the Trainer moves every tensor
to the device and finds ``labels``.

With ``training.packing`` the pack plan is made once, for epoch 0
(``pack_plan_from_config``); the Trainer's sampler then reshuffles the packs every epoch
and ``per_device_train_batch_size`` counts packed rows. A fixed plan keeps the number of
steps per epoch constant, which exact resume relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback, TrainingArguments

from coordexp_schema import TrainingConfig
from coordexp_train.data import (
    Batch,
    EncodedSample,
    InvalidReport,
    PackedDataset,
    SampleError,
    collate_rows,
    datasets_from_config,
    encoder_from_config,
    pack_plan_from_config,
    resolve_records_path,
)
from coordexp_train.model import LoadedModel


class PackingError(ValueError):
    """A sample does not fit ``training.packing_length`` under ``packing_oversize: error``."""


# Data problems the CLI reports as plain messages (file:line, reason, fix).
DATA_ERRORS: tuple[type[Exception], ...] = (SampleError, PackingError)


def prepare_data_files(cfg: TrainingConfig, cache_dir: Path | None = None) -> tuple[Path, ...]:
    """Resolve the records files (writing built-in datasets if missing) and check they exist.

    Runs before any model is loaded, so a wrong path fails in a second.

    Returns:
        The resolved train (and val) JSONL paths.

    Raises:
        FileNotFoundError: naming the ``data.*`` key and the path.
        ValueError: a malformed ``builtin:`` reference (from the data pipeline).
    """
    d = cfg.data
    resolved: list[Path] = []
    for key, ref in (("data.train_jsonl", d.train_jsonl), ("data.val_jsonl", d.val_jsonl)):
        if ref is None:
            continue
        path = resolve_records_path(ref, cache_dir=cache_dir)
        if not path.is_file():
            raise FileNotFoundError(f"{key}: {ref!r} does not exist; give a JSONL records file")
        resolved.append(path)
    if d.image_root is not None and not Path(d.image_root).expanduser().is_dir():
        raise FileNotFoundError(f"data.image_root: {d.image_root!r} is not a folder")
    return tuple(resolved)


def batch_as_mapping(batch: Batch) -> dict[str, Any]:
    """The batch's fields as a dict (tensors and the sample spans)."""
    return {f.name: getattr(batch, f.name) for f in fields(batch)}


class RowCollator:
    """Collate dataset items into a batch mapping; an item is a sample or a pack of them."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[EncodedSample | list[EncodedSample]]) -> dict[str, Any]:
        """Lay out one row per item and return :func:`batch_as_mapping` of it."""
        rows = [item if isinstance(item, list) else [item] for item in items]
        return batch_as_mapping(collate_rows(rows, pad_token_id=self.pad_token_id))


@dataclass(frozen=True)
class Stage1Data:
    """What the trainer trains and evaluates on.

    Attributes:
        train: training items (samples, or packs when packing).
        eval: validation samples, or None without ``data.val_jsonl``.
        collator: turns a list of items into a batch mapping.
        num_samples: training samples kept.
        skipped: per split (``train``, ``val``), samples left out under
            ``data.on_invalid: skip``.
    """

    train: Dataset[Any]
    eval: Dataset[Any] | None
    collator: RowCollator
    num_samples: int
    skipped: dict[str, InvalidReport]


def build_stage1_data(
    cfg: TrainingConfig, loaded: LoadedModel, cache_dir: Path | None = None
) -> Stage1Data:
    """Check every record and build the datasets (see the module docstring).

    Raises:
        SampleError: under ``data.on_invalid: error``, the first bad sample.
        PackingError: with packing, a sample longer than the pack capacity under
            ``training.packing_oversize: error``.
    """
    encoder = encoder_from_config(cfg, loaded.processor)
    splits = datasets_from_config(cfg, encoder, cache_dir=cache_dir)
    train_items: Dataset[Any] = splits.train
    if cfg.training.packing:
        try:
            plan = pack_plan_from_config(cfg, splits.train, epoch=0)
        except ValueError as exc:
            raise PackingError(str(exc)) from None
        train_items = PackedDataset(splits.train, plan)
    return Stage1Data(
        train=train_items,
        eval=splits.val,
        collator=RowCollator(int(loaded.processor.tokenizer.pad_token_id)),
        num_samples=len(splits.train),
        skipped=splits.skipped(),
    )


def trainer_inputs(
    loaded: LoadedModel,
    data: Stage1Data,
    args: TrainingArguments,
    callbacks: Sequence[TrainerCallback],
) -> dict[str, Any]:
    """The keyword arguments every CoordExp trainer takes from the run's model and data."""
    return {
        "model": loaded.model,
        "args": args,
        "train_dataset": data.train,
        "eval_dataset": data.eval,
        "data_collator": data.collator,
        "processing_class": loaded.processor,
        "callbacks": list(callbacks),
        "coord_token_ids": torch.tensor(loaded.coord_vocab.ids),
    }
