"""The Stage-1 trainer end to end on the built-in tiny model and synthetic data."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from coordexp_schema import load_config
from coordexp_train.arguments import build_training_arguments
from coordexp_train.cli import main
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.metrics_log import read_metrics
from coordexp_train.model import load_model_and_processor
from coordexp_train.param_groups import apply_freezing, group_of
from coordexp_train.run import train
from coordexp_train.settings import group_settings, stage1_loss_weights
from coordexp_train.stage1_trainer import Stage1Trainer

CONFIG = """\
model:
  model: builtin:tiny-qwen3-vl
  dtype: float32
template:
  max_pixels: 16384
data:
  train_jsonl: {data}/train.jsonl
  val_jsonl: {data}/val.jsonl
training:
  output_dir: {out}
  max_steps: 4
  per_device_train_batch_size: 2
  effective_batch_size: 4
  learning_rate: 1.0e-3
  lr_scheduler_type: cosine
  warmup_steps: 1
  logging_steps: 1
  save_steps: 2
  seed: 11
custom:
  trainer_variant: stage1_sft
  bbox_ciou_weight: 0.5
  bbox_smoothl1_weight: 0.5
global_max_length: 1024
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache (tiny model built on first use) and a 16-image synthetic dataset."""
    root = tmp_path_factory.mktemp("stage1")
    write_synthetic_dataset(root / "data", SceneSpec(), num_train=16, num_val=2, seed=3)
    old = os.environ.get("COORDEXP_CACHE_DIR")
    os.environ["COORDEXP_CACHE_DIR"] = str(root / "cache")
    yield root
    if old is None:
        del os.environ["COORDEXP_CACHE_DIR"]
    else:
        os.environ["COORDEXP_CACHE_DIR"] = old


def _config_file(root: Path, name: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(CONFIG.format(data=root / "data", out=root / name))
    return path


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def test_cli_trains_saves_and_reports_where_everything_is(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config_file(workspace, "cli")
    assert main(["--config", str(config), "--override", "training.eval_steps=2"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # the progress bar (stderr): steps out of the total, the latest loss, elapsed<ETA
    assert re.search(r"4/4 \[\d\d:\d\d<\d\d:\d\d", captured.err)
    assert re.search(r"loss=\d+\.\d{4}, lr=", captured.err)
    run = workspace / "cli"
    assert f"final model:   {run / 'final'}" in out
    assert f"metrics:       {run / 'metrics.jsonl'}" in out
    assert (run / "final" / "model.safetensors").is_file()
    assert (run / "final" / "tokenizer.json").is_file()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    records = read_metrics(run / "metrics.jsonl")
    train_logs = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_logs] == [1, 2, 3, 4]
    for name in ("token_ce", "soft_ce", "w1", "gate", "bbox_ciou", "bbox_smoothl1"):
        assert all(name in r for r in train_logs), name
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for r in evals:  # coord diagnostics through the same gate helper as the loss
        assert 0 < r["eval_coord_mass"] <= 1
        # mean of −log(mass) >= −log(mean mass) (Jensen)
        assert r["eval_coord_gate"] >= -math.log(r["eval_coord_mass"]) - 1e-6
        assert 0 <= r["eval_coord_accuracy"] <= 1
        assert 0 < r["eval_coord_mae"] < 1
    # 16 samples, 4 per optimizer step: 4 steps are one epoch
    assert train_logs[-1]["epoch"] == pytest.approx(1.0)
    # the rate logged at step s is the one step s used: 0 in the warm-up step, then cosine
    # over the 3 remaining steps: peak · ½(1 + cos(π (s − 2) / 3))
    expected = [0.0] + [1e-3 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 3)) for s in (2, 3, 4)]
    assert [r["learning_rate"] for r in train_logs] == pytest.approx(expected)
    # tuner.freeze_vision_tower defaults to true: the vision tower did not move, the LLM did
    start = _weights(
        Path(os.environ["COORDEXP_CACHE_DIR"]).glob("models/tiny-qwen3-vl-*").__next__()
    )
    end = _weights(run / "final")
    vision = [n for n in start if "visual." in n and "merger" not in n]
    assert vision
    assert all(torch.equal(start[n], end[n]) for n in vision)
    assert not torch.equal(start["lm_head.weight"], end["lm_head.weight"])


def test_resumed_run_reaches_the_same_weights_as_an_uninterrupted_one(workspace: Path) -> None:
    whole = train(load_config(_config_file(workspace, "whole")))
    again = train(load_config(_config_file(workspace, "again")))
    assert whole is not None
    assert again is not None
    reference = _weights(whole.final_model)
    for name, tensor in _weights(again.final_model).items():
        assert torch.equal(tensor, reference[name]), f"seeded rerun differs at {name}"

    # an interrupted run: only checkpoint-2 survives, then resume from it to step 4
    resumed_dir = workspace / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(workspace / "whole" / "checkpoint-2", resumed_dir / "checkpoint-2")
    cfg = load_config(
        _config_file(workspace, "resumed"), ["training.resume_from_checkpoint=latest"]
    )
    resumed = train(cfg)
    assert resumed is not None
    assert resumed.global_step == 4
    for name, tensor in _weights(resumed.final_model).items():
        assert torch.equal(tensor, reference[name]), f"resumed run differs at {name}"
    # and resuming really did something: step-2 weights differ from step-4 weights
    step2 = _weights(resumed_dir / "checkpoint-2")
    assert any(not torch.equal(step2[n], t) for n, t in reference.items())


def test_two_process_gloo_run_splits_the_effective_batch(workspace: Path) -> None:
    config = _config_file(workspace, "ddp")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port
        "--nproc_per_node",
        "2",
        "-m",
        "coordexp_train",
        "--config",
        str(config),
        "--override",
        "training.per_device_train_batch_size=1",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = workspace / "ddp"
    assert done.stdout.count("Training finished.") == 1  # only rank 0 reports
    records = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # one writer
    # 1 sample x 2 processes x 2 accumulation = 4 samples per step: 4 steps = 1 epoch
    assert records[-1]["epoch"] == pytest.approx(1.0)
    state = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4


def test_demo_config_runs_end_to_end_in_a_shortened_mode(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = Path(__file__).resolve().parents[3] / "configs" / "demo" / "stage1_tiny.yaml"
    out = workspace / "demo"
    code = main(
        [
            "--config",
            str(demo),
            "--override",
            f"training.output_dir={out}",
            "--override",
            "training.max_steps=3",
            "--override",
            "training.save_steps=3",
            "--override",
            "data.train_sample_limit=48",
            "--override",
            "data.val_sample_limit=4",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Training finished." in printed
    assert f"final model:   {out / 'final'}" in printed
    assert f"checkpoints:   {out / 'checkpoint-3'}" in printed
    assert "shapes-demo" in printed  # the built-in dataset was written and used
    assert (out / "final" / "model.safetensors").is_file()


def test_gradient_checkpointing_gives_the_same_training(workspace: Path) -> None:
    plain = train(load_config(_config_file(workspace, "plain"), ["training.max_steps=2"]))
    ckpt = train(
        load_config(
            _config_file(workspace, "gc"),
            ["training.max_steps=2", "training.gradient_checkpointing=true"],
        )
    )
    assert plain is not None
    assert ckpt is not None
    a, b = _weights(plain.final_model), _weights(ckpt.final_model)
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)


def test_optimizer_has_one_learning_rate_per_group_and_skips_frozen_parameters(
    workspace: Path,
) -> None:
    cfg = load_config(
        _config_file(workspace, "groups"),
        ["training.aligner_lr=0.02", "training.llm_lr=0.001", "tuner.freeze_vision_tower=true"],
    )
    loaded = load_model_and_processor(cfg.model)
    settings = group_settings(cfg)
    apply_freezing(loaded.model, settings.frozen)
    trainer = Stage1Trainer(
        model=loaded.model,
        args=build_training_arguments(cfg, 1),
        coord_token_ids=torch.tensor(loaded.coord_vocab.ids),
        loss_weights=stage1_loss_weights(cfg.custom),
        group_settings=settings,
    )
    optimizer = trainer.create_optimizer()
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert {n.split("/")[0] for n in by_name} == {"aligner", "llm"}
    assert by_name["aligner/decay"]["lr"] == 0.02
    assert by_name["llm/decay"]["lr"] == 0.001
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    frozen = [p for n, p in loaded.model.named_parameters() if group_of(n) == "vision_tower"]
    assert frozen
    assert not any(id(p) in in_optimizer for p in frozen)


def test_bf16_autocast_trains_with_finite_losses(workspace: Path) -> None:
    summary = train(
        load_config(_config_file(workspace, "bf16"), ["training.max_steps=2", "training.bf16=true"])
    )
    assert summary is not None
    logged = [r for r in read_metrics(summary.metrics_file) if "loss" in r]
    assert len(logged) == 2
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in logged)
