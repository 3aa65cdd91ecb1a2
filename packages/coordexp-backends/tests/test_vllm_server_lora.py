"""PEFT (LoRA) model sync to a real vLLM CPU server (``coordexp-rollout-server --lora-max-rank``).

Run in the vLLM CPU environment: ``bash scripts/test-vllm.sh``. The server starts from the
base (seed-0) tiny Qwen3 and also serves the gloo weight transfer. An adapter sync saves
the PEFT model's adapter as a new version, loads it through ``/v1/load_lora_adapter`` and
unloads the previous one, and rollouts name the adapter as their model; an adapter vLLM
cannot serve falls back to the merged weights, sent through the checkpoint or gloo
transport, and rollouts name the server's model again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import torch
from peft import LoraConfig, get_peft_model

from coordexp_backends import DecodeParams, HFBackend
from coordexp_backends.server_cli import LocalServer, free_port
from coordexp_backends.vllm_server import VLLMServerBackend
from coordexp_backends.weights import SyncPlan

pytestmark = pytest.mark.vllm

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

GREEDY = DecodeParams(max_new_tokens=16)


def with_lora(model: Any, seed: int, **extra: Any) -> Any:
    """``model`` with a seeded rank-4 LoRA whose factors are random (it changes outputs)."""
    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, **extra
    )
    return get_peft_model(model, config)


def retrain(model: Any, seed: int) -> None:
    """Change every trainable tensor (LoRA factors, token rows, full copies), as a step would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)


def payloads(rollouts: list[Any]) -> list[dict[str, Any]]:
    return [r.payload() for r in rollouts]


@pytest.fixture(scope="module")
def lora_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    server = LocalServer(
        ["--model", str(model_dir), "--port", str(free_port()), "--dtype", "float32",
         "--enforce-eager", "--gpu-memory-utilization", "0.1", "--max-model-len", "1024",
         "--lora-max-rank", "8", "--weight-transfer", "gloo",
         "--", "--distributed-executor-backend", "uni", "--seed", "0"],
        tmp_path_factory.mktemp("lora-logs") / "server.log",
    )  # fmt: skip
    try:
        server.wait_ready(time.monotonic() + 300)
        yield server
    finally:
        server.kill()


def test_adapter_syncs_make_the_server_roll_out_the_peft_model(
    lora_server: LocalServer, model: Any, tokenizer: Any, tiny: ModuleType, tmp_path: Path
) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    backend = VLLMServerBackend(
        [lora_server.url], tokenizer, 2, (im_end,), timeout_s=60,
        weights_dir=tmp_path, sync=SyncPlan(mode="auto"),
    )  # fmt: skip
    reqs = tiny.requests(4)
    base = backend.generate(reqs, GREEDY)
    peft = with_lora(model, seed=1)
    backend.sync_weights(peft)
    first = backend.generate(reqs, GREEDY)
    assert [r.response_token_ids for r in first] != [r.response_token_ids for r in base]
    assert payloads(first) == payloads(HFBackend(peft, tokenizer, 2).generate(reqs, GREEDY))
    with torch.no_grad():  # an optimizer step changes the adapter
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(-1.0)
    backend.sync_weights(peft)
    second = backend.generate(reqs, GREEDY)
    assert payloads(second) == payloads(HFBackend(peft, tokenizer, 2).generate(reqs, GREEDY))
    assert payloads(second) != payloads(first)
    served = {m["id"] for m in httpx.get(lora_server.url + "/v1/models").json()["data"]}
    assert "coordexp-lora-2" in served
    assert "coordexp-lora-1" not in served  # the previous version was unloaded
    assert [p.name for p in (tmp_path / "lora").iterdir()] == ["adapter-000002"]
    backend.close()


UNSERVABLE = {
    "trainable_token_rows": {"trainable_token_indices": {"embed_tokens": [3, 5, 7, 40]}},
    "modules_to_save": {"modules_to_save": ["lm_head"]},
}


@pytest.mark.parametrize("transport", ["checkpoint", "gloo"])
@pytest.mark.parametrize("extra", UNSERVABLE.values(), ids=UNSERVABLE.keys())
def test_merged_and_adapter_syncs_alternate_and_each_rolls_out_as_hf(
    lora_server: LocalServer,
    tokenizer: Any,
    tiny: ModuleType,
    tmp_path: Path,
    transport: str,
    extra: dict[str, Any],
) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ports = [free_port()] if transport == "gloo" else []
    backend = VLLMServerBackend(
        [lora_server.url], tokenizer, 2, (im_end,), timeout_s=60, weights_dir=tmp_path,
        sync=SyncPlan(mode="auto"), transport=transport, group_ports=ports,  # type: ignore[arg-type]
    )  # fmt: skip
    reqs = tiny.requests(4)
    plain = tiny.build_model(tokenizer)
    base = payloads(HFBackend(plain, tokenizer, 2).generate(reqs, GREEDY))
    unservable = with_lora(tiny.build_model(tokenizer), seed=3, **extra)
    servable = with_lora(tiny.build_model(tokenizer), seed=4)
    retrain(unservable, seed=5)
    seen = []
    for model in (unservable, servable, unservable):  # full, adapter, full
        backend.sync_weights(model)
        out = payloads(backend.generate(reqs, GREEDY))
        assert out == payloads(HFBackend(model, tokenizer, 2).generate(reqs, GREEDY))
        assert out != base
        assert backend.adapters is None or (backend.adapters.served is None) == (
            model is unservable
        )
        seen.append(out)
        retrain(unservable, seed=6)  # the next full sync sends other merged weights
    assert seen[2] != seen[0]
    served = {m["id"] for m in httpx.get(lora_server.url + "/v1/models").json()["data"]}
    assert "coordexp-lora-1" not in served  # unloaded by the last full sync
    backend.sync_weights(plain)  # the next test starts from the base model again
    assert payloads(backend.generate(reqs, GREEDY)) == base
    backend.close()
