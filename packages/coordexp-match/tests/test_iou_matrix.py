"""The IoU matrix over mixed kinds: exact boxes, mask IoU with polygons, defined edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import coordexp_match.iou as iou_module
from coordexp_match import iou_matrix
from coordexp_parse import DetObject


def box(*c: int) -> DetObject:
    return DetObject("o", "bbox_2d", c)


def poly(*c: int) -> DetObject:
    return DetObject("o", "poly", c)


def test_bbox_and_its_rectangle_polygon_have_iou_one() -> None:
    b = box(100, 200, 600, 900)
    p = poly(100, 200, 600, 200, 600, 900, 100, 900)
    assert iou_matrix([b, p], [p, b]).tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_bbox_against_polygon_uses_mask_iou_of_the_rectangle() -> None:
    # Left half of the image as a triangle pair vs a bbox; at R = 999 one pixel is one
    # norm1000 unit, so the expected IoU is an exact pixel count ratio.
    tri = poly(0, 0, 500, 0, 0, 500)
    b = box(0, 0, 500, 500)
    pixels_tri = sum(1 for y in range(999) for x in range(999) if x + y + 1 < 500)
    got = iou_matrix([tri], [b], resolution=999)[0, 0]
    assert got == pixels_tri / (500 * 500)


def test_bbox_pairs_stay_exact_when_polygons_are_present() -> None:
    a, b = box(0, 0, 10, 10), box(5, 0, 15, 10)
    p = poly(0, 0, 10, 0, 10, 10)
    iou = iou_matrix([a, p], [b, p], resolution=8)
    assert iou[0, 0] == 50 / 150  # not a mask IoU at 8 × 8, where both boxes vanish
    assert iou[1, 1] == 1.0


def test_empty_inputs_give_empty_matrices() -> None:
    assert iou_matrix([], []).shape == (0, 0)
    assert iou_matrix([box(0, 0, 1, 1)], []).shape == (1, 0)
    assert iou_matrix([], [poly(0, 0, 9, 0, 9, 9)]).shape == (0, 1)


def test_degenerate_polygons_are_one_when_identical_else_zero() -> None:
    line = poly(10, 10, 500, 500, 900, 900)
    other = poly(10, 10, 500, 500, 800, 800)
    sliver = poly(100, 100, 101, 100, 101, 101)  # thin: no pixel centre at R = 64
    solid = poly(0, 0, 999, 0, 999, 999)
    iou = iou_matrix([line, sliver], [line, other, sliver, solid], resolution=64)
    assert iou.tolist() == [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]


def test_each_object_is_rasterised_once_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = iou_module.rasterise

    def counting(polygons: list[np.ndarray], resolution: int) -> np.ndarray:
        calls.append(len(polygons))
        return real(polygons, resolution)

    monkeypatch.setattr(iou_module, "rasterise", counting)
    preds = [poly(0, 0, 50 * i + 60, 0, 0, 90) for i in range(6)] + [box(0, 0, 5, 5)]
    gts = [box(0, 0, 40 * j + 10, 70) for j in range(5)]
    iou_matrix(preds, gts, resolution=32)
    assert calls == [6, 5]  # polygons, and the boxes they meet; the pred box meets none
    calls.clear()
    iou_matrix(preds, [*gts, poly(0, 0, 9, 0, 9, 9)], resolution=32)
    assert calls == [7, 6]  # one pass per side: 13 objects, not 42 pairs
    calls.clear()
    iou_matrix([box(0, 0, 5, 5)], [box(0, 0, 9, 9)])
    assert calls == []  # boxes alone never touch the rasteriser


@pytest.mark.parametrize("bad", [0, -1, 4097, 2.5, True, "256", None])
def test_bad_resolution_names_the_config_key(bad: object) -> None:
    with pytest.raises(
        ValueError, match=r"resolution \(rollout_matching\.maskiou_resolution\) must be an int"
    ):
        iou_matrix([box(0, 0, 1, 1)], [box(0, 0, 1, 1)], resolution=bad)  # type: ignore[arg-type]


value = st.floats(-1500, 2500, allow_nan=False)


@st.composite
def any_geometry(draw: st.DrawFn) -> object:
    class Obj:
        def __init__(self, kind: str, coords: tuple[float, ...]) -> None:
            self.kind, self.coords = kind, coords

    if draw(st.booleans()):
        x1, x2 = sorted((draw(value), draw(value)))
        y1, y2 = sorted((draw(value), draw(value)))
        return Obj("bbox_2d", (x1, y1, x2, y2))
    n = draw(st.integers(3, 7))
    return Obj("poly", tuple(draw(value) for _ in range(2 * n)))


@settings(max_examples=80, deadline=None)
@given(st.lists(any_geometry(), max_size=5), st.lists(any_geometry(), max_size=5))
def test_iou_is_defined_in_unit_interval_and_symmetric(preds: list, gts: list) -> None:
    iou = iou_matrix(preds, gts, resolution=48)
    assert iou.shape == (len(preds), len(gts))
    assert not np.isnan(iou).any()
    assert ((iou >= 0) & (iou <= 1)).all()
    np.testing.assert_array_equal(iou, iou_matrix(gts, preds, resolution=48).T)
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            if (p.kind, p.coords) == (g.kind, g.coords):
                assert iou[i, j] == 1.0
