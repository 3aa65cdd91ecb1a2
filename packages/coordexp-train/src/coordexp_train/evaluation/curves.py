"""Training curves: values from a metrics JSONL file plotted over steps, one panel each.

The input is the trainer's ``metrics.jsonl`` (one JSON object per log event, with
``step``; see ``coordexp_train.metrics_log``) or any JSONL file of that shape. Each
requested key gets a panel of ``PANEL_SIZE`` pixels, stacked top to bottom: a polyline
through its finite values (records without the key, or with a non-finite or non-number
value, are skipped), a dot per value, the key as the title, and the step and value
ranges written at the axes. Same inputs → same PNG bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

PANEL_SIZE = (480, 170)
#: Plot box inside a panel: left, top, right, bottom margins in pixels.
MARGINS = (64, 20, 16, 24)
LINE_COLOURS: tuple[tuple[int, int, int], ...] = ((31, 119, 180), (214, 39, 40), (44, 160, 44))
AXIS_COLOUR = (0, 0, 0)


def read_metrics_file(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics JSONL file, in order (blank lines ignored).

    Raises:
        ValueError: a line is not a JSON object with a numeric ``step``; names file and line.
        OSError: the file cannot be read.
    """
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e})") from None
            if not isinstance(record, dict) or not _finite(record.get("step")):
                raise ValueError(f"{path}:{line_no}: expected a JSON object with a numeric step")
            out.append(record)
    return out


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def series(records: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    """``(step, value)`` for each record with a finite number under ``key``, in order."""
    return [(float(r["step"]), float(r[key])) for r in records if _finite(r.get(key))]


def plot_box(panel: int) -> tuple[int, int, int, int]:
    """The plot area ``(x0, y0, x1, y1)`` of panel ``panel`` (0-based) in the image."""
    left, top, right, bottom = MARGINS
    y = panel * PANEL_SIZE[1]
    return left, y + top, PANEL_SIZE[0] - right, y + PANEL_SIZE[1] - bottom


def _span(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if lo == hi:
        pad = abs(lo) * 0.05 or 1.0
        return lo - pad, hi + pad
    return lo, hi


def plot_curves(records: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> Image.Image:
    """Plot each of ``keys`` over ``step`` (see the module docstring); RGB image.

    Every panel shares one step axis: the smallest and largest step over all keys map
    to the plot box's left and right edges; a key's largest and smallest value map to
    its top and bottom edges.

    Raises:
        ValueError: no key given, or a key has no finite value in ``records`` (the
            message lists the keys that do).
    """
    if not keys:
        raise ValueError("give at least one key to plot")
    panels = []
    for key in keys:
        points = series(records, key)
        if not points:
            known = sorted({k for r in records for k, v in r.items() if _finite(v)} - {"step"})
            raise ValueError(f"no finite values of {key!r} to plot; plottable keys: {known}")
        panels.append((key, points))
    image = Image.new("RGB", (PANEL_SIZE[0], PANEL_SIZE[1] * len(panels)), "white")
    draw = ImageDraw.Draw(image)
    steps = _span([p[0] for _, points in panels for p in points])
    for i, (key, points) in enumerate(panels):
        _panel(draw, i, key, points, steps)
    return image


def _panel(
    draw: ImageDraw.ImageDraw,
    i: int,
    key: str,
    points: list[tuple[float, float]],
    steps: tuple[float, float],
) -> None:
    font = ImageFont.load_default()
    x0, y0, x1, y1 = plot_box(i)
    (slo, shi), (vlo, vhi) = steps, _span([p[1] for p in points])
    xy = [
        (x0 + (s - slo) / (shi - slo) * (x1 - x0), y1 - (v - vlo) / (vhi - vlo) * (y1 - y0))
        for s, v in points
    ]
    draw.line([(x0, y0), (x0, y1), (x1, y1)], fill=AXIS_COLOUR, width=1)
    labels = [
        ((x0, y0 - 16), key),
        ((4, y0 - 4), f"{vhi:.4g}"),
        ((4, y1 - 8), f"{vlo:.4g}"),
        ((x0, y1 + 4), f"step {slo:g}"),
        ((x1 - draw.textlength(f"{shi:g}", font=font), y1 + 4), f"{shi:g}"),
    ]
    for at, text in labels:
        draw.text(at, text, fill=AXIS_COLOUR, font=font)
    colour = LINE_COLOURS[i % len(LINE_COLOURS)]
    if len(xy) > 1:
        draw.line(xy, fill=colour, width=2)
    for x, y in xy:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
