"""Weight sync through vLLM's native weight-transfer API, against real vLLM CPU servers.

Run in the vLLM CPU environment: ``bash scripts/test-vllm.sh``. The servers run
``coordexp-rollout-server --weight-transfer gloo`` (our gloo engine, loaded in the server
by this package's ``vllm.general_plugins`` entry point); the client drives
``/init_weight_transfer_engine`` once per server, then ``/start_weight_update``,
``/update_weights`` and ``/finish_weight_update`` per sync, with pause/resume around.
NCCL and CUDA IPC need GPUs: servers started with them are driven as far as vLLM allows
on CPU, and the steps that ran are asserted here (docs/rollout-backends.md lists them).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import torch

from coordexp_backends import DecodeParams, HFBackend, RolloutError, ServerError
from coordexp_backends.server_cli import LocalServer, free_port
from coordexp_backends.vllm_adapter import tensor_checksum
from coordexp_backends.vllm_server import VLLMServerBackend
from coordexp_backends.vllm_sync import ServerSyncClient

pytestmark = pytest.mark.vllm

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

GREEDY = DecodeParams(max_new_tokens=16)


def start(model_dir: Path, log: Path, transport: str) -> LocalServer:
    return LocalServer(
        ["--model", str(model_dir), "--port", str(free_port()), "--dtype", "float32",
         "--enforce-eager", "--gpu-memory-utilization", "0.1", "--max-model-len", "1024",
         "--weight-transfer", transport,
         "--", "--distributed-executor-backend", "uni", "--seed", "0"],
        log,
    )  # fmt: skip


def started(model_dir: Path, logs: Path, transports: list[str]) -> list[LocalServer]:
    made = [start(model_dir, logs / f"{t}{i}.log", t) for i, t in enumerate(transports)]
    deadline = time.monotonic() + 300
    try:
        for server in made:
            server.wait_ready(deadline)
    except BaseException:
        for server in made:
            server.kill()
        raise
    return made


def client(urls: list[str], tokenizer: Any, transport: str, **kw: Any) -> VLLMServerBackend:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    kw.setdefault("group_ports", [free_port() for _ in urls])
    kw.setdefault("timeout_s", 60)
    return VLLMServerBackend(urls, tokenizer, 2, (im_end,), transport=transport, **kw)


def perturb(model: Any, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def payloads(rollouts: list[Any]) -> list[dict[str, Any]]:
    return [r.payload() for r in rollouts]


def assert_checksums_match(backend: VLLMServerBackend, url: str, model: Any) -> None:
    """Every norm weight of the engine (read back by ``/weight_checker``) is the trainer's.

    Norms are the tensors vLLM stores exactly as the checkpoint does: projections are
    fused or repacked for the CPU kernels, embeddings and lm_head padded.
    """
    engine = {k.rsplit(":", 1)[1]: v for k, v in backend.weight_checksums(url).items()}
    trainer = {n: t for n, t in model.state_dict().items() if n.endswith("norm.weight")}
    assert len(trainer) == 9  # 2 layers x (input, post-attention, q, k) + the final norm
    assert {n: engine[n] for n in trainer} == {n: tensor_checksum(t) for n, t in trainer.items()}


# ---------------------------------------------------------------------------- gloo
@pytest.fixture(scope="module")
def gloo_servers(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LocalServer]]:
    made = started(model_dir, tmp_path_factory.mktemp("gloo-logs"), ["gloo", "gloo"])
    yield made
    for server in made:
        server.kill()


@pytest.fixture(scope="module")
def gloo_fleet(gloo_servers: list[LocalServer], tokenizer: Any) -> Iterator[VLLMServerBackend]:
    backend = client([s.url for s in gloo_servers], tokenizer, "gloo")
    yield backend
    backend.close()


def test_a_gloo_sync_makes_every_server_answer_as_hf_on_the_new_weights(
    gloo_fleet: VLLMServerBackend,
    gloo_servers: list[LocalServer],
    model: Any,
    tokenizer: Any,
    tiny: ModuleType,
) -> None:
    reqs = tiny.requests(4)  # chunks of 2: both servers answer
    before = gloo_fleet.generate(reqs, GREEDY)
    assert payloads(before) == payloads(HFBackend(model, tokenizer, 2).generate(reqs, GREEDY))
    perturb(model, seed=2)
    gloo_fleet.sync_weights(model)
    for server in gloo_servers:
        assert_checksums_match(gloo_fleet, server.url, model)
    after = gloo_fleet.generate(reqs, GREEDY)
    assert {r.served_by for r in after} == {s.url for s in gloo_servers}
    assert [r.response_token_ids for r in after] != [r.response_token_ids for r in before]
    assert payloads(after) == payloads(HFBackend(model, tokenizer, 2).generate(reqs, GREEDY))


def test_two_gloo_syncs_in_a_row_each_serve_their_weights(
    gloo_fleet: VLLMServerBackend,
    gloo_servers: list[LocalServer],
    model: Any,
    tokenizer: Any,
    tiny: ModuleType,
) -> None:
    reqs = tiny.requests(4)
    original = payloads(HFBackend(model, tokenizer, 2).generate(reqs, GREEDY))
    perturb(model, seed=3)
    gloo_fleet.sync_weights(model)
    assert payloads(gloo_fleet.generate(reqs, GREEDY)) == payloads(
        HFBackend(model, tokenizer, 2).generate(reqs, GREEDY)
    )
    seed0 = tiny.build_model(tokenizer)
    gloo_fleet.sync_weights(seed0)  # a second sync through the same transfer groups
    for server in gloo_servers:
        assert_checksums_match(gloo_fleet, server.url, seed0)
    assert payloads(gloo_fleet.generate(reqs, GREEDY)) == original
    assert gloo_fleet.fleet.healthy() == [s.url for s in gloo_servers]


def test_a_hung_server_fails_its_sync_naming_the_bound_and_rejoins_with_a_new_group(
    gloo_servers: list[LocalServer], model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    b = gloo_servers[1]
    impatient = client([b.url], tokenizer, "gloo", timeout_s=6)
    impatient.sync_weights(model)  # opens this client's transfer group with the server
    perturb(model, seed=5)
    os.killpg(b.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(RolloutError) as info:
            impatient.sync_weights(model)
    finally:
        os.killpg(b.proc.pid, signal.SIGCONT)
    assert str(info.value) == (
        f"no vLLM server holds the new weights: {b.url}=dead (weight sync failed: timed out "
        "after 6 s (rollout_matching.vllm.server.timeout_s): ReadTimeout)"
    )
    impatient.sync_weights(model)  # answers again: a new group, the weights, then work
    assert impatient.fleet.states == {b.url: "healthy"}
    assert_checksums_match(impatient, b.url, model)
    reqs = tiny.requests(2)
    assert payloads(impatient.generate(reqs, GREEDY)) == payloads(
        HFBackend(model, tokenizer, 2).generate(reqs, GREEDY)
    )
    impatient.close()


def test_a_server_that_died_fails_its_sync_with_an_error_naming_it(
    gloo_fleet: VLLMServerBackend,
    gloo_servers: list[LocalServer],
    model: Any,
    tokenizer: Any,
    tiny: ModuleType,
) -> None:
    a, b = gloo_servers
    b.kill()
    perturb(model, seed=4)
    gloo_fleet.sync_weights(model)  # the live server still receives the weights
    assert gloo_fleet.fleet.states == {a.url: "healthy", b.url: "dead"}
    assert "weight sync failed" in gloo_fleet.fleet.last_error[b.url]
    assert_checksums_match(gloo_fleet, a.url, model)
    alone = client([b.url], tokenizer, "gloo")
    with pytest.raises(RolloutError) as info:
        alone.sync_weights(model)
    assert f"no vLLM server is reachable: {b.url}=dead (unreachable: ConnectError" in str(
        info.value
    )
    alone.close()
    out = gloo_fleet.generate(tiny.requests(2), GREEDY)
    assert {r.served_by for r in out} == {a.url}


# ---------------------------------------------------------------------------- nccl, ipc
@pytest.fixture(scope="module")
def gpu_transport_servers(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, LocalServer]]:
    made = started(model_dir, tmp_path_factory.mktemp("gpu-logs"), ["nccl", "ipc"])
    yield dict(zip(["nccl", "ipc"], made, strict=True))
    for server in made:
        server.kill()


@pytest.mark.parametrize("transport", ["nccl", "ipc"])
def test_a_gpu_transport_on_cpu_is_refused_naming_the_key(
    gpu_transport_servers: dict[str, LocalServer], model: Any, tokenizer: Any, transport: str
) -> None:
    server = gpu_transport_servers[transport]
    backend = client([server.url], tokenizer, transport)
    with pytest.raises(RolloutError) as info:
        backend.sync_weights(model)
    assert not isinstance(info.value, ServerError)
    assert str(info.value).startswith(
        f"rollout_matching.vllm.sync.transport={transport} needs CUDA GPUs on the trainer"
    )
    assert "use transport: gloo" in str(info.value)
    assert backend.fleet.states == {server.url: "healthy"}  # the server is not to blame
    assert httpx.get(server.url + "/is_paused").json() == {"is_paused": False}
    backend.close()


def lifecycle(url: str, transport: str, init_info: dict[str, Any]) -> dict[str, str]:
    """Each native-API step on ``url`` (fresh connection each): "ok" or the server's error."""
    update = {"names": ["model.norm.weight"], "dtype_names": ["float32"], "shapes": [[128]]}
    if transport == "ipc":
        update["ipc_handles"] = [{}]
    steps = {
        "init": lambda c: c.init_weight_transfer_engine(init_info),
        "start": lambda c: c.start_weight_update(),
        "update": lambda c: c.update_weights(update),
        "finish": lambda c: c.finish_weight_update(),
    }
    seen: dict[str, str] = {}
    for name, step in steps.items():
        with httpx.Client() as http:
            try:
                step(ServerSyncClient(http, url, 60, transport))
                seen[name] = "ok"
            except ServerError as exc:
                seen[name] = exc.cause
    return seen


