"""Exact bbox IoU: agrees with pycocotools, defined on degenerate boxes, never NaN."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as coco_mask
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_match import iou_matrix
from coordexp_parse import DetObject

coord = st.integers(0, 999)


@st.composite
def boxes(draw: st.DrawFn, min_size: int = 0) -> DetObject:
    x1, x2 = sorted((draw(coord), draw(coord)))
    y1, y2 = sorted((draw(coord), draw(coord)))
    if x2 - x1 < min_size or y2 - y1 < min_size:
        x1, y1 = min(x1, 999 - min_size), min(y1, 999 - min_size)
        x2, y2 = max(x2, x1 + min_size), max(y2, y1 + min_size)
    return DetObject("o", "bbox_2d", (x1, y1, x2, y2))


def coco_iou(preds: list[DetObject], gts: list[DetObject]) -> np.ndarray:
    def xywh(objs: list[DetObject]) -> np.ndarray:
        a = np.array([o.coords for o in objs], dtype=np.float64)
        return np.column_stack([a[:, 0], a[:, 1], a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]])

    return np.asarray(coco_mask.iou(xywh(preds), xywh(gts), [0] * len(gts)))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(boxes(min_size=1), min_size=1, max_size=8),
    st.lists(boxes(min_size=1), min_size=1, max_size=8),
)
def test_agrees_with_pycocotools_on_boxes_to_1e9(
    preds: list[DetObject], gts: list[DetObject]
) -> None:
    ours = iou_matrix(preds, gts)
    np.testing.assert_allclose(ours, coco_iou(preds, gts), rtol=0, atol=1e-9)


def test_continuous_width_convention() -> None:
    # (0, 0, 10, 10) has area 100, not 121: norm1000 width is x2 - x1.
    a = DetObject("o", "bbox_2d", (0, 0, 10, 10))
    b = DetObject("o", "bbox_2d", (5, 0, 15, 10))
    assert iou_matrix([a], [b])[0, 0] == 50 / 150
    np.testing.assert_allclose(coco_iou([a], [b]), [[50 / 150]], atol=1e-12)


def test_zero_area_boxes_are_one_when_identical_else_zero() -> None:
    line = DetObject("o", "bbox_2d", (5, 5, 5, 90))
    other_line = DetObject("o", "bbox_2d", (5, 5, 5, 80))
    point = DetObject("o", "bbox_2d", (7, 7, 7, 7))
    big = DetObject("o", "bbox_2d", (0, 0, 100, 100))
    iou = iou_matrix([line, point], [line, other_line, point, big])
    assert iou.tolist() == [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]


class Box:
    kind = "bbox_2d"

    def __init__(self, *coords: float) -> None:
        self.coords = coords


def test_geometry_outside_the_image_is_clipped_away() -> None:
    inside = Box(900, 0, 999, 100)
    overhang = Box(900, 0, 1200, 100)  # clipped to the same box
    outside = Box(1000, 0, 1100, 100)  # clipped to zero area
    iou = iou_matrix([inside, outside], [overhang, outside, Box(1000, 0, 1050, 100)])
    assert iou.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(*[st.floats(-2000, 3000)] * 4), min_size=1, max_size=6),
    st.lists(st.tuples(*[st.floats(-2000, 3000)] * 4), min_size=1, max_size=6),
)
def test_iou_is_in_unit_interval_and_symmetric_for_any_boxes(
    a: list[tuple[float, ...]], b: list[tuple[float, ...]]
) -> None:
    def canon(c: tuple[float, ...]) -> Box:
        return Box(min(c[0], c[2]), min(c[1], c[3]), max(c[0], c[2]), max(c[1], c[3]))

    preds, gts = [canon(c) for c in a], [canon(c) for c in b]
    iou = iou_matrix(preds, gts)
    assert not np.isnan(iou).any()
    assert ((iou >= 0) & (iou <= 1)).all()
    np.testing.assert_array_equal(iou, iou_matrix(gts, preds).T)


@settings(max_examples=100, deadline=None)
@given(st.lists(boxes(), min_size=1, max_size=6), st.lists(boxes(), min_size=1, max_size=6))
def test_detobjects_and_plain_objects_give_bit_identical_iou(
    preds: list[DetObject], gts: list[DetObject]
) -> None:
    # DetObjects take the unclipped integer path; plain objects are clipped as floats.
    plain_preds = [Box(*map(float, p.coords)) for p in preds]
    plain_gts = [Box(*map(float, g.coords)) for g in gts]
    expected = iou_matrix(preds, gts)
    np.testing.assert_array_equal(iou_matrix(plain_preds, plain_gts), expected)
    np.testing.assert_array_equal(iou_matrix(preds, plain_gts), expected)
