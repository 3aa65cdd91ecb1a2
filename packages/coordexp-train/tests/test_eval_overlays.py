"""Overlay pictures: sizes, box colours under the drawn edges, the grid and the files."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from coordexp_parse import DetObject, render_objects
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.evaluation.ground_truth import load_ground_truth
from coordexp_train.evaluation.overlays import (
    GRID_GAP,
    GT_COLOUR,
    LEGEND_HEIGHT,
    PRED_COLOUR,
    draw_overlay,
    overlay_grid,
    write_overlays,
)
from coordexp_train.evaluation.predictions import prediction_from_text

GREY = (128, 128, 128)


def test_overlay_size_and_edge_colours() -> None:
    # 1000 px wide: bin k is pixel k (x); 500 px high: bin k is pixel k * 499 / 999.
    image = Image.new("RGB", (1000, 500), GREY)
    gt = [DetObject("cat", "bbox_2d", (100, 100, 300, 300))]
    pred = [DetObject("dog", "bbox_2d", (600, 600, 900, 900))]
    out = draw_overlay(image, gt, pred, scale=2)
    assert out.size == (2000, 1000 + LEGEND_HEIGHT)
    gt_bottom_y = 300 * 499 * 2 // 999  # outlines are drawn inside the box corners
    assert out.getpixel((400, gt_bottom_y)) == GT_COLOUR  # middle of the GT bottom edge
    assert out.getpixel((2 * 900 - 1, 700)) == PRED_COLOUR  # on the prediction's right edge
    assert out.getpixel((1000, 700)) == GREY  # inside the prediction: untouched
    assert out.getpixel((400, 400)) == GREY  # inside the GT box: untouched


def test_polygon_outline_carries_its_colour() -> None:
    image = Image.new("RGB", (1000, 1000), GREY)
    tri = DetObject("tri", "poly", (100, 800, 900, 800, 500, 100))
    out = draw_overlay(image, [], [tri])
    assert out.getpixel((500, 800)) == PRED_COLOUR  # on the base
    assert out.getpixel((500, 600)) == GREY


def test_legend_shows_both_colours() -> None:
    out = draw_overlay(Image.new("RGB", (200, 100), GREY), [], [])
    legend = out.crop((0, 100, 200, 100 + LEGEND_HEIGHT))
    colours = {c for _, c in legend.getcolors(maxcolors=10_000) or []}
    assert {GT_COLOUR, PRED_COLOUR} <= colours


def test_scale_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="scale must be an int >= 1, got 0"):
        draw_overlay(Image.new("RGB", (4, 4)), [], [], scale=0)


def test_grid_places_tiles_in_rows() -> None:
    tiles = [Image.new("RGB", (30, 20), (i * 40, 0, 0)) for i in range(5)]
    grid = overlay_grid(tiles, columns=2)
    assert grid.size == (2 * 30 + GRID_GAP, 3 * 20 + 2 * GRID_GAP)
    assert grid.getpixel((30 + GRID_GAP + 1, 20 + GRID_GAP + 1)) == (3 * 40, 0, 0)
    assert grid.getpixel((30 + GRID_GAP + 1, 2 * (20 + GRID_GAP) + 1)) == (255, 255, 255)
    with pytest.raises(ValueError, match="need at least one tile"):
        overlay_grid([], columns=2)


def test_write_overlays_writes_sample_and_grid(tmp_path: Path) -> None:
    spec = SceneSpec(width=64, height=48)
    ds = write_synthetic_dataset(tmp_path / "ds", spec, num_train=1, num_val=6, seed=2)
    gt = load_ground_truth(ds.val_jsonl)
    preds = [prediction_from_text(g.image_id, render_objects(g.objects)) for g in gt[:4]]
    paths = write_overlays(gt, preds, tmp_path / "out", sample=3, seed=1, scale=2, columns=2)
    assert len(paths) == 4
    assert paths[-1].name == "grid.png"
    for p in paths[:-1]:
        with Image.open(p) as im:
            assert im.format == "PNG"
            assert im.size == (128, 96 + LEGEND_HEIGHT)
    with Image.open(paths[-1]) as grid:
        assert grid.size == (2 * 128 + GRID_GAP, 2 * (96 + LEGEND_HEIGHT) + GRID_GAP)
    again = write_overlays(gt, preds, tmp_path / "again", sample=3, seed=1, scale=2, columns=2)
    assert [p.name for p in again] == [p.name for p in paths]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(again, paths, strict=True))
