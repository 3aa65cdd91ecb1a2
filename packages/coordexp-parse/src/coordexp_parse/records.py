"""The dataset record contract: JSONL records of images with objects in pixel coordinates.

One record per line::

    {"images": ["images/0001.png"], "width": 640, "height": 480,
     "objects": [{"desc": "red square", "bbox_2d": [12, 40.5, 200, 310]},
                 {"desc": "blue triangle", "poly": [300, 20, 420, 200, 250, 180]}]}

Rules (each violation is a :class:`RecordError` naming file, line and object index):

- keys: ``images`` (non-empty list of non-empty strings, relative to the JSONL file),
  ``width`` and ``height`` (ints ≥ 1), ``objects`` (a list, possibly empty); optional
  ``summary`` (string) and ``metadata`` (object, free-form); no other key.
- each object: ``desc`` (a string, non-empty after strip, without a stop string or a
  lone surrogate escape) and
  exactly one geometry: ``bbox_2d`` = ``[x1, y1, x2, y2]`` with x1 ≤ x2, y1 ≤ y2, or
  ``poly`` = flat ``[x1, y1, x2, y2, …]`` (even length, ≥ 6 values; an optional
  ``poly_points`` must equal the number of points); no other key.
- coordinates are finite pixel numbers with 0 ≤ x ≤ width and 0 ≤ y ≤ height.

Blank lines are ignored. Pixels become norm1000 bins with :func:`~coordexp_parse.pixel_to_bin`
(a value in (side − 1, side] maps to 999).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from coordexp_parse.codec import pixel_to_bin
from coordexp_parse.objects import (
    GEOMETRY_KINDS,
    DetObject,
    GeometryKind,
    arity_problem,
    bbox_ordered,
)
from coordexp_parse.render import STOP_STRINGS

OnInvalid: TypeAlias = Literal["error", "skip"]
RECORD_KEYS = ("images", "width", "height", "objects", "summary", "metadata")
OBJECT_KEYS = ("desc", "bbox_2d", "poly", "poly_points")


class RecordError(ValueError):
    """A dataset record breaks the contract.

    Attributes:
        source: the file (or other source name) of the record.
        line: its 1-based line number (0 when unknown).
        object_index: the 0-based index of the offending object, or None for the record.
        problem: what is wrong and what was expected.
    """

    def __init__(self, source: str, line: int, object_index: int | None, problem: str) -> None:
        where = f"{source}:{line}" + ("" if object_index is None else f": object {object_index}")
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line = line
        self.object_index = object_index
        self.problem = problem


@dataclass(frozen=True, slots=True)
class PixelObject:
    """A ground-truth object as stored: ``desc`` and one geometry in pixel coordinates."""

    desc: str
    kind: GeometryKind
    coords: tuple[float, ...]

    def to_det_object(self, width: int, height: int) -> DetObject:
        """The norm1000 object for an image of ``width`` × ``height`` pixels."""
        bins = tuple(
            pixel_to_bin(v, width if i % 2 == 0 else height) for i, v in enumerate(self.coords)
        )
        return DetObject(self.desc, self.kind, bins)


@dataclass(frozen=True, slots=True)
class Record:
    """One validated dataset record.

    Attributes:
        images: image paths as written in the record (relative to the JSONL file).
        width, height: image size in pixels.
        objects: the objects in pixel coordinates, in file order.
        source: where the record came from, ``"path:line"``.
        summary: optional one-line summary.
        metadata: optional free-form metadata.
    """

    images: tuple[str, ...]
    width: int
    height: int
    objects: tuple[PixelObject, ...]
    source: str
    summary: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def det_objects(self) -> tuple[DetObject, ...]:
        """The objects as norm1000 :class:`~coordexp_parse.DetObject`, in file order."""
        return tuple(o.to_det_object(self.width, self.height) for o in self.objects)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))


def _object_problem(obj: Any, width: int, height: int) -> str | None:
    """Describe the first contract violation of one object, or None."""
    if not isinstance(obj, dict):
        return f"must be a JSON object with desc and one geometry, got {type(obj).__name__}"
    unknown = sorted(set(obj) - set(OBJECT_KEYS))
    if unknown:
        return f"unknown keys {unknown}; allowed: {list(OBJECT_KEYS)}"
    desc = obj.get("desc")
    if not isinstance(desc, str) or not desc.strip():
        return f"desc must be a non-empty string, got {desc!r}"
    if any(stop in desc for stop in STOP_STRINGS):
        return f"desc {desc!r} contains a stop string {list(STOP_STRINGS)}"
    if not desc.isprintable() and any(0xD800 <= ord(c) <= 0xDFFF for c in desc):
        return f"desc {desc!r} holds a lone surrogate (\\ud800-\\udfff escape): not text"
    geoms = [k for k in GEOMETRY_KINDS if k in obj]
    if len(geoms) != 1:
        found = "none" if not geoms else " and ".join(geoms)
        return f"needs exactly one geometry (bbox_2d or poly), found {found}"
    kind = geoms[0]
    values = obj[kind]
    if not isinstance(values, list) or not all(_is_number(v) for v in values):
        return f"{kind} must be a flat list of finite pixel numbers, got {values!r}"
    n = len(values)
    arity = arity_problem(kind, n)
    if arity is not None:
        return arity
    points = obj.get("poly_points", n // 2)
    if isinstance(points, bool) or points != n // 2 or ("poly_points" in obj and kind != "poly"):
        return f"poly_points must equal the number of poly points ({n // 2}) and needs a poly"
    for i, v in enumerate(values):
        axis, side = ("x", width) if i % 2 == 0 else ("y", height)
        if not 0 <= v <= side:
            return f"{kind}[{i}] = {v} is outside the image: need 0 <= {axis} <= {side}"
    if kind == "bbox_2d" and not bbox_ordered(values):
        return f"bbox_2d needs x1 <= x2 and y1 <= y2, got {values}"
    return None


def _record_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a record must be a JSON object, got {type(data).__name__}"
    unknown = sorted(set(data) - set(RECORD_KEYS))
    if unknown:
        return f"unknown keys {unknown}; allowed: {list(RECORD_KEYS)}"
    images = data.get("images")
    if (
        not isinstance(images, list)
        or not images
        or not all(isinstance(p, str) and p for p in images)
    ):
        return f"images must be a non-empty list of image paths, got {images!r}"
    for key in ("width", "height"):
        v = data.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            return f"{key} must be an int >= 1 (pixels), got {v!r}"
    if not isinstance(data.get("objects"), list):
        return f"objects must be a list (possibly empty), got {data.get('objects')!r}"
    if "summary" in data and not isinstance(data["summary"], str):
        return f"summary must be a string, got {data['summary']!r}"
    if "metadata" in data and not isinstance(data["metadata"], dict):
        return f"metadata must be a JSON object, got {data['metadata']!r}"
    return None


def validate_record(data: Any, *, source: str = "<record>", line: int = 0) -> Record:
    """Validate one decoded record and return it typed.

    Raises:
        RecordError: the first violation of the contract (see the module docstring),
            naming ``source``, ``line`` and the object index.
    """
    problem = _record_problem(data)
    if problem is not None:
        raise RecordError(source, line, None, problem)
    width, height = data["width"], data["height"]
    objects = []
    for i, obj in enumerate(data["objects"]):
        problem = _object_problem(obj, width, height)
        if problem is not None:
            raise RecordError(source, line, i, problem)
        kind: GeometryKind = "bbox_2d" if "bbox_2d" in obj else "poly"
        objects.append(PixelObject(obj["desc"], kind, tuple(obj[kind])))
    return Record(
        images=tuple(data["images"]),
        width=width,
        height=height,
        objects=tuple(objects),
        source=f"{source}:{line}",
        summary=data.get("summary"),
        metadata=data.get("metadata", {}),
    )


class JsonlRecords:
    """Iterate over the validated records of a JSONL file, in file order.

    Args:
        path: the JSONL file.
        on_invalid: ``"error"`` raises the first :class:`RecordError`; ``"skip"`` skips
            invalid records and keeps their errors in :attr:`skipped`.

    Each iteration re-reads the file and resets :attr:`skipped`.
    """

    def __init__(self, path: str | Path, on_invalid: OnInvalid = "error") -> None:
        if on_invalid not in ("error", "skip"):
            raise ValueError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
        self.path = Path(path)
        self.on_invalid = on_invalid
        self.skipped: list[RecordError] = []

    def __iter__(self) -> Iterator[Record]:
        self.skipped = []
        source = str(self.path)
        with self.path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    try:
                        data = json.loads(line)
                    except ValueError as e:
                        raise RecordError(source, line_no, None, f"not valid JSON ({e})") from e
                    yield validate_record(data, source=source, line=line_no)
                except RecordError as e:
                    if self.on_invalid == "error":
                        raise
                    self.skipped.append(e)


def read_records(
    path: str | Path, on_invalid: OnInvalid = "error"
) -> tuple[list[Record], list[RecordError]]:
    """Read a whole JSONL file → (valid records, errors of skipped records).

    Raises:
        RecordError: with ``on_invalid="error"``, the first invalid record.
        OSError: the file cannot be read.
    """
    reader = JsonlRecords(path, on_invalid)
    records = list(reader)
    return records, reader.skipped
