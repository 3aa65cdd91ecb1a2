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
ENGINE = {
    "dtype": "float32",
    "enforce_eager": True,
    "gpu_memory_utilization": 0.1,
    "max_model_len": 1024,
    "distributed_executor_backend": "uni",
    "limit_mm_per_prompt": {"image": 1},
}
"""``vllm.LLM`` arguments of the colocate engines on the tiny Qwen3-VL (CPU, float32)."""


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

    backend = VLLMColocateBackend(str(Path(vl.directory)), vl.processor, 3, ENGINE)
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


def taught_model(vl: Any, sample: Any, pad_id: int) -> Any:
    """A copy of the VL model trained on one sample until greedy decoding answers it."""
    import copy

    import torch
    import torch.nn.functional as F

    from coordexp_train.data.batch import collate_rows

    model = copy.deepcopy(vl.model)
    model.train()
    batch = collate_rows([[sample]], pad_token_id=pad_id)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(300):
        logits = model(**batch.model_inputs()).logits[:, :-1]
        loss = F.cross_entropy(
            logits.flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=-100
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 1e-3:
            break
    model.eval()
    return model


@pytest.mark.vllm
def test_backend_swap_leaves_parse_match_and_targets_identical(vl: Any, vl_colocate: Any) -> None:
    """Greedy rollouts of a model that answers with one true and one false object, through
    HF and vLLM colocate: the Channel-B samples built from them (parse, match, injected
    answer, per-token targets) are equal."""
    from coordexp_parse import parse_text, validate_record
    from coordexp_schema.sections.rollout import RolloutMatchingConfig
    from coordexp_schema.sections.stage2_ab import ChannelBConfig
    from coordexp_train.data.chat import prompt_messages
    from coordexp_train.data.encode import SampleEncoder
    from coordexp_train.data.prompts import PromptSpec
    from coordexp_train.stage2 import build_channel_b_sample

    circle = {"desc": "blue circle", "bbox_2d": [8, 6, 30, 28]}
    square = {"desc": "red square", "bbox_2d": [40, 40, 60, 62]}
    answered = {"images": ["a.png"], "width": 64, "height": 64, "objects": [circle, square]}
    truth = {**answered, "objects": [circle, {"desc": "green star", "bbox_2d": [2, 40, 20, 60]}]}
    prompt = PromptSpec()
    encoder = SampleEncoder(vl.processor, prompt=prompt, max_pixels=128 * 128, max_length=4096)
    picture = image(5, 64, 64)
    tokenizer = vl.processor.tokenizer
    record = validate_record(answered, source="mem.jsonl", line=1)
    taught = taught_model(vl, encoder.encode(record, picture, index=0), tokenizer.pad_token_id)
    gts = parse_text(encoder.answer(validate_record(truth, source="t", line=1), 0)[0]).objects

    cfg = RolloutMatchingConfig(max_new_tokens=96, decode_batch_size=1)
    request = [RolloutRequest("a", prompt_messages(prompt), (picture,))]
    params = DecodeParams(max_new_tokens=96)
    hf = HFBackend(taught, vl.processor, 1).generate(request, params)[0]
    vl_colocate.sync_weights(taught)
    try:
        vllm = vl_colocate.generate(request, params)[0]
    finally:
        vl_colocate.sync_weights(vl.model)

    samples = [
        build_channel_b_sample(r.response_token_ids, gts, tokenizer, cfg, ChannelBConfig())
        for r in (hf, vllm)
    ]
    assert samples[0] == samples[1]
    # the case is not trivial: one matched prediction, one FP, one injected FN
    result = samples[0].result
    assert (len(result.pairs), len(result.fp), len(result.fn)) == (1, 1, 1)


@pytest.mark.vllm
def test_vllm_server_sizes_images_as_the_clients_processor(
    vl: Any, vl_server: Any, tmp_path: Path
) -> None:
    """A processor sized below the checkpoint's default (as the trainer sizes it from
    ``template.max_pixels``): the server's prompts and answers equal HF's with it."""
    import copy

    from coordexp_backends.prompts import stop_token_ids
    from coordexp_backends.vllm_server import VLLMServerBackend
    from coordexp_train.model.processor import set_image_size

    sized = copy.deepcopy(vl.processor)
    set_image_size(sized, 32 * 32 * 4)
    stops = stop_token_ids(vl.model.generation_config)
    backend = VLLMServerBackend(
        [vl_server.url], sized, 3, stops, timeout_s=60, weights_dir=tmp_path / "weights"
    )
    backend.sync_weights(vl.model)  # whatever another test left on the server
    hf = HFBackend(vl.model, sized, 3).generate(requests(), PARAMS)
    pad = vl.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert hf[0].prompt_token_ids.count(pad) < 12  # the checkpoint's default size gives 12
    assert payloads(backend.generate(requests(), PARAMS)) == payloads(hf)
    backend.close()


# ------------------------------------------------------------------ LoRA adapter sync
def lora_colocate(vl: Any, **lora: Any) -> Any:
    """A LoRA-enabled colocate engine (max_lora_rank 8, ``lora`` engine args) on the VL model."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from coordexp_backends.vllm_colocate import VLLMColocateBackend
    from coordexp_backends.weights import SyncPlan

    engine = {**ENGINE, "enable_lora": True, "max_lora_rank": 8, **lora}
    return VLLMColocateBackend(
        str(Path(vl.directory)), vl.processor, 3, engine, sync=SyncPlan(mode="auto")
    )


@pytest.fixture(scope="module")
def vl_lora_colocate(vl: Any) -> Iterator[Any]:
    backend = lora_colocate(vl)
    yield backend
    backend.close()


def vl_lora(vl: Any, target_modules: list[str]) -> Any:
    """A copy of the VL model under a LoRA with random non-zero factors."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(4)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=target_modules, init_lora_weights=False)
    return get_peft_model(copy.deepcopy(vl.model), config)


@pytest.mark.vllm
def test_vllm_colocate_syncs_a_language_model_lora_of_the_vl_model(
    vl: Any, vl_lora_colocate: Any
) -> None:
    before = vl_lora_colocate.generate(requests(), PARAMS)
    peft = vl_lora(vl, ["q_proj", "v_proj", "down_proj"])  # language-model layers only
    vl_lora_colocate.sync_weights(peft)
    assert vl_lora_colocate._lora is not None
    out = vl_lora_colocate.generate(requests(), PARAMS)
    assert payloads(out) == payloads(HFBackend(peft, vl.processor, 3).generate(requests(), PARAMS))
    assert [r.response_token_ids for r in out] != [r.response_token_ids for r in before]


@pytest.mark.vllm
def test_vllm_colocate_falls_back_to_merged_weights_for_a_vision_tower_lora(
    vl: Any, vl_lora_colocate: Any
) -> None:
    peft = vl_lora(vl, ["q_proj", "qkv"])  # qkv: the vision tower's attention
    vl_lora_colocate.sync_weights(peft)
    assert vl_lora_colocate._lora is None
    out = vl_lora_colocate.generate(requests(), PARAMS)
    assert payloads(out) == payloads(HFBackend(peft, vl.processor, 3).generate(requests(), PARAMS))


@pytest.mark.vllm
def test_an_engine_with_tower_lora_serves_a_vision_tower_adapter(vl: Any) -> None:
    backend = lora_colocate(vl, enable_tower_connector_lora=True)
    try:
        peft = vl_lora(vl, ["qkv"])  # the vision tower's attention only
        backend.sync_weights(peft)
        assert backend._lora is not None
        out = payloads(backend.generate(requests(), PARAMS))
        hf = HFBackend(peft, vl.processor, 3).generate(requests(), PARAMS)
        assert out == payloads(hf)
        assert out != payloads(HFBackend(vl.model, vl.processor, 3).generate(requests(), PARAMS))
    finally:
        backend.close()
