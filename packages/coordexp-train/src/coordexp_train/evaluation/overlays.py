"""Overlay pictures: predictions and ground truth drawn on the image, and a grid of them.

Each overlay is the image scaled by an integer ``scale`` (nearest neighbour, so small
synthetic images stay crisp) with ground-truth outlines in ``GT_COLOUR``, predicted
outlines in ``PRED_COLOUR`` (drawn after, so on top) and each object's ``desc`` written
at its top-left corner; a legend strip of ``LEGEND_HEIGHT`` pixels below the image names
both colours with their object counts. Norm1000 bins map to pixels with
``coordexp_parse.bin_to_pixel`` on the image's own size. Same inputs → same PNG bytes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from coordexp_parse import DetObject, bin_to_pixel
from coordexp_train.evaluation.coco_metrics import predictions_by_image
from coordexp_train.evaluation.ground_truth import GroundTruthImage
from coordexp_train.evaluation.predictions import ImagePrediction

RGB = tuple[int, int, int]
GT_COLOUR: RGB = (0, 255, 255)
PRED_COLOUR: RGB = (255, 0, 200)
LEGEND_HEIGHT = 18
LEGEND_BACKGROUND: RGB = (255, 255, 255)
GRID_GAP = 4


def _outline(
    draw: ImageDraw.ImageDraw, obj: DetObject, size: tuple[int, int], scale: int, colour: RGB
) -> None:
    w, h = size
    pts = [(bin_to_pixel(x, w) * scale, bin_to_pixel(y, h) * scale) for x, y in obj.points]
    if obj.kind == "bbox_2d":
        draw.rectangle([pts[0], pts[1]], outline=colour, width=max(1, scale))
    else:
        draw.polygon(pts, outline=colour, width=max(1, scale))
    x, y = min(p[0] for p in pts), min(p[1] for p in pts)
    draw.text((x + scale + 1, y + scale + 1), obj.desc, fill=colour, font=ImageFont.load_default())


def draw_overlay(
    image: Image.Image,
    gt: Sequence[DetObject],
    predicted: Sequence[DetObject],
    *,
    scale: int = 1,
) -> Image.Image:
    """Draw ``gt`` and ``predicted`` on a copy of ``image`` with a legend strip below.

    Returns an RGB image of ``(W * scale, H * scale + LEGEND_HEIGHT)`` pixels.

    Raises:
        ValueError: ``scale`` < 1.
    """
    if scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    size = image.size
    canvas = Image.new("RGB", (size[0] * scale, size[1] * scale + LEGEND_HEIGHT), LEGEND_BACKGROUND)
    canvas.paste(
        image.convert("RGB").resize((size[0] * scale, size[1] * scale), Image.Resampling.NEAREST)
    )
    draw = ImageDraw.Draw(canvas)
    for colour, objects in ((GT_COLOUR, gt), (PRED_COLOUR, predicted)):
        for o in objects:
            _outline(draw, o, size, scale, colour)
    y = size[1] * scale + 3
    font = ImageFont.load_default()
    x = 3
    for colour, label in (
        (GT_COLOUR, f"GT ({len(gt)})"),
        (PRED_COLOUR, f"pred ({len(predicted)})"),
    ):
        draw.rectangle([x, y, x + 11, y + 11], fill=colour)
        draw.text((x + 15, y), label, fill=(0, 0, 0), font=font)
        x += 15 + int(draw.textlength(label, font=font)) + 10
    return canvas


def overlay_grid(tiles: Sequence[Image.Image], columns: int) -> Image.Image:
    """Tile images left to right, top to bottom, ``GRID_GAP`` white pixels apart.

    Every cell is as large as the largest tile. Raises ValueError when ``tiles`` is empty
    or ``columns`` < 1.
    """
    if not tiles or columns < 1:
        raise ValueError(f"need at least one tile and columns >= 1, got {len(tiles)}, {columns}")
    cw = max(t.width for t in tiles)
    ch = max(t.height for t in tiles)
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    grid = Image.new(
        "RGB", (cols * cw + (cols - 1) * GRID_GAP, rows * ch + (rows - 1) * GRID_GAP), "white"
    )
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        grid.paste(t, (c * (cw + GRID_GAP), r * (ch + GRID_GAP)))
    return grid


def write_overlays(
    ground_truth: Sequence[GroundTruthImage],
    predictions: Sequence[ImagePrediction],
    out_dir: str | Path,
    *,
    sample: int = 16,
    seed: int = 0,
    scale: int = 2,
    columns: int = 4,
) -> list[Path]:
    """Write overlays for a sample of images and their grid; return the written paths.

    The sample is ``sample`` images drawn with ``random.Random(seed)`` (all images when
    there are fewer), kept in dataset order; each becomes ``overlay_<index>.png`` (index
    in the ground truth, 5 digits) and all of them ``grid.png`` (last in the list).
    Deterministic for the same inputs and seed.

    Raises:
        ValueError: a prediction id names no ground-truth image, or no ground truth.
        OSError: an image cannot be read (the path comes from the ground-truth record).
    """
    if not ground_truth:
        raise ValueError("no ground-truth image to draw")
    aligned = predictions_by_image(ground_truth, predictions)
    chosen = sorted(
        random.Random(seed).sample(range(len(ground_truth)), min(sample, len(ground_truth)))
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, tiles = [], []
    for i in chosen:
        g, p = ground_truth[i], aligned[i]
        with Image.open(g.image_path) as im:
            tile = draw_overlay(im, g.objects, p.objects if p is not None else (), scale=scale)
        path = out / f"overlay_{i:05d}.png"
        tile.save(path)
        paths.append(path)
        tiles.append(tile)
    grid_path = out / "grid.png"
    overlay_grid(tiles, columns).save(grid_path)
    return [*paths, grid_path]
