"""``coordexp-rollout-server`` builds vLLM's own server command (run for real in the vllm suite)."""

from __future__ import annotations

import json
import sys

import pytest

from coordexp_backends.server_cli import build_parser, main, server_command, server_env
from coordexp_backends.vllm_adapter import register_weight_transfer_engines

PLUGIN = "coordexp_weight_transfer"


def test_the_command_runs_vllms_api_server_with_our_logits_processor() -> None:
    args = build_parser().parse_args(
        ["--model", "ckpt", "--port", "8001", "--enforce-eager", "--max-model-len", "2048",
         "--", "--max-num-batched-tokens", "8192"]
    )  # fmt: skip
    cmd = server_command(args)
    assert cmd[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    flags = " ".join(cmd[3:])
    assert "--model ckpt --host 127.0.0.1 --port 8001" in flags
    assert "--logits-processors coordexp_backends.vllm_logits:RepeatTerminateProcessor" in flags
    assert "--trust-request-mm-kwargs" in flags  # the client sends the image size per request
    assert "--max-model-len 2048" in flags
    assert "--enforce-eager" in flags
    assert "--enable-prefix-caching" not in flags
    assert cmd[-2:] == ["--max-num-batched-tokens", "8192"]


def test_print_command_prints_without_starting(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--model", "m", "--print-command", "--enable-sleep-mode"])
    out = capsys.readouterr().out
    assert "vllm.entrypoints.openai.api_server --model m" in out
    assert out.strip().endswith("--enable-sleep-mode")


def test_model_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([])
    assert "--model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("transport", "backend"), [("gloo", "coordexp_gloo"), ("nccl", "nccl"), ("ipc", "ipc")]
)
def test_weight_transfer_adds_vllms_transfer_config(transport: str, backend: str) -> None:
    args = build_parser().parse_args(["--model", "m", "--weight-transfer", transport])
    cmd = server_command(args)
    i = cmd.index("--weight-transfer-config")
    assert json.loads(cmd[i + 1]) == {"backend": backend}
    env = server_env(args)
    assert env["VLLM_SERVER_DEV_MODE"] == "1"
    assert ("VLLM_ALLOW_INSECURE_SERIALIZATION" in env) == (transport == "ipc")


def test_without_weight_transfer_there_is_no_transfer_config() -> None:
    cmd = server_command(build_parser().parse_args(["--model", "m"]))
    assert "--weight-transfer-config" not in cmd


def test_an_unknown_weight_transfer_is_refused_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--model", "m", "--weight-transfer", "rdma"])
    err = capsys.readouterr().err
    assert "--weight-transfer: invalid choice: 'rdma'" in err
    assert "'gloo', 'ipc', 'nccl'" in err


def test_the_package_declares_its_vllm_plugin_entry_point() -> None:
    from importlib.metadata import entry_points

    [plugin] = [e for e in entry_points(group="vllm.general_plugins") if e.name == PLUGIN]
    assert plugin.value == "coordexp_backends.vllm_adapter:register_weight_transfer_engines"
    assert plugin.load() is register_weight_transfer_engines


def test_lora_max_rank_serves_runtime_loaded_adapters() -> None:
    args = build_parser().parse_args(["--model", "m", "--lora-max-rank", "16"])
    cmd = server_command(args)
    i = cmd.index("--enable-lora")
    assert cmd[i : i + 5] == ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "1"]
    assert server_env(args)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "1"
    plain = build_parser().parse_args(["--model", "m"])
    assert "--enable-lora" not in server_command(plain)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in server_env(plain)
