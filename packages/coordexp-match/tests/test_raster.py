"""Rasterisation: pixel centres, even-odd fill, half-open edges, areas within bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_match.raster import mask_iou, rasterise

SIDE = 999.0


def poly(*xy: float) -> np.ndarray:
    return np.asarray(xy, dtype=np.float64).reshape(-1, 2)


def rect(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    return poly(x1, y1, x2, y1, x2, y2, x1, y2)


def centres_in(a: float, b: float, r: int) -> int:
    """Pixel centres j + 0.5 (canvas units) in [a, b) on a canvas of r pixels."""
    return sum(1 for j in range(r) if a <= j + 0.5 < b)


span = st.floats(0, SIDE)


@settings(max_examples=100, deadline=None)
@given(span, span, span, span, st.sampled_from([7, 64, 256, 333]))
def test_rectangle_covers_exactly_the_centres_inside_it(
    xa: float, xb: float, ya: float, yb: float, r: int
) -> None:
    x1, x2 = sorted((xa, xb))
    y1, y2 = sorted((ya, yb))
    mask = rasterise([rect(x1, y1, x2, y2)], r)[0].reshape(r, r)
    s = r / SIDE
    cols = centres_in(x1 * s, x2 * s, r)
    rows = centres_in(y1 * s, y2 * s, r)
    assert mask.sum() == cols * rows
    # Area error bound: less than (w + h + 1) pixels.
    w, h = (x2 - x1) * s, (y2 - y1) * s
    assert abs(mask.sum() - w * h) < w + h + 1


@settings(max_examples=100, deadline=None)
@given(
    span,
    span,
    st.floats(1, SIDE),
    st.floats(1, SIDE),
    st.sampled_from([64, 256, 1024]),
    st.integers(0, 3),
)
def test_right_triangle_area_error_is_bounded_by_its_perimeter_in_pixels(
    x: float, y: float, a: float, b: float, r: int, corner: int
) -> None:
    a, b = min(a, SIDE - x), min(b, SIDE - y)
    # The right angle at one of the four corners of the [x, x+a] × [y, y+b] box.
    cx, cy = [(x, y), (x + a, y), (x + a, y + b), (x, y + b)][corner]
    ox, oy = (x + a if cx == x else x), (y + b if cy == y else y)
    tri = poly(cx, cy, ox, cy, cx, oy)
    count = int(rasterise([tri], r)[0].sum())
    s = r / SIDE
    area = a * b * s * s / 2
    perimeter = (a + b + math.hypot(a, b)) * s
    assert abs(count - area) <= perimeter + 1


def test_error_shrinks_with_resolution() -> None:
    tri = poly(100.3, 200.7, 850.1, 200.7, 100.3, 930.2)
    exact = 0.5 * (850.1 - 100.3) * (930.2 - 200.7)
    errors = []
    for r in (32, 128, 512, 2048):
        pixel_area = (SIDE / r) ** 2
        errors.append(abs(rasterise([tri], r)[0].sum() * pixel_area - exact) / exact)
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 2e-3


def test_whole_image_fills_every_pixel() -> None:
    assert rasterise([rect(0, 0, SIDE, SIDE)], 256).all()


def test_polygons_sharing_an_edge_never_share_a_pixel() -> None:
    # A square cut along its diagonal (edge walked in opposite directions) and a
    # rectangle cut at a pixel-centre line: the halves tile the whole exactly.
    r = 64
    s = SIDE / r
    halves = [
        poly(0, 0, SIDE, 0, SIDE, SIDE),
        poly(0, 0, SIDE, SIDE, 0, SIDE),
        rect(10.5 * s, 0, 20.5 * s, 30 * s),
        rect(20.5 * s, 0, 40.5 * s, 30 * s),
    ]
    m = rasterise(halves, r)
    assert not (m[0] & m[1]).any()
    assert (m[0] | m[1]).all()
    whole = rasterise([rect(10.5 * s, 0, 40.5 * s, 30 * s)], r)[0]
    assert not (m[2] & m[3]).any()
    np.testing.assert_array_equal(m[2] | m[3], whole)


def test_left_and_top_edges_on_a_centre_are_inside_right_and_bottom_are_not() -> None:
    r = 333  # 3 norm1000 units per pixel: the centres below are exact
    mask = rasterise([rect(7.5, 10.5, 16.5, 19.5)], r)[0].reshape(r, r)
    assert np.argwhere(mask).tolist() == [[y, x] for y in (3, 4, 5) for x in (2, 3, 4)]


def test_even_odd_fill_leaves_a_hole_and_the_star_core_empty() -> None:
    r = 100
    # Outer square then inner square joined by a zero-width bridge: the inner is a hole.
    ring = poly(
        100,
        100,
        900,
        100,
        900,
        900,
        100,
        900,
        100,
        100,
        400,
        400,
        400,
        600,
        600,
        600,
        600,
        400,
        400,
        400,
    )
    m = rasterise([ring], r)[0]
    expected = (800 * 800 - 200 * 200) * (r / SIDE) ** 2
    assert abs(m.sum() - expected) < 2 * (3200 + 800) * r / SIDE
    grid = m.reshape(r, r)
    assert not grid[50, 50]
    assert grid[20, 20]
    # A five-pointed star drawn as one self-crossing outline: the pentagon core is out.
    pts = [
        (
            500 + 400 * math.sin(2 * math.pi * k * 2 / 5),
            500 - 400 * math.cos(2 * math.pi * k * 2 / 5),
        )
        for k in range(5)
    ]
    star = rasterise([poly(*[c for p in pts for c in p])], r)[0].reshape(r, r)
    assert not star[50, 50]
    assert star[int(500 * r / SIDE) - 30, 50]  # inside the top point


def test_orientation_and_starting_vertex_do_not_matter() -> None:
    shape = poly(120, 80, 700, 150, 640, 610, 300, 700, 90, 400)
    variants = [shape, shape[::-1], np.roll(shape, 2, axis=0)]
    m = rasterise(variants, 128)
    np.testing.assert_array_equal(m[0], m[1])
    np.testing.assert_array_equal(m[0], m[2])


def test_parts_outside_the_canvas_count_for_nothing() -> None:
    big = rasterise([rect(-500, -500, 1500, 1500)], 32)[0]
    assert big.all()
    # A triangle with a vertex far right of the image, and its part inside the image.
    overhang = rasterise([poly(0, 0, 1998, 999, 0, 999)], 64)[0]
    clipped = rasterise([poly(0, 0, SIDE, 499.5, SIDE, SIDE, 0, SIDE)], 64)[0]
    assert 0 < overhang.sum() < 64 * 64
    np.testing.assert_array_equal(overhang, clipped)


def test_collinear_polygons_rasterise_to_nothing() -> None:
    flat = [
        poly(10, 10, 500, 500, 900, 900),
        poly(10, 10, 900, 900, 500, 500, 300, 300),
        poly(5, 700, 5, 100, 5, 400),
        poly(42, 42, 42, 42, 42, 42),
    ]
    assert not rasterise(flat, 256).any()


@pytest.mark.parametrize("r", [1, 5])
def test_tiny_canvases_work(r: int) -> None:
    assert rasterise([rect(0, 0, SIDE, SIDE), rect(0, 0, 1, 1)], r).sum(axis=1).tolist() == [
        r * r,
        0,
    ]


def test_chunked_rasterisation_matches_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import coordexp_match.raster as raster

    shapes = [rect(i * 10, i * 20, 500 + i, 600 + i) for i in range(7)]
    together = rasterise(shapes, 64)
    monkeypatch.setattr(raster, "_CHUNK_BYTES", 64 * 64 * 2)  # two objects per group
    np.testing.assert_array_equal(rasterise(shapes, 64), together)
    singles = np.concatenate([rasterise([s], 64) for s in shapes])
    np.testing.assert_array_equal(together, singles)


def test_mask_iou_counts_pixels_and_marks_empty_unions() -> None:
    a = np.zeros((2, 16), dtype=bool)
    b = np.zeros((2, 16), dtype=bool)
    a[0, :8] = True
    b[0, 4:12] = True
    iou = mask_iou(a, b)
    assert iou[0].tolist() == [4 / 12, 0.0]
    assert iou[1, 0] == 0.0
    assert np.isnan(iou[1, 1])  # both empty: left to iou_matrix (identical or not)
