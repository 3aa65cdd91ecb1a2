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

    The problem is one square assignment on an augmented (n + m) × (n + m) matrix:
    rows are the n preds then one dummy row per GT, columns the m GTs then one dummy
    column per pred. Pred i on GT j costs 1 − IoU (allowed pairs only); pred i on its own
    dummy column costs ``fp_cost`` (left unmatched); GT j's dummy row on column j costs
    ``fn_cost`` (missed); dummy rows on dummy columns cost 0; everything else is
    ``forbidden``. Forbidden entries are never chosen: leaving everything unmatched is a
    feasible assignment costing n·fp_cost + m·fn_cost < ``forbidden``, and every entry is
    >= 0, so any assignment holding a forbidden entry costs more than that one.

    Two exact shortcuts keep the matrix small: preds and GTs with no allowed pair are
    left out (unmatched in every assignment), and a pred and GT that are each other's
    only candidate form a problem of their own, decided in closed form (matched when
    1 − IoU <= fp_cost + fn_cost).

    Args:
        iou: (n, m) IoU matrix.
        allowed: (n, m) mask from ``candidates``.
        fp_cost: cost of an unmatched pred (>= 0).
        fn_cost: cost of an unmatched GT (>= 0).

    Returns:
        Matched (pred, GT) index pairs, in pred order. Deterministic for a given matrix.
    """
    solo = _isolated_pairs(allowed)
    solo_rows, solo_cols = np.nonzero(solo)
    keep = 1.0 - iou[solo_rows, solo_cols] <= fp_cost + fn_cost
    pairs = list(zip(solo_rows[keep].tolist(), solo_cols[keep].tolist(), strict=True))
    # Everything else with a candidate goes to the solver; the rest is unmatched anyway.
    rows = np.flatnonzero(allowed.any(axis=1) & ~solo.any(axis=1))
    cols = np.flatnonzero(allowed.any(axis=0) & ~solo.any(axis=0))
    n, m = rows.size, cols.size
    if n and m:
        forbidden = 2.0 * (n * fp_cost + m * fn_cost) + 2.0
        cost = np.full((n + m, n + m), forbidden)
        sub = np.ix_(rows, cols)
        cost[:n, :m] = np.where(allowed[sub], 1.0 - iou[sub], forbidden)
        cost[np.arange(n), m + np.arange(n)] = fp_cost
        cost[n + np.arange(m), np.arange(m)] = fn_cost
        cost[n:, m:] = 0.0
        solved_rows, solved_cols = linear_sum_assignment(cost)
        pairs += [
            (int(rows[r]), int(cols[c]))
            for r, c in zip(solved_rows, solved_cols, strict=True)
            if r < n and c < m
        ]
    return sorted(pairs)


def _isolated_pairs(allowed: BoolArray) -> BoolArray:
    """Allowed pairs whose pred and GT have no other candidate: components of their own."""
    only_for_pred = allowed.sum(axis=1) == 1
    only_for_gt = allowed.sum(axis=0) == 1
    solo: BoolArray = allowed & only_for_pred[:, None] & only_for_gt[None, :]
    return solo
