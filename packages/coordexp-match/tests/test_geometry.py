"""Which objects the matcher accepts, and the errors for the ones it does not."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from coordexp_match import iou_matrix, match
from coordexp_match.geometry import Shape, read_shapes
from coordexp_parse import DetObject


@dataclass(frozen=True)
class Loose:
    """A non-DetObject geometry: any object with kind and coords is accepted."""

    kind: object
    coords: object


BOX = DetObject("cat", "bbox_2d", (10, 20, 110, 220))


def test_detobjects_and_duck_typed_objects_read_alike() -> None:
    shapes = read_shapes([BOX, Loose("bbox_2d", [10.0, 20.0, 110.0, 220.0])], "preds")
    assert shapes[0] == shapes[1] == Shape("bbox_2d", (10.0, 20.0, 110.0, 220.0))


def test_numpy_scalars_and_out_of_image_values_are_accepted() -> None:
    obj = Loose("poly", (np.int64(-50), np.float32(10.5), 1200, 10, 500, 1500))
    assert read_shapes([obj], "gts")[0].coords == (-50.0, 10.5, 1200.0, 10.0, 500.0, 1500.0)


def test_bbox_vertices_are_its_rectangle() -> None:
    corners = Shape("bbox_2d", (1.0, 2.0, 3.0, 4.0)).vertices()
    assert corners.tolist() == [[1, 2], [3, 2], [3, 4], [1, 4]]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (Loose("circle", (1, 2, 3)), r"gts\[1\]: kind must be 'bbox_2d' or 'poly', got 'circle'"),
        (Loose("bbox_2d", (1, 2, 3)), r"gts\[1\]: a bbox_2d needs 4 coordinates .* got 3"),
        (Loose("poly", (1, 2, 3, 4)), r"gts\[1\]: a poly needs an even number \(>= 6\) .* got 4"),
        (Loose("poly", (1, 2, 3, 4, 5, 6, 7)), r"an even number \(>= 6\) of coordinates, got 7"),
        (Loose("bbox_2d", (1, 2, "3", 4)), r"gts\[1\]: coordinates must be real numbers, got '3'"),
        (Loose("bbox_2d", (1, 2, True, 4)), r"coordinates must be real numbers, got True"),
        (Loose("bbox_2d", (1, 2, float("nan"), 4)), r"must be finite .* got nan"),
        (Loose("bbox_2d", (1, 2, float("inf"), 4)), r"must be finite .* got inf"),
        (Loose("bbox_2d", (1, 2, 10**400, 4)), r"must be finite with \|value\| <= 1e\+06"),
        (Loose("bbox_2d", (0, 0, 2e6, 4)), r"must be finite with \|value\| <= 1e\+06"),
        (Loose("bbox_2d", (5, 0, 4, 4)), r"gts\[1\]: a bbox_2d needs x1 <= x2 and y1 <= y2"),
        (Loose("bbox_2d", "1234"), r"gts\[1\]: coords must be a sequence of numbers, got str"),
        (Loose("bbox_2d", 7), r"coords must be a sequence of numbers, got int"),
    ],
)
def test_malformed_geometry_names_the_object_and_the_rule(obj: Loose, expected: str) -> None:
    with pytest.raises(ValueError, match=expected) as info:
        match([BOX], [BOX, obj])
    assert "fix or drop this object before matching" in str(info.value)


def test_object_without_geometry_attributes_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"preds\[0\] is a dict without `kind` and `coords`"):
        iou_matrix([{"kind": "bbox_2d", "coords": (0, 0, 1, 1)}], [BOX])  # type: ignore[list-item]
