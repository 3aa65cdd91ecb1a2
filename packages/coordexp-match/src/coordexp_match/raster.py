"""Polygon rasterisation on a virtual R × R canvas, and mask IoU between rasterised sets.

The canvas covers the image square [0, 999]² of norm1000 space with R × R square pixels
of side 999 / R. Rule: a pixel belongs to a polygon when its *centre* is inside under the
even-odd rule, with half-open edges — a centre exactly on a left or top edge is inside,
on a right or bottom edge outside — so polygons that share an edge never share a pixel,
and an axis-aligned rectangle [x1, x2) × [y1, y2) covers exactly the centres in it.
Consequences: a rectangle's pixel area differs from its true area by less than
(w + h + 1) pixels (w, h in pixels); any polygon's by about its perimeter in pixels.
Vertices outside the image are fine: only the part on the canvas is counted. A polygon
whose vertices all lie on one line (exactly, as integer norm1000 coordinates do) has an
empty mask; it is not rasterised, since rounding along a slanted line could leave
stray pixels.

Each polygon is rasterised once (all polygons of a call in one vectorised pass: edge ×
scanline crossings, a parity toggle per crossing, an XOR prefix scan along each row);
intersections between two sets of masks are one matrix product. A mask takes R² bytes
(64 KiB at R = 256, 16 MiB at R = 4096); working buffers are bounded by ``_CHUNK_BYTES``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from coordexp_match.geometry import IMAGE_SIDE

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_CHUNK_BYTES = 1 << 25  # working-set bound for one rasterisation or product step


def rasterise(polygons: Sequence[FloatArray], resolution: int) -> BoolArray:
    """Rasterise polygons given in norm1000 coordinates.

    Args:
        polygons: (k_i, 2) vertex arrays, k_i >= 3, in order (either orientation);
            self-intersecting outlines are filled by the even-odd rule.
        resolution: canvas side R (>= 1).

    Returns:
        (len(polygons), R * R) boolean masks, row-major (row = y, column = x).
    """
    r = resolution
    masks = np.zeros((len(polygons), r * r), dtype=np.bool_)
    solid = [i for i, p in enumerate(polygons) if not _is_flat(p)]
    group = max(1, _CHUNK_BYTES // (r * r))
    if len(solid) == len(polygons) <= group:
        return _rasterise_group(polygons, r)
    for start in range(0, len(solid), group):
        chunk = solid[start : start + group]
        masks[chunk] = _rasterise_group([polygons[i] for i in chunk], r)
    return masks


def _is_flat(vertices: FloatArray) -> bool:
    """Whether all vertices lie on one line (exactly), so the polygon has no area."""
    d = vertices - vertices[0]
    far = d[np.argmax(np.abs(d).sum(axis=1))]  # zero only if all vertices coincide
    return not np.any(d[:, 0] * far[1] - d[:, 1] * far[0])


def _rasterise_group(polygons: Sequence[FloatArray], r: int) -> BoolArray:
    # Canvas units: x * r / 999 (multiply first: exact for integer coordinates).
    starts = np.concatenate(polygons) * r / IMAGE_SIDE
    ends = np.concatenate([np.roll(p, -1, axis=0) for p in polygons]) * r / IMAGE_SIDE
    owner = np.repeat(np.arange(len(polygons)), [len(p) for p in polygons])
    # Orient every edge downwards so an edge shared by two polygons (in either
    # direction) gives bit-identical crossings in both.
    down = starts[:, 1] <= ends[:, 1]
    top = np.where(down[:, None], starts, ends)
    bottom = np.where(down[:, None], ends, starts)
    x0, y0, x1, y1 = top[:, 0], top[:, 1], bottom[:, 0], bottom[:, 1]
    centre_y = np.arange(r) + 0.5
    # Edge e crosses scanline i when y0 <= centre < y1 (half-open in y; horizontal
    # edges never cross).
    edge, row = np.nonzero((y0[:, None] <= centre_y) & (centre_y < y1[:, None]))
    t = (centre_y[row] - y0[edge]) / (y1[edge] - y0[edge])
    x = x0[edge] + t * (x1[edge] - x0[edge])
    # The crossing flips parity for every pixel whose centre is at or right of it
    # (a crossing right of the last centre flips none).
    column = np.maximum(np.ceil(x - 0.5), 0)
    on_canvas = column < r
    toggles = np.zeros((len(polygons), r, r), dtype=np.uint8)
    np.add.at(
        toggles,
        (owner[edge[on_canvas]], row[on_canvas], column[on_canvas].astype(np.intp)),
        1,
    )
    toggles &= 1
    inside = np.bitwise_xor.accumulate(toggles, axis=2, out=toggles)
    return inside.reshape(len(polygons), r * r).view(np.bool_)


def mask_iou(a: BoolArray, b: BoolArray) -> FloatArray:
    """IoU of every mask in ``a`` with every mask in ``b`` (pixel counts).

    Args:
        a: (n, P) boolean masks.
        b: (m, P) boolean masks on the same canvas.

    Returns:
        (n, m) float64 IoU in [0, 1], and NaN exactly where both masks are empty: the
        caller decides those pairs. Counts are exact (float32 holds integers up to
        2**24 exactly and a canvas has at most 4096² = 2**24 pixels).
    """
    n, pixels = a.shape
    m = b.shape[0]
    inter = np.zeros((n, m), dtype=np.float64)
    step = max(1, _CHUNK_BYTES // (4 * max(n + m, 1)))
    for c in range(0, pixels, step):
        fa = a[:, c : c + step].astype(np.float32)
        fb = b[:, c : c + step].astype(np.float32)
        inter += fa @ fb.T
    area_a = np.count_nonzero(a, axis=1).astype(np.float64)
    area_b = np.count_nonzero(b, axis=1).astype(np.float64)
    union = area_a[:, None] + area_b[None, :] - inter
    union[union <= 0.0] = np.nan
    inter /= union
    return inter
