"""The Stage-2 trainer drives its rollout engine: wake, sync when stale, generate, sleep."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from coordexp_backends import DecodeParams, HFBackend, Rollout, RolloutRequest
from coordexp_schema import load_config
from coordexp_train.arguments import build_training_arguments
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.model import LoadedModel
from coordexp_train.stage2.setup import build_runtime, build_stage2_data, build_stage2_trainer

CONFIG = """\
model: {{model: builtin:tiny-qwen3-vl, dtype: float32}}
template: {{max_pixels: 16384}}
data: {{train_jsonl: {data}/train.jsonl}}
training: {{output_dir: {out}, per_device_train_batch_size: 2, learning_rate: 1.0e-3}}
custom: {{trainer_variant: stage2_ab_training}}
global_max_length: 1024
stage2_ab: {{schedule: {{b_ratio: 1.0}}, weight_sync_every_steps: 2}}
rollout_matching: {{rollout_backend: hf, decode_batch_size: 2, max_new_tokens: 8}}
"""


class RecordingBackend(HFBackend):
    """The real HF backend, recording the trainer's calls in order."""

    calls: list[str]

    def generate(self, requests: Sequence[RolloutRequest], params: DecodeParams) -> list[Rollout]:
        self.calls.append(f"generate:{params.seed}")
        return super().generate(requests, params)

    def sync_weights(self, model: Any) -> None:
        self.calls.append("sync")

    def sleep(self) -> None:
        self.calls.append("sleep")

    def wake_up(self) -> None:
        self.calls.append("wake_up")


def test_b_steps_wake_sync_when_stale_generate_and_sleep(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    write_synthetic_dataset(tmp_path / "data", SceneSpec(), num_train=2, num_val=1, seed=1)
    path = tmp_path / "cfg.yaml"
    path.write_text(CONFIG.format(data=tmp_path / "data", out=tmp_path / "out"))
    cfg = load_config(path)
    data = build_stage2_data(cfg, loaded)
    backend = RecordingBackend(loaded.model, loaded.processor, 2)
    backend.calls = []
    built = build_runtime(cfg, loaded)
    built.backend.close()
    runtime = dataclasses.replace(built, backend=backend)
    args = build_training_arguments(cfg, 1)
    trainer = build_stage2_trainer(cfg, loaded, data, args, runtime=runtime)
    assert trainer.rollout_matching_cfg is cfg.rollout_matching  # injected as loaded
    trainer.current_gradient_accumulation_steps = 1
    items = [data.train[0], data.train[1]]
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    try:
        for step in range(3):
            trainer.state.global_step = step
            loss = trainer.training_step(trainer.model, data.collator(items))
            assert torch.isfinite(loss)
    finally:
        loaded.model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for n, p in loaded.model.named_parameters():
                p.copy_(before[n])
    # seeds: training.seed (42 by default) + the optimizer step
    assert backend.calls == [
        "sync",  # step 0: the engine's weights are unknown
        "generate:42",
        "sleep",
        "wake_up",  # step 1: one step stale < weight_sync_every_steps 2: no sync
        "generate:43",
        "sleep",
        "wake_up",
        "sync",  # step 2: two steps stale
        "generate:44",
        "sleep",
    ]
