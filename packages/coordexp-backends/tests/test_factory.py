"""The factory and decode parameters, driven by the real coordexp-schema section."""

from __future__ import annotations

from typing import Any

import pytest

from coordexp_backends import (
    DecodeParams,
    HFBackend,
    RepeatTerminateParams,
    RolloutError,
    create_backend,
    decode_params,
)
from coordexp_schema import RolloutMatchingConfig, parse_strict


def section(payload: dict[str, Any]) -> RolloutMatchingConfig:
    cfg = parse_strict(RolloutMatchingConfig, payload, "rollout_matching")
    assert isinstance(cfg, RolloutMatchingConfig)
    return cfg


def test_greedy_section_gives_greedy_params_with_the_fallback_seed() -> None:
    cfg = section({"max_new_tokens": 64, "repetition_penalty": 1.1})
    assert decode_params(cfg, seed=7) == DecodeParams(
        max_new_tokens=64, temperature=0.0, repetition_penalty=1.1, seed=7
    )


def test_sampling_section_keeps_its_decoding_and_own_seed() -> None:
    cfg = section(
        {
            "decode_mode": "sample",
            "decoding": {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "seed": 11},
        }
    )
    p = decode_params(cfg, seed=7)
    assert (p.temperature, p.top_p, p.top_k, p.seed) == (0.7, 0.9, 20, 11)
    assert not p.greedy


def test_repeat_terminate_rules_come_from_the_section_only_when_enabled() -> None:
    rules = {
        "min_new_tokens": 4,
        "max_consecutive_token_repeats": 8,
        "ngram_size": 3,
        "ngram_repeats": 5,
        "max_object_keys": 30,
    }
    assert decode_params(section({"repeat_terminate": rules})).repeat_terminate is None
    on = decode_params(section({"repeat_terminate": {**rules, "enabled": True}}))
    assert on.repeat_terminate == RepeatTerminateParams(**rules)


def test_beam_decoding_is_refused_naming_the_key() -> None:
    with pytest.raises(RolloutError, match=r"rollout_matching\.decode_mode=beam is not supported"):
        decode_params(section({"decode_mode": "beam", "num_beams": 2}))


def test_hf_section_builds_the_hf_backend(model: Any, tokenizer: Any) -> None:
    backend = create_backend(section({"decode_batch_size": 3}), processor=tokenizer, model=model)
    assert isinstance(backend, HFBackend)
    assert backend.decode_batch_size == 3
    assert backend.model is model


def test_missing_runtime_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="rollout_backend=hf needs model="):
        create_backend(section({}), processor=None)
    colocate = section({"rollout_backend": "vllm"})
    with pytest.raises(ValueError, match=r"vllm\.mode=colocate needs model_path="):
        create_backend(colocate, processor=None)
    server = section(
        {
            "rollout_backend": "vllm",
            "vllm": {
                "mode": "server",
                "server": {"servers": [{"base_url": "http://127.0.0.1:9", "group_port": 5}]},
            },
        }
    )
    with pytest.raises(ValueError, match=r"vllm\.mode=server needs model= or model_path="):
        create_backend(server, processor=None)


def test_server_section_builds_the_fleet_client_without_touching_the_network(
    model: Any, tokenizer: Any
) -> None:
    from coordexp_backends.vllm_server import VLLMServerBackend

    cfg = section(
        {
            "rollout_backend": "vllm",
            "decode_batch_size": 4,
            "vllm": {
                "mode": "server",
                "server": {
                    "timeout_s": 5,
                    "infer_timeout_s": 9,
                    "max_in_flight": 3,
                    "servers": [
                        {"base_url": "http://127.0.0.1:9001", "group_port": 51216},
                        {"base_url": "http://127.0.0.1:9002", "group_port": 51217},
                    ],
                },
                "sync": {"mode": "auto"},
            },
        }
    )
    backend = create_backend(cfg, processor=tokenizer, model=model, weights_dir="/tmp/w")
    assert isinstance(backend, VLLMServerBackend)
    assert backend.fleet.servers == ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
    assert (backend.timeout_s, backend.infer_timeout_s, backend.max_in_flight) == (5, 9, 3)
    assert backend.stop_ids == (tokenizer.convert_tokens_to_ids("<|im_end|>"),)
    assert backend.sync.mode == "auto"
    assert backend.transport == "checkpoint"
    backend.close()


def test_a_native_transport_reaches_the_fleet_client_with_its_group_ports(
    model: Any, tokenizer: Any
) -> None:
    cfg = section(
        {
            "rollout_backend": "vllm",
            "vllm": {
                "mode": "server",
                "server": {
                    "servers": [
                        {"base_url": "http://127.0.0.1:9001", "group_port": 51216},
                        {"base_url": "http://127.0.0.1:9002", "group_port": 51217},
                    ],
                },
                "sync": {"transport": "gloo", "trainer_host": "10.0.0.5"},
            },
        }
    )
    backend = create_backend(cfg, processor=tokenizer, model=model)
    assert backend.transport == "gloo"
    assert backend.native is not None
    assert backend.native.group_ports == {
        "http://127.0.0.1:9001": 51216,
        "http://127.0.0.1:9002": 51217,
    }
    assert backend.native.trainer_host == "10.0.0.5"
    backend.close()
