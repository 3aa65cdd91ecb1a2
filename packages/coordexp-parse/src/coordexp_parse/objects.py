"""The object model: a free-text ``desc`` plus exactly one geometry in norm1000 bins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from coordexp_parse.codec import MAX_BIN

GeometryKind: TypeAlias = Literal["bbox_2d", "poly"]
GEOMETRY_KINDS: tuple[GeometryKind, ...] = ("bbox_2d", "poly")


class ObjectError(ValueError):
    """An object violates the object contract; ``.reason`` is the drop-reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def arity_problem(kind: GeometryKind, n: int) -> str | None:
    """What is wrong with ``n`` values for a ``kind`` geometry, or None when they fit.

    A bbox needs exactly 4 values (x1, y1, x2, y2); a poly an even count ≥ 6 (≥ 3 points).
    """
    if kind == "bbox_2d":
        return None if n == 4 else f"bbox_2d needs 4 values [x1, y1, x2, y2], got {n}"
    return None if n >= 6 and n % 2 == 0 else f"poly needs an even number (>= 6) of values, got {n}"


def bbox_ordered(coords: Sequence[float]) -> bool:
    """Whether a bbox ``x1, y1, x2, y2`` has x1 ≤ x2 and y1 ≤ y2 (any number type)."""
    return coords[0] <= coords[2] and coords[1] <= coords[3]


def geometry_problem(kind: str, coords: tuple[int, ...]) -> tuple[str, str] | None:
    """Check one geometry; return ``(reason, message)`` for the first problem, else None.

    Reasons are the drop-reason codes the rollout parser counts: ``unknown_geom``,
    ``wrong_arity`` (see :func:`arity_problem`) and ``bbox_invalid`` (a value outside
    0..999, or x2 < x1 / y2 < y1). Polygons with values out of range are
    ``bbox_invalid`` too: the name is the research system's.
    """
    if kind not in GEOMETRY_KINDS:
        return "unknown_geom", f"geometry kind must be one of {GEOMETRY_KINDS}, got {kind!r}"
    arity = arity_problem(kind, len(coords))
    if arity is not None:
        return "wrong_arity", arity
    for v in coords:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_BIN:
            return "bbox_invalid", f"coordinates must be ints in 0..{MAX_BIN}, got {v!r}"
    if kind == "bbox_2d" and not bbox_ordered(coords):
        return "bbox_invalid", f"bbox_2d needs x1 <= x2 and y1 <= y2, got {list(coords)}"
    return None


@dataclass(frozen=True, order=True, slots=True)
class DetObject:
    """One detected or ground-truth object.

    Attributes:
        desc: free-text description, non-empty after stripping whitespace.
        kind: ``"bbox_2d"`` (``coords`` = x1, y1, x2, y2) or ``"poly"`` (``coords`` =
            x1, y1, x2, y2, …, at least 3 points).
        coords: flat tuple of norm1000 ints in 0..999.

    Raises:
        ObjectError: on construction, when any rule above is broken; ``.reason`` is
            ``missing_desc``, ``unknown_geom``, ``wrong_arity`` or ``bbox_invalid``.
    """

    desc: str
    kind: GeometryKind
    coords: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.desc, str) or not self.desc.strip():
            raise ObjectError("missing_desc", f"desc must be a non-empty string, got {self.desc!r}")
        if not isinstance(self.coords, tuple):
            raise ObjectError("wrong_arity", f"coords must be a tuple, got {type(self.coords)}")
        problem = geometry_problem(self.kind, self.coords)
        if problem is not None:
            raise ObjectError(*problem)

    @property
    def points(self) -> tuple[tuple[int, int], ...]:
        """The geometry as (x, y) points: a bbox gives its two corners."""
        c = self.coords
        return tuple((c[i], c[i + 1]) for i in range(0, len(c), 2))
