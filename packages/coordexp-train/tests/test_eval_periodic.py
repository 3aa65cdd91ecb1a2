"""Detection metrics during training: figures from real answers, logged by the trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordexp_parse import render_objects
from coordexp_schema import load_config
from coordexp_train.data import DetectionDataset, PromptSpec, SampleEncoder
from coordexp_train.data.synthetic import SyntheticDataset, write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.evaluation.ground_truth import load_ground_truth
from coordexp_train.evaluation.periodic import (
    LOGGED_FIGURES,
    detection_eval_for,
    logged_figures,
)
from coordexp_train.evaluation.predictions import prediction_from_text
from coordexp_train.evaluation.report import evaluation_report
from coordexp_train.metrics_log import read_metrics
from coordexp_train.model import LoadedModel
from coordexp_train.run import train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    root = tmp_path_factory.mktemp("periodic") / "ds"
    return write_synthetic_dataset(root, SceneSpec(width=64, height=64), num_train=8, num_val=3)


def test_logged_figures_of_exact_answers_are_perfect(dataset: SyntheticDataset) -> None:
    gt = load_ground_truth(dataset.val_jsonl)
    preds = [prediction_from_text(g.image_id, render_objects(g.objects)) for g in gt]
    figures = logged_figures(evaluation_report(gt, preds))
    assert set(figures) == set(LOGGED_FIGURES)
    assert figures["eval_mAP50"] == pytest.approx(1.0)
    assert figures["eval_recall"] == figures["eval_precision"] == 1.0
    assert figures["eval_valid_object_rate"] == 1.0


def test_logged_figures_leave_out_undefined_values(dataset: SyntheticDataset) -> None:
    gt = load_ground_truth(dataset.val_jsonl)
    empty = [prediction_from_text(g.image_id, "{}") for g in gt]
    figures = logged_figures(evaluation_report(gt, empty))
    assert "eval_valid_object_rate" not in figures  # no entry at all: the rate is undefined
    assert figures["eval_mAP50"] == 0.0
    assert figures["eval_recall"] == 0.0


def test_detection_eval_answers_every_validation_image(
    dataset: SyntheticDataset, loaded: LoadedModel
) -> None:
    encoder = SampleEncoder(
        loaded.processor, prompt=PromptSpec(variant="short"), max_pixels=4096, max_length=1024
    )
    val = DetectionDataset(dataset.val_jsonl, encoder)
    evaluate = detection_eval_for(val, decode_batch_size=2)
    assert [g.image_id for g in evaluate.ground_truth] == [r.record.images[0] for r in val.refs]
    assert evaluate.max_new_tokens == max(val.lengths)
    assert evaluate.prompt == encoder.prompt
    loaded.model.train()
    figures = evaluate(loaded.model)
    assert loaded.model.training  # the mode is restored
    assert {"eval_mAP50", "eval_recall", "eval_precision"} <= set(figures)
    assert all(0.0 <= v <= 1.0 for v in figures.values())
    assert figures == evaluate(loaded.model)  # greedy: the same answers again


def test_detection_eval_refuses_an_empty_split(tmp_path: Path, loaded: LoadedModel) -> None:
    (tmp_path / "val.jsonl").write_text("")
    encoder = SampleEncoder(loaded.processor, prompt=PromptSpec(), max_pixels=4096, max_length=1024)
    with pytest.raises(ValueError, match="at least one validation sample"):
        detection_eval_for(DetectionDataset(tmp_path / "val.jsonl", encoder))


def test_trainer_logs_map_at_every_evaluation(
    dataset: SyntheticDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COORDEXP_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "run.yaml"
    config.write_text(
        f"""\
model: {{model: builtin:tiny-qwen3-vl, dtype: float32}}
template: {{max_pixels: 4096, prompt_variant: short}}
data: {{train_jsonl: {dataset.train_jsonl}, val_jsonl: {dataset.val_jsonl}}}
training:
  output_dir: {tmp_path / "out"}
  max_steps: 4
  eval_steps: 2
  per_device_eval_batch_size: 3
  logging_steps: 1
  learning_rate: 1.0e-3
custom: {{trainer_variant: stage1_sft}}
global_max_length: 1024
"""
    )
    summary = train(load_config(config))
    assert summary is not None
    records = read_metrics(summary.metrics_file)
    with_map = [r for r in records if "eval_mAP50" in r]
    assert [r["step"] for r in with_map] == [2, 4]
    assert all({"eval_recall", "eval_precision", "eval_f1"} <= set(r) for r in with_map)
    assert [r["step"] for r in records if "eval_loss" in r] == [2, 4]
