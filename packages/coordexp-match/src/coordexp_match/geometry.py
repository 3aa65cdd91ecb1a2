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
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from coordexp_parse import DetObject

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

    def vertices(self) -> npt.NDArray[np.float64]:
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


def read_shapes(objects: Sequence[Geometry], name: str) -> list[Shape]:
    """Validate ``objects`` and return their shapes in the same order.

    Args:
        objects: objects with ``kind`` and ``coords`` (see ``Geometry``).
        name: how the caller calls the sequence (``"preds"``/``"gts"``), used in errors.

    Raises:
        TypeError: an object has no ``kind``/``coords`` attribute.
        ValueError: a geometry is malformed (unknown kind, wrong number of coordinates,
            non-numeric, non-finite or huge values, a bbox with x2 < x1 or y2 < y1); the
            message names the object as ``name[index]``.
    """
    shapes: list[Shape] = []
    for i, obj in enumerate(objects):
        if type(obj) is DetObject:  # validated on construction: ints in 0..999
            shapes.append(Shape(obj.kind, obj.coords))
            continue
        try:
            kind, coords = obj.kind, obj.coords
        except AttributeError:
            raise TypeError(
                f"{name}[{i}] is a {type(obj).__name__} without `kind` and `coords`; "
                "pass objects like coordexp_parse.DetObject"
            ) from None
        problem = _problem(kind, coords)
        if problem is not None:
            raise ValueError(f"{name}[{i}]: {problem}; fix or drop this object before matching")
        shapes.append(Shape(kind, tuple(float(v) for v in coords)))
    return shapes
