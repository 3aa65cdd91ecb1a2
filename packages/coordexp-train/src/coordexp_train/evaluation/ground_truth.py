"""Ground truth for evaluation: one entry per record of a dataset JSONL file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coordexp_parse import DetObject, read_records


@dataclass(frozen=True, slots=True)
class GroundTruthImage:
    """One image's ground truth.

    Attributes:
        image_id: ``images[0]`` of the record, as written (the predictions key).
        image_path: that image resolved against the JSONL file's folder.
        width, height: image size in pixels.
        objects: the objects as norm1000 ``DetObject``, in file order.
    """

    image_id: str
    image_path: Path
    width: int
    height: int
    objects: tuple[DetObject, ...]


def load_ground_truth(path: str | Path) -> list[GroundTruthImage]:
    """Read a dataset JSONL file (the coordexp-parse record contract), in file order.

    Raises:
        coordexp_parse.RecordError: a record breaks the contract (names file and line).
        ValueError: two records share ``images[0]`` (the key must be unique).
        OSError: the file cannot be read.
    """
    records, _ = read_records(path)
    root = Path(path).parent
    out: list[GroundTruthImage] = []
    seen: dict[str, str] = {}
    for r in records:
        key = r.images[0]
        if key in seen:
            raise ValueError(
                f"{r.source}: image {key!r} already used by {seen[key]}; evaluation keys "
                "images by images[0], so each must be unique"
            )
        seen[key] = r.source
        out.append(GroundTruthImage(key, root / key, r.width, r.height, r.det_objects()))
    return out
