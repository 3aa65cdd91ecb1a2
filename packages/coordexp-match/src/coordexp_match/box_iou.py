"""Exact IoU between axis-aligned boxes, all pairs at once."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from coordexp_match.geometry import IMAGE_SIDE

FloatArray = npt.NDArray[np.float64]


def box_iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of every box in ``a`` with every box in ``b``, exactly, in norm1000 space.

    Boxes are clipped to the image square [0, 999]² first; area is the continuous
    ``(x2 − x1) · (y2 − y1)``, the convention of pycocotools' ``iou`` on boxes given as
    ``(x1, y1, x2 − x1, y2 − y1)``, which this agrees with to rounding on boxes inside
    the image.

    Args:
        a: (n, 4) boxes ``x1, y1, x2, y2`` with x1 <= x2, y1 <= y2.
        b: (m, 4) boxes, same layout.

    Returns:
        (n, m) float64 IoU in [0, 1], and NaN exactly where the union is empty (both
        boxes zero-area after clipping): the caller decides those pairs.
    """
    a = np.clip(a, 0.0, IMAGE_SIDE)
    b = np.clip(b, 0.0, IMAGE_SIDE)
    inter = np.minimum(a[:, None, 2], b[None, :, 2])
    inter -= np.maximum(a[:, None, 0], b[None, :, 0])
    np.maximum(inter, 0.0, out=inter)
    ih = np.minimum(a[:, None, 3], b[None, :, 3])
    ih -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(ih, 0.0, out=ih)
    inter *= ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :]
    union -= inter
    union[union <= 0.0] = np.nan
    inter /= union
    return inter
