"""Matching predicted objects to ground truth: the public ``match`` and its result."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from coordexp_match.assignment import assign, candidates
from coordexp_match.geometry import Geometry, IntArray, Shapes, read_shapes
from coordexp_match.iou import check_resolution, shape_iou

MAX_COST = 1e6


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The outcome of ``match``.

    Attributes:
        pairs: matched (pred_index, gt_index), sorted by pred index.
        ious: IoU of each pair, aligned with ``pairs``.
        fp: indices of unmatched predictions, ascending.
        fn: indices of unmatched ground-truth objects, ascending.
        cost: the objective value Σ_pairs (1 − IoU) + fp_cost·|FP| + fn_cost·|FN|,
            summed exactly rounded (``math.fsum``), so independent of order.
    """

    pairs: list[tuple[int, int]]
    ious: list[float]
    fp: list[int]
    fn: list[int]
    cost: float


def _check_options(gate: object, top_k: object, fp_cost: object, fn_cost: object) -> None:
    def real(v: object) -> bool:
        return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)

    if not real(gate) or not 0.0 <= gate <= 1.0:  # type: ignore[operator]
        raise ValueError(
            f"gate (rollout_matching.maskiou_gate) must be a number in [0, 1], got {gate!r}"
        )
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1
    ):
        raise ValueError(
            "top_k (rollout_matching.candidate_top_k) must be None (every GT is a "
            f"candidate) or an int >= 1, got {top_k!r}"
        )
    for name, value in (("fp_cost", fp_cost), ("fn_cost", fn_cost)):
        if not real(value) or not 0.0 <= value <= MAX_COST:  # type: ignore[operator]
            raise ValueError(
                f"{name} (rollout_matching.{name}) must be a number in [0, {MAX_COST:g}], "
                f"got {value!r}"
            )


def _canonical_order(shapes: Shapes) -> IntArray:
    """Positions sorted by shape: bboxes, then polygons, each by coordinates.

    Equal shapes keep their relative order (both sorts are stable).
    """
    if not shapes.has_poly:
        order: IntArray = np.lexsort(shapes.boxes.T[::-1])  # the last key is the primary: x1
        return order
    boxes = np.flatnonzero(~shapes.is_poly)
    polys = np.flatnonzero(shapes.is_poly).tolist()
    polys.sort(key=shapes.coords.__getitem__)
    by_box = boxes[np.lexsort(shapes.boxes[boxes].T[::-1])]
    return np.concatenate([by_box, np.array(polys, dtype=np.intp)])


def _groups(shapes: Shapes) -> list[int] | None:
    """Group id per position of canonically ordered shapes; None when all differ.

    Equal shapes (adjacent in canonical order) share an id.
    """
    coords = shapes.coords  # equal coordinates imply equal kinds (4 vs >= 6 values)
    if len(set(coords)) == len(coords):
        return None
    ids = [0]
    for k in range(1, len(coords)):
        ids.append(ids[-1] + (coords[k] != coords[k - 1]))
    return ids


def _interchange_identical(
    chosen: list[tuple[int, int]], pred_group: list[int], gt_group: list[int]
) -> list[tuple[int, int]]:
    """One fixed assignment among those that differ only by swapping identical objects.

    Identical objects have identical IoU rows (columns) and candidate sets, so swapping
    their roles keeps the assignment valid and its cost unchanged. The representative:
    within each group of identical preds, lower positions take the matches (the rest are
    FP), paired with GT groups in canonical order; within a GT group, lower positions are
    matched first (the rest are FN).
    """
    pred_members: dict[int, list[int]] = {}
    gt_members: dict[int, list[int]] = {}
    for pos, g in enumerate(pred_group):
        pred_members.setdefault(g, []).append(pos)
    for pos, g in enumerate(gt_group):
        gt_members.setdefault(g, []).append(pos)
    roles: dict[int, list[int]] = {}
    for p, g in chosen:
        roles.setdefault(pred_group[p], []).append(gt_group[g])
    used = dict.fromkeys(gt_members, 0)
    result = []
    for pg in sorted(roles):
        for member, gg in zip(pred_members[pg], sorted(roles[pg]), strict=False):
            result.append((member, gt_members[gg][used[gg]]))
            used[gg] += 1
    return result


