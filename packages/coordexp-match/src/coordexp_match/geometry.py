"""Geometries as the matcher sees them: validated (kind, coords) shapes in norm1000 space.

Any object with a ``kind`` and ``coords`` attribute is accepted (coordexp-parse's
``DetObject`` and its parsed rollout objects among them). ``coords`` is flat:
``bbox_2d`` → ``(x1, y1, x2, y2)``; ``poly`` → ``(x1, y1, x2, y2, …)`` with at least
three points. norm1000 space is continuous: bin 0 is the image's first pixel and bin 999
its last, so the image is the square [0, 999]² and a box is 999 wide when it spans the
image (width ``x2 − x1``, no +1). Geometry outside that square counts for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from coordexp_parse import DetObject

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]
BoxArray = npt.NDArray[np.number[Any]]

IMAGE_SIDE = 999.0
"""Side of the image square [0, IMAGE_SIDE]² in norm1000 units."""

COORD_LIMIT = 1e6
"""Largest accepted |coordinate|: far outside the image, small enough to stay exact."""


class Geometry(Protocol):
    """What the matcher reads from an object: its geometry kind and flat coordinates."""

    @property
    def kind(self) -> str:
        """``"bbox_2d"`` or ``"poly"``."""
        ...

    @property
    def coords(self) -> Sequence[float]:
        """Flat norm1000 coordinates (ints from the parser; any finite reals accepted)."""
        ...


class Shape(NamedTuple):
    """A validated geometry. Two objects are *identical* when their shapes are equal.

    ``coords`` holds ints (from a DetObject) or floats; equal values compare and hash
    equal either way.
    """

    kind: str
    coords: tuple[float, ...]

    @property
    def is_poly(self) -> bool:
        """Whether this is a polygon (otherwise a bbox)."""
        return self.kind == "poly"

    def vertices(self) -> FloatArray:
        """The outline as an (n, 2) array; a bbox gives its rectangle's four corners."""
        if self.is_poly:
            return np.asarray(self.coords, dtype=np.float64).reshape(-1, 2)
        x1, y1, x2, y2 = self.coords
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)


def _within_limit(v: float | np.integer | np.floating) -> bool:
    try:
        return -COORD_LIMIT <= float(v) <= COORD_LIMIT  # False for NaN and ±inf
    except OverflowError:  # an int beyond float range
        return False


def _problem(kind: object, coords: object) -> str | None:
    """What is wrong with one geometry, or None when it is valid."""
    if kind not in ("bbox_2d", "poly"):
        return f"kind must be 'bbox_2d' or 'poly', got {kind!r}"
    if not isinstance(coords, tuple | list) and (
        not isinstance(coords, Sequence) or isinstance(coords, str)
    ):
        return f"coords must be a sequence of numbers, got {type(coords).__name__}"
    n = len(coords)
    if kind == "bbox_2d" and n != 4:
        return f"a bbox_2d needs 4 coordinates (x1, y1, x2, y2), got {n}"
    if kind == "poly" and (n < 6 or n % 2):
        return f"a poly needs an even number (>= 6) of coordinates, got {n}"
    for v in coords:
        if type(v) not in (int, float) and (
            isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating)
        ):
            return f"coordinates must be real numbers, got {v!r}"
        if not _within_limit(v):
            return f"coordinates must be finite with |value| <= {COORD_LIMIT:g}, got {v!r}"
    if kind == "bbox_2d" and (coords[2] < coords[0] or coords[3] < coords[1]):
        return f"a bbox_2d needs x1 <= x2 and y1 <= y2, got {list(coords)}"
    return None


