"""Predictions files: parse answers, round-trip through JSONL, refuse bad lines by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordexp_parse import DetObject, render_objects
from coordexp_train.evaluation.predictions import (
    PredictionsError,
    prediction_from_text,
    read_predictions,
    write_predictions,
)

OBJECTS = (
    DetObject("red square", "bbox_2d", (10, 20, 300, 400)),
    DetObject("blue triangle", "poly", (500, 100, 900, 100, 700, 600)),
)


def test_prediction_from_text_keeps_objects_drops_and_ending() -> None:
    text = render_objects(OBJECTS)[:-1] + ', "object_3": {"desc": "x", "bbox_2d": [1, 2, 3, 4]}}'
    p = prediction_from_text("img.png", text + "<|im_end|>")
    assert p.objects == OBJECTS
    assert p.dropped == {"non_coord_token": 1}
    assert (p.ending, p.truncated) == ("closed", False)
    assert p.raw_text.endswith("<|im_end|>")


def test_write_then_read_gives_the_same_predictions(tmp_path: Path) -> None:
    preds = [
        prediction_from_text("a.png", render_objects(OBJECTS)),
        prediction_from_text("b.png", render_objects(OBJECTS)[:30]),
        prediction_from_text("c.png", "no answer"),
    ]
    path = tmp_path / "pred.jsonl"
    write_predictions(path, preds)
    assert read_predictions(path) == preds
    line = json.loads(path.read_text().splitlines()[1])
    assert list(line) == ["id", "objects", "dropped", "ending", "truncated", "raw_text"]
    assert line["truncated"] is True


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "Expecting value"),
        ("[]", "a line must be a JSON object"),
        ('{"id": "a"}', "keys must be exactly"),
        (
            '{"id": "a", "objects": [{"desc": "x", "bbox_2d": [5, 5, 1, 1]}], "dropped": {}, '
            '"ending": "closed", "truncated": false, "raw_text": ""}',
            r"objects\[0\]: invalid object",
        ),
        (
            '{"id": "a", "objects": [], "dropped": {"oops": 1}, '
            '"ending": "closed", "truncated": false, "raw_text": ""}',
            "dropped must map reasons",
        ),
        (
            '{"id": "a", "objects": [], "dropped": {}, '
            '"ending": "truncated", "truncated": false, "raw_text": ""}',
            "truncated must be true exactly when",
        ),
    ],
)
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "pred.jsonl"
    good = json.dumps(prediction_from_text("z", "{}").to_json())
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(PredictionsError, match=rf"pred\.jsonl:3: .*{problem}"):
        read_predictions(path)


def test_repeated_id_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pred.jsonl"
    write_predictions(path, [prediction_from_text("a", "{}")] * 2)
    with pytest.raises(PredictionsError, match=r":2: id 'a' appears twice"):
        read_predictions(path)
