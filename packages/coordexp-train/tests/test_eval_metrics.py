"""Evaluation metrics: COCO figures equal pycocotools', set-level and parse-health figures."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from coordexp_parse import DetObject, render_objects
from coordexp_train.data.samples import SampleError
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.evaluation.coco_metrics import coco_dicts, coco_metrics, run_cocoeval
from coordexp_train.evaluation.ground_truth import GroundTruthImage, load_ground_truth
from coordexp_train.evaluation.predictions import ImagePrediction, prediction_from_text
from coordexp_train.evaluation.set_metrics import parse_health, set_metrics


def box(desc: str, x1: int, y1: int, x2: int, y2: int) -> DetObject:
    return DetObject(desc, "bbox_2d", (x1, y1, x2, y2))


def gt_image(image_id: str, *objects: DetObject) -> GroundTruthImage:
    # 1000 px sides: bin k maps to pixel k exactly, so IoUs are easy to state.
    return GroundTruthImage(image_id, Path(image_id), 1000, 1000, objects)


def pred(image_id: str, *objects: DetObject) -> ImagePrediction:
    return prediction_from_text(image_id, render_objects(objects))


@pytest.fixture
def synthetic_gt(tmp_path: Path) -> list[GroundTruthImage]:
    spec = SceneSpec(width=96, height=80, max_shapes=4)
    ds = write_synthetic_dataset(tmp_path / "ds", spec, num_train=1, num_val=12, seed=3)
    return load_ground_truth(ds.val_jsonl)


def jittered(gt: list[GroundTruthImage], seed: int) -> list[ImagePrediction]:
    """Predictions near the ground truth: jittered boxes, some missed, some renamed."""
    rng = random.Random(seed)
    out = []
    for g in gt:
        objs = []
        for o in g.objects:
            if rng.random() < 0.15:
                continue
            c = [min(999, max(0, v + rng.randint(-40, 40))) for v in o.coords]
            if o.kind == "bbox_2d":
                c = [min(c[0], c[2]), min(c[1], c[3]), max(c[0], c[2]), max(c[1], c[3])]
            desc = "purple blob" if rng.random() < 0.1 else o.desc
            objs.append(DetObject(desc, o.kind, tuple(c)))
        rng.shuffle(objs)
        out.append(pred(g.image_id, *objs))
    return out


def test_perfect_predictions_score_map_one(synthetic_gt: list[GroundTruthImage]) -> None:
    preds = [pred(g.image_id, *g.objects) for g in synthetic_gt]
    m = coco_metrics(synthetic_gt, preds)
    assert m.stats["mAP"] == pytest.approx(1.0)
    assert m.stats["mAP50"] == pytest.approx(1.0)
    assert m.stats["mAP75"] == pytest.approx(1.0)
    assert m.stats["AR100"] == pytest.approx(1.0)
    assert m.unmatched_predictions == 0


def test_shifted_box_passes_only_thresholds_below_its_iou() -> None:
    # Shift a 100x100 box by 20 px: IoU = 80*100 / (120*100) = 2/3, which passes the
    # thresholds 0.50, 0.55, 0.60, 0.65 of the ten, so mAP = 0.4, mAP@50 = 1, mAP@75 = 0.
    gt = [gt_image("a", box("cat", 100, 100, 200, 200))]
    m = coco_metrics(gt, [pred("a", box("cat", 120, 100, 220, 200))])
    assert m.stats["mAP"] == pytest.approx(0.4)
    assert m.stats["mAP50"] == pytest.approx(1.0)
    assert m.stats["mAP75"] == pytest.approx(0.0)


def test_box_below_iou_half_scores_zero() -> None:
    gt = [gt_image("a", box("cat", 100, 100, 200, 200))]
    m = coco_metrics(gt, [pred("a", box("cat", 160, 100, 260, 200))])  # IoU 40/160
    assert m.stats["mAP50"] == 0.0
    assert m.stats["AR100"] == 0.0


def test_empty_predictions_score_zero(synthetic_gt: list[GroundTruthImage]) -> None:
    for preds in ([], [prediction_from_text(g.image_id, "{}") for g in synthetic_gt]):
        m = coco_metrics(synthetic_gt, preds)
        assert m.stats["mAP"] == 0.0
        assert m.stats["mAP50"] == 0.0
        assert m.stats["AR100"] == 0.0


def test_numbers_equal_direct_pycocotools_calls(synthetic_gt: list[GroundTruthImage]) -> None:
    preds = jittered(synthetic_gt, seed=1)
    dicts = coco_dicts(synthetic_gt, preds)
    assert dicts.dt, "the case must have detections"
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dicts.gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dicts.dt)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    direct = [float(s) for s in ev.stats]
    assert run_cocoeval(dicts.gt, dicts.dt) == direct
    m = coco_metrics(synthetic_gt, preds)
    assert [m.stats[k] for k in ("mAP", "mAP50", "mAP75", "AR100")] == [
        direct[0],
        direct[1],
        direct[2],
        direct[8],
    ]
    assert 0.0 < direct[0] < 1.0


def test_answer_order_is_the_confidence_order() -> None:
    gt = [gt_image("a", box("cat", 100, 100, 200, 200))]
    right, wrong = box("cat", 100, 100, 200, 200), box("cat", 600, 600, 700, 700)
    first = coco_metrics(gt, [pred("a", right, wrong)])
    last = coco_metrics(gt, [pred("a", wrong, right)])
    assert first.stats["mAP50"] == pytest.approx(1.0)
    assert last.stats["mAP50"] == pytest.approx(0.5)


def test_unmatched_desc_is_counted_and_left_out() -> None:
    gt = [gt_image("a", box("cat", 100, 100, 200, 200), box("dog", 300, 300, 400, 400))]
    p = pred("a", box("Cat", 100, 100, 200, 200), box("dog", 300, 300, 400, 400))
    dicts = coco_dicts(gt, [p])
    assert [c["name"] for c in dicts.gt["categories"]] == ["cat", "dog"]
    assert dicts.unmatched_predictions == 1
    assert [d["category_id"] for d in dicts.dt] == [2]
    m = coco_metrics(gt, [p])
    assert m.unmatched_predictions == 1
    assert m.stats["mAP50"] == pytest.approx(0.5)  # dog found, cat missed


def test_prediction_for_unknown_image_is_an_error() -> None:
    gt = [gt_image("a", box("cat", 1, 1, 5, 5))]
    with pytest.raises(ValueError, match=r"name no ground-truth image, e\.g\. \['zzz'\]"):
        coco_metrics(gt, [pred("zzz")])
    with pytest.raises(ValueError, match="name no ground-truth image"):
        set_metrics(gt, [pred("zzz")])


def test_ground_truth_without_objects_is_an_error() -> None:
    with pytest.raises(ValueError, match="holds no object; COCO AP is undefined"):
        coco_metrics([gt_image("a")], [pred("a", box("cat", 1, 1, 5, 5))])


def test_set_metrics_gate_is_iou_at_least_half() -> None:
    gt = [
        gt_image("a", box("cat", 0, 0, 100, 100), box("dog", 500, 500, 600, 600)),
        gt_image("b", box("cat", 0, 0, 100, 100)),
    ]
    preds = [
        # IoU exactly 0.5 (matched, desc differs) and a far-off box (FP); dog is missed.
        pred("a", box("dog", 0, 0, 100, 50), box("cat", 800, 800, 900, 900)),
        pred("b", box("cat", 0, 0, 100, 49)),  # IoU 0.49: FP, and the cat is missed
    ]
    s = set_metrics(gt, preds)
    assert (s.tp, s.fp, s.fn) == (1, 2, 2)
    assert s.precision == pytest.approx(1 / 3)
    assert s.recall == pytest.approx(1 / 3)
    assert s.f1 == pytest.approx(1 / 3)
    assert s.desc_accuracy == 0.0


def test_set_metrics_with_no_prediction_are_zero(synthetic_gt: list[GroundTruthImage]) -> None:
    s = set_metrics(synthetic_gt, [])
    assert (s.tp, s.fp, s.precision, s.recall, s.f1, s.desc_accuracy) == (0, 0, 0, 0, 0, None)
    assert s.fn == sum(len(g.objects) for g in synthetic_gt)


def test_parse_health_counts_drops_truncation_and_missing() -> None:
    gt = [gt_image(k, box("cat", 0, 0, 9, 9)) for k in ("a", "b", "c", "d")]
    good = render_objects([box("cat", 0, 0, 9, 9)])
    preds = [
        prediction_from_text("a", good),
        prediction_from_text(
            "b", '{"object_1": {"desc": "cat", "bbox_2d": [1, 2, 3, 4]}, "object_2": {"desc": "x"}}'
        ),
        prediction_from_text("c", good[:-5]),  # cut inside the answer
    ]
    h = parse_health(gt, preds)
    assert (h.images, h.missing) == (4, 1)
    assert (h.valid_objects, h.dropped_objects) == (1, 2)
    assert h.valid_object_rate == pytest.approx(1 / 3)
    assert h.dropped_by_reason["non_coord_token"] == 1
    assert h.dropped_by_reason["missing_geom"] == 1
    assert (h.truncated, h.truncation_rate) == (1, pytest.approx(1 / 3))
    assert h.endings == {"closed": 2, "truncated": 1}


def test_ground_truth_refuses_a_repeated_image(tmp_path: Path) -> None:
    rec = {"images": ["x.png"], "width": 10, "height": 10, "objects": []}
    Image.new("RGB", (10, 10)).save(tmp_path / "x.png")
    path = tmp_path / "val.jsonl"
    path.write_text(f"{json.dumps(rec)}\n{json.dumps(rec)}\n")
    with pytest.raises(ValueError, match=r"val\.jsonl:2: image 'x\.png' already used by .*:1"):
        load_ground_truth(path)


def test_ground_truth_resolves_images_against_image_root(tmp_path: Path) -> None:
    rec = {"images": ["x.png"], "width": 10, "height": 10, "objects": []}
    (tmp_path / "pics").mkdir()
    Image.new("RGB", (10, 10)).save(tmp_path / "pics" / "x.png")
    path = tmp_path / "val.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    with pytest.raises(
        SampleError, match=r"val\.jsonl:1: image .*x\.png does not exist.*image_root"
    ):
        load_ground_truth(path)
    (gt,) = load_ground_truth(path, image_root=tmp_path / "pics")
    assert gt.image_path == tmp_path / "pics" / "x.png"


def test_zero_area_box_is_never_found_by_pycocotools() -> None:
    # docs/evaluation.md states this pycocotools behaviour; the test keeps the doc true.
    flat = box("cat", 100, 100, 100, 200)
    m = coco_metrics([gt_image("a", flat)], [pred("a", flat)])
    assert m.stats["mAP50"] == 0.0
