"""COCO bbox metrics from parsed predictions, computed by pycocotools' ``COCOeval``.

Conventions (also in docs/evaluation.md):

- Space: pixels. Ground truth and predictions are both norm1000 ``DetObject`` and go
  through the same ``coordexp_parse.bin_to_pixel`` map, so a prediction equal to the
  ground truth in bins has IoU 1 exactly. A box ``(x1, y1, x2, y2)`` becomes COCO
  ``[x1, y1, x2 - x1, y2 - y1]`` with area ``w * h``; a polygon is evaluated by its
  bounding box (bbox metrics only).
- Categories: the sorted distinct ground-truth ``desc`` strings, ids 1..K. A predicted
  ``desc`` maps to a category only by exact (case- and space-sensitive) string equality;
  predictions whose ``desc`` matches no category are left out of COCO evaluation and
  counted in ``unmatched_predictions``.
- Scores: answers carry no confidence, so the object at rank r (0-based) among an
  image's n predictions gets score ``1 - r / n``: the model's emission order is its
  confidence order. AP then rewards putting correct objects first, and across images
  the first objects of every answer rank above the later ones. (A constant score would
  leave the cross-image ranking to image order, an arbitrary choice.)
- Images: every ground-truth image is evaluated; one without a prediction line counts
  as an empty answer. A prediction whose id is not a ground-truth image is an error.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from coordexp_parse import DetObject, bin_to_pixel
from coordexp_train.evaluation.ground_truth import GroundTruthImage
from coordexp_train.evaluation.predictions import ImagePrediction

#: Names of ``COCOeval.stats`` entries, in order.
STAT_NAMES: tuple[str, ...] = (
    "mAP",
    "mAP50",
    "mAP75",
    "mAP_small",
    "mAP_medium",
    "mAP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


@dataclass(frozen=True, slots=True)
class CocoDicts:
    """COCO-format inputs for pycocotools.

    Attributes:
        gt: the ground-truth dataset dict (``images``, ``categories``, ``annotations``).
        dt: the detection list (``image_id``, ``category_id``, ``bbox``, ``score``).
        unmatched_predictions: predicted objects whose ``desc`` is no category name.
    """

    gt: dict[str, Any]
    dt: list[dict[str, Any]]
    unmatched_predictions: int


@dataclass(frozen=True, slots=True)
class CocoMetrics:
    """The COCOeval bbox summary.

    Attributes:
        stats: ``STAT_NAMES`` → value; None where pycocotools reports -1 (no ground
            truth in that area range).
        num_categories: how many categories were evaluated.
        unmatched_predictions: predicted objects left out because their ``desc`` is no
            category name.
    """

    stats: dict[str, float | None]
    num_categories: int
    unmatched_predictions: int


def pixel_box(obj: DetObject, width: int, height: int) -> list[float]:
    """COCO ``[x, y, w, h]`` in pixels of an object's box (a polygon's bounding box)."""
    xs = obj.coords[0::2]
    ys = obj.coords[1::2]
    x1, x2 = bin_to_pixel(min(xs), width), bin_to_pixel(max(xs), width)
    y1, y2 = bin_to_pixel(min(ys), height), bin_to_pixel(max(ys), height)
    return [x1, y1, x2 - x1, y2 - y1]


def category_names(ground_truth: Sequence[GroundTruthImage]) -> list[str]:
    """The sorted distinct ground-truth descriptions: category ``i + 1`` is entry ``i``."""
    return sorted({o.desc for g in ground_truth for o in g.objects})


def predictions_by_image(
    ground_truth: Sequence[GroundTruthImage], predictions: Sequence[ImagePrediction]
) -> list[ImagePrediction | None]:
    """Align predictions with ground-truth images (None where an image has no line).

    Raises:
        ValueError: a prediction id names no ground-truth image (lists a few such ids).
    """
    by_id = {p.image_id: p for p in predictions}
    unknown = sorted(set(by_id) - {g.image_id for g in ground_truth})
    if unknown:
        raise ValueError(
            f"{len(unknown)} prediction id(s) name no ground-truth image, e.g. {unknown[:3]}; "
            "ids must equal images[0] of the ground-truth records"
        )
    return [by_id.get(g.image_id) for g in ground_truth]


def coco_dicts(
    ground_truth: Sequence[GroundTruthImage], predictions: Sequence[ImagePrediction]
) -> CocoDicts:
    """Build the COCO ground-truth dict and detection list (see the module conventions).

    Image ids are 1-based ground-truth order; annotation ids are 1-based in image order.
    Deterministic: same inputs, same dicts.

    Raises:
        ValueError: a prediction id names no ground-truth image.
    """
    names = category_names(ground_truth)
    cat_id = {n: i + 1 for i, n in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    dt: list[dict[str, Any]] = []
    unmatched = 0
    aligned = predictions_by_image(ground_truth, predictions)
    for img_id, (g, p) in enumerate(zip(ground_truth, aligned, strict=True), 1):
        images.append({"id": img_id, "width": g.width, "height": g.height})
        for o in g.objects:
            box = pixel_box(o, g.width, g.height)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": img_id,
                    "category_id": cat_id[o.desc],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        objects = p.objects if p is not None else ()
        for rank, o in enumerate(objects):
            if o.desc not in cat_id:
                unmatched += 1
                continue
            dt.append(
                {
                    "image_id": img_id,
                    "category_id": cat_id[o.desc],
                    "bbox": pixel_box(o, g.width, g.height),
                    "score": 1.0 - rank / len(objects),
                }
            )
    gt = {
        "images": images,
        "categories": [{"id": i, "name": n} for n, i in cat_id.items()],
        "annotations": annotations,
    }
    return CocoDicts(gt, dt, unmatched)


def _coco(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def run_cocoeval(gt: dict[str, Any], dt: list[dict[str, Any]]) -> list[float]:
    """Run ``COCOeval`` (bbox) on COCO dicts and return its 12 ``stats`` (quietly).

    Detections get ``id``, ``area = w * h`` and ``iscrowd = 0`` (what ``COCO.loadRes``
    adds); an empty list is allowed (every AP and AR is then 0).
    """
    anns = [
        {**d, "id": i, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0}
        for i, d in enumerate(dt, 1)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco(gt)
        coco_dt = _coco(
            {"images": gt["images"], "categories": gt["categories"], "annotations": anns}
        )
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) for s in ev.stats]


def coco_metrics(
    ground_truth: Sequence[GroundTruthImage], predictions: Sequence[ImagePrediction]
) -> CocoMetrics:
    """COCO bbox mAP, mAP@50, mAP@75, AR and the rest of the COCOeval summary.

    Raises:
        ValueError: the ground truth holds no object (COCO AP is undefined), or a
            prediction id names no ground-truth image.
    """
    dicts = coco_dicts(ground_truth, predictions)
    if not dicts.gt["annotations"]:
        raise ValueError("the ground truth holds no object; COCO AP is undefined")
    stats = run_cocoeval(dicts.gt, dicts.dt)
    return CocoMetrics(
        stats={n: (None if s < 0 else s) for n, s in zip(STAT_NAMES, stats, strict=True)},
        num_categories=len(dicts.gt["categories"]),
        unmatched_predictions=dicts.unmatched_predictions,
    )
