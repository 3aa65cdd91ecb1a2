"""Candidates (gate, top-k with ties kept) and the exact n × m assignment."""

from __future__ import annotations

import numpy as np

from coordexp_match.assignment import assign, candidates


def test_gate_is_inclusive() -> None:
    iou = np.array([[0.3, 0.29999999, 1.0]])
    assert candidates(iou, 0.3, None).tolist() == [[True, False, True]]


def test_top_k_keeps_each_preds_best_and_every_tie_at_the_kth_place() -> None:
    iou = np.array([[0.9, 0.5, 0.7, 0.5, 0.4], [0.1, 0.2, 0.3, 0.4, 0.5]])
    assert candidates(iou, 0.0, 2).tolist() == [
        [True, False, True, False, False],
        [False, False, False, True, True],
    ]
    assert candidates(iou, 0.0, 3).tolist() == [
        [True, True, True, True, False],  # 0.5 ties for third place: both kept
        [False, False, True, True, True],
    ]
    assert candidates(iou, 0.45, 5).tolist() == (iou >= 0.45).tolist()


def test_cheap_forbidden_pairs_are_never_chosen_however_costly_unmatched_is() -> None:
    # Every pred and GT has a candidate, but at most two pairs fit the allowed pattern;
    # the forbidden (1, 1) and (2, 2) would complete a matching and save 2e6.
    iou = np.array([[0.5, 0.5, 0.5], [0.5, 0.99, 0.0], [0.5, 0.0, 0.99]])
    allowed = np.array([[True, True, True], [True, False, False], [True, False, False]])
    pairs = assign(iou, allowed, 1e6, 1e6)
    assert len(pairs) == 2
    assert all(allowed[p, g] for p, g in pairs)


def test_a_pair_worse_than_leaving_both_unmatched_is_not_taken() -> None:
    iou = np.array([[0.4]])
    allowed = np.ones((1, 1), dtype=bool)
    assert assign(iou, allowed, 0.25, 0.25) == []  # 0.6 > 0.25 + 0.25
    assert assign(iou, allowed, 0.5, 0.25) == [(0, 0)]  # 0.6 < 0.75


def test_rows_and_columns_without_candidates_stay_unmatched() -> None:
    iou = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.8], [0.0, 0.9, 0.7]])
    assert assign(iou, iou >= 0.5, 1.0, 1.0) == [(1, 2), (2, 1)]
    assert assign(iou, np.zeros_like(iou, dtype=bool), 1.0, 1.0) == []


def test_a_pair_not_worth_matching_never_displaces_a_useful_one() -> None:
    # fp = fn = 0.25: a pair is worth matching only when IoU > 0.5. Pred 1's only
    # overlap (0.45) is not; if it entered the solver at its negative gain, the full
    # assignment {(0, 1), (1, 0)} (gain 0.3 − 0.05) would beat {(0, 0), (1, 1)}
    # (0.4 − 0.5) and cost pred 0 its better GT.
    iou = np.array([[0.9, 0.8], [0.45, 0.0]])
    allowed = np.ones((2, 2), dtype=bool)
    assert assign(iou, allowed, 0.25, 0.25) == [(0, 0)]


def test_a_pair_costing_exactly_as_much_as_leaving_both_unmatched_is_not_taken() -> None:
    iou = np.array([[0.5, 0.0], [0.0, 0.75]])
    allowed = np.ones((2, 2), dtype=bool)
    assert assign(iou, allowed, 0.25, 0.25) == [(1, 1)]  # 1 − 0.5 == 0.25 + 0.25: a tie
    assert assign(iou, allowed, 0.25, 0.375) == [(0, 0), (1, 1)]
    # With nothing to pay for unmatched objects, no pair can lower the objective.
    assert assign(np.ones((2, 2)), allowed, 0.0, 0.0) == []


def test_more_rows_than_columns_and_the_reverse() -> None:
    iou = np.array([[0.2, 0.9], [0.8, 0.1], [0.7, 0.6]])
    allowed = iou >= 0.5
    assert assign(iou, allowed, 1.0, 1.0) == [(0, 1), (1, 0)]
    assert assign(iou.T.copy(), allowed.T.copy(), 1.0, 1.0) == [(0, 1), (1, 0)]
