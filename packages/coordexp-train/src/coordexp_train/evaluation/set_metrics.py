"""Set-level detection figures and parse health, per dataset.

Set-level precision / recall / F1 use ``coordexp_match.match`` per image with
``gate = 0.5`` (a pair needs IoU >= 0.5) and the matcher's defaults otherwise
(``fp_cost = fn_cost = 1``, every GT a candidate). IoU is computed in norm1000 bins
(exact for two boxes, mask IoU when a polygon is involved), and ``desc`` plays no part in
the matching: these figures measure localisation. ``desc_accuracy`` then says how many
matched pairs also agree on ``desc`` exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordexp_match import match
from coordexp_parse import DROP_REASONS
from coordexp_train.evaluation.coco_metrics import predictions_by_image
from coordexp_train.evaluation.ground_truth import GroundTruthImage
from coordexp_train.evaluation.predictions import ImagePrediction

SET_IOU_GATE = 0.5


@dataclass(frozen=True, slots=True)
class SetMetrics:
    """Matched counts summed over images and the ratios they give.

    Attributes:
        tp, fp, fn: matched predictions, unmatched predictions, unmatched GT objects.
        precision: tp / (tp + fp), 0.0 when there is no prediction.
        recall: tp / (tp + fn), 0.0 when there is no GT object.
        f1: harmonic mean of precision and recall, 0.0 when both are 0.
        desc_accuracy: matched pairs with equal ``desc`` / tp, None when tp = 0.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    desc_accuracy: float | None


@dataclass(frozen=True, slots=True)
class ParseHealth:
    """How well the answers parsed.

    Attributes:
        images: images evaluated (ground-truth images).
        missing: ground-truth images with no prediction line (counted as empty answers).
        valid_objects: valid objects over all answers.
        dropped_objects: dropped entries over all answers.
        valid_object_rate: valid / (valid + dropped), None when there is no entry.
        dropped_by_reason: reason → count, every reason of ``DROP_REASONS`` listed.
        truncated: answers that ended inside the top-level object.
        truncation_rate: truncated / images with a prediction, None when there is none.
        endings: ending → count of answers.
    """

    images: int
    missing: int
    valid_objects: int
    dropped_objects: int
    valid_object_rate: float | None
    dropped_by_reason: dict[str, int]
    truncated: int
    truncation_rate: float | None
    endings: dict[str, int]


def set_metrics(
    ground_truth: Sequence[GroundTruthImage], predictions: Sequence[ImagePrediction]
) -> SetMetrics:
    """Precision / recall / F1 at IoU >= 0.5 by Hungarian matching (see the module doc).

    Deterministic (``match`` is). Raises ValueError when a prediction id names no
    ground-truth image.
    """
    tp = fp = fn = same_desc = 0
    for g, p in zip(ground_truth, predictions_by_image(ground_truth, predictions), strict=True):
        preds = p.objects if p is not None else ()
        result = match(preds, g.objects, gate=SET_IOU_GATE)
        tp += len(result.pairs)
        fp += len(result.fp)
        fn += len(result.fn)
        same_desc += sum(preds[i].desc == g.objects[j].desc for i, j in result.pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return SetMetrics(tp, fp, fn, precision, recall, f1, same_desc / tp if tp else None)


def parse_health(
    ground_truth: Sequence[GroundTruthImage], predictions: Sequence[ImagePrediction]
) -> ParseHealth:
    """Parse-health figures over the ground-truth images (see ``ParseHealth``).

    Raises ValueError when a prediction id names no ground-truth image.
    """
    aligned = [p for p in predictions_by_image(ground_truth, predictions) if p is not None]
    valid = sum(len(p.objects) for p in aligned)
    by_reason = {r: sum(p.dropped.get(r, 0) for p in aligned) for r in DROP_REASONS}
    dropped = sum(by_reason.values())
    endings: dict[str, int] = {}
    for p in aligned:
        endings[p.ending] = endings.get(p.ending, 0) + 1
    truncated = sum(p.truncated for p in aligned)
    return ParseHealth(
        images=len(ground_truth),
        missing=len(ground_truth) - len(aligned),
        valid_objects=valid,
        dropped_objects=dropped,
        valid_object_rate=valid / (valid + dropped) if valid + dropped else None,
        dropped_by_reason=by_reason,
        truncated=truncated,
        truncation_rate=truncated / len(aligned) if aligned else None,
        endings=dict(sorted(endings.items())),
    )