def match(
    preds: Sequence[Geometry],
    gts: Sequence[Geometry],
    *,
    gate: float = 0.3,
    top_k: int | None = None,
    fp_cost: float = 1.0,
    fn_cost: float = 1.0,
    resolution: int = 256,
) -> MatchResult:
    """Match predictions to ground truth, exactly and deterministically.

    Objective: minimise Σ_pairs (1 − IoU) + fp_cost·|FP| + fn_cost·|FN| over one-to-one
    matchings, where a pair is allowed only if IoU >= ``gate`` and the GT is among the
    pred's ``top_k`` best by IoU (ties at the k-th place all kept). IoU is
    ``iou_matrix``'s (exact for two bboxes, mask IoU on a ``resolution``² canvas when a
    polygon is involved). Solved exactly by scipy's ``linear_sum_assignment`` on the
    n × m matrix of matching gains (proof in ``assignment.assign``). The ``desc`` of
    objects plays no part.

    Ties and determinism: a pair is matched only if it strictly lowers the objective
    (1 − IoU < fp_cost + fn_cost), so with fp_cost = fn_cost = 0 nothing is matched.
    The result is a pure function of the inputs. Objects are solved
    in a canonical order (by kind, then coordinates), so permuting ``preds`` or ``gts``
    permutes the result accordingly, equally good assignments included. Identical objects
    (same kind and coordinates) are interchangeable; among them the lower indices are
    matched and the higher ones become FP/FN.

    Args:
        preds: predicted objects with ``kind`` and ``coords`` (e.g. coordexp_parse
            DetObject or parsed rollout objects).
        gts: ground-truth objects, same contract.
        gate: minimum IoU of a pair (``rollout_matching.maskiou_gate``), in [0, 1].
        top_k: candidate GTs per pred (``rollout_matching.candidate_top_k``); None = all.
        fp_cost: cost of an unmatched pred (``rollout_matching.fp_cost``), in [0, 1e6].
        fn_cost: cost of an unmatched GT (``rollout_matching.fn_cost``), in [0, 1e6].
        resolution: mask canvas side (``rollout_matching.maskiou_resolution``), 1..4096.

    Returns:
        MatchResult. Empty preds → every GT is FN; empty GTs → every pred is FP.

    Raises:
        TypeError, ValueError: a malformed object (named ``preds[i]``/``gts[j]``) or an
            option out of range (named with its ``rollout_matching.*`` config key).
    """
    _check_options(gate, top_k, fp_cost, fn_cost)
    r = check_resolution(resolution)
    unmatched_pred, unmatched_gt = float(fp_cost), float(fn_cost)
    pred_shapes = read_shapes(preds, "preds")
    gt_shapes = read_shapes(gts, "gts")
    n, m = len(pred_shapes), len(gt_shapes)
    pred_order = _canonical_order(pred_shapes)
    gt_order = _canonical_order(gt_shapes)
    sorted_preds = pred_shapes.take(pred_order)
    sorted_gts = gt_shapes.take(gt_order)

    iou = shape_iou(sorted_preds, sorted_gts, r)
    allowed = candidates(iou, float(gate), None if top_k is None else int(top_k))
    chosen = assign(iou, allowed, unmatched_pred, unmatched_gt)
    if chosen:
        pred_groups, gt_groups = _groups(sorted_preds), _groups(sorted_gts)
        if pred_groups is not None or gt_groups is not None:
            chosen = _interchange_identical(
                chosen, pred_groups or list(range(n)), gt_groups or list(range(m))
            )

    # Back to input indices, in one pass per side (no sorting: pred order is by slot).
    pred_at, gt_at = pred_order.tolist(), gt_order.tolist()
    partner: list[tuple[int, float] | None] = [None] * n
    gt_free = [True] * m
    if chosen:
        rows, cols = zip(*chosen, strict=True)
        for p, g, v in zip(rows, cols, iou[rows, cols].tolist(), strict=True):
            partner[pred_at[p]] = (gt_at[g], v)
            gt_free[gt_at[g]] = False
    pairs: list[tuple[int, int]] = []
    ious: list[float] = []
    fp: list[int] = []
    for i, found in enumerate(partner):
        if found is None:
            fp.append(i)
        else:
            pairs.append((i, found[0]))
            ious.append(found[1])
    fn = [j for j, free in enumerate(gt_free) if free]
    cost = math.fsum(
        [1.0 - v for v in ious] + [unmatched_pred] * len(fp) + [unmatched_gt] * len(fn)
    )
    return MatchResult(pairs=pairs, ious=ious, fp=fp, fn=fn, cost=cost)
