"""Canonical object order and polygon vertex order."""

from __future__ import annotations

import pytest
from coordexp_parse_testing import object_lists, polys
from hypothesis import given

from coordexp_parse import DetObject, canonical_object, canonical_order, canonical_polygon


def box(desc: str, x1: int, y1: int, x2: int, y2: int) -> DetObject:
    return DetObject(desc, "bbox_2d", (x1, y1, x2, y2))


def test_objects_go_top_to_bottom_then_left_to_right() -> None:
    a, b, c = box("a", 50, 10, 60, 20), box("b", 10, 10, 20, 20), box("c", 0, 5, 90, 90)
    tri = DetObject("tri", "poly", (40, 30, 50, 8, 60, 30))
    assert canonical_order([a, b, c, tri]) == [c, tri, b, a]


def test_ties_keep_input_order() -> None:
    a, b = box("a", 1, 1, 5, 5), box("b", 1, 1, 9, 9)
    assert canonical_order([b, a]) == [b, a]


def test_polygon_starts_top_most_then_left_most_and_goes_clockwise() -> None:
    # A square given counter-clockwise on screen (y down), starting bottom-right.
    square = (10, 10, 10, 0, 0, 0, 0, 10)
    assert canonical_polygon(square) == (0, 0, 10, 0, 10, 10, 0, 10)


def test_clockwise_polygon_is_only_rotated() -> None:
    poly = (5, 9, 0, 4, 5, 0, 9, 4)  # clockwise on screen, starting at the bottom vertex
    assert canonical_polygon(poly) == (5, 0, 9, 4, 5, 9, 0, 4)


def test_a_repeated_closing_vertex_is_dropped() -> None:
    assert canonical_polygon((0, 0, 10, 0, 10, 10, 0, 0)) == (0, 0, 10, 0, 10, 10)


def test_a_concave_polygon_keeps_its_cyclic_vertex_order() -> None:
    arrow = (0, 0, 10, 5, 0, 10, 3, 5)  # clockwise on screen, concave at (3, 5)
    assert canonical_polygon(arrow) == arrow


def test_bad_polygons_are_rejected() -> None:
    with pytest.raises(ValueError, match="even number"):
        canonical_polygon((1, 2, 3, 4))


def test_repeated_consecutive_vertices_are_dropped_while_three_remain() -> None:
    assert canonical_polygon((0, 0, 0, 0, 10, 0, 10, 10, 10, 10)) == (0, 0, 10, 0, 10, 10)
    assert canonical_polygon((3, 3, 3, 3, 3, 3, 1, 1)) == (1, 1, 3, 3, 3, 3, 3, 3)


def twice_area(points: tuple[tuple[int, int], ...]) -> int:
    return sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True)
    )


@given(polys())
def test_canonical_polygon_is_idempotent_clockwise_and_starts_top_left(obj: DetObject) -> None:
    out = canonical_object(obj)
    assert canonical_object(out) == out
    assert set(out.points) == set(obj.points)
    assert twice_area(out.points) == abs(twice_area(obj.points))
    assert out.points[0] == min(obj.points, key=lambda p: (p[1], p[0]))


@given(object_lists())
def test_canonical_order_is_a_sorted_permutation(objects: list[DetObject]) -> None:
    out = canonical_order(objects)
    assert sorted(out) == sorted(objects)
    keys = [(min(o.coords[1::2]), min(o.coords[0::2])) for o in out]
    assert keys == sorted(keys)
    assert canonical_order(out) == out
