"""The dataset record contract: validation errors name file, line and object index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coordexp_parse import (
    DetObject,
    JsonlRecords,
    PixelObject,
    RecordError,
    read_records,
    validate_record,
)

GOOD: dict[str, Any] = {
    "images": ["images/0001.png"],
    "width": 640,
    "height": 480,
    "objects": [
        {"desc": "red square", "bbox_2d": [12, 40.5, 200, 310]},
        {"desc": "blue triangle", "poly": [300, 20, 420, 200, 250, 180], "poly_points": 3},
    ],
}


def with_object(obj: Any) -> dict[str, Any]:
    return {**GOOD, "objects": [GOOD["objects"][0], obj]}


def write(tmp_path: Path, lines: list[Any]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_a_valid_record_is_typed_and_converts_to_norm1000() -> None:
    record = validate_record(GOOD, source="d.jsonl", line=3)
    assert record.images == ("images/0001.png",)
    assert record.source == "d.jsonl:3"
    assert record.objects[0] == PixelObject("red square", "bbox_2d", (12, 40.5, 200, 310))
    assert record.det_objects() == (
        DetObject("red square", "bbox_2d", (19, 84, 313, 647)),
        DetObject("blue triangle", "poly", (469, 42, 657, 417, 391, 375)),
    )


def test_the_image_edge_maps_to_the_last_bin() -> None:
    record = validate_record({**GOOD, "objects": [{"desc": "all", "bbox_2d": [0, 0, 640, 480]}]})
    assert record.det_objects()[0].coords == (0, 0, 999, 999)


def test_a_record_without_objects_is_valid() -> None:
    assert validate_record({**GOOD, "objects": []}).objects == ()


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ({"bbox_2d": [1, 2, 3, 4]}, "desc must be a non-empty string"),
        ({"desc": " ", "bbox_2d": [1, 2, 3, 4]}, "desc must be a non-empty string"),
        ({"desc": "x<|im_end|>", "bbox_2d": [1, 2, 3, 4]}, "contains a stop string"),
        ({"desc": "x\ud800", "bbox_2d": [1, 2, 3, 4]}, "lone surrogate"),
        ({"desc": "cat"}, "needs exactly one geometry (bbox_2d or poly), found none"),
        (
            {"desc": "cat", "bbox_2d": [1, 2, 3, 4], "poly": [1, 2, 3, 4, 5, 6]},
            "found bbox_2d and poly",
        ),
        ({"desc": "cat", "bbox": [1, 2, 3, 4]}, "unknown keys ['bbox']"),
        ({"desc": "cat", "bbox_2d": [1, 2, 3]}, "bbox_2d needs 4 values"),
        ({"desc": "cat", "poly": [1, 2, 3, 4]}, "poly needs an even number (>= 6)"),
        ({"desc": "cat", "poly": [1, 2, 3, 4, 5, 6, 7]}, "poly needs an even number (>= 6)"),
        ({"desc": "cat", "bbox_2d": [1, 2, "3", 4]}, "flat list of finite pixel numbers"),
        ({"desc": "cat", "bbox_2d": [1, 2, 3, float("nan")]}, "finite pixel numbers"),
        ({"desc": "cat", "bbox_2d": [1, 2, True, 4]}, "finite pixel numbers"),
        ({"desc": "cat", "bbox_2d": [1, 2, 10**400, 4]}, "bbox_2d[2] = 1000"),
        ({"desc": "cat", "bbox_2d": [1, 2, 641, 4]}, "bbox_2d[2] = 641 is outside the image"),
        ({"desc": "cat", "bbox_2d": [1, -2, 3, 4]}, "need 0 <= y <= 480"),
        ({"desc": "cat", "bbox_2d": [5, 2, 3, 4]}, "x1 <= x2 and y1 <= y2"),
        ({"desc": "cat", "poly": [1, 2, 3, 4, 5, 6], "poly_points": 4}, "poly_points must equal"),
        ({"desc": "cat", "bbox_2d": [1, 2, 3, 4], "poly_points": 2}, "poly_points must equal"),
        (["cat", [1, 2, 3, 4]], "must be a JSON object"),
    ],
)
def test_invalid_objects_name_file_line_and_object(obj: Any, problem: str) -> None:
    with pytest.raises(RecordError) as info:
        validate_record(with_object(obj), source="train.jsonl", line=7)
    err = info.value
    assert (err.source, err.line, err.object_index) == ("train.jsonl", 7, 1)
    assert str(err).startswith("train.jsonl:7: object 1: ")
    assert problem in str(err)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"images": []}, "images must be a non-empty list"),
        ({"images": "a.png"}, "images must be a non-empty list"),
        ({"width": 0}, "width must be an int >= 1"),
        ({"height": 2.5}, "height must be an int >= 1"),
        ({"objects": None}, "objects must be a list"),
        ({"extra": 1}, "unknown keys ['extra']"),
        ({"summary": 3}, "summary must be a string"),
        ({"metadata": []}, "metadata must be a JSON object"),
    ],
)
def test_invalid_records_name_file_and_line(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(RecordError) as info:
        validate_record({**GOOD, **change}, source="train.jsonl", line=2)
    assert info.value.object_index is None
    assert str(info.value).startswith("train.jsonl:2: ")
    assert problem in str(info.value)


def test_reader_yields_records_in_file_order_and_skips_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, [GOOD, "", {**GOOD, "width": 10, "height": 10, "objects": []}])
    records = list(JsonlRecords(path))
    assert [r.width for r in records] == [640, 10]
    assert [r.source for r in records] == [f"{path}:1", f"{path}:3"]


def test_reader_raises_on_the_first_invalid_record_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, [GOOD, "{not json", with_object({"desc": "cat"})])
    with pytest.raises(RecordError, match=rf"^{path}:2: not valid JSON"):
        list(JsonlRecords(path))


def test_skip_mode_counts_and_reports_skipped_records(tmp_path: Path) -> None:
    path = write(tmp_path, [GOOD, "{not json", with_object({"desc": "cat"}), GOOD])
    records, skipped = read_records(path, on_invalid="skip")
    assert [r.source for r in records] == [f"{path}:1", f"{path}:4"]
    assert [(e.line, e.object_index) for e in skipped] == [(2, None), (3, 1)]


def test_unknown_on_invalid_mode_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_invalid must be 'error' or 'skip'"):
        JsonlRecords(tmp_path / "x.jsonl", on_invalid="drop")  # type: ignore[arg-type]
