"""The evaluation report: every figure for one predictions set, as a JSON-ready dict."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from coordexp_train.evaluation.coco_metrics import coco_metrics
from coordexp_train.evaluation.ground_truth import GroundTruthImage
from coordexp_train.evaluation.predictions import ImagePrediction
from coordexp_train.evaluation.set_metrics import SET_IOU_GATE, parse_health, set_metrics

CONVENTIONS = {
    "coco_space": "pixels (norm1000 bins of GT and predictions through bin_to_pixel)",
    "coco_score": "1 - rank / n for the object at 0-based rank among an answer's n objects",
    "categories": "sorted distinct GT desc; a prediction maps by exact desc equality",
    "polygons": "evaluated by their bounding box",
    "set_matching": f"coordexp_match.match per image, pairs need IoU >= {SET_IOU_GATE}",
}


def evaluation_report(
    ground_truth: Sequence[GroundTruthImage], predictions: Sequence[ImagePrediction]
) -> dict[str, Any]:
    """COCO, set-level and parse-health figures plus the conventions they follow.

    Keys: ``coco`` (``mAP``, ``mAP50``, ``mAP75``, ``AR100`` and the rest of the COCOeval
    summary, ``num_categories``, ``unmatched_predictions``), ``set`` (``tp``, ``fp``,
    ``fn``, ``precision``, ``recall``, ``f1``, ``desc_accuracy``), ``parse_health`` (see
    ``ParseHealth``) and ``conventions``. Deterministic.

    Raises:
        ValueError: no GT object, or a prediction id names no ground-truth image.
    """
    coco = coco_metrics(ground_truth, predictions)
    return {
        "coco": {
            **coco.stats,
            "num_categories": coco.num_categories,
            "unmatched_predictions": coco.unmatched_predictions,
        },
        "set": dataclasses.asdict(set_metrics(ground_truth, predictions)),
        "parse_health": dataclasses.asdict(parse_health(ground_truth, predictions)),
        "conventions": CONVENTIONS,
    }
