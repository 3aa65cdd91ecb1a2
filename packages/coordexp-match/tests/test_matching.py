"""match(): the objective, its constraints, exact optimality, ties, symmetry, determinism."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_match import MatchResult, iou_matrix, match
from coordexp_match.assignment import assign, candidates
from coordexp_parse import DetObject


def box(*c: int, desc: str = "o") -> DetObject:
    return DetObject(desc, "bbox_2d", c)


def poly(*c: int) -> DetObject:
    return DetObject("o", "poly", c)


# ------------------------------------------------------------------ reference solver
def allowed_pairs(iou: np.ndarray, gate: float, top_k: int | None) -> np.ndarray:
    """Written from the rule, independently of the package: IoU >= gate and fewer than
    top_k GTs strictly better for that pred."""
    n, m = iou.shape
    out = np.zeros((n, m), dtype=bool)
    for i in range(n):
        for j in range(m):
            better = sum(1 for v in iou[i] if v > iou[i, j])
            out[i, j] = iou[i, j] >= gate and (top_k is None or better < top_k)
    return out


def brute_force(iou: np.ndarray, allowed: np.ndarray, fp: float, fn: float) -> float:
    """Minimum objective by exhaustive search (dynamic programming over used-GT sets)."""
    n, m = iou.shape

    @cache
    def best(i: int, used: int) -> float:
        if i == n:
            return fn * (m - bin(used).count("1"))
        value = fp + best(i + 1, used)
        for j in range(m):
            if allowed[i, j] and not used >> j & 1:
                value = min(value, 1.0 - iou[i, j] + best(i + 1, used | 1 << j))
        return value

    return best(0, 0)


def objective(iou: np.ndarray, pairs: list[tuple[int, int]], fp: float, fn: float) -> float:
    n, m = iou.shape
    k = len(pairs)
    return sum(1.0 - iou[p, g] for p, g in pairs) + fp * (n - k) + fn * (m - k)


# ------------------------------------------------------------------ strategies
ious = st.one_of(st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]), st.floats(0, 1))
costs = st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.7])
gates = st.sampled_from([0.0, 0.3, 0.5, 0.9])
top_ks = st.sampled_from([None, 1, 2, 3])


@st.composite
def iou_matrices(draw: st.DrawFn) -> np.ndarray:
    n, m = draw(st.integers(0, 7)), draw(st.integers(0, 7))
    return np.array([[draw(ious) for _ in range(m)] for _ in range(n)]).reshape(n, m)


# A fine grid gives overlaps; a coarse one gives ties (equal IoUs between distinct objects).
small = st.one_of(
    st.integers(0, 12).map(lambda v: v * 40), st.integers(0, 3).map(lambda v: v * 250)
)


@st.composite
def objects(draw: st.DrawFn, polys: bool = True) -> DetObject:
    if polys and draw(st.integers(0, 3)) == 0:
        x, y = draw(small), draw(small)
        return poly(x, y, min(999, x + draw(small) + 40), y, x, min(999, y + draw(small) + 40))
    x1, x2 = sorted((draw(small), draw(small)))
    y1, y2 = sorted((draw(small), draw(small)))
    return box(x1, y1, x2, y2)


# ------------------------------------------------------------------ optimality
@settings(max_examples=200, deadline=None)
@given(iou_matrices(), gates, top_ks, costs, costs)
def test_assignment_is_optimal_against_exhaustive_search(
    iou: np.ndarray, gate: float, top_k: int | None, fp: float, fn: float
) -> None:
    allowed = allowed_pairs(iou, gate, top_k)
    np.testing.assert_array_equal(candidates(iou, gate, top_k), allowed)
    pairs = assign(iou, allowed, fp, fn)
    assert all(allowed[p, g] for p, g in pairs)
    assert len({p for p, _ in pairs}) == len({g for _, g in pairs}) == len(pairs)
    assert objective(iou, pairs, fp, fn) == pytest.approx(
        brute_force(iou, allowed, fp, fn), abs=1e-9
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(objects(), max_size=7), st.lists(objects(), max_size=7), gates, top_ks, costs, costs
)
def test_match_is_optimal_on_objects(
    preds: list[DetObject],
    gts: list[DetObject],
    gate: float,
    top_k: int | None,
    fp: float,
    fn: float,
) -> None:
    res = match(preds, gts, gate=gate, top_k=top_k, fp_cost=fp, fn_cost=fn, resolution=64)
    iou = iou_matrix(preds, gts, resolution=64)
    allowed = allowed_pairs(iou, gate, top_k)
    assert all(allowed[p, g] for p, g in res.pairs)
    assert res.cost == pytest.approx(brute_force(iou, allowed, fp, fn), abs=1e-9)
    assert res.cost == pytest.approx(objective(iou, res.pairs, fp, fn), abs=1e-12)
    assert res.ious == [iou[p, g] for p, g in res.pairs]
    assert res.pairs == sorted(res.pairs)
    assert sorted(res.fp + [p for p, _ in res.pairs]) == list(range(len(preds)))
    assert sorted(res.fn + [g for _, g in res.pairs]) == list(range(len(gts)))
    assert res.fp == sorted(res.fp)
    assert res.fn == sorted(res.fn)


# ------------------------------------------------------------------ the rules
def test_empty_cases() -> None:
    a, b = box(0, 0, 10, 10), box(5, 5, 20, 20)
    assert match([], [a, b], fn_cost=0.5) == MatchResult([], [], [], [0, 1], 1.0)
    assert match([a, b], [], fp_cost=2.0) == MatchResult([], [], [0, 1], [], 4.0)
    assert match([], []) == MatchResult([], [], [], [], 0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(objects(), max_size=7), costs, costs)
def test_one_empty_side_leaves_the_other_all_unmatched(
    objs: list[DetObject], fp: float, fn: float
) -> None:
    everything = list(range(len(objs)))
    assert match([], objs, fp_cost=fp, fn_cost=fn) == MatchResult(
        [], [], [], everything, math.fsum([fn] * len(objs))
    )
    assert match(objs, [], fp_cost=fp, fn_cost=fn) == MatchResult(
        [], [], everything, [], math.fsum([fp] * len(objs))
    )


def test_objective_on_a_worked_example() -> None:
    gts = [box(0, 0, 100, 100), box(500, 500, 600, 600), box(800, 0, 900, 50)]
    preds = [box(500, 500, 600, 650), box(0, 0, 100, 80), box(300, 300, 310, 310)]
    res = match(preds, gts, fp_cost=1.0, fn_cost=1.0)
    assert res.pairs == [(0, 1), (1, 0)]
    assert res.ious == [10000 / 15000, 8000 / 10000]
    assert res.fp == [2]
    assert res.fn == [2]
    assert res.cost == pytest.approx((1 - 2 / 3) + (1 - 0.8) + 1.0 + 1.0, abs=1e-15)


def test_gate_forbids_pairs_below_it() -> None:
    pred, gt = box(0, 0, 100, 100), box(0, 0, 100, 40)  # IoU 0.4
    assert match([pred], [gt], gate=0.4).pairs == [(0, 0)]
    assert match([pred], [gt], gate=0.41, fp_cost=100, fn_cost=100).pairs == []


def test_top_k_limits_each_pred_to_its_best_gts() -> None:
    # pred 0 prefers GT 0 (IoU 0.9) over GT 1 (0.5); pred 1 only overlaps GT 0 (0.8).
    gts = [box(0, 0, 100, 100), box(0, 0, 100, 50)]
    preds = [box(0, 0, 100, 90), box(0, 20, 100, 100)]
    assert match(preds, gts).pairs == [(0, 1), (1, 0)]  # 0.5 + 0.8 beats 0.9 + nothing
    res = match(preds, gts, top_k=1)
    assert res.pairs == [(0, 0)]
    assert res.fp == [1]
    assert res.fn == [1]


def test_desc_plays_no_part() -> None:
    gts = [box(0, 0, 100, 100, desc="cat"), box(200, 0, 300, 100, desc="dog")]
    preds = [box(200, 0, 300, 90, desc="cat"), box(0, 0, 100, 90, desc="dog")]
    assert match(preds, gts).pairs == [(0, 1), (1, 0)]


def test_identical_objects_lower_index_is_matched_first() -> None:
    a, x = box(0, 0, 100, 100), box(600, 600, 700, 700)
    res = match([a, x, a, a], [a, a])
    assert res.pairs == [(0, 0), (2, 1)]
    assert res.fp == [1, 3]
    res = match([x, a], [x, a, a, x])
    assert res.pairs == [(0, 0), (1, 1)]
    assert res.fn == [2, 3]


def test_tie_between_distinct_preds_does_not_depend_on_their_order() -> None:
    gt = box(0, 0, 100, 100)
    top, bottom = box(0, 0, 100, 50), box(0, 50, 100, 100)  # both IoU 0.5
    first = match([top, bottom], [gt])
    second = match([bottom, top], [gt])
    assert [top, bottom][first.pairs[0][0]] == [bottom, top][second.pairs[0][0]]


# ------------------------------------------------------------------ symmetry, determinism
def signature(res: MatchResult, preds: list[DetObject], gts: list[DetObject]) -> tuple:
    """The result in terms of geometries, blind to indices."""

    def key(o: DetObject) -> tuple:
        return (o.kind, o.coords)

    return (
        sorted(
            (key(preds[p]), key(gts[g]), v) for (p, g), v in zip(res.pairs, res.ious, strict=True)
        ),
        sorted(key(preds[p]) for p in res.fp),
        sorted(key(gts[g]) for g in res.fn),
        res.cost,
    )


@settings(max_examples=100, deadline=None)
@given(st.data(), st.lists(objects(), max_size=7), st.lists(objects(), max_size=7), gates, top_ks)
def test_permuting_inputs_permutes_the_result(
    data: st.DataObject,
    preds: list[DetObject],
    gts: list[DetObject],
    gate: float,
    top_k: int | None,
) -> None:
    pp = data.draw(st.permutations(range(len(preds))))
    gp = data.draw(st.permutations(range(len(gts))))
    preds2, gts2 = [preds[i] for i in pp], [gts[j] for j in gp]
    kw = {"gate": gate, "top_k": top_k, "resolution": 64}
    res, res2 = match(preds, gts, **kw), match(preds2, gts2, **kw)
    assert signature(res2, preds2, gts2) == signature(res, preds, gts)
    if len(set(preds)) == len(preds) and len(set(gts)) == len(gts):
        # With no identical objects the indices map exactly.
        assert sorted((pp[p], gp[g]) for p, g in res2.pairs) == res.pairs
        assert sorted(pp[p] for p in res2.fp) == res.fp
        assert sorted(gp[g] for g in res2.fn) == res.fn


@settings(max_examples=30, deadline=None)
@given(st.lists(objects(), max_size=7), st.lists(objects(), max_size=7))
def test_same_input_same_output(preds: list[DetObject], gts: list[DetObject]) -> None:
    assert match(preds, gts, resolution=64) == match(list(preds), list(gts), resolution=64)


SCRIPT = """
import json, random
from coordexp_parse import DetObject
from coordexp_match import match
rng = random.Random(7)
def obj():
    x, y = rng.randrange(0, 900, 25), rng.randrange(0, 900, 25)
    if rng.random() < 0.3:
        return DetObject("o", "poly", (x, y, x + 90, y, x, y + 90))
    return DetObject("o", "bbox_2d", (x, y, x + rng.randrange(25, 100, 25), y + 50))
