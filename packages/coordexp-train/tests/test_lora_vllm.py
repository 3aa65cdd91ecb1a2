"""A LoRA run's colocated vLLM engine (real vLLM on CPU; marker ``vllm``).

Run in the vLLM CPU environment: ``bash scripts/test-vllm.sh
packages/coordexp-train/tests/test_lora_vllm.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from coordexp_backends import DecodeParams, RolloutRequest
from coordexp_schema import load_config
from coordexp_train.data.chat import prompt_messages
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.model import load_model_and_processor
from coordexp_train.model.lora import build_lora_model
from coordexp_train.model.processor import set_image_size
from coordexp_train.settings import group_settings
from coordexp_train.stage2.setup import build_backend

pytestmark = pytest.mark.vllm

CONFIG = """\
model: {{model: builtin:tiny-qwen3-vl, dtype: float32}}
template: {{max_pixels: 16384}}
data: {{train_jsonl: train.jsonl}}
training: {{output_dir: {out}}}
custom: {{trainer_variant: rollout_matching_sft}}
tuner: {{train_type: lora, lora_rank: 4, lora_alpha: 8}}
rollout_matching:
  rollout_backend: vllm
  decode_batch_size: 2
  max_new_tokens: 16
  vllm: {{mode: colocate, enable_lora: true, gpu_memory_utilization: 0.1, max_model_len: 1024,
    enforce_eager: true, sync: {{mode: auto}}}}
"""


def test_the_engine_serves_the_lora_rank_and_rolls_out_the_synced_adapters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COORDEXP_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "lora.yaml"
    path.write_text(CONFIG.format(out=tmp_path / "out"))
    cfg = load_config(path)
    settings = SimpleNamespace(model=cfg.model.model, dtype="float32", attn_implementation="sdpa")
    loaded = load_model_and_processor(settings)
    set_image_size(loaded.processor, cfg.template.max_pixels)
    torch.manual_seed(0)
    frozen = group_settings(cfg).frozen
    model = build_lora_model(loaded.model, cfg.tuner, loaded.coord_vocab.ids, frozen)
    backend = build_backend(cfg, dataclasses.replace(loaded, model=model))
    try:
        lora = backend.llm.llm_engine.vllm_config.lora_config  # type: ignore[attr-defined]
        assert lora.max_lora_rank == 8  # tuner.lora_rank 4, raised to vLLM's next rank
        images = [Image.new("RGB", (64, 64), c) for c in ("red", "blue")]
        messages = prompt_messages(PromptSpec())
        requests = [RolloutRequest(f"r{i}", messages, (im,)) for i, im in enumerate(images)]
        params = DecodeParams(max_new_tokens=16)
        backend.sync_weights(model)
        before = [r.response_token_ids for r in backend.generate(requests, params)]
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if ".lora_B." in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        backend.sync_weights(model)  # coord rows train: merged full weights are sent
        after = [r.response_token_ids for r in backend.generate(requests, params)]
        assert after != before
    finally:
        backend.close()
