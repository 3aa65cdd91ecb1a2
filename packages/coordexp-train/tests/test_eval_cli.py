"""`coordexp-eval`: scores a predictions file, writes metrics and overlays, refuses bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from coordexp_parse import DetObject, render_objects
from coordexp_train.data.synthetic import SyntheticDataset, write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.evaluation.cli import curves_main, main
from coordexp_train.evaluation.coco_metrics import coco_dicts, run_cocoeval
from coordexp_train.evaluation.curves import PANEL_SIZE
from coordexp_train.evaluation.ground_truth import load_ground_truth
from coordexp_train.evaluation.predictions import (
    prediction_from_text,
    read_predictions,
    write_predictions,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    root = tmp_path_factory.mktemp("eval") / "ds"
    return write_synthetic_dataset(root, SceneSpec(width=64, height=64), num_train=1, num_val=5)


def _predictions(dataset: SyntheticDataset, path: Path) -> Path:
    """Half the images answered exactly, half with every box moved and one cut short."""
    preds = []
    for i, g in enumerate(load_ground_truth(dataset.val_jsonl)):
        objs = [
            o if i % 2 else DetObject(o.desc, o.kind, tuple(max(0, v - 60) for v in o.coords))
            for o in g.objects
        ]
        text = render_objects(objs)
        preds.append(prediction_from_text(g.image_id, text[:-10] if i == 4 else text))
    write_predictions(path, preds)
    return path


def test_eval_writes_metrics_equal_to_pycocotools_and_overlays(
    dataset: SyntheticDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred_path = _predictions(dataset, tmp_path / "pred.jsonl")
    out = tmp_path / "out"
    argv = ["--gt", str(dataset.val_jsonl), "--predictions", str(pred_path), "--out", str(out)]
    assert main([*argv, "--overlays", "3"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    gt = load_ground_truth(dataset.val_jsonl)
    dicts = coco_dicts(gt, read_predictions(pred_path))
    direct = run_cocoeval(dicts.gt, dicts.dt)
    assert [metrics["coco"][k] for k in ("mAP", "mAP50", "mAP75", "AR100")] == [
        direct[0],
        direct[1],
        direct[2],
        direct[8],
    ]
    assert 0.0 < metrics["coco"]["mAP"] < 1.0
    assert metrics["parse_health"]["truncated"] == 1
    assert 0.0 < metrics["set"]["recall"] < 1.0
    assert len(list((out / "overlays").glob("overlay_*.png"))) == 3
    assert (out / "overlays" / "grid.png").is_file()
    assert f"mAP@50 {direct[1]:.4f}" in capsys.readouterr().out


def test_installed_command_runs(dataset: SyntheticDataset, tmp_path: Path) -> None:
    pred_path = _predictions(dataset, tmp_path / "pred.jsonl")
    exe = Path(sys.executable).with_name("coordexp-eval")
    cmd = [str(exe), "--gt", str(dataset.val_jsonl), "--predictions", str(pred_path)]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "o"), "--overlays", "0"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "metrics.json").is_file()
    assert not (tmp_path / "o" / "overlays").exists()


def test_bad_predictions_line_fails_naming_file_and_line(
    dataset: SyntheticDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred_path = tmp_path / "pred.jsonl"
    pred_path.write_text('{"id": "x"}\n')
    argv = ["--gt", str(dataset.val_jsonl), "--predictions", str(pred_path), "--out", "o"]
    assert main(argv) == 2
    assert f"coordexp-eval: error: {pred_path}:1: keys must be exactly" in capsys.readouterr().err


def test_unknown_image_and_missing_file_fail_with_exit_two(
    dataset: SyntheticDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred_path = tmp_path / "pred.jsonl"
    write_predictions(pred_path, [prediction_from_text("elsewhere.png", "{}")])
    base = ["--predictions", str(pred_path), "--out", str(tmp_path / "o")]
    assert main(["--gt", str(dataset.val_jsonl), *base]) == 2
    assert "['elsewhere.png']; ids must equal images[0]" in capsys.readouterr().err
    assert main(["--gt", str(tmp_path / "nope.jsonl"), *base]) == 2
    assert "nope.jsonl" in capsys.readouterr().err
    assert main(["--gt", str(dataset.val_jsonl), *base, "--scale", "0"]) == 2
    assert "--scale must be >= 1, got 0" in capsys.readouterr().err


def test_model_run_writes_predictions_then_scores_them(
    dataset: SyntheticDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COORDEXP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "run"
    argv = ["--gt", str(dataset.val_jsonl), "--model", "builtin:tiny-qwen3-vl"]
    assert main([*argv, "--out", str(out), "--max-new-tokens", "8", "--overlays", "2"]) == 0
    preds = read_predictions(out / "predictions.jsonl")
    assert [p.image_id for p in preds] == [g.image_id for g in load_ground_truth(dataset.val_jsonl)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parse_health"]["images"] == len(preds)
    assert len(list((out / "overlays").glob("overlay_*.png"))) == 2
    assert "img" in capsys.readouterr().err  # the progress bar counts images


def test_model_that_does_not_exist_fails_with_exit_two(
    dataset: SyntheticDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--gt", str(dataset.val_jsonl), "--model", str(tmp_path / "no-such-ckpt")]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "no-such-ckpt" in capsys.readouterr().err


def test_plot_curves_command_writes_a_png_or_names_the_missing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "loss": 3.0 - s}) + "\n" for s in range(3)))
    out = tmp_path / "plots" / "curves.png"
    assert curves_main(["--metrics", str(metrics), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert (im.format, im.size) == ("PNG", (PANEL_SIZE[0], PANEL_SIZE[1]))
    assert curves_main(["--metrics", str(metrics), "--out", str(out), "--keys", "mAP"]) == 2
    assert "no finite values of 'mAP' to plot; plottable keys: ['loss']" in capsys.readouterr().err


def test_config_run_answers_as_the_options_that_spell_out_its_template(
    dataset: SyntheticDataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COORDEXP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    config = tmp_path / "train.yaml"
    config.write_text(
        f"""\