class Shapes:
    """The validated geometries of one side, in order: the batch form the matcher reads.

    Indexing gives a ``Shape``; the arrays give all objects at once.

    Attributes:
        coords: each object's coordinates (a DetObject's ints, otherwise floats).
        is_poly: (n,) whether each object is a polygon (otherwise a bbox).
        has_poly: whether any object is a polygon.
        small_ints: whether every coordinate is an int in 0..999 (all DetObjects).
        boxes: (n, 4) ``x1, y1, x2, y2`` of each bbox, a polygon's row zeros; int64 when
            every object is a DetObject and a bbox, float64 otherwise (exact either way).
    """

    __slots__ = ("boxes", "coords", "has_poly", "is_poly", "small_ints")

    def __init__(
        self,
        coords: list[tuple[float, ...]],
        is_poly: BoolArray,
        has_poly: bool,
        small_ints: bool,
        boxes: BoxArray,
    ) -> None:
        self.coords = coords
        self.is_poly = is_poly
        self.has_poly = has_poly
        self.small_ints = small_ints
        self.boxes = boxes

    @classmethod
    def of(cls, kinds: list[str], coords: list[tuple[float, ...]], small_ints: bool) -> Shapes:
        """Shapes from validated kinds and coordinates (``small_ints``: see the class)."""
        n = len(coords)
        if "poly" not in kinds:
            dtype = np.int64 if small_ints else np.float64
            flat = np.fromiter(chain.from_iterable(coords), dtype, 4 * n)
            return cls(coords, np.zeros(n, dtype=np.bool_), False, small_ints, flat.reshape(n, 4))
        is_poly = np.array([k == "poly" for k in kinds], dtype=np.bool_)
        boxes = np.zeros((n, 4), dtype=np.float64)
        box_coords = [c for c, k in zip(coords, kinds, strict=True) if k != "poly"]
        boxes[~is_poly] = np.array(box_coords, dtype=np.float64).reshape(-1, 4)
        return cls(coords, is_poly, True, small_ints, boxes)

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int) -> Shape:
        return Shape("poly" if self.is_poly[i] else "bbox_2d", self.coords[i])

    def take(self, order: IntArray) -> Shapes:
        """The same shapes in the order ``order`` (positions into this batch)."""
        coords = self.coords
        picked = [coords[i] for i in order.tolist()]
        is_poly = self.is_poly[order] if self.has_poly else self.is_poly
        return Shapes(picked, is_poly, self.has_poly, self.small_ints, self.boxes[order])


def read_shapes(objects: Sequence[Geometry], name: str) -> Shapes:
    """Validate ``objects`` and return their shapes in the same order.

    A ``coordexp_parse.DetObject`` is valid by construction (ints in 0..999) and is
    taken as it is; any other object is checked.

    Args:
        objects: objects with ``kind`` and ``coords`` (see ``Geometry``).
        name: how the caller calls the sequence (``"preds"``/``"gts"``), used in errors.

    Raises:
        TypeError: an object has no ``kind``/``coords`` attribute.
        ValueError: a geometry is malformed (unknown kind, wrong number of coordinates,
            non-numeric, non-finite or huge values, a bbox with x2 < x1 or y2 < y1); the
            message names the object as ``name[index]``.
    """
    if set(map(type, objects)) <= {DetObject}:
        dets: Sequence[DetObject] = objects  # type: ignore[assignment]
        return Shapes.of([o.kind for o in dets], [o.coords for o in dets], small_ints=True)
    kinds: list[str] = []
    coords: list[tuple[float, ...]] = []
    for i, obj in enumerate(objects):
        if type(obj) is DetObject:
            kinds.append(obj.kind)
            coords.append(obj.coords)
            continue
        try:
            kind, values = obj.kind, obj.coords
        except AttributeError:
            raise TypeError(
                f"{name}[{i}] is a {type(obj).__name__} without `kind` and `coords`; "
                "pass objects like coordexp_parse.DetObject"
            ) from None
        problem = _problem(kind, values)
        if problem is not None:
            raise ValueError(f"{name}[{i}]: {problem}; fix or drop this object before matching")
        kinds.append(kind)
        coords.append(tuple(float(v) for v in values))
    return Shapes.of(kinds, coords, small_ints=False)
