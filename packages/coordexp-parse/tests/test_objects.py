"""The object model: one desc, exactly one valid geometry; frozen, hashable, ordered."""

from __future__ import annotations

import dataclasses

import pytest

from coordexp_parse import DetObject, ObjectError, geometry_problem


def test_valid_objects_are_frozen_hashable_and_comparable() -> None:
    a = DetObject("cat", "bbox_2d", (1, 2, 3, 4))
    b = DetObject("cat", "bbox_2d", (1, 2, 3, 4))
    c = DetObject("dog", "poly", (0, 0, 9, 0, 9, 9))
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, c}) == 2
    assert sorted([c, a]) == [a, c]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.desc = "x"  # type: ignore[misc]
    assert c.points == ((0, 0), (9, 0), (9, 9))


@pytest.mark.parametrize(
    ("desc", "kind", "coords", "reason"),
    [
        ("", "bbox_2d", (1, 2, 3, 4), "missing_desc"),
        ("   ", "bbox_2d", (1, 2, 3, 4), "missing_desc"),
        ("cat", "bbox", (1, 2, 3, 4), "unknown_geom"),
        ("cat", "bbox_2d", (1, 2, 3), "wrong_arity"),
        ("cat", "poly", (1, 2, 3, 4), "wrong_arity"),
        ("cat", "poly", (1, 2, 3, 4, 5, 6, 7), "wrong_arity"),
        ("cat", "bbox_2d", (1, 2, 3, 1000), "bbox_invalid"),
        ("cat", "bbox_2d", (1, 2, 3, -1), "bbox_invalid"),
        ("cat", "poly", (1, 2, 3, 4, 5, 1.5), "bbox_invalid"),
        ("cat", "bbox_2d", (5, 2, 3, 4), "bbox_invalid"),
        ("cat", "bbox_2d", (1, 5, 3, 4), "bbox_invalid"),
        ("cat", "bbox_2d", [1, 2, 3, 4], "wrong_arity"),
    ],
)
def test_invalid_objects_raise_with_reason(
    desc: str, kind: str, coords: tuple[int, ...], reason: str
) -> None:
    with pytest.raises(ObjectError) as info:
        DetObject(desc, kind, coords)  # type: ignore[arg-type]
    assert info.value.reason == reason


def test_degenerate_bbox_is_valid() -> None:
    assert DetObject("line", "bbox_2d", (5, 5, 5, 9)).coords == (5, 5, 5, 9)


def test_geometry_problem_reports_first_problem_or_none() -> None:
    assert geometry_problem("bbox_2d", (0, 0, 999, 999)) is None
    problem = geometry_problem("bbox_2d", (3, 0, 2, 9))
    assert problem is not None
    assert problem[0] == "bbox_invalid"
    assert "x1 <= x2" in problem[1]
