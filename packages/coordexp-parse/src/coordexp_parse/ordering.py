"""Canonical object order and polygon vertex order for training targets.

- Objects: top to bottom, then left to right, by the top-left of each geometry
  (``(min y, min x)`` over its points); ties keep the input order (a stable sort).
- Polygon vertices keep their cyclic order (they are never sorted by x or y, which would
  self-intersect). A vertex equal to the one before it (cyclically, so a repeated closing
  vertex too) is dropped unless fewer than 3 points would remain; the ring is turned
  clockwise on screen (image y points down; a ring with zero signed area keeps its
  direction) and rotated to start at the top-most, then left-most vertex.

Both are pure and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from coordexp_parse.objects import DetObject, arity_problem
from coordexp_parse.render import ObjectLike

N = TypeVar("N", int, float)
Obj = TypeVar("Obj", bound=ObjectLike)


def top_left(coords: Sequence[float]) -> tuple[float, float]:
    """``(min y, min x)`` over the points of a flat ``x, y, x, y, …`` geometry."""
    return min(coords[1::2]), min(coords[0::2])


def canonical_order(objects: Sequence[Obj]) -> list[Obj]:
    """Objects sorted top-to-bottom, then left-to-right, stable on ties."""
    return sorted(objects, key=lambda o: top_left(o.coords))


def canonical_polygon(coords: Sequence[N]) -> tuple[N, ...]:
    """Canonical vertex order of a flat polygon ``x1, y1, x2, y2, …`` (see module doc).

    Idempotent: canonicalising a canonical polygon changes nothing.

    Raises:
        ValueError: ``coords`` has an odd length or fewer than 3 points.
    """
    problem = arity_problem("poly", len(coords))
    if problem is not None:
        raise ValueError(problem)
    points = [(coords[i], coords[i + 1]) for i in range(0, len(coords), 2)]
    distinct = [p for i, p in enumerate(points) if p != points[i - 1]]
    if len(distinct) >= 3:
        points = distinct
    twice_area = sum(
        x0 * y1 - x1 * y0
        for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True)
    )
    if twice_area < 0:  # counter-clockwise on screen (y down): reverse, keep the start
        points = points[:1] + points[:0:-1]
    first = min(range(len(points)), key=lambda i: (points[i][1], points[i][0], i))
    points = points[first:] + points[:first]
    return tuple(v for p in points for v in p)


def canonical_object(obj: DetObject) -> DetObject:
    """``obj`` with canonical polygon vertices (a bbox is returned unchanged)."""
    if obj.kind != "poly":
        return obj
    return DetObject(obj.desc, obj.kind, canonical_polygon(obj.coords))
