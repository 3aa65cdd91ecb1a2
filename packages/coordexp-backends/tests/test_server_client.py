"""The vLLM server client's chunking, ordering, retries, timeouts and sync calls.

The servers here are a TEST DOUBLE: a stdlib ``http.server`` on loopback that speaks the
subset of vLLM's OpenAI server API the client uses (``/health``, ``/v1/models``,
``/v1/completions`` with token-id prompts, and the dev-mode sync routes), so that network
failures (HTTP 500, dropped connections, slowness, a dead port) can be produced on demand.
The same client against real vLLM servers is proven in ``test_vllm_engines.py``.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
import pytest
import torch
from safetensors.torch import load_file

from coordexp_backends import DecodeParams, RolloutError, ServerError
from coordexp_backends.fleet import Fleet
from coordexp_backends.rollout import request_seed
from coordexp_backends.vllm_server import VLLMServerBackend
from coordexp_backends.vllm_sync import ServerSyncClient, Transport, route_address
from coordexp_backends.weights import SyncPlan, base_weights, named_weights

PARAMS = DecodeParams(max_new_tokens=8)
EOS = 2


def with_lora(model: Any, **config: Any) -> Any:
    """``model`` with a rank-4 LoRA on the attention projections (``config``: more settings)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], **config))


@runtime_checkable
class VLLMWeightSyncClientShape(Protocol):
    """The four methods of vLLM's ``VLLMWeightSyncClient`` protocol (vLLM is not installed
    in the default suite; the real protocol is exercised in test_vllm_weight_transfer.py)."""

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None: ...

    def start_weight_update(self) -> None: ...

    def update_weights(self, update_info: Any) -> None: ...

    def finish_weight_update(self, weight_version: str | None = None) -> None: ...


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out and hung up is expected here: no traceback."""


class DoubleServer:
    """A loopback HTTP server imitating vLLM's routes; ``mode`` sets its failure."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | fail500 | drop | slow | reject400
        self.delay_s = 0.0
        self.route_status: dict[str, int] = {}  # control routes answering an HTTP error
        self.lora_config: dict[str, Any] | None = None  # what /server_info reports
        self.chunks: list[list[list[int]]] = []
        self.calls: list[tuple[str, Any]] = []
        self.active = 0  # completion requests being answered now
        self.peak = 0  # the most ever answered at once
        lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                answers = {
                    "/health": {},
                    "/v1/models": {"data": [{"id": "tiny"}]},
                    "/get_world_size": {"world_size": 1},
                    "/server_info?config_format=json": {
                        "vllm_config": {"lora_config": double.lora_config}
                    },
                }
                if self.path in answers:
                    self._send(200, answers[self.path])
                else:
                    self._send(404, {"error": self.path})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                double.calls.append((self.path, body))
                if self.path == "/v1/chat/completions":
                    choice = {"index": 0, "token_ids": [7, EOS], "finish_reason": "stop"}
                    self._send(200, {"prompt_token_ids": [1, 2, 3], "choices": [choice]})
                    return
                if self.path in double.route_status:
                    self._send(double.route_status[self.path], {"error": f"{self.path} broke"})
                    return
                if self.path != "/v1/completions":
                    time.sleep(double.delay_s if double.mode == "slow" else 0.0)
                    self._send(200, {})
                    return
                if double.mode == "drop":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if double.mode == "fail500":
                    self._send(500, {"error": "engine died"})
                    return
                if double.mode == "reject400":
                    self._send(400, {"error": "prompt too long"})
                    return
                if double.mode == "slow":
                    with lock:
                        double.active += 1
                        double.peak = max(double.peak, double.active)
                    time.sleep(double.delay_s)
                    with lock:
                        double.active -= 1
                double.chunks.append(body["prompt"])
                choices = [
                    {
                        "index": i,
                        "prompt_token_ids": prompt,
                        "token_ids": [len(prompt) % 50 + 100, sum(prompt) % 50 + 100, EOS],
                        "finish_reason": "stop",
                    }
                    for i, prompt in enumerate(body["prompt"])
                ]
                self._send(200, {"choices": choices})

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[DoubleServer]]:
    made = [DoubleServer(), DoubleServer(), DoubleServer()]
    yield made
    for s in made:
        if s.thread.is_alive():
            s.stop()


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def client(urls: list[str], tokenizer: Any, **kw: Any) -> VLLMServerBackend:
    kw.setdefault("timeout_s", 5.0)
    return VLLMServerBackend(urls, tokenizer, kw.pop("batch", 2), (EOS,), **kw)


