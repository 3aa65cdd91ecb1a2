"""``tuner.train_type: lora`` end to end: Stage 1, resume, evaluation, Stage 2 from its output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from coordexp_schema import load_config
from coordexp_train.checkpoints import FINAL_ADAPTER_DIR
from coordexp_train.cli import main
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.evaluation.cli import main as eval_main
from coordexp_train.evaluation.predictions import read_predictions
from coordexp_train.metrics_log import read_metrics
from coordexp_train.model import resolve_model_dir
from coordexp_train.run import train

STAGE1 = """\
model: {{model: {model}, dtype: float32}}
template: {{max_pixels: 16384}}
data: {{train_jsonl: {data}/train.jsonl, val_jsonl: {data}/val.jsonl}}
tuner: {{train_type: lora, lora_rank: 8, lora_alpha: 16, lora_dropout: 0.1}}
training: {{output_dir: {out}, max_steps: {steps}, per_device_train_batch_size: 2,
  effective_batch_size: 4, learning_rate: 5.0e-3, lr_scheduler_type: constant,
  logging_steps: 1, save_steps: 2, seed: 11}}
custom: {{trainer_variant: {variant}}}
global_max_length: 1024
"""
STAGE2 = """\
stage2_ab:
  schedule: {b_ratio: 0.5}
  n_softctx_iter: 2
rollout_matching:
  rollout_backend: hf
  decode_batch_size: 2
  max_new_tokens: 40
"""
#: Keys of the LoRA targets (the default q/k/v/o/gate/up/down projections).
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
COORD_ROW_KEYS = ("model.language_model.embed_tokens.weight", "lm_head.weight")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache (the tiny model is built on first use) and a 16-image synthetic dataset."""
    root = tmp_path_factory.mktemp("lora")
    write_synthetic_dataset(root / "data", SceneSpec(), num_train=16, num_val=2, seed=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COORDEXP_CACHE_DIR", str(root / "cache"))
        yield root


def _config(
    root: Path,
    name: str,
    *,
    steps: int = 4,
    model: str = "builtin:tiny-qwen3-vl",
    variant: str = "stage1_sft",
) -> Path:
    text = STAGE1.format(
        model=model, data=root / "data", out=root / name, steps=steps, variant=variant
    )
    if variant == "stage2_ab_training":
        text += STAGE2
    path = root / f"{name}.yaml"
    path.write_text(text)
    return path


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _assert_only_adapted_parts_changed(
    start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], coord_ids: list[int]
) -> None:
    """Targets moved, coord rows moved, every other weight (and row) is bit-identical."""
    assert set(start) == set(end)
    for key, before in start.items():
        after = end[key]
        if key in COORD_ROW_KEYS:
            changed = (after != before).any(dim=1).nonzero().flatten().tolist()
            assert changed, f"no coord row of {key} trained"
            assert set(changed) <= set(coord_ids), f"{key}: non-coord rows changed"
        elif any(f".{t}." in key for t in TARGETS) and "visual." not in key:
            assert not torch.equal(after, before), f"{key} did not train"
        else:
            assert torch.equal(after, before), f"{key} changed but is not trained under LoRA"


def _coord_ids(model_dir: Path) -> list[int]:
    record = json.loads((model_dir / "coord_vocab.json").read_text())
    return list(range(record["first_id"], record["last_id"] + 1))


