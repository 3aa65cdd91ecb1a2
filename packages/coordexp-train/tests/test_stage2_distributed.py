"""Stage 2 under ``torchrun``: two gloo processes on CPU with HF rollouts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.metrics_log import read_metrics

CONFIG = """\
model:
  model: builtin:tiny-qwen3-vl
  dtype: float32
template:
  max_pixels: 16384
data:
  train_jsonl: {data}/train.jsonl
training:
  output_dir: {out}
  max_steps: 2
  per_device_train_batch_size: 1
  effective_batch_size: 4
  learning_rate: 1.0e-3
  lr_scheduler_type: constant
  logging_steps: 1
  seed: 5
custom:
  trainer_variant: stage2_ab_training
global_max_length: 1024
stage2_ab:
  schedule: {{b_ratio: 0.5}}
rollout_matching:
  rollout_backend: hf
  decode_batch_size: 2
  max_new_tokens: 32
"""


@pytest.mark.slow  # two torch processes: ~35 s on 2 cores
def test_two_ranks_roll_out_their_shards_and_end_with_identical_weights(
    tmp_path: Path,
) -> None:
    write_synthetic_dataset(tmp_path / "data", SceneSpec(), num_train=8, num_val=1, seed=3)
    config = tmp_path / "ddp.yaml"
    out = tmp_path / "ddp"
    config.write_text(CONFIG.format(data=tmp_path / "data", out=out))
    env = dict(os.environ, OMP_NUM_THREADS="1", COORDEXP_CACHE_DIR=str(tmp_path / "cache"))
    worker = Path(__file__).with_name("stage2_ddp_worker.py")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(worker),
        "--config",
        str(config),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    # step 0 is A (soft self-context), step 1 is B
    assert [r["channel_b"] for r in logs] == [0.0, 1.0]
    # 2 ranks x 1 sample per micro-batch x 2 accumulation steps: 4 rollouts per B step
    # (each rank all-reduces once per step, after its last micro-batch's last pack)
    assert logs[1]["rollouts"] == 4.0
    rank0 = load_file(str(out / "rank0.safetensors"))
    rank1 = load_file(str(out / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for name, tensor in rank0.items():
        assert torch.equal(tensor, rank1[name]), f"ranks differ at {name}"
    start = load_file(
        str(next((tmp_path / "cache" / "models").glob("tiny-qwen3-vl-*")) / "model.safetensors")
    )
    assert any(not torch.equal(start[n], t) for n, t in rank0.items() if n in start)
