"""Value rules checked after the shape is valid: ranges, required combinations, servers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from coordexp_schema import ConfigError, TrainingConfig, parse_strict

Payload = Callable[..., dict[str, Any]]


def issues_of(payload: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_strict(TrainingConfig, payload)
    return {i.path: i.message for i in info.value.issues}


def with_rollout(payload: Payload, **rollout: Any) -> dict[str, Any]:
    p = payload("stage2_ab_training")
    p["rollout_matching"].update(rollout)
    return p


def servers(*entries: tuple[str, int]) -> dict[str, Any]:
    return {
        "rollout_backend": "vllm",
        "vllm": {
            "mode": "server",
            "server": {"servers": [{"base_url": u, "group_port": g} for u, g in entries]},
        },
    }


@pytest.mark.parametrize(
    ("rollout", "path", "message"),
    [
        ({"decode_batch_size": 0}, "rollout_matching.decode_batch_size", "must be > 0, got 0"),
        (
            {"decoding": {"top_p": 0.0}},
            "rollout_matching.decoding.top_p",
            "must be in (0, 1], got 0.0",
        ),
        (
            {"decoding": {"top_k": 0}},
            "rollout_matching.decoding.top_k",
            "must be -1 (no limit) or >= 1, got 0",
        ),
        (
            {"decoding": {"temperature": -0.5}, "decode_mode": "sample"},
            "rollout_matching.decoding.temperature",
            "must be >= 0, got -0.5",
        ),
        ({"maskiou_gate": 1.2}, "rollout_matching.maskiou_gate", "must be in [0, 1], got 1.2"),
        (
            {"vllm": {"gpu_memory_utilization": 0.0}},
            "rollout_matching.vllm.gpu_memory_utilization",
            "must be in (0, 1], got 0.0",
        ),
        ({"candidate_top_k": 0}, "rollout_matching.candidate_top_k", "must be >= 1, got 0"),
    ],
)
def test_rollout_ranges(payload: Payload, rollout: dict[str, Any], path: str, message: str) -> None:
    assert issues_of(with_rollout(payload, **rollout)) == {path: message}


def test_server_mode_needs_at_least_one_server(payload: Payload) -> None:
    p = with_rollout(payload, rollout_backend="vllm", vllm={"mode": "server"})
    assert issues_of(p) == {
        "rollout_matching.vllm.server.servers": "vllm.mode is server: list at least one server"
    }


def test_server_in_flight_limit_is_at_least_one(payload: Payload) -> None:
    p = with_rollout(payload, **servers(("http://10.0.0.1:8000", 51216)))
    p["rollout_matching"]["vllm"]["server"]["max_in_flight"] = 0
    assert issues_of(p) == {"rollout_matching.vllm.server.max_in_flight": "must be >= 1, got 0"}


def test_colocate_mode_with_servers_fails(payload: Payload) -> None:
    p = with_rollout(payload, **servers(("http://10.0.0.1:8000", 51216)))
    p["rollout_matching"]["vllm"]["mode"] = "colocate"
    assert "would be ignored" in issues_of(p)["rollout_matching.vllm.server.servers"]


@pytest.mark.parametrize("url", ["ftp://10.0.0.1:8000", "10.0.0.1:8000", "http://", "localhost"])
def test_server_urls_must_be_http(payload: Payload, url: str) -> None:
    p = with_rollout(payload, **servers((url, 51216)))
    message = issues_of(p)["rollout_matching.vllm.server.servers[0].base_url"]
    assert message == f"must be an http:// or https:// URL with a host, got {url!r}"


def test_listen_address_is_not_a_server_url(payload: Payload) -> None:
    p = with_rollout(payload, **servers(("http://0.0.0.0:8000", 51216)))
    assert "listen address" in issues_of(p)["rollout_matching.vllm.server.servers[0].base_url"]


def test_invalid_url_port_is_reported(payload: Payload) -> None:
    p = with_rollout(payload, **servers(("http://10.0.0.1:99999", 51216)))
    assert issues_of(p) == {
        "rollout_matching.vllm.server.servers[0].base_url": "has an invalid port: 'http://10.0.0.1:99999'"
    }


def test_group_port_range(payload: Payload) -> None:
    p = with_rollout(payload, **servers(("http://10.0.0.1:8000", 0)))
    assert issues_of(p) == {
        "rollout_matching.vllm.server.servers[0].group_port": "must be in [1, 65535], got 0"
    }


def test_ports_must_be_unique_per_host(payload: Payload) -> None:
    p = with_rollout(
        payload,
        **servers(
            ("http://10.0.0.1:8000", 51216),
            ("http://10.0.0.1:8000", 51217),
            ("http://10.0.0.1:8001", 51216),
            ("http://10.0.0.2:8000", 51216),
        ),
    )
    assert issues_of(p) == {
        "rollout_matching.vllm.server.servers[1].base_url": (
            "port 8000 on host 10.0.0.1 is already used by servers[0].base_url; each server "
            "needs its own HTTP port and group port"
        ),
        "rollout_matching.vllm.server.servers[2].group_port": (
            "port 51216 on host 10.0.0.1 is already used by servers[0].group_port; each "
            "server needs its own HTTP port and group port"
        ),
    }


def test_same_ports_on_different_hosts_are_fine(payload: Payload) -> None:
    p = with_rollout(
        payload, **servers(("http://10.0.0.1:8000", 51216), ("http://10.0.0.2:8000", 51216))
    )
    cfg = parse_strict(TrainingConfig, p)
    assert cfg.rollout_matching is not None
    assert [s.base_url for s in cfg.rollout_matching.vllm.server.servers] == [
        "http://10.0.0.1:8000",
        "http://10.0.0.2:8000",
    ]


def test_greedy_decoding_with_temperature_fails(payload: Payload) -> None:
    p = with_rollout(payload, decoding={"temperature": 0.7})
    assert "set decode_mode: sample" in issues_of(p)["rollout_matching.decoding.temperature"]


def test_offload_needs_colocated_vllm(payload: Payload) -> None:
    p = with_rollout(payload, offload={"enabled": True, "offload_model": True})
    assert issues_of(p) == {
        "rollout_matching.offload.enabled": (
            "offload only applies to rollout_backend vllm with vllm.mode colocate"
        )
    }


def test_adapter_sync_needs_lora(payload: Payload) -> None:
    p = with_rollout(payload, rollout_backend="vllm", vllm={"sync": {"mode": "adapter"}})
    found = issues_of(p)
    assert "tuner.train_type: lora" in found["rollout_matching.vllm.sync.mode"]
    assert "enable_lora: true" in found["rollout_matching.vllm.enable_lora"]


@pytest.mark.parametrize(
    ("section", "values", "path", "message"),
    [
        (
            "stage2_ab",
            {"schedule": {"b_ratio": -0.1}},
            "stage2_ab.schedule.b_ratio",
            "must be in [0, 1], got -0.1",
        ),
        (
            "stage2_ab",
            {"schedule": {"b_ratio": 1}, "n_softctx_iter": 0},
            "stage2_ab.n_softctx_iter",
            "must be >= 1, got 0",
        ),
        (
            "stage2_ab",
            {"schedule": {"b_ratio": 1}, "channel_b": {"drop_invalid_struct_ce_multiplier": 4.5}},
            "stage2_ab.channel_b.drop_invalid_struct_ce_multiplier",
            "must be in [1, 4], got 4.5",
        ),
        (
            "training",
            {"output_dir": "o", "warmup_ratio": 0.1, "warmup_steps": 10},
            "training.warmup_steps",
            "set either warmup_ratio (0.1) or warmup_steps (10), not both",
        ),
        (
            "training",
            {"output_dir": "o", "per_device_train_batch_size": 3, "effective_batch_size": 8},
            "training.effective_batch_size",
            "must be a multiple of per_device_train_batch_size (3), got 8",
        ),
        (
            "training",
            {"output_dir": "o", "eval_steps": 10},
            "training.eval_steps",
            "periodic evaluation needs data.val_jsonl",
        ),
        (
            "deepspeed",
            {"enabled": True},
            "deepspeed.config",
            "deepspeed.enabled is true: give a config file path or a mapping",
        ),
        (
            "tuner",
            {"freeze_vision_tower": True, "freeze_aligner": True, "freeze_llm": True},
            "tuner",
            "freeze_vision_tower, freeze_aligner and freeze_llm are all true: nothing "
            "would train; unfreeze at least one part",
        ),
        (
            "quantization",
            {"mode": "4bit"},
            "quantization.mode",
            "quantized weights (4bit) cannot be fully fine-tuned; set tuner.train_type: lora or "
            "quantization.mode: none",
        ),
    ],
)
def test_section_rules(
    payload: Payload, section: str, values: dict[str, Any], path: str, message: str
) -> None:
    p = payload("stage2_ab_training")
    p[section] = values
    assert issues_of(p) == {path: message}


def test_semantic_problems_in_several_sections_are_reported_together(payload: Payload) -> None:
    p = payload("stage2_ab_training")
    p["stage2_ab"]["schedule"]["b_ratio"] = 2
    p["rollout_matching"]["maskiou_gate"] = -1
    p["global_max_length"] = 0
    assert set(issues_of(p)) == {
        "stage2_ab.schedule.b_ratio",
        "rollout_matching.maskiou_gate",
        "global_max_length",
    }


def with_transport(payload: Payload, *entries: tuple[str, int], **sync: Any) -> dict[str, Any]:
    p = with_rollout(payload, **servers(*entries))
    p["rollout_matching"]["vllm"]["sync"] = sync
    return p


@pytest.mark.parametrize("transport", ["checkpoint", "gloo", "nccl", "ipc"])
def test_each_sync_transport_is_accepted_for_a_server_fleet(
    payload: Payload, transport: str
) -> None:
    p = with_transport(payload, ("http://127.0.0.1:8000", 51216), transport=transport)
    cfg = parse_strict(TrainingConfig, p)
    assert cfg.rollout_matching is not None
    assert cfg.rollout_matching.vllm.sync.transport == transport


def test_sync_transport_defaults_to_checkpoint(payload: Payload) -> None:
    cfg = parse_strict(TrainingConfig, with_rollout(payload, **servers(("http://a:8000", 5))))
    assert cfg.rollout_matching is not None
    assert cfg.rollout_matching.vllm.sync.transport == "checkpoint"
    assert cfg.rollout_matching.vllm.sync.trainer_host is None


def test_unknown_sync_transport_is_refused_naming_the_choices(payload: Payload) -> None:
    p = with_transport(payload, ("http://a:8000", 5), transport="rdma")
    message = issues_of(p)["rollout_matching.vllm.sync.transport"]
    assert "'checkpoint', 'gloo', 'nccl', 'ipc'" in message
    assert "'rdma'" in message


@pytest.mark.parametrize("transport", ["gloo", "nccl"])
def test_trainer_hosted_transports_need_distinct_group_ports(
    payload: Payload, transport: str
) -> None:
    p = with_transport(
        payload,
        ("http://10.0.0.1:8000", 51216),
        ("http://10.0.0.2:8000", 51216),
        ("http://10.0.0.3:8000", 51217),
        transport=transport,
    )
    assert issues_of(p) == {
        "rollout_matching.vllm.server.servers[1].group_port": (
            f"sync.transport {transport}: the trainer hosts every server's transfer group, so "
            "group ports must differ; 51216 is servers[0].group_port already"
        )
    }


def test_ipc_transport_needs_servers_on_the_trainers_machine(payload: Payload) -> None:
    p = with_transport(
        payload, ("http://localhost:8000", 1), ("http://10.0.0.2:8000", 2), transport="ipc"
    )
    assert issues_of(p) == {
        "rollout_matching.vllm.server.servers[1].base_url": (
            "sync.transport ipc shares CUDA memory, so servers must run on the trainer's "
            "machine: use a loopback URL (127.0.0.1, localhost or [::1]), got "
            "'http://10.0.0.2:8000'"
        )
    }


def test_native_transport_with_a_colocated_engine_is_refused(payload: Payload) -> None:
    p = with_rollout(payload, rollout_backend="vllm", vllm={"sync": {"transport": "gloo"}})
    message = issues_of(p)["rollout_matching.vllm.sync.transport"]
    assert message.startswith("gloo applies to vllm.mode server")
    assert "set vllm.mode: server" in message


@pytest.mark.parametrize(
    ("sync", "message"),
    [
        ({"trainer_host": "10.0.0.9"}, "only transports gloo and nccl use it, not checkpoint"),
        (
            {"transport": "ipc", "trainer_host": "10.0.0.9"},
            "only transports gloo and nccl use it, not ipc",
        ),
        (
            {"transport": "gloo", "trainer_host": "0.0.0.0"},
            "0.0.0.0 is a listen address, not one a server can reach; use the trainer's IP or "
            "host name",
        ),
    ],
)
def test_trainer_host_is_checked(payload: Payload, sync: dict[str, Any], message: str) -> None:
    p = with_transport(payload, ("http://127.0.0.1:8000", 51216), **sync)
    assert issues_of(p) == {"rollout_matching.vllm.sync.trainer_host": message}
