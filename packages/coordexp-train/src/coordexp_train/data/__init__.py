"""The CoordExp data pipeline: records → chat samples → token batches.

See docs/data-pipeline.md for the whole path. Public API:

* :class:`SampleEncoder`, :class:`EncodedSample` — one record → token ids, labels,
  positions, image patches and coord targets.
* :class:`DetectionDataset` — a checked JSONL file with known sample lengths.
* :class:`Batch`, :func:`collate_rows`, :func:`collate_samples` — the training batch.
* :func:`plan_packs`, :func:`epoch_order`, :class:`PackedDataset` — Stage-1 packing.
* :func:`write_synthetic_dataset`, :class:`SceneSpec` — the synthetic shapes dataset.
"""

from coordexp_train.data.batch import Batch, SampleSpan, collate_rows, collate_samples
from coordexp_train.data.dataset import DetectionDataset
from coordexp_train.data.encode import IGNORE_INDEX, EncodedSample, SampleEncoder
from coordexp_train.data.packing import PackedDataset, PackPlan, epoch_order, plan_packs
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.data.samples import INVALID_REASONS, InvalidReport, SampleError
from coordexp_train.data.synthetic import SyntheticDataset, write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec

__all__ = [
    "IGNORE_INDEX",
    "INVALID_REASONS",
    "Batch",
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
    "epoch_order",
    "plan_packs",
    "write_synthetic_dataset",
]
