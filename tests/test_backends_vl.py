"""Rollouts with images: the built-in tiny Qwen3-VL through the HF and vLLM backends.

The model and processor come from coordexp-train's built-in recipe (``tiny-qwen3-vl``),
built offline into a temporary cache. The ``vllm``-marked tests (colocate engine, and a
real server reached through ``/v1/chat/completions``) run in the vLLM CPU environment
(``bash scripts/test-vllm.sh``).
"""

from __future__ import annotations

import os
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from coordexp_backends import DecodeParams, HFBackend, Rollout, RolloutRequest
from coordexp_train.model import load_model_and_processor

os.environ.setdefault("OMP_NUM_THREADS", "1")
PARAMS = DecodeParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def vl(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = types.SimpleNamespace(
        model="builtin:tiny-qwen3-vl", dtype="float32", attn_implementation="eager"
    )
    return load_model_and_processor(settings, cache_dir=tmp_path_factory.mktemp("vl-cache"))


def image(seed: int, width: int, height: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]


def requests() -> list[RolloutRequest]:
    return [
        RolloutRequest("v0", ask("Detect every cat."), (image(0, 96, 128),)),
        RolloutRequest("v1", ask("Detect."), (image(1, 64, 64),)),
        RolloutRequest("t2", [{"role": "user", "content": "No image here."}]),
    ]


def payloads(rollouts: list[Rollout]) -> list[dict[str, Any]]:
    return [r.payload() for r in rollouts]


def test_hf_rolls_out_image_requests_with_expanded_image_tokens(vl: Any) -> None:
    out = HFBackend(vl.model, vl.processor, 3).generate(requests(), PARAMS)
    pad = vl.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    # 96×128 px → 6×8 patches of 16 px → 12 tokens after the 2×2 merge; 64×64 → 4 tokens.
    assert [r.prompt_token_ids.count(pad) for r in out] == [12, 4, 0]
    assert [r.request_id for r in out] == ["v0", "v1", "t2"]
    assert {r.finish_reason for r in out} <= {"stop", "length"}


def test_hf_image_batches_match_one_request_at_a_time(vl: Any) -> None:
    batched = HFBackend(vl.model, vl.processor, 3).generate(requests(), PARAMS)
    single = HFBackend(vl.model, vl.processor, 1).generate(requests(), PARAMS)
    assert payloads(batched) == payloads(single)


def test_the_image_reaches_the_model(vl: Any) -> None:
    backend = HFBackend(vl.model, vl.processor, 2)
    a, b = backend.generate(
        [
            RolloutRequest("a", ask("Detect."), (image(0, 64, 64),)),
            RolloutRequest("b", ask("Detect."), (image(7, 64, 64),)),
        ],
        DecodeParams(max_new_tokens=24),
    )
    assert a.prompt_token_ids == b.prompt_token_ids
    assert a.response_token_ids != b.response_token_ids


@pytest.fixture(scope="module")
def vl_colocate(vl: Any) -> Iterator[Any]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from coordexp_backends.vllm_colocate import VLLMColocateBackend

    engine = {
        "dtype": "float32",
        "enforce_eager": True,
        "gpu_memory_utilization": 0.1,
        "max_model_len": 1024,
        "distributed_executor_backend": "uni",
        "limit_mm_per_prompt": {"image": 1},
    }
    backend = VLLMColocateBackend(str(Path(vl.directory)), vl.processor, 3, engine)
    yield backend
    backend.close()


@pytest.mark.vllm
def test_vllm_colocate_matches_hf_on_image_requests(vl: Any, vl_colocate: Any) -> None:
    hf = HFBackend(vl.model, vl.processor, 3).generate(requests(), PARAMS)
    assert payloads(vl_colocate.generate(requests(), PARAMS)) == payloads(hf)


@pytest.fixture(scope="module")
def vl_server(vl: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from coordexp_backends.server_cli import LocalServer, free_port

    log = tmp_path_factory.mktemp("vl-server") / "server.log"
    server = LocalServer(
        ["--model", str(vl.directory), "--port", str(free_port()), "--dtype", "float32",
         "--enforce-eager", "--gpu-memory-utilization", "0.1", "--max-model-len", "1024",
         "--", "--distributed-executor-backend", "uni"],
        log,
    )  # fmt: skip
    try:
        server.wait_ready(time.monotonic() + 300)
        yield server
    finally:
        server.kill()


@pytest.mark.vllm
def test_vllm_server_matches_hf_on_image_requests(vl: Any, vl_server: Any) -> None:
    from coordexp_backends.prompts import stop_token_ids
    from coordexp_backends.vllm_server import VLLMServerBackend

    stops = stop_token_ids(vl.model.generation_config)
    backend = VLLMServerBackend([vl_server.url], vl.processor, 3, stops, timeout_s=60)
    hf = HFBackend(vl.model, vl.processor, 3).generate(requests(), PARAMS)
    assert payloads(backend.generate(requests(), PARAMS)) == payloads(hf)
    backend.close()


def perturbed_copy(vl: Any) -> Any:
    """The VL model with every weight moved (a stand-in for an optimizer step)."""
    import copy

    import torch

    model = copy.deepcopy(vl.model)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


@pytest.mark.vllm
def test_vllm_colocate_sync_of_the_vl_model(vl: Any, vl_colocate: Any) -> None:
    new = perturbed_copy(vl)
    before = vl_colocate.generate(requests(), PARAMS)
    vl_colocate.sync_weights(new)
    after = vl_colocate.generate(requests(), PARAMS)
    assert payloads(after) == payloads(HFBackend(new, vl.processor, 3).generate(requests(), PARAMS))
    assert [r.response_token_ids for r in after] != [r.response_token_ids for r in before]
    vl_colocate.sync_weights(vl.model)
    assert payloads(vl_colocate.generate(requests(), PARAMS)) == payloads(before)


@pytest.mark.vllm
def test_vllm_server_sync_of_the_vl_model(
    vl: Any, vl_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from coordexp_backends.prompts import stop_token_ids
    from coordexp_backends.vllm_server import VLLMServerBackend

    stops = stop_token_ids(vl.model.generation_config)
    weights = tmp_path_factory.mktemp("vl-weights")
    backend = VLLMServerBackend(
        [vl_server.url], vl.processor, 3, stops, timeout_s=60, weights_dir=weights
    )
    new = perturbed_copy(vl)
    backend.sync_weights(new)
    out = backend.generate(requests(), PARAMS)
    assert payloads(out) == payloads(HFBackend(new, vl.processor, 3).generate(requests(), PARAMS))
    backend.close()
