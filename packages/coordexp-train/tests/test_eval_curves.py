"""Training curves: panels per key, points where the values put them, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordexp_train.evaluation.curves import (
    LINE_COLOURS,
    PANEL_SIZE,
    plot_box,
    plot_curves,
    read_metrics_file,
    series,
)

RECORDS = [
    {"step": 0, "epoch": 0.0, "loss": 2.0},
    {"step": 5, "epoch": 0.5, "loss": "nan", "eval_mAP50": 0.1},
    {"step": 10, "epoch": 1.0, "loss": 1.0, "eval_mAP50": 0.6},
]


def test_series_skips_missing_and_non_finite_values() -> None:
    assert series(RECORDS, "loss") == [(0.0, 2.0), (10.0, 1.0)]
    assert series(RECORDS, "eval_mAP50") == [(5.0, 0.1), (10.0, 0.6)]


def test_each_key_gets_a_panel_with_points_at_the_box_corners() -> None:
    image = plot_curves(RECORDS, ["loss", "eval_mAP50"])
    assert image.size == (PANEL_SIZE[0], 2 * PANEL_SIZE[1])
    # loss falls: (0, 2.0) top-left, (10, 1.0) bottom-right, the line between them.
    x0, y0, x1, y1 = plot_box(0)
    assert image.getpixel((x0 + 1, y0 + 1)) == LINE_COLOURS[0]
    assert image.getpixel((x1 - 1, y1 - 1)) == LINE_COLOURS[0]
    assert image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2)) == LINE_COLOURS[0]
    assert image.getpixel((x1 - 3, y0 + 3)) == (255, 255, 255)
    # eval_mAP50 rises on the shared step axis: (5, 0.1) bottom-middle, (10, 0.6) top-right.
    x0, y0, x1, y1 = plot_box(1)
    assert y0 > PANEL_SIZE[1]
    assert image.getpixel(((x0 + x1) // 2, y1 - 1)) == LINE_COLOURS[1]
    assert image.getpixel((x1 - 1, y0 + 1)) == LINE_COLOURS[1]
    assert image.getpixel((x0 + 3, y1 - 3)) == (255, 255, 255)  # nothing before step 5


def test_unknown_key_lists_the_plottable_ones() -> None:
    with pytest.raises(
        ValueError, match=r"no finite values of 'mAP'.*\['epoch', 'eval_mAP50', 'loss'\]"
    ):
        plot_curves(RECORDS, ["mAP"])
    with pytest.raises(ValueError, match="at least one key"):
        plot_curves(RECORDS, [])


def test_read_metrics_file_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + '\n\n{"loss": 1}\n')
    with pytest.raises(
        ValueError, match=r"metrics\.jsonl:5: expected a JSON object with a numeric step"
    ):
        read_metrics_file(path)
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    assert read_metrics_file(path) == RECORDS