def test_chunks_are_contiguous_round_robin_and_reassembled_in_order(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a, b, _ = servers
    reqs = tiny.requests(7)
    out = client([a.url, b.url], tokenizer).generate(reqs, PARAMS)
    assert [r.request_id for r in out] == [r.request_id for r in reqs]
    assert [r.served_by for r in out] == [a.url] * 2 + [b.url] * 2 + [a.url] * 2 + [b.url]
    # Chunks travel concurrently, so a server may receive its two in either order.
    assert sorted(len(c) for c in a.chunks) == [2, 2]
    assert sorted(len(c) for c in b.chunks) == [1, 2]
    for r in out:
        p = list(r.prompt_token_ids)
        assert r.response_token_ids == (len(p) % 50 + 100, sum(p) % 50 + 100, EOS)
        assert r.finish_reason == "stop"
        assert r.backend == "vllm-server"
        assert r.timings.batch_size in (1, 2)


@pytest.mark.parametrize("failure", ["fail500", "drop"])
def test_a_failing_servers_chunk_is_retried_on_another(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any, failure: str
) -> None:
    a, b, _ = servers
    b.mode = failure
    backend = client([a.url, b.url], tokenizer)
    reqs = tiny.requests(4)
    out = backend.generate(reqs, PARAMS)
    assert [r.request_id for r in out] == ["r0", "r1", "r2", "r3"]
    assert {r.served_by for r in out} == {a.url}
    assert backend.fleet.states == {a.url: "healthy", b.url: "dead"}
    assert len(a.chunks) == 2
    # The dead server gets no more work.
    calls = len(b.calls)
    backend.generate(reqs, PARAMS)
    assert len(b.calls) == calls


def test_a_killed_server_is_retried_elsewhere(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a, b, _ = servers
    backend = client([a.url, b.url], tokenizer)
    backend.check_health()
    b.stop()  # dies after the health check, before the rollouts
    out = backend.generate(tiny.requests(4), PARAMS)
    assert [r.served_by for r in out] == [a.url] * 4
    assert "ConnectError" in backend.fleet.last_error[b.url]


def test_all_servers_down_fails_naming_servers_request_ids_and_causes(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a, b, _ = servers
    a.mode, b.mode = "fail500", "drop"
    with pytest.raises(ServerError) as info:
        client([a.url, b.url], tokenizer, batch=4).generate(tiny.requests(3), PARAMS)
    msg = str(info.value)
    assert "request ids: r0, r1, r2" in msg
    assert f"{a.url}: HTTP 500" in msg
    assert b.url in msg
    assert info.value.request_ids == ["r0", "r1", "r2"]


def test_all_servers_down_names_every_unanswered_request_whatever_the_timing(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a, b, _ = servers
    a.mode, b.mode = "fail500", "drop"
    for _ in range(5):
        backend = client([a.url, b.url], tokenizer, batch=2)
        with pytest.raises(ServerError) as info:
            backend.generate(tiny.requests(5), PARAMS)
        assert info.value.request_ids == ["r0", "r1", "r2", "r3", "r4"]
        assert "request ids: r0, r1, r2, r3, r4" in str(info.value)


def test_retries_are_bounded(servers: list[DoubleServer], tokenizer: Any, tiny: Any) -> None:
    for s in servers:
        s.mode = "fail500"
    backend = client([s.url for s in servers], tokenizer, batch=4, max_retries=1)
    with pytest.raises(ServerError, match="chunk 0 failed on every server tried"):
        backend.generate(tiny.requests(2), PARAMS)
    assert [len(s.calls) for s in servers] == [1, 1, 0]


def test_a_slow_server_times_out_with_an_error_naming_it(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a = servers[0]
    a.mode, a.delay_s = "slow", 2.0
    with pytest.raises(ServerError) as info:
        client([a.url], tokenizer, infer_timeout_s=0.3).generate(tiny.requests(1), PARAMS)
    msg = str(info.value)
    assert a.url in msg
    assert "timed out after 0.3 s (rollout_matching.vllm.server.infer_timeout_s)" in msg
    assert "request ids: r0" in msg


def test_a_slow_server_is_replaced_by_a_fast_one(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a, b, _ = servers
    a.mode, a.delay_s = "slow", 2.0
    out = client([a.url, b.url], tokenizer, infer_timeout_s=0.3).generate(tiny.requests(2), PARAMS)
    assert [r.served_by for r in out] == [b.url, b.url]


def test_a_rejected_request_is_not_retried(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a, b, _ = servers
    a.mode = "reject400"
    backend = client([a.url, b.url], tokenizer, batch=4)
    with pytest.raises(ServerError, match="rejected the request: HTTP 400"):
        backend.generate(tiny.requests(2), PARAMS)
    assert b.calls == []
    assert backend.fleet.states[a.url] == "healthy"


def test_unreachable_servers_are_reported_before_first_use(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gone = dead_url()
    backend = client([servers[0].url, gone], tokenizer)
    out = backend.generate(tiny.requests(3), PARAMS)
    assert {r.served_by for r in out} == {servers[0].url}
    assert f"{gone}=dead (unreachable: ConnectError" in caplog.text
    with pytest.raises(RolloutError, match="no vLLM server is reachable") as info:
        client([gone, dead_url()], tokenizer).check_health()
    assert gone in str(info.value)


def test_sync_pauses_reloads_resets_and_resumes_each_server(
    servers: list[DoubleServer], tokenizer: Any, model: Any, tmp_path: Path
) -> None:
    a, b, _ = servers
    backend = client([a.url, b.url], tokenizer, weights_dir=tmp_path / "w")
    backend.sync_weights(model)
    assert (tmp_path / "w" / "model.safetensors").exists()
    for s in (a, b):
        assert [path for path, _ in s.calls] == [
            "/pause?mode=wait",
            "/collective_rpc",
            "/reset_prefix_cache",
            "/reset_mm_cache",
            "/reset_encoder_cache",
            "/resume",
        ]
        assert s.calls[1][1] == {
            "method": "reload_weights",
            "kwargs": {"weights_path": str(tmp_path / "w")},
        }


def test_a_recovered_server_rejoins_only_after_receiving_weights(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any, model: Any, tmp_path: Path
) -> None:
    a, b, _ = servers
    b.mode = "fail500"
    backend = client([a.url, b.url], tokenizer, weights_dir=tmp_path)
    backend.generate(tiny.requests(4), PARAMS)
    assert backend.fleet.states[b.url] == "dead"
    b.mode = "ok"  # alive again, but holding old weights
    backend.generate(tiny.requests(4), PARAMS)
    assert b.chunks == []
    backend.sync_weights(model)
    assert backend.fleet.states[b.url] == "healthy"
    out = backend.generate(tiny.requests(4), PARAMS)
    assert {r.served_by for r in out} == {a.url, b.url}


def test_sync_without_a_weights_dir_is_refused(
    servers: list[DoubleServer], tokenizer: Any, model: Any
) -> None:
    with pytest.raises(RolloutError, match="needs weights_dir"):
        client([servers[0].url], tokenizer).sync_weights(model)


def test_image_chunks_go_to_the_chat_route_with_exact_pixels(
    servers: list[DoubleServer], tokenizer: Any
) -> None:
    from PIL import Image

    from coordexp_backends import RolloutRequest

    a = servers[0]
    pixels = bytes(range(256)) * 3 * 4
    img = Image.frombytes("RGB", (32, 32), pixels)
    ask = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Detect."}]}]
    reqs = [
        RolloutRequest("img0", ask, images=(img,)),
        RolloutRequest("txt1", [{"role": "user", "content": "x"}]),
    ]
    out = client([a.url], tokenizer, batch=2).generate(reqs, PARAMS)
    assert [r.request_id for r in out] == ["img0", "txt1"]
    assert out[0].response_token_ids == (7, EOS)
    bodies = [body for path, body in a.calls if path == "/v1/chat/completions"]
    assert len(bodies) == 1  # a chunk holding images is sent one request per sample
    # the chunk's text-only sample goes alone to the completion route, with exact ids
    assert a.chunks == [[list(out[1].prompt_token_ids)]]
    [sent] = bodies
    part = sent["messages"][0]["content"][0]
    assert part["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert part["image_url"]["url"].startswith(prefix)
    decoded = Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"][len(prefix) :])))
    assert decoded.convert("RGB").tobytes() == img.tobytes()
    assert sent["messages"][0]["content"][1] == {"type": "text", "text": "Detect."}
    assert sent["add_generation_prompt"] is True
    assert sent["return_token_ids"] is True


def test_seeded_sampling_sends_every_request_its_own_seed(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a = servers[0]
    same = [tiny.requests(1)[0]] * 4
    params = DecodeParams(max_new_tokens=8, temperature=1.0, seed=7)
    out = client([a.url], tokenizer, batch=4).generate(same, params)
    assert [r.request_id for r in out] == ["r0"] * 4
    bodies = [body for path, body in a.calls if path == "/v1/completions"]
    assert [len(b["prompt"]) for b in bodies] == [1, 1, 1, 1]
    assert sorted(b["seed"] for b in bodies) == sorted(request_seed(7, i) for i in range(4))


@pytest.mark.parametrize(
    "params", [PARAMS, DecodeParams(max_new_tokens=8, temperature=1.0)], ids=["greedy", "unseeded"]
)
def test_a_chunk_without_per_request_seeds_is_one_request(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any, params: DecodeParams
) -> None:
    a = servers[0]
    client([a.url], tokenizer, batch=4).generate(tiny.requests(4), params)
    [(path, body)] = a.calls
    assert path == "/v1/completions"
    assert len(body["prompt"]) == 4
    assert "seed" not in body


def test_in_flight_requests_are_bounded_per_server_and_wait_in_the_client(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a, b, _ = servers
    for s in (a, b):
        s.mode, s.delay_s = "slow", 0.4
    # 12 chunks, 2 in flight per server: the last ones wait 0.8 s for a slot (longer than
    # timeout_s, which bounds getting a pooled connection) and finish 1.2 s after the call
    # starts (longer than infer_timeout_s): neither limit counts the wait in the client.
    backend = client(
        [a.url, b.url], tokenizer, batch=1, max_in_flight=2, timeout_s=0.3, infer_timeout_s=0.9
    )
    backend.check_health()
    out = backend.generate(tiny.requests(12), PARAMS)
    assert [r.request_id for r in out] == [f"r{i}" for i in range(12)]
    assert (a.peak, b.peak) == (2, 2)
    assert len(a.chunks) == len(b.chunks) == 6
    backend.close()


def test_a_null_infer_timeout_waits_for_slow_generation(
    servers: list[DoubleServer], tokenizer: Any, tiny: Any
) -> None:
    a = servers[0]
    a.mode, a.delay_s = "slow", 0.6
    backend = client([a.url], tokenizer, timeout_s=0.3, infer_timeout_s=None)
    out = backend.generate(tiny.requests(2), PARAMS)
    assert [r.served_by for r in out] == [a.url, a.url]


def test_max_in_flight_must_be_positive(servers: list[DoubleServer], tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="max_in_flight must be >= 1, got 0"):
        client([servers[0].url], tokenizer, max_in_flight=0)


def test_fleet_state_machine() -> None:
    fleet = Fleet(["u1", "u2"])
    assert fleet.healthy() == ["u1", "u2"]
    fleet.mark_dead("u1", "boom")
    assert fleet.healthy() == ["u2"]
    fleet.mark_alive("u1")
    assert fleet.states["u1"] == "stale"
    assert fleet.healthy() == ["u2"]
    fleet.mark_synced("u1")
    assert fleet.healthy() == ["u1", "u2"]
    assert fleet.describe() == "u1=healthy (boom), u2=healthy"
    fleet.mark_alive("u2")  # a healthy server stays healthy
    assert fleet.states["u2"] == "healthy"


def test_fleet_rejects_empty_and_duplicate_lists() -> None:
    with pytest.raises(ValueError, match="servers is empty"):
        Fleet([])
    with pytest.raises(ValueError, match="lists a base_url twice"):
        Fleet(["u", "u"])


# ---------------------------------------------------------------- native weight transfer
def sync_client(server: DoubleServer, timeout_s: float = 5.0) -> ServerSyncClient:
    return ServerSyncClient(httpx.Client(), server.url, timeout_s, "gloo")


def test_the_sync_client_drives_vllms_weight_transfer_routes(
    servers: list[DoubleServer],
) -> None:
    a = servers[0]
    c = sync_client(a)
    assert isinstance(c, VLLMWeightSyncClientShape)
    assert c.world_size() == 1
    c.init_weight_transfer_engine({"master_port": 5})
    c.start_weight_update()
    update = {"names": ["w"], "dtype_names": ["float32"], "shapes": [[2]]}
    c.update_weights(update)
    c.finish_weight_update()
    c.finish_weight_update("step-7")
    assert a.calls == [
        ("/init_weight_transfer_engine", {"init_info": {"master_port": 5}}),
        ("/start_weight_update", {}),
        ("/update_weights", {"update_info": update}),
        ("/finish_weight_update", {}),
        ("/finish_weight_update", {"weight_version": "step-7"}),
    ]  # fmt: skip


def test_a_failed_transfer_call_names_the_server_route_key_and_fix(
    servers: list[DoubleServer],
) -> None:
    a = servers[0]
    a.route_status = {"/update_weights": 500}
    with pytest.raises(ServerError) as info:
        sync_client(a).update_weights({"names": []})
    msg = str(info.value)
    assert msg.startswith(f"vLLM server {a.url}: weight transfer call /update_weights failed ")
    assert "(rollout_matching.vllm.sync.transport=gloo): HTTP 500" in msg
    assert "/update_weights broke" in msg
    assert "start the server with `coordexp-rollout-server --weight-transfer gloo`" in msg
    assert info.value.server == a.url


def test_a_hung_transfer_call_times_out_naming_the_bound(servers: list[DoubleServer]) -> None:
    a = servers[0]
    a.mode, a.delay_s = "slow", 2.0
    with pytest.raises(ServerError, match=r"/start_weight_update failed") as info:
        sync_client(a, timeout_s=0.3).start_weight_update()
    assert "timed out after 0.3 s (rollout_matching.vllm.server.timeout_s)" in str(info.value)


def test_an_unreachable_server_fails_the_world_size_query_naming_it() -> None:
    gone = dead_url()
    with pytest.raises(ServerError, match=r"/get_world_size failed .*ConnectError") as info:
        ServerSyncClient(httpx.Client(), gone, 1.0, "nccl").world_size()
    assert gone in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_route_address_to_a_loopback_server_is_loopback(host: str) -> None:
    assert route_address(f"http://{host}:8000") == "127.0.0.1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine may run nccl and ipc")
@pytest.mark.parametrize("transport", ["nccl", "ipc"])
def test_a_gpu_transport_without_cuda_fails_before_touching_a_server(
    servers: list[DoubleServer], tokenizer: Any, model: Any, transport: Transport
) -> None:
    a = servers[0]
    backend = client([a.url], tokenizer, transport=transport, group_ports=[51216])
    with pytest.raises(RolloutError) as info:
        backend.sync_weights(model)
    assert str(info.value).startswith(
        f"rollout_matching.vllm.sync.transport={transport} needs CUDA GPUs on the trainer and "
        "the servers, but this trainer sees none"
    )
    assert a.calls == []  # not paused, not blamed
    assert backend.fleet.states == {a.url: "healthy"}


def test_a_native_transport_needs_a_group_port_per_server(
    servers: list[DoubleServer], tokenizer: Any
) -> None:
    a, b, _ = servers
    with pytest.raises(ValueError) as info:
        client([a.url, b.url], tokenizer, transport="gloo", group_ports=[51216])
    assert str(info.value) == (
        "rollout_matching.vllm.sync.transport=gloo needs a group_port for each of the 2 "
        "servers, got 1"
    )


def test_the_checkpoint_transport_needs_no_group_ports(
    servers: list[DoubleServer], tokenizer: Any, model: Any, tmp_path: Path
) -> None:
    backend = client([servers[0].url], tokenizer, weights_dir=tmp_path)
    assert backend.transport == "checkpoint"
    backend.sync_weights(model)
    assert "/collective_rpc" in [path for path, _ in servers[0].calls]


# ---------------------------------------------------------------- LoRA adapter sync
def lora_fleet(
    servers: list[DoubleServer], tokenizer: Any, weights_dir: Path
) -> tuple[DoubleServer, DoubleServer, VLLMServerBackend]:
    """Two servers serving LoRA up to rank 8 and a client syncing under ``sync.mode=auto``."""
    a, b, _ = servers
    for s in (a, b):
        s.lora_config = {"max_lora_rank": 8}
    backend = client([a.url, b.url], tokenizer, weights_dir=weights_dir, sync=SyncPlan("auto"))
    return a, b, backend


def test_adapter_syncs_load_each_version_on_every_server_and_requests_name_it(
    servers: list[DoubleServer], tokenizer: Any, model: Any, tiny: Any, tmp_path: Path
) -> None:
    a, b, backend = lora_fleet(servers, tokenizer, tmp_path)
    plain = tiny.build_model(tokenizer)
    peft = with_lora(model)  # (wraps ``model`` in place)
    backend.sync_weights(peft)
    backend.sync_weights(peft)
    first = tmp_path / "lora" / "adapter-000001"
    second = tmp_path / "lora" / "adapter-000002"
    for s in (a, b):
        assert [(path, body) for path, body in s.calls] == [
            ("/v1/load_lora_adapter", {"lora_name": "coordexp-lora-1", "lora_path": str(first)}),
            ("/v1/load_lora_adapter", {"lora_name": "coordexp-lora-2", "lora_path": str(second)}),
            ("/v1/unload_lora_adapter", {"lora_name": "coordexp-lora-1"}),
        ]
    assert (second / "adapter_config.json").exists()
    assert not first.exists()  # only the newest version is kept
    backend.generate(tiny.requests(4), PARAMS)
    bodies = [body for s in (a, b) for path, body in s.calls if path == "/v1/completions"]
    assert [body["model"] for body in bodies] == ["coordexp-lora-2"] * 2
    backend.sync_weights(plain)  # a plain model's weights answer under the server's name
    backend.generate(tiny.requests(2), PARAMS)
    assert a.calls[-1][1]["model"] == "tiny"


@pytest.mark.parametrize(
    ("lora_config", "reason"),
    [(None, "the engine was started without LoRA"), ({"max_lora_rank": 2}, "rank 4")],
    ids=["no-lora", "rank-too-small"],
)
def test_an_adapter_the_servers_cannot_serve_is_refused_with_guidance(
    servers: list[DoubleServer],
    tokenizer: Any,
    model: Any,
    tmp_path: Path,
    lora_config: dict[str, Any] | None,
    reason: str,
) -> None:
    a = servers[0]
    a.lora_config = lora_config
    plan = SyncPlan("auto", fallback_to_full=False)
    backend = client([a.url], tokenizer, weights_dir=tmp_path, sync=plan)
    with pytest.raises(RolloutError) as info:
        backend.sync_weights(with_lora(model))
    msg = str(info.value)
    assert msg.startswith("rollout_matching.vllm.sync.mode=auto: the LoRA adapter cannot be synced")
    assert reason in msg
    assert "set rollout_matching.vllm.sync.fallback_to_full: true" in msg
    assert "started with `coordexp-rollout-server --lora-max-rank R`" in msg
    assert a.calls == []  # nothing was loaded
    assert list(tmp_path.iterdir()) == []  # nor written


def test_adapter_sync_needs_a_weights_dir(
    servers: list[DoubleServer], tokenizer: Any, model: Any
) -> None:
    servers[0].lora_config = {"max_lora_rank": 8}
    with pytest.raises(RolloutError, match="vLLM server adapter sync needs weights_dir"):
        client([servers[0].url], tokenizer, sync=SyncPlan("auto")).sync_weights(with_lora(model))


def test_a_failed_adapter_load_marks_the_server_dead_and_a_refusal_fails_the_sync(
    servers: list[DoubleServer], tokenizer: Any, model: Any, tmp_path: Path
) -> None:
    a, b, _ = servers
    for s in (a, b):
        s.lora_config = {"max_lora_rank": 8}
    a.route_status = {"/v1/load_lora_adapter": 500}
    backend = client([a.url, b.url], tokenizer, weights_dir=tmp_path, sync=SyncPlan("adapter"))
    peft = with_lora(model)
    backend.sync_weights(peft)
    assert backend.fleet.states == {a.url: "dead", b.url: "healthy"}
    assert "weight sync failed: HTTP 500" in backend.fleet.last_error[a.url]
    b.route_status = {"/v1/load_lora_adapter": 400}
    with pytest.raises(ServerError) as info:
        backend.sync_weights(peft)
    assert str(info.value).startswith(
        f"vLLM server {b.url}: refused the LoRA adapter (/v1/load_lora_adapter): HTTP 400"
    )


# ---------------------------------------------------------------- merged weights of a PEFT model
RELOAD = ["/pause?mode=wait", "/collective_rpc"]
RELOAD += ["/reset_prefix_cache", "/reset_mm_cache", "/reset_encoder_cache", "/resume"]


def paths(server: DoubleServer) -> list[str]:
    """The routes the server was called on since the last look (then forgotten)."""
    seen = [path for path, _ in server.calls]
    server.calls.clear()
    return seen


def assert_checkpoint(folder: Path, weights: dict[str, torch.Tensor]) -> None:
    written = load_file(folder / "model.safetensors")
    assert written.keys() == weights.keys()
    assert all(torch.equal(written[k], weights[k]) for k in weights)


@pytest.mark.parametrize(
    "extra",
    [{"trainable_token_indices": {"embed_tokens": [3, 5]}}, {"modules_to_save": ["lm_head"]}],
    ids=["trainable-tokens", "modules-to-save"],
)
def test_an_unservable_adapter_falls_back_to_merged_weights_through_the_checkpoint(
    servers: list[DoubleServer],
    tokenizer: Any,
    model: Any,
    tiny: Any,
    tmp_path: Path,
    extra: dict[str, Any],
) -> None:
    a, b, backend = lora_fleet(servers, tokenizer, tmp_path)
    peft = with_lora(model, **extra)
    backend.sync_weights(peft)
    for s in (a, b):
        assert paths(s) == RELOAD
    assert_checkpoint(tmp_path, dict(named_weights(peft)))
    assert not (tmp_path / "lora").exists()  # no adapter was saved
    backend.generate(tiny.requests(4), PARAMS)
    assert {body["model"] for s in (a, b) for _, body in s.calls} == {"tiny"}


def test_full_and_adapter_syncs_alternate_restoring_base_weights_and_model_names(
    servers: list[DoubleServer], tokenizer: Any, model: Any, tiny: Any, tmp_path: Path
) -> None:
    a, b, backend = lora_fleet(servers, tokenizer, tmp_path)
    peft = with_lora(model, init_lora_weights=False)  # the merged weights differ from the base
    base = dict(base_weights(peft))
    unload_1 = ("/v1/unload_lora_adapter", {"lora_name": "coordexp-lora-1"})

    def model_names() -> set[str]:
        backend.generate(tiny.requests(4), PARAMS)
        names = {body["model"] for s in (a, b) for p, body in s.calls if p == "/v1/completions"}
        for s in (a, b):
            s.calls.clear()
        return names

    backend.sync_weights(peft)  # adapter: the servers hold the base checkpoint
    for s in (a, b):
        assert paths(s) == ["/v1/load_lora_adapter"]
    assert model_names() == {"coordexp-lora-1"}

    backend.sync = SyncPlan("full")  # adapter -> full: merged weights, adapter unloaded
    backend.sync_weights(peft)
    for s in (a, b):
        assert [(p, body) for p, body in s.calls if "lora" in p] == [unload_1]
        assert [p for p, _ in s.calls if "lora" not in p] == RELOAD
        s.calls.clear()
    merged = dict(named_weights(peft))
    assert any(not torch.equal(merged[k], base[k]) for k in base)
    assert_checkpoint(tmp_path, merged)
    assert model_names() == {"tiny"}

    backend.sync = SyncPlan("auto")  # full -> adapter: base weights back first, then the adapter
    backend.sync_weights(peft)
    for s in (a, b):
        assert paths(s) == [*RELOAD, "/v1/load_lora_adapter"]  # version 1 is gone already
    assert_checkpoint(tmp_path, base)
    assert model_names() == {"coordexp-lora-2"}

    backend.sync_weights(peft)  # adapter -> adapter: no base weights resent
    for s in (a, b):
        assert paths(s) == ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]
