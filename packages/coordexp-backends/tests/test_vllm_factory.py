"""The factory's colocated engine, real (marker ``vllm``).

In its own module: closing an in-process engine resets vLLM's process-wide parallel
state, which would break another module's engine still in use.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from coordexp_backends import DecodeParams, HFBackend, Rollout

pytestmark = pytest.mark.vllm

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

GREEDY = DecodeParams(max_new_tokens=16)


def payloads(rollouts: list[Rollout]) -> list[dict[str, Any]]:
    return [r.payload() for r in rollouts]


def test_the_factory_runs_a_colocated_engine_in_the_training_models_dtype(
    model_dir: Path, model: Any, tokenizer: Any, tiny: ModuleType, tmp_path: Path
) -> None:
    from coordexp_backends import create_backend
    from coordexp_schema import RolloutMatchingConfig, parse_strict

    vllm_section = {"mode": "colocate", "gpu_memory_utilization": 0.1, "max_model_len": 1024}
    cfg = parse_strict(
        RolloutMatchingConfig,
        {"rollout_backend": "vllm", "decode_batch_size": 3, "vllm": vllm_section},
        "rollout_matching",
    )
    assert isinstance(cfg, RolloutMatchingConfig)
    backend = create_backend(
        cfg,
        processor=tokenizer,
        model=model,
        model_path=model_dir,
        engine_kwargs={"distributed_executor_backend": "uni", "seed": 0},
        weights_dir=tmp_path,
    )
    try:
        assert backend.llm.llm_engine.model_config.dtype == torch.float32  # type: ignore[attr-defined]
        reqs = tiny.requests(3)
        expected = HFBackend(model, tokenizer, 3).generate(reqs, GREEDY)
        assert payloads(backend.generate(reqs, GREEDY)) == payloads(expected)
    finally:
        backend.close()
