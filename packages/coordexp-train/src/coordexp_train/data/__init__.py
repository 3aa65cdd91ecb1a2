"""The CoordExp data pipeline: records → chat samples → token batches.

See docs/data-pipeline.md for the whole path. Public API:

* :class:`SampleEncoder`, :class:`EncodedSample` — one record → token ids, labels,
  positions, image patches and coord targets.
* :class:`DetectionDataset` — a checked JSONL file with known sample lengths.
* :class:`Batch`, :func:`collate_rows`, :func:`collate_samples` — the training batch.
* :func:`plan_packs`, :func:`epoch_order`, :class:`PackedDataset` — Stage-1 packing.
* :func:`write_synthetic_dataset`, :class:`SceneSpec`, :func:`resolve_records_path` —
  the synthetic shapes dataset and the ``builtin:<name>/<split>`` references.
* :func:`encoder_from_config`, :func:`datasets_from_config`,
  :func:`pack_plan_from_config` — all of the above from a loaded config.
"""

from coordexp_train.data.batch import Batch, SampleSpan, collate_rows, collate_samples
from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.encode import IGNORE_INDEX, EncodedSample, SampleEncoder
from coordexp_train.data.from_config import (
    DataSplits,
    datasets_from_config,
    encoder_from_config,
    pack_plan_from_config,
)
from coordexp_train.data.packing import PackedDataset, PackPlan, epoch_order, plan_packs
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.samples import INVALID_REASONS, InvalidReport, SampleError
from coordexp_train.data.synthetic import (
    BUILTIN_DATASETS,
    SyntheticDataset,
    ensure_builtin_dataset,
    resolve_records_path,
    write_synthetic_dataset,
)
from coordexp_train.data.synthetic_scene import SceneSpec

__all__ = [
    "BUILTIN_DATASETS",
    "IGNORE_INDEX",
    "INVALID_REASONS",
    "Batch",
    "DataSplits",
    "DetectionDataset",
    "EncodedSample",
    "InvalidReport",
    "PackPlan",
    "PackedDataset",
    "PromptSpec",
    "SampleEncoder",
    "SampleError",
    "SampleSpan",
    "SceneSpec",
    "SyntheticDataset",
    "collate_rows",
    "collate_samples",
    "datasets_from_config",
    "encoder_from_config",
    "ensure_builtin_dataset",
    "epoch_order",
    "pack_plan_from_config",
    "plan_packs",
    "resolve_records_path",
    "write_synthetic_dataset",
]