def test_stage1_lora_learns_and_changes_only_adapters_and_coord_rows(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(_config(workspace, "s1", steps=8))]) == 0
    out = capsys.readouterr().out
    assert "trainable parameters: 288,768 of 1,175,968 (24.56%)" in out
    assert "LoRA matrices 32,768, coord-token rows 256,000" in out
    run = workspace / "s1"
    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < losses[0] - 1.0  # the objective falls clearly
    base_dir = resolve_model_dir("builtin:tiny-qwen3-vl")
    _assert_only_adapted_parts_changed(
        _weights(base_dir), _weights(run / "final"), _coord_ids(base_dir)
    )
    # checkpoints and the final adapter hold the adapter alone; final/ is a plain checkpoint
    for folder in (run / "checkpoint-2", run / FINAL_ADAPTER_DIR):
        assert (folder / "adapter_model.safetensors").is_file()
        assert not (folder / "model.safetensors").exists()
    adapter = json.loads((run / FINAL_ADAPTER_DIR / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)
    assert adapter["base_model_name_or_path"] == str(base_dir)
    assert (run / "final" / "config.json").is_file()
    assert (run / "final" / "tokenizer.json").is_file()


def test_a_resumed_lora_run_reaches_the_uninterrupted_weights(workspace: Path) -> None:
    whole = train(load_config(_config(workspace, "whole")))
    assert whole is not None
    reference = _weights(whole.final_model)
    resumed_dir = workspace / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(workspace / "whole" / "checkpoint-2", resumed_dir / "checkpoint-2")
    cfg = load_config(_config(workspace, "resumed"), ["training.resume_from_checkpoint=latest"])
    resumed = train(cfg)
    assert resumed is not None
    assert resumed.global_step == 4
    for name, tensor in _weights(resumed.final_model).items():
        assert torch.equal(tensor, reference[name]), f"resumed run differs at {name}"
    # resuming really trained steps 3 and 4: the step-2 adapter differs from the final one
    step2 = load_file(str(resumed_dir / "checkpoint-2" / "adapter_model.safetensors"))
    final = load_file(str(workspace / "resumed" / FINAL_ADAPTER_DIR / "adapter_model.safetensors"))
    assert step2.keys() == final.keys()
    assert any(not torch.equal(step2[k], final[k]) for k in final)


def test_the_final_lora_checkpoint_evaluates_with_coordexp_eval(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    final = workspace / "s1" / "final"  # written by the first test of this module
    out = workspace / "eval"
    argv = ["--config", str(workspace / "s1.yaml"), "--model-override", str(final)]
    argv += ["--gt", str(workspace / "data" / "val.jsonl"), "--out", str(out)]
    assert eval_main([*argv, "--max-new-tokens", "24", "--overlays", "0"]) == 0
    assert "mAP@50" in capsys.readouterr().out
    assert len(read_predictions(out / "predictions.jsonl")) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["coco"]["mAP50"] <= 1.0


def test_stage2_ab_with_lora_and_hf_rollouts_starts_from_the_stage1_output(
    workspace: Path,
) -> None:
    start = workspace / "s1" / "final"  # the merged Stage-1 LoRA model
    config = _config(workspace, "s2", model=str(start), variant="stage2_ab_training")
    assert main(["--config", str(config)]) == 0
    run = workspace / "s2"
    logs = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert [r["channel_b"] for r in logs] == [0.0, 1.0, 0.0, 1.0]
    for r in (r for r in logs if r["channel_b"] == 1.0):
        assert r["rollouts"] == 4.0  # 2 micro-batches of 2 samples per optimizer step
        assert r["weight_sync"] == 1.0
    coord_ids = _coord_ids(resolve_model_dir("builtin:tiny-qwen3-vl"))  # same tokenizer
    _assert_only_adapted_parts_changed(_weights(start), _weights(run / "final"), coord_ids)


def test_a_resumed_stage2_lora_run_reaches_the_uninterrupted_weights(workspace: Path) -> None:
    start = workspace / "s1" / "final"
    whole = workspace / "s2"  # trained by the test above: steps 0..3, checkpoint-2 kept
    resumed = workspace / "s2_resumed"
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-2", resumed / "checkpoint-2")
    config = _config(workspace, "s2_resumed", model=str(start), variant="stage2_ab_training")
    args = ["--config", str(config), "--override", "training.resume_from_checkpoint=latest"]
    assert main(args) == 0
    logs = [r for r in read_metrics(resumed / "metrics.jsonl") if "loss" in r]
    assert [(r["step"], r["channel_b"]) for r in logs] == [(3, 0.0), (4, 1.0)]
    reference = _weights(whole / "final")
    for name, tensor in _weights(resumed / "final").items():
        assert torch.equal(tensor, reference[name]), f"resumed run differs at {name}"


def test_an_adapter_folder_given_as_the_model_points_at_the_merged_final(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = workspace / "s1" / "checkpoint-2"  # written by the first test of this module
    expected = (
        f"model.model: '{adapter}' is a LoRA adapter folder (adapter_config.json, no "
        "config.json); give a whole checkpoint: a LoRA run writes the merged model to "
        "<training.output_dir>/final"
    )
    config = _config(workspace, "from_adapter", model=str(adapter), variant="stage2_ab_training")
    assert main(["--config", str(config)]) == 1
    assert expected in capsys.readouterr().err
    argv = ["--gt", str(workspace / "data" / "val.jsonl"), "--model", str(adapter)]
    assert eval_main([*argv, "--out", str(workspace / "eval_adapter")]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_gloo_lora_run_ends_with_one_merged_model(workspace: Path) -> None:
    config = _config(workspace, "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    cmd += ["2", "-m", "coordexp_train", "--config", str(config)]
    cmd += ["--override", "training.per_device_train_batch_size=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trainable parameters: 288,768 of 1,175,968") == 1  # rank 0 only
    assert done.stdout.count("Training finished.") == 1
    run = workspace / "ddp"
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]
    base_dir = resolve_model_dir("builtin:tiny-qwen3-vl")
    _assert_only_adapted_parts_changed(
        _weights(base_dir), _weights(run / "final"), _coord_ids(base_dir)
    )
