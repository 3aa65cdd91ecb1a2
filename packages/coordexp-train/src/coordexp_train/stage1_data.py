"""The Stage-1 trainer's data: datasets and collator built from the config.

Composes the data pipeline (:mod:`coordexp_train.data`) for ``transformers.Trainer``:
the collator turns encoded samples (or packs of them) into a
:class:`~coordexp_train.data.batch.Batch` and hands it to the Trainer as a mapping of its
fields, so the Trainer moves every tensor to the device and finds ``labels``.

With ``training.packing`` the packs are planned once over the file order (coordexp-pack,
capacity ``training.packing_length`` or ``global_max_length``); the Trainer's sampler then
shuffles packs each epoch and ``per_device_train_batch_size`` counts packed rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from coordexp_schema import TrainingConfig
from coordexp_train.data.batch import Batch, collate_rows
from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.encode import EncodedSample, SampleEncoder
from coordexp_train.data.packing import PackedDataset, plan_packs
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.samples import InvalidReport, SampleError
from coordexp_train.model import LoadedModel


class PackingError(ValueError):
    """A sample does not fit ``training.packing_length`` under ``packing_oversize: error``."""


# Data problems the CLI reports as plain messages (file:line, reason, fix).
DATA_ERRORS: tuple[type[Exception], ...] = (SampleError, PackingError)


def check_data_files(cfg: TrainingConfig) -> None:
    """Fail early (before a model is loaded) when a configured data path does not exist.

    Raises:
        FileNotFoundError: naming the ``data.*`` key and the path.
    """
    d = cfg.data
    for key, path, want_dir in (
        ("data.train_jsonl", d.train_jsonl, False),
        ("data.val_jsonl", d.val_jsonl, False),
        ("data.image_root", d.image_root, True),
    ):
        if path is None:
            continue
        p = Path(path).expanduser()
        ok = p.is_dir() if want_dir else p.is_file()
        if not ok:
            kind = "folder" if want_dir else "JSONL records file"
            raise FileNotFoundError(f"{key}: {path!r} does not exist; give a {kind}")


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
        sources: the files read (for the summary).
        skipped: samples left out under ``data.on_invalid: skip``.
    """

    train: Dataset[Any]
    eval: Dataset[Any] | None
    collator: RowCollator
    sources: tuple[str, ...]
    skipped: InvalidReport


def build_stage1_data(cfg: TrainingConfig, loaded: LoadedModel) -> Stage1Data:
    """Check every record and build the datasets (see the module docstring).

    Raises:
        FileNotFoundError: a JSONL file is missing (the message names ``data.*``).
        SampleError: under ``data.on_invalid: error``, the first bad sample.
        PackingError: with packing, a sample longer than the pack capacity under
            ``training.packing_oversize: error``.
    """
    d, t = cfg.data, cfg.training
    encoder = SampleEncoder(
        loaded.processor,
        prompt=PromptSpec(
            variant=cfg.template.prompt_variant,
            field_order=cfg.template.object_field_order,
            system_prompt=cfg.template.system_prompt,
        ),
        max_pixels=cfg.template.max_pixels,
        min_pixels=cfg.template.min_pixels,
        object_order=d.object_order,
        seed=t.seed,
        max_length=cfg.global_max_length,
    )
    train = _dataset(d.train_jsonl, encoder, cfg, d.train_sample_limit)
    skipped = train.report
    evaluation = None
    if d.val_jsonl is not None:
        evaluation = _dataset(d.val_jsonl, encoder, cfg, d.val_sample_limit)
    train_items: Dataset[Any] = train
    if t.packing:
        try:
            plan = plan_packs(
                train.lengths,
                [ref.record.source for ref in train.refs],
                list(range(len(train))),
                capacity=t.packing_length or cfg.global_max_length,
                oversize=t.packing_oversize,
                min_fill_ratio=t.packing_min_fill_ratio,
            )
        except ValueError as exc:
            raise PackingError(str(exc)) from None
        train_items = PackedDataset(train, plan)
    sources = tuple(s for s in (d.train_jsonl, d.val_jsonl, d.image_root) if s is not None)
    return Stage1Data(
        train=train_items,
        eval=evaluation,
        collator=RowCollator(int(loaded.processor.tokenizer.pad_token_id)),
        sources=sources,
        skipped=skipped,
    )


def _dataset(
    path: str, encoder: SampleEncoder, cfg: TrainingConfig, limit: int | None
) -> DetectionDataset:
    jsonl = Path(path).expanduser()
    root = Path(cfg.data.image_root).expanduser() if cfg.data.image_root is not None else None
    return DetectionDataset(
        jsonl, encoder, image_root=root, on_invalid=cfg.data.on_invalid, limit=limit
    )
