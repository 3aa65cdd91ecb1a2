"""The IoU matrix between predicted and ground-truth objects, whatever their kinds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from coordexp_match.box_iou import box_iou
from coordexp_match.geometry import Geometry, Shapes, read_shapes
from coordexp_match.raster import mask_iou, rasterise

FloatArray = npt.NDArray[np.float64]

MAX_RESOLUTION = 4096


def check_resolution(resolution: object) -> int:
    """Return ``resolution`` when it is a valid canvas side, else raise ValueError."""
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int | np.integer)
        or not 1 <= resolution <= MAX_RESOLUTION
    ):
        raise ValueError(
            "resolution (rollout_matching.maskiou_resolution) must be an int in "
            f"1..{MAX_RESOLUTION}, got {resolution!r}; the default is 256"
        )
    return int(resolution)


def iou_matrix(
    preds: Sequence[Geometry], gts: Sequence[Geometry], resolution: int = 256
) -> FloatArray:
    """IoU of every prediction with every ground-truth object.

    A bbox against a bbox is exact (continuous area, clipped to the image square
    [0, 999]², see ``box_iou``). Any pair with a polygon is a mask IoU on a virtual
    ``resolution`` × ``resolution`` canvas (see ``raster``), the bbox taken as its
    rectangle; each object is rasterised once per call. A pair whose union is empty
    (zero-area geometry) has IoU 1.0 when both objects are identical (same kind and
    coordinates) and 0.0 otherwise. Deterministic; never NaN.

    Args:
        preds: n objects with ``kind`` and ``coords`` (e.g. coordexp_parse.DetObject).
        gts: m objects, same contract.
        resolution: mask canvas side (``rollout_matching.maskiou_resolution``).

    Returns:
        (n, m) float64 array in [0, 1].

    Raises:
        TypeError, ValueError: a malformed object (named ``preds[i]``/``gts[j]``) or
            a resolution outside 1..4096.
    """
    r = check_resolution(resolution)
    return shape_iou(read_shapes(preds, "preds"), read_shapes(gts, "gts"), r)


def shape_iou(preds: Shapes, gts: Shapes, resolution: int) -> FloatArray:
    """``iou_matrix`` on already validated shapes."""
    n, m = len(preds), len(gts)
    if n == 0 or m == 0:
        return np.zeros((n, m), dtype=np.float64)
    pred_poly, gt_poly = preds.is_poly, gts.is_poly
    small_ints = preds.small_ints and gts.small_ints
    if not (preds.has_poly or gts.has_poly):
        iou = box_iou(preds.boxes, gts.boxes, small_ints=small_ints)
    else:
        iou = np.zeros((n, m), dtype=np.float64)
        pb, gb = np.flatnonzero(~pred_poly), np.flatnonzero(~gt_poly)
        if pb.size and gb.size:
            iou[np.ix_(pb, gb)] = box_iou(preds.boxes[pb], gts.boxes[gb], small_ints=small_ints)
        # A pred needs a mask when it is a polygon or meets a polygon GT; likewise a GT.
        pm = np.flatnonzero(pred_poly | gts.has_poly)
        gm = np.flatnonzero(gt_poly | preds.has_poly)
        masks_p = rasterise([preds[i].vertices() for i in pm], resolution)
        masks_g = rasterise([gts[j].vertices() for j in gm], resolution)
        uses_mask = pred_poly[pm][:, None] | gt_poly[gm][None, :]
        sub = np.ix_(pm, gm)
        iou[sub] = np.where(uses_mask, mask_iou(masks_p, masks_g), iou[sub])
    # Empty unions (NaN so far): 1.0 between identical objects, else 0.0.
    empty = np.isnan(iou)
    if empty.any():
        for i, j in np.argwhere(empty).tolist():
            iou[i, j] = float(preds[i] == gts[j])
    return iou
