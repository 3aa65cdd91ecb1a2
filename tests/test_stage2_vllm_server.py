"""Stage 2 under ``torchrun`` with rollouts from a real vLLM server.

Two gloo processes on CPU run two Channel-B steps (``rollout_matching_sft``) of the
built-in tiny Qwen3-VL; every rank sends its shard to one real vLLM OpenAI server (the
vLLM CPU environment: ``bash scripts/test-vllm.sh``), and rank 0 syncs the fleet's weights
through the folder-reload path before each B step. Both ranks must end with identical
weights, and the synced folder must hold trained (not starting) weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

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
  per_device_train_batch_size: 2
  effective_batch_size: 4
  learning_rate: 1.0e-3
  lr_scheduler_type: constant
  logging_steps: 1
  seed: 5
custom:
  trainer_variant: rollout_matching_sft
global_max_length: 1024
rollout_matching:
  rollout_backend: vllm
  decode_batch_size: 2
  max_new_tokens: 32
  vllm:
    mode: server
    max_model_len: 1024
    server:
      timeout_s: 120
      infer_timeout_s: 300
      servers:
        - {{base_url: "{url}", group_port: 51216}}
    sync: {{mode: full, fallback_to_full: true}}
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache holding the built-in tiny Qwen3-VL (the server and the ranks share it)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def model_dir(cache: Path) -> Path:
    from coordexp_train.model import load_model_and_processor

    settings = types.SimpleNamespace(
        model="builtin:tiny-qwen3-vl", dtype="float32", attn_implementation="sdpa"
    )
    return Path(load_model_and_processor(settings, cache_dir=cache).directory)


@pytest.fixture(scope="module")
def server_url(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from coordexp_backends.server_cli import LocalServer, free_port

    log = tmp_path_factory.mktemp("server") / "server.log"
    server = LocalServer(
        ["--model", str(model_dir), "--port", str(free_port()), "--dtype", "float32",
         "--enforce-eager", "--gpu-memory-utilization", "0.1", "--max-model-len", "1024",
         "--", "--distributed-executor-backend", "uni"],
        log,
    )  # fmt: skip
    try:
        server.wait_ready(time.monotonic() + 300)
        yield server.url
    finally:
        server.kill()


def test_two_ranks_roll_out_through_a_vllm_server_and_end_with_identical_weights(
    tmp_path: Path, cache: Path, model_dir: Path, server_url: str
) -> None:
    import torch
    from safetensors.torch import load_file

    from coordexp_train.data.synthetic import write_synthetic_dataset
    from coordexp_train.data.synthetic_scene import SceneSpec
    from coordexp_train.metrics_log import read_metrics

    write_synthetic_dataset(tmp_path / "data", SceneSpec(), num_train=8, num_val=1, seed=3)
    out = tmp_path / "run"
    config = tmp_path / "server.yaml"
    config.write_text(CONFIG.format(data=tmp_path / "data", out=out, url=server_url))
    worker = Path(__file__).parents[1] / "packages/coordexp-train/tests/stage2_ddp_worker.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", COORDEXP_CACHE_DIR=str(cache))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", "2", str(worker), "--config", str(config)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]

    logs = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert [r["channel_b"] for r in logs] == [1.0, 1.0]
    # 2 ranks × 2 samples each per B step
    assert [r["rollouts"] for r in logs] == [4.0, 4.0]
    # one fleet: rank 0 alone pushes the weights, before each B step
    assert [r["weight_sync"] for r in logs] == [1.0, 1.0]

    rank0 = load_file(str(out / "rank0.safetensors"))
    rank1 = load_file(str(out / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for name, tensor in rank0.items():
        assert torch.equal(tensor, rank1[name]), f"ranks differ at {name}"

    # the second sync sent the weights after step 1's update, not the starting ones
    start = load_file(str(model_dir / "model.safetensors"))
    synced = load_file(str(out / "rollout_weights" / "model.safetensors"))
    assert any(not torch.equal(start[n], t) for n, t in synced.items() if n in start)