def test_the_nccl_lifecycle_on_cpu_stops_at_the_rendezvous(
    gpu_transport_servers: dict[str, LocalServer],
) -> None:
    url = gpu_transport_servers["nccl"].url
    init = {"master_address": "127.0.0.1", "master_port": free_port(), "rank_offset": 1}
    seen = lifecycle(url, "nccl", {**init, "world_size": 2})
    assert "/init_weight_transfer_engine failed" in seen["init"]
    assert "Found no NVIDIA driver" in seen["init"]
    assert seen["start"] == "ok"
    assert "NCCL weight transfer not initialized" in seen["update"]
    assert "finish_weight_update called without a matching start_weight_update" in seen["finish"]
    assert httpx.get(url + "/health").status_code == 200


def test_the_ipc_lifecycle_on_cpu_stops_at_the_first_tensor(
    gpu_transport_servers: dict[str, LocalServer],
) -> None:
    url = gpu_transport_servers["ipc"].url
    seen = lifecycle(url, "ipc", {"packed": False})
    assert (seen["init"], seen["start"]) == ("ok", "ok")
    assert "Found no NVIDIA driver" in seen["update"]
    assert "finish_weight_update called without a matching start_weight_update" in seen["finish"]
    assert httpx.get(url + "/health").status_code == 200


def test_a_server_running_another_transport_fails_fast_naming_the_route_and_the_flag(
    gpu_transport_servers: dict[str, LocalServer], model: Any, tokenizer: Any
) -> None:
    server = gpu_transport_servers["nccl"]
    backend = client([server.url], tokenizer, "gloo")  # rendezvous bound: 60 s
    start = time.monotonic()
    with pytest.raises(RolloutError) as info:
        backend.sync_weights(model)
    assert time.monotonic() - start < 30  # the refusal, not the rendezvous timeout
    msg = str(info.value)
    assert msg.startswith(
        f"no vLLM server holds the new weights: {server.url}=dead (weight sync failed: weight "
        "transfer call /init_weight_transfer_engine failed "
        "(rollout_matching.vllm.sync.transport=gloo): HTTP 500"
    )
    assert "Invalid init_info for NCCLWeightTransferEngine" in msg
    assert "start the server with `coordexp-rollout-server --weight-transfer gloo`" in msg
    assert httpx.get(server.url + "/is_paused").json() == {"is_paused": False}  # not paused
    backend.close()
