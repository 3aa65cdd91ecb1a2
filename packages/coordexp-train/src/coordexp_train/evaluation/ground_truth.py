"""Ground truth for evaluation: one entry per record of a dataset JSONL file.

Records are read and their images found and checked by the training data pipeline
(:func:`coordexp_train.data.samples.iter_sample_refs`), so evaluation resolves image paths
exactly as training does (``data.image_root`` or the JSONL file's folder).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coordexp_parse import DetObject
from coordexp_train.data.samples import InvalidReport, SampleRef, iter_sample_refs


@dataclass(frozen=True, slots=True)
class GroundTruthImage:
    """One image's ground truth.

    Attributes:
        image_id: ``images[0]`` of the record, as written (the predictions key).
        image_path: that image, resolved.
        width, height: image size in pixels.
        objects: the objects as norm1000 ``DetObject``, in file order.
    """

    image_id: str
    image_path: Path
    width: int
    height: int
    objects: tuple[DetObject, ...]


def ground_truth_of(refs: Iterable[SampleRef]) -> list[GroundTruthImage]:
    """Ground truth of checked samples (e.g. a ``DetectionDataset``'s ``refs``), in order.

    Raises:
        ValueError: two records share ``images[0]`` (the key must be unique); the
            message names both records.
    """
    out: list[GroundTruthImage] = []
    seen: dict[str, str] = {}
    for ref in refs:
        r = ref.record
        key = r.images[0]
        if key in seen:
            raise ValueError(
                f"{r.source}: image {key!r} already used by {seen[key]}; evaluation keys "
                "images by images[0], so each must be unique"
            )
        seen[key] = r.source
        out.append(GroundTruthImage(key, ref.image_path, r.width, r.height, r.det_objects()))
    return out


def load_ground_truth(
    path: str | Path, *, image_root: Path | None = None
) -> list[GroundTruthImage]:
    """Read a dataset JSONL file (the coordexp-parse record contract), in file order.

    Args:
        path: the records file.
        image_root: folder that relative image paths resolve against; default: the
            JSONL file's folder.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        coordexp_train.data.SampleError: a record breaks the contract or its image is
            missing, unreadable or of another size (names file:line and the fix).
        ValueError: two records share ``images[0]``.
    """
    return ground_truth_of(iter_sample_refs(Path(path), InvalidReport(), image_root=image_root))
