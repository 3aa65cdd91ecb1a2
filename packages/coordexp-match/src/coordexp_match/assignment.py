"""Candidate pairs and the exact assignment on an IoU matrix (scipy's Hungarian solver)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def candidates(iou: FloatArray, gate: float, top_k: int | None) -> BoolArray:
    """Which (pred, GT) pairs may be matched.

    A pair is allowed when its IoU >= ``gate`` and the GT is among the pred's ``top_k``
    best by IoU, i.e. fewer than ``top_k`` GTs have a strictly higher IoU with that pred
    (GTs tied at the k-th place are all kept, so the rule does not depend on order).
    ``top_k=None`` keeps every GT.

    Args:
        iou: (n, m) IoU matrix.
        gate: minimum IoU.
        top_k: candidates per pred, or None.

    Returns:
        (n, m) boolean mask.
    """
    allowed = iou >= gate
    m = iou.shape[1]
    if top_k is not None and top_k < m and iou.shape[0]:
        kth_best = np.partition(iou, m - top_k, axis=1)[:, m - top_k]
        allowed &= iou >= kth_best[:, None]
    return allowed


def assign(
    iou: FloatArray, allowed: BoolArray, fp_cost: float, fn_cost: float
) -> list[tuple[int, int]]:
    """Pairs minimising Σ_pairs (1 − IoU) + fp_cost·|FP| + fn_cost·|FN| over allowed pairs.

    Exact reduction to one n × m assignment. For a matching M of allowed pairs the
    objective is fp_cost·n + fn_cost·m − Σ_M gain, with gain_ij = IoU_ij − t and
    t = 1 − fp_cost − fn_cost (matching a pair replaces fp_cost + fn_cost by 1 − IoU):
    minimising the objective is maximising Σ_M gain. Let W_ij = gain_ij on *useful*
    pairs (allowed and gain_ij > 0) and 0 elsewhere, so W >= 0. scipy's
    ``linear_sum_assignment`` returns a full assignment A (min(n, m) pairs) of the
    largest Σ_A W; the result P is the useful pairs of A, so Σ_P gain = Σ_A W. P is
    optimal: for any matching M of allowed pairs, Σ_M gain <= Σ W over M's useful pairs
    <= Σ_A' W for any full assignment A' containing them (W >= 0) <= Σ_A W = Σ_P gain.
    Forbidden pairs have W = 0 and are dropped from A, so they are never chosen.
    Clipping to W >= 0 is needed: an allowed pair kept at a negative gain could be
    forced into a full assignment and displace a useful pair.

    Ties: a pair is matched only if it strictly lowers the objective, i.e. IoU > t
    (t computed in float64 as ``1.0 - (fp_cost + fn_cost)``); a pair whose cost equals
    leaving both unmatched is not.

    Args:
        iou: (n, m) IoU matrix.
        allowed: (n, m) mask from ``candidates``.
        fp_cost: cost of an unmatched pred (>= 0).
        fn_cost: cost of an unmatched GT (>= 0).

    Returns:
        Matched (pred, GT) index pairs, in pred order. Deterministic for a given matrix.
    """
    threshold = 1.0 - (fp_cost + fn_cost)
    useful = iou > threshold
    useful &= allowed
    loss = np.subtract(threshold, iou)  # −W on useful pairs; the solver minimises
    loss *= useful
    rows, cols = linear_sum_assignment(loss)  # rows come sorted
    kept = useful[rows, cols].tolist()
    return [(r, c) for r, c, k in zip(rows.tolist(), cols.tolist(), kept, strict=True) if k]