preds = [obj() for _ in range(40)] + [DetObject("o", "bbox_2d", (0, 0, 50, 50))] * 3
gts = [obj() for _ in range(40)] + [DetObject("o", "bbox_2d", (0, 0, 50, 50))] * 2
r = match(preds, gts, gate=0.1)
print(json.dumps([r.pairs, r.ious, r.fp, r.fn, r.cost]))
"""


def test_identical_across_processes_and_hash_seeds() -> None:
    outputs = set()
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(run.stdout)
    assert len(outputs) == 1
    pairs = json.loads(outputs.pop())[0]
    assert len(pairs) > 5


# ------------------------------------------------------------------ option errors
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"gate": 1.5}, r"gate \(rollout_matching\.maskiou_gate\) must be a number in \[0, 1\]"),
        ({"gate": -0.1}, r"rollout_matching\.maskiou_gate"),
        ({"gate": float("nan")}, r"rollout_matching\.maskiou_gate.*got nan"),
        ({"gate": "0.3"}, r"rollout_matching\.maskiou_gate.*got '0.3'"),
        ({"top_k": 0}, r"top_k \(rollout_matching\.candidate_top_k\) must be None .* got 0"),
        ({"top_k": 2.0}, r"rollout_matching\.candidate_top_k.*got 2\.0"),
        ({"top_k": True}, r"rollout_matching\.candidate_top_k.*got True"),
        (
            {"fp_cost": -1},
            r"fp_cost \(rollout_matching\.fp_cost\) must be a number in \[0, 1e\+06\]",
        ),
        ({"fn_cost": float("inf")}, r"fn_cost \(rollout_matching\.fn_cost\).*got inf"),
        ({"resolution": 0}, r"rollout_matching\.maskiou_resolution"),
    ],
)
def test_bad_options_name_their_config_key(kwargs: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        match([box(0, 0, 1, 1)], [box(0, 0, 1, 1)], **kwargs)


def test_numpy_option_values_are_accepted() -> None:
    a = box(0, 0, 10, 10)
    res = match([a], [a], gate=np.float32(0.5), top_k=np.int64(1), fp_cost=np.float64(1.0))
    assert res.pairs == [(0, 0)]
