"""The Stage-2 trainers end to end through the ``coordexp-train`` entry point (tiny model)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from coordexp_train.cli import main
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.metrics_log import read_metrics
from coordexp_train.stage2.schedule import channel_at_step
from coordexp_train.stage2.setup import STAGE1_DEMO_COMMAND

BASE = """\
model:
  model: builtin:tiny-qwen3-vl
  dtype: float32
template:
  max_pixels: 16384
data:
  train_jsonl: {data}/train.jsonl
training:
  output_dir: {out}
  max_steps: 4
  per_device_train_batch_size: 2
  learning_rate: 1.0e-3
  lr_scheduler_type: constant
  logging_steps: 1
  save_steps: 2
  seed: 5
  packing_length: 1024
custom:
  trainer_variant: {variant}
global_max_length: 1024
rollout_matching:
  rollout_backend: hf
  decode_batch_size: 2
  max_new_tokens: 40
  monitor_dump: {{enabled: true, every_steps: 2, max_events: 2, max_samples: 2}}
"""
STAGE2_AB = """\
stage2_ab:
  schedule: {b_ratio: 0.5}
  n_softctx_iter: 2
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache (the tiny model is built on first use) and a 16-image synthetic dataset."""
    root = tmp_path_factory.mktemp("stage2")
    write_synthetic_dataset(root / "data", SceneSpec(), num_train=16, num_val=2, seed=3)
    old = os.environ.get("COORDEXP_CACHE_DIR")
    os.environ["COORDEXP_CACHE_DIR"] = str(root / "cache")
    yield root
    if old is None:
        del os.environ["COORDEXP_CACHE_DIR"]
    else:
        os.environ["COORDEXP_CACHE_DIR"] = old


def _config(root: Path, name: str, variant: str) -> Path:
    text = BASE.format(data=root / "data", out=root / name, variant=variant)
    if variant == "stage2_ab_training":
        text += STAGE2_AB
    path = root / f"{name}.yaml"
    path.write_text(text)
    return path


def _train_logs(run: Path) -> list[dict[str, object]]:
    return [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]


def test_stage2_ab_alternates_channels_and_logs_the_step(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(_config(workspace, "ab", "stage2_ab_training"))]) == 0
    captured = capsys.readouterr()
    # the bar's postfix and one line per step name the channel and the match counts
    assert re.search(
        r"ch=B, loss=\d+\.\d{4}, lr=[\d.e+-]+, matched=\d+, fp=\d+, fn=\d+", captured.err
    )
    assert re.search(r"^step 2 B loss=\S+ .*matched=\d+ fp=\d+ fn=\d+", captured.out, re.M)
    run = workspace / "ab"
    logs = _train_logs(run)
    assert [r["step"] for r in logs] == [1, 2, 3, 4]
    # the log at step s reports optimizer step s - 1
    expected = [1.0 if channel_at_step(s, 0.5) == "B" else 0.0 for s in range(4)]
    assert [r["channel_b"] for r in logs] == expected == [0.0, 1.0, 0.0, 1.0]
    for r in logs:
        assert {"token_ce", "soft_ce", "time/forward_backward"} <= r.keys()
    for r in (r for r in logs if r["channel_b"] == 1.0):
        assert r["rollouts"] == 2.0  # per_device_train_batch_size rollouts per B step
        assert 0 < float(r["rollout_len_max"]) <= 40  # type: ignore[arg-type]
        for key in ("matched", "fp", "fn", "dropped", "truncated", "packs", "weight_sync"):
            assert key in r, key
        for phase in ("rollout", "parse", "match", "targets", "packing"):
            assert float(r[f"time/{phase}"]) > 0, phase  # type: ignore[arg-type]
        assert 0 < float(r["time/cpu_share"]) < 1  # type: ignore[arg-type]
        assert r["packs"] == 1.0  # two ~150-token samples fit one 1024-token pack
    for r in (r for r in logs if r["channel_b"] == 0.0):
        assert "rollouts" not in r
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert (run / "final" / "model.safetensors").is_file()
    # the processor was sized from the template at load (and saved so)
    saved = json.loads((run / "final" / "processor_config.json").read_text())
    assert saved["image_processor"]["size"]["longest_edge"] == 16384


def test_a_resumed_stage2_ab_run_reaches_the_uninterrupted_weights(workspace: Path) -> None:
    whole = workspace / "ab"  # trained by the test above: steps 0..3, checkpoint-2 kept
    resumed = workspace / "ab_resumed"
    resumed.mkdir()
    shutil.copytree(whole / "checkpoint-2", resumed / "checkpoint-2")
    config = _config(workspace, "ab_resumed", "stage2_ab_training")
    args = ["--config", str(config), "--override", "training.resume_from_checkpoint=latest"]
    assert main(args) == 0
    # the schedule continues from the restored step: A at step 2, B at step 3
    assert [(r["step"], r["channel_b"]) for r in _train_logs(resumed)] == [(3, 0.0), (4, 1.0)]
    reference = load_file(str(whole / "final" / "model.safetensors"))
    for name, tensor in load_file(str(resumed / "final" / "model.safetensors")).items():
        assert torch.equal(tensor, reference[name]), f"resumed run differs at {name}"


def test_evaluation_runs_on_the_ground_truth(workspace: Path) -> None:
    config = _config(workspace, "eval", "rollout_matching_sft")
    overrides = [
        f"data.val_jsonl={workspace / 'data' / 'val.jsonl'}",
        "training.eval_steps=1",
        "training.max_steps=1",
        "rollout_matching.monitor_dump.enabled=false",
    ]
    args = ["--config", str(config)]
    for o in overrides:
        args += ["--override", o]
    assert main(args) == 0
    [evaluation] = [
        r for r in read_metrics(workspace / "eval" / "metrics.jsonl") if "eval_loss" in r
    ]
    assert 0 < evaluation["eval_coord_mass"] <= 1


def test_the_demo_config_runs_in_a_shortened_mode(workspace: Path) -> None:
    demo = Path(__file__).resolve().parents[3] / "configs" / "demo" / "stage2_ab_tiny.yaml"
    out = workspace / "demo"
    overrides = [
        "model.model=builtin:tiny-qwen3-vl",  # instead of the Stage-1 demo's final model
        f"data.train_jsonl={workspace / 'data' / 'train.jsonl'}",
        f"training.output_dir={out}",
        "training.max_steps=2",
        "training.logging_steps=1",
        "training.per_device_train_batch_size=2",
        "rollout_matching.max_new_tokens=24",
    ]
    args = ["--config", str(demo)]
    for o in overrides:
        args += ["--override", o]
    assert main(args) == 0
    assert [r["channel_b"] for r in _train_logs(out)] == [0.0, 1.0]
    assert (out / "monitor_dump" / "step_000001.jsonl").is_file()


def test_monitor_dump_writes_rollouts_and_overlays(workspace: Path) -> None:
    dump = workspace / "ab" / "monitor_dump"
    # B steps are 1 and 3; every_steps 2 → the first B step at or after 0 and after 2
    assert sorted(p.name for p in dump.glob("*.jsonl")) == [
        "step_000001.jsonl",
        "step_000003.jsonl",
    ]
    lines = (dump / "step_000001.jsonl").read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["step"] == 1
    assert record["gt"]
    assert record["rollout_tokens"] > 0
    assert len(record["fn"]) + len(record["pairs"]) == len(record["gt"])
    with Image.open(dump / "step_000001_0.png") as png:
        assert png.size > (64, 64)


def test_rollout_matching_sft_runs_channel_b_every_step_and_resumes(workspace: Path) -> None:
    config = _config(workspace, "rm", "rollout_matching_sft")
    assert main(["--config", str(config), "--override", "training.max_steps=2"]) == 0
    run = workspace / "rm"
    assert [r["channel_b"] for r in _train_logs(run)] == [1.0, 1.0]
    at_two = load_file(str(run / "checkpoint-2" / "model.safetensors"))
    resumed = main(
        ["--config", str(config), "--override", "training.resume_from_checkpoint=latest"]
    )
    assert resumed == 0
    logs = _train_logs(run)
    assert [r["step"] for r in logs] == [1, 2, 3, 4]  # the resumed run appended steps 3, 4
    assert all(r["channel_b"] == 1.0 and r["rollouts"] == 2.0 for r in logs)
    final = load_file(str(run / "final" / "model.safetensors"))
    assert any(not torch.equal(final[k], at_two[k]) for k in final)


def test_weights_are_synced_only_when_a_b_step_finds_them_stale(workspace: Path) -> None:
    config = _config(workspace, "sync", "stage2_ab_training")
    overrides = ["stage2_ab.schedule.b_ratio=1.0", "stage2_ab.weight_sync_every_steps=2"]
    args = ["--config", str(config)]
    for o in [*overrides, "rollout_matching.monitor_dump.enabled=false"]:
        args += ["--override", o]
    assert main(args) == 0
    # step 0 syncs (engine weights unknown), then every second step
    assert [r["weight_sync"] for r in _train_logs(workspace / "sync")] == [1.0, 0.0, 1.0, 0.0]


def test_samples_longer_than_the_pack_are_dropped_and_counted(workspace: Path) -> None:
    config = _config(workspace, "too_long", "rollout_matching_sft")
    args = ["--config", str(config)]
    for o in ("training.max_steps=1", "training.packing_length=64"):
        args += ["--override", o]
    assert main(args) == 0  # nothing to train on: one zero-weighted forward keeps DDP in step
    [log] = _train_logs(workspace / "too_long")
    assert (log["dropped/too_long"], log["packs"], log["loss"]) == (2.0, 0.0, 0.0)


def test_a_missing_stage1_checkpoint_names_the_command(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(workspace, "missing", "stage2_ab_training")
    code = main(["--config", str(config), "--override", f"model.model={workspace / 'nope'}"])
    assert code == 1
    err = capsys.readouterr().err
    assert "is not a checkpoint (no config.json there)" in err
    assert STAGE1_DEMO_COMMAND in err
