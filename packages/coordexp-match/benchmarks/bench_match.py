"""Benchmark: coordexp_match.match against a per-pair Python IoU loop + the same solver.

Run from the repository root:

    uv run python packages/coordexp-match/benchmarks/bench_match.py

``--repeat {match,loop} N`` instead runs one side on the bbox 60 x 60 scene N times,
untimed, for an instruction counter such as valgrind's cachegrind (the difference between
N = 1001 and N = 1 over 1000 is the cost of one call, independent of machine load).

Scenes are seeded: ground truth scattered over the image, predictions = most GTs
jittered plus random false positives (gate 0.3, fp/fn cost 1). The baseline is the
straightforward formulation: IoU filled by a Python loop over pairs (bbox), or by
rasterising both polygons for every pair (poly), then one plain (n + m) × (n + m)
augmented matrix for ``linear_sum_assignment``. ``match`` solves the equivalent n × m
gain matrix instead (see ``coordexp_match.assignment.assign``). The two must reach the
same objective; the script checks it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import math
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from coordexp_match import match
from coordexp_match.raster import rasterise
from coordexp_parse import DetObject

GATE, RES = 0.3, 256


def clamp(v: float) -> int:
    return int(min(999, max(0, round(v))))


def random_boxes(n: int, rng: np.random.Generator) -> list[DetObject]:
    boxes = []
    for _ in range(n):
        w, h = rng.uniform(20, 250, 2)
        x, y = rng.uniform(0, 999 - w), rng.uniform(0, 999 - h)
        boxes.append(DetObject("o", "bbox_2d", (clamp(x), clamp(y), clamp(x + w), clamp(y + h))))
    return boxes


def box_scene(n: int, rng: np.random.Generator) -> tuple[list[DetObject], list[DetObject]]:
    gts = random_boxes(n, rng)
    preds = []
    for g in gts[: int(0.8 * n)]:
        x1, y1, x2, y2 = (c + rng.normal(0, 8) for c in g.coords)
        jittered = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
        preds.append(DetObject("o", "bbox_2d", tuple(clamp(c) for c in jittered)))
    return preds + random_boxes(n - len(preds), rng), gts


def star(cx: float, cy: float, size: float, k: int, rng: np.random.Generator) -> DetObject:
    angles = np.sort(rng.uniform(0, 2 * math.pi, k))
    radii = size * rng.uniform(0.5, 1.0, k)
    xy = [
        (clamp(cx + r * math.cos(a)), clamp(cy + r * math.sin(a)))
        for a, r in zip(angles, radii, strict=True)
    ]
    return DetObject("o", "poly", tuple(c for p in xy for c in p))


def poly_scene(
    n: int, rng: np.random.Generator, k: int = 20
) -> tuple[list[DetObject], list[DetObject]]:
    centres = rng.uniform(80, 920, (n, 2))
    sizes = rng.uniform(30, 120, n)
    gts = [star(cx, cy, s, k, rng) for (cx, cy), s in zip(centres, sizes, strict=True)]
    preds = [
        star(cx + rng.normal(0, 6), cy + rng.normal(0, 6), s, k, rng)
        for (cx, cy), s in zip(centres[: int(0.8 * n)], sizes, strict=False)
    ]
    preds += [
        star(*rng.uniform(80, 920, 2), rng.uniform(30, 120), k, rng) for _ in range(n - len(preds))
    ]
    return preds, gts


# ---------------------------------------------------------------- the baseline
def box_iou_pair(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0) * max(ih, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else float(a == b)


def poly_iou_pair(a: DetObject, b: DetObject) -> float:
    ma = rasterise([np.asarray(a.coords, float).reshape(-1, 2)], RES)[0]
    mb = rasterise([np.asarray(b.coords, float).reshape(-1, 2)], RES)[0]
    union = np.logical_or(ma, mb).sum()
    return float(np.logical_and(ma, mb).sum() / union) if union else float(a == b)


def baseline(preds: list[DetObject], gts: list[DetObject]) -> float:
    """IoU pair by pair in Python, then one plain augmented matrix for the solver."""
    n, m = len(preds), len(gts)
    iou = np.zeros((n, m))
    for i, p in enumerate(preds):
        for j, g in enumerate(gts):
            if p.kind == g.kind == "bbox_2d":
                iou[i, j] = box_iou_pair(p.coords, g.coords)
            else:
                iou[i, j] = poly_iou_pair(p, g)
    big = 1e9
    cost = np.full((n + m, n + m), big)
    cost[:n, :m] = np.where(iou >= GATE, 1.0 - iou, big)
    cost[range(n), range(m, m + n)] = 1.0
    cost[range(n, n + m), range(m)] = 1.0
    cost[n:, m:] = 0.0
    rows, cols = linear_sum_assignment(cost)
    pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if r < n and c < m]
    k = len(pairs)
    return math.fsum([1 - iou[p, g] for p, g in pairs] + [1.0] * (n + m - 2 * k))


# ---------------------------------------------------------------- timing
def timings(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each function, runs interleaved so load hits all alike."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t)
    return [statistics.median(bucket) for bucket in times]


def row(label: str, preds: list[DetObject], gts: list[DetObject], repeats: int) -> float:
    ours_cost = match(preds, gts, gate=GATE, resolution=RES).cost
    base_cost = baseline(preds, gts)
    assert abs(ours_cost - base_cost) < 1e-9, (label, ours_cost, base_cost)
    ours, base = timings(
        [lambda: match(preds, gts, gate=GATE, resolution=RES), lambda: baseline(preds, gts)],
        repeats,
    )
    per_obj = ours / (len(preds) + len(gts)) * 1e6
    print(f"{label:<28}{ours * 1e3:>10.3f}{base * 1e3:>12.2f}{base / ours:>9.1f}x{per_obj:>12.1f}")
    return ours


def main() -> None:
    rng = np.random.default_rng(2026)
    print(
        f"numpy {np.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        f"gate {GATE}, resolution {RES}; median wall time (interleaved runs); "
        "both sides reach the same objective (checked)"
    )
    print(f"{'scene':<28}{'match ms':>10}{'loop ms':>12}{'speedup':>10}{'us/object':>12}")
    small = row("bbox 60 x 60", *box_scene(60, rng), 100)
    row("bbox 200 x 200", *box_scene(200, rng), 10)
    for n in (15, 30, 60):
        row(f"poly(20 vertices) {n} x {n}", *poly_scene(n, rng), 3)
    print(f"goal: bbox 60 x 60 under 2 ms -> {small * 1e3:.3f} ms")


def repeat(side: str, n: int) -> None:
    preds, gts = box_scene(60, np.random.default_rng(2026))
    for _ in range(n):
        if side == "match":
            match(preds, gts, gate=GATE, resolution=RES)
        else:
            baseline(preds, gts)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--repeat"] and len(sys.argv) == 4 and sys.argv[2] in ("match", "loop"):
        repeat(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1:
        sys.exit(f"usage: {sys.argv[0]} [--repeat match|loop N]")
    else:
        main()
