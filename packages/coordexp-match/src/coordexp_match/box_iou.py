"""Exact IoU between axis-aligned boxes, all pairs at once."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from coordexp_match.geometry import IMAGE_SIDE, BoxArray

FloatArray = npt.NDArray[np.float64]


def box_iou(a: BoxArray, b: BoxArray, *, small_ints: bool = False) -> FloatArray:
    """IoU of every box in ``a`` with every box in ``b``, exactly, in norm1000 space.

    Boxes are clipped to the image square [0, 999]² first; area is the continuous
    ``(x2 − x1) · (y2 − y1)``, the convention of pycocotools' ``iou`` on boxes given as
    ``(x1, y1, x2 − x1, y2 − y1)``, which this agrees with to rounding on boxes inside
    the image.

    Args:
        a: (n, 4) boxes ``x1, y1, x2, y2`` with x1 <= x2, y1 <= y2 (ints or floats).
        b: (m, 4) boxes, same layout.
        small_ints: every coordinate is an int in 0..999 (DetObjects). Then clipping is
            skipped and the pairwise arithmetic runs in float32, which is exact: every
            intermediate is an integer below 2**24. The result is the same either way.

    Returns:
        (n, m) float64 IoU in [0, 1], and NaN exactly where the union is empty (both
        boxes zero-area after clipping): the caller decides those pairs.
    """
    work: type[np.floating[Any]] = np.float32 if small_ints else np.float64
    if not small_ints:
        a = np.clip(a, 0.0, IMAGE_SIDE)
        b = np.clip(b, 0.0, IMAGE_SIDE)
    # Coordinates as contiguous rows x1, y1, x2, y2.
    ca = a.T.astype(work, order="C")
    cb = b.T.astype(work, order="C")
    extent_a, extent_b = ca[2:] - ca[:2], cb[2:] - cb[:2]
    area_a, area_b = extent_a[0] * extent_a[1], extent_b[0] * extent_b[1]
    ax1, ay1, ax2, ay2 = ca[:, :, None]  # (n, 1) columns against (m,) rows
    bx1, by1, bx2, by2 = cb
    inter = np.minimum(ax2, bx2)
    inter -= np.maximum(ax1, bx1)
    high = np.minimum(ay2, by2)
    high -= np.maximum(ay1, by1)
    np.maximum(inter, 0.0, out=inter)
    np.maximum(high, 0.0, out=high)
    inter *= high
    union = np.add(area_a[:, None], area_b, out=high)
    union -= inter
    # The union is at least the larger area: empty only where both boxes are.
    if not (area_a.all() or area_b.all()):
        union[np.ix_(area_a == 0.0, area_b == 0.0)] = np.nan
    iou: FloatArray = np.divide(inter, union, dtype=np.float64)
    return iou
