"""Building the data pipeline from a loaded config (the field names live here only).

Mapping from config to pipeline:

* ``template.*`` → :class:`~coordexp_train.data.prompts.PromptSpec` and the image pixel
  bounds; ``data.object_order`` and ``training.seed`` → answer object order;
  ``global_max_length`` → the per-sample length limit.
* ``data.train_jsonl`` / ``data.val_jsonl`` → paths, or ``builtin:<name>/<split>`` for the
  built-in synthetic datasets; ``data.image_root``, ``data.on_invalid`` and
  ``data.*_sample_limit`` as documented in the schema.
* ``training.packing_length`` (default ``global_max_length``), ``packing_oversize``,
  ``packing_min_fill_ratio``, ``packing_drop_last`` and ``training.seed`` → the Stage-1
  pack plan of an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordexp_schema import TrainingConfig
from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.encode import SampleEncoder
from coordexp_train.data.packing import PackPlan, epoch_order, plan_packs
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.samples import InvalidReport
from coordexp_train.data.synthetic import resolve_records_path


@dataclass(frozen=True, slots=True)
class DataSplits:
    """The run's datasets; ``val`` is None without ``data.val_jsonl``."""

    train: DetectionDataset
    val: DetectionDataset | None

    def skipped(self) -> dict[str, InvalidReport]:
        """Per split (``train``, ``val``) with samples left out under ``on_invalid: skip``."""
        return {
            name: split.report
            for name, split in (("train", self.train), ("val", self.val))
            if split is not None and split.report.total
        }


def encoder_from_config(config: TrainingConfig, processor: Any) -> SampleEncoder:
    """The sample encoder the config describes, for ``processor``."""
    template = config.template
    prompt = PromptSpec(
        variant=template.prompt_variant,
        field_order=template.object_field_order,
        system_prompt=template.system_prompt,
    )
    return SampleEncoder(
        processor,
        prompt=prompt,
        max_pixels=template.max_pixels,
        min_pixels=template.min_pixels,
        object_order=config.data.object_order,
        seed=config.training.seed,
        max_length=config.global_max_length,
    )


def datasets_from_config(
    config: TrainingConfig, encoder: SampleEncoder, *, cache_dir: Path | None = None
) -> DataSplits:
    """Read and check the train (and val) records the config names.

    Raises:
        FileNotFoundError: a records file is missing.
        SampleError: under ``data.on_invalid: error``, the first invalid sample.
        ValueError: a bad ``builtin:`` dataset reference.
    """
    data = config.data
    image_root = Path(data.image_root).expanduser() if data.image_root else None

    def load(ref: str, limit: int | None) -> DetectionDataset:
        return DetectionDataset(
            resolve_records_path(ref, cache_dir=cache_dir),
            encoder,
            image_root=image_root,
            on_invalid=data.on_invalid,
            limit=limit,
        )

    train = load(data.train_jsonl, data.train_sample_limit)
    val = load(data.val_jsonl, data.val_sample_limit) if data.val_jsonl else None
    return DataSplits(train=train, val=val)


def pack_plan_from_config(
    config: TrainingConfig, dataset: DetectionDataset, epoch: int
) -> PackPlan:
    """The Stage-1 pack plan of ``epoch`` (shuffled with ``training.seed``)."""
    training = config.training
    return plan_packs(
        dataset.lengths,
        [ref.record.source for ref in dataset.refs],
        epoch_order(len(dataset), seed=training.seed, epoch=epoch),
        capacity=training.packing_length or config.global_max_length,
        oversize=training.packing_oversize,
        min_fill_ratio=training.packing_min_fill_ratio,
        drop_last=training.packing_drop_last,
    )
