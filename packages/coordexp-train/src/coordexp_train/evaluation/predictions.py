r"""Predictions files: one JSON line per image with the parsed answer and its health.

One line per image::

    {"id": "images/val_000000.png",
     "objects": [{"desc": "red square", "bbox_2d": [12, 40, 200, 310]}],
     "dropped": {"non_coord_token": 1},
     "ending": "closed",
     "truncated": false,
     "raw_text": "{\"object_1\": ...}"}

- ``id``: the image's key, equal to ``images[0]`` of its ground-truth record.
- ``objects``: the valid objects in answer order, norm1000 ints, one geometry each
  (``bbox_2d`` or ``poly``); their order is the confidence order used for COCO scores.
- ``dropped``: drop reason → count (reasons from ``coordexp_parse.DROP_REASONS``).
- ``ending``: how the parse ended (``closed``, ``truncated``, ``syntax_error``,
  ``no_object``); ``truncated`` is ``ending == "truncated"``.
- ``raw_text``: the model's answer as generated.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from coordexp_parse import DROP_REASONS, DetObject, Ending, ObjectError, parse_text

ENDINGS: tuple[str, ...] = get_args(Ending)
PREDICTION_KEYS = ("id", "objects", "dropped", "ending", "truncated", "raw_text")


class PredictionsError(ValueError):
    """A predictions file line breaks the format; the message names file and line."""


@dataclass(frozen=True, slots=True)
class ImagePrediction:
    """The parsed answer for one image.

    Attributes:
        image_id: the key of the image (``images[0]`` of its ground-truth record).
        objects: the valid objects in answer order.
        dropped: drop reason → count of dropped entries.
        ending: how the parse ended (one of ``ENDINGS``).
        raw_text: the answer text.
    """

    image_id: str
    objects: tuple[DetObject, ...]
    dropped: dict[str, int]
    ending: str
    raw_text: str

    @property
    def truncated(self) -> bool:
        """Whether the answer ended inside the top-level object."""
        return self.ending == "truncated"

    def to_json(self) -> dict[str, Any]:
        """The JSON line for this prediction (see the module docstring)."""
        return {
            "id": self.image_id,
            "objects": [{"desc": o.desc, o.kind: list(o.coords)} for o in self.objects],
            "dropped": dict(self.dropped),
            "ending": self.ending,
            "truncated": self.truncated,
            "raw_text": self.raw_text,
        }


def prediction_from_text(image_id: str, text: str) -> ImagePrediction:
    """Parse one answer with ``coordexp_parse.parse_text`` (never raises; deterministic)."""
    parsed = parse_text(text)
    return ImagePrediction(
        image_id=image_id,
        objects=tuple(o.to_det_object() for o in parsed.objects),
        dropped=dict(parsed.dropped),
        ending=parsed.ending,
        raw_text=text,
    )


def write_predictions(path: str | Path, predictions: Iterable[ImagePrediction]) -> None:
    """Write predictions as JSONL, one line per image, in the given order (UTF-8)."""
    with Path(path).open("w", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(p.to_json(), ensure_ascii=False) + "\n")


def _object(raw: Any) -> DetObject:
    if not isinstance(raw, dict) or "desc" not in raw or len(raw) != 2:
        raise ValueError(
            f"an object must be {{'desc': ..., 'bbox_2d' | 'poly': [...]}}, got {raw!r}"
        )
    (kind,) = (k for k in raw if k != "desc")
    coords = raw[kind]
    if not isinstance(coords, list):
        raise ValueError(f"{kind} must be a list of norm1000 ints, got {coords!r}")
    try:
        return DetObject(raw["desc"], kind, tuple(coords))
    except ObjectError as e:
        raise ValueError(f"invalid object {raw!r}: {e}") from None


def _indexed_object(i: int, raw: Any) -> DetObject:
    try:
        return _object(raw)
    except ValueError as e:
        raise ValueError(f"objects[{i}]: {e}") from None


def _prediction(raw: Any) -> ImagePrediction:
    if not isinstance(raw, dict):
        raise ValueError(f"a line must be a JSON object, got {type(raw).__name__}")
    keys = set(raw)
    if keys != set(PREDICTION_KEYS):
        raise ValueError(
            f"keys must be exactly {list(PREDICTION_KEYS)}; missing "
            f"{sorted(set(PREDICTION_KEYS) - keys)}, unknown {sorted(keys - set(PREDICTION_KEYS))}"
        )
    if not isinstance(raw["id"], str) or not raw["id"]:
        raise ValueError(f"id must be a non-empty string, got {raw['id']!r}")
    if not isinstance(raw["objects"], list):
        raise ValueError(f"objects must be a list, got {raw['objects']!r}")
    dropped = raw["dropped"]
    if not isinstance(dropped, dict) or not all(
        k in DROP_REASONS and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in dropped.items()
    ):
        raise ValueError(f"dropped must map reasons in {list(DROP_REASONS)} to counts >= 0")
    if raw["ending"] not in ENDINGS:
        raise ValueError(f"ending must be one of {list(ENDINGS)}, got {raw['ending']!r}")
    if raw["truncated"] is not (raw["ending"] == "truncated"):
        raise ValueError("truncated must be true exactly when ending is 'truncated'")
    if not isinstance(raw["raw_text"], str):
        raise ValueError("raw_text must be a string")
    return ImagePrediction(
        image_id=raw["id"],
        objects=tuple(_indexed_object(i, o) for i, o in enumerate(raw["objects"])),
        dropped=dict(dropped),
        ending=raw["ending"],
        raw_text=raw["raw_text"],
    )


def read_predictions(path: str | Path) -> list[ImagePrediction]:
    """Read a predictions JSONL file (blank lines ignored), in file order.

    Raises:
        PredictionsError: a line is not valid JSON, breaks the format, or repeats an id;
            the message starts with ``path:line``.
        OSError: the file cannot be read.
    """
    out: list[ImagePrediction] = []
    seen: set[str] = set()
    with Path(path).open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                p = _prediction(json.loads(line))
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                raise PredictionsError(f"{path}:{line_no}: {e}") from None
            if p.image_id in seen:
                raise PredictionsError(
                    f"{path}:{line_no}: id {p.image_id!r} appears twice; one line per image"
                )
            seen.add(p.image_id)
            out.append(p)
    return out