model: {{model: builtin:tiny-qwen3-vl, dtype: float32}}
template: {{max_pixels: 4096, prompt_variant: short}}
data: {{train_jsonl: {dataset.train_jsonl}}}
training: {{output_dir: {tmp_path / "unused"}}}
custom: {{trainer_variant: stage1_sft}}
"""
    )
    common = ["--gt", str(dataset.val_jsonl), "--max-new-tokens", "12", "--overlays", "0"]
    assert main([*common, "--config", str(config), "--out", str(tmp_path / "a")]) == 0
    options = ["--model", "builtin:tiny-qwen3-vl", "--max-pixels", "4096"]
    assert main([*common, *options, "--prompt-variant", "short", "--out", str(tmp_path / "b")]) == 0
    assert main([*common, *options, "--out", str(tmp_path / "c")]) == 0
    a, b, c = (read_predictions(tmp_path / d / "predictions.jsonl") for d in "abc")
    assert [p.raw_text for p in a] == [p.raw_text for p in b]
    assert [p.raw_text for p in a] != [p.raw_text for p in c]  # another prompt, other answers


def test_bad_config_and_misplaced_override_exit_two(
    dataset: SyntheticDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        """\
model: {model: builtin:tiny-qwen3-vl}
template: {max_pixels: -4}
data: {train_jsonl: x.jsonl}
training: {output_dir: out}
custom: {trainer_variant: stage1_sft}
"""
    )
    base = ["--gt", str(dataset.val_jsonl), "--out", str(tmp_path / "o")]
    assert main([*base, "--config", str(config)]) == 2
    assert "template.max_pixels" in capsys.readouterr().err
    assert main([*base, "--model", "builtin:tiny-qwen3-vl", "--model-override", "x"]) == 2
    assert "--model-override needs --config" in capsys.readouterr().err
    assert main([*base, "--model", "builtin:tiny-qwen3-vl", "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens must be >= 1, got 0" in capsys.readouterr().err


def test_image_root_and_builtin_ground_truth(
    dataset: SyntheticDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    moved = tmp_path / "elsewhere.jsonl"
    moved.write_text(dataset.val_jsonl.read_text())
    pred_path = _predictions(dataset, tmp_path / "pred.jsonl")
    base = ["--predictions", str(pred_path), "--overlays", "0"]
    assert main(["--gt", str(moved), *base, "--out", str(tmp_path / "a")]) == 2
    assert "elsewhere.jsonl:1: image" in capsys.readouterr().err
    argv = ["--gt", str(moved), "--image-root", str(dataset.root), *base]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    same = ["--gt", str(dataset.val_jsonl), *base, "--out", str(tmp_path / "c")]
    assert main(same) == 0
    b, c = ((tmp_path / d / "metrics.json").read_text() for d in "bc")
    assert b == c
    monkeypatch.setenv("COORDEXP_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "none.jsonl").write_text("")
    builtin = ["--gt", "builtin:shapes-tiny/val", "--predictions", str(tmp_path / "none.jsonl")]
    assert main([*builtin, "--overlays", "0", "--out", str(tmp_path / "tiny")]) == 0
    health = json.loads((tmp_path / "tiny" / "metrics.json").read_text())["parse_health"]
    assert (health["images"], health["missing"]) == (4, 4)  # shapes-tiny has 4 val images
