"""``coordexp-rollout-server`` builds vLLM's own server command (run for real in the vllm suite)."""

from __future__ import annotations

import sys

import pytest

from coordexp_backends.server_cli import build_parser, main, server_command


def test_the_command_runs_vllms_api_server_with_our_logits_processor() -> None:
    args = build_parser().parse_args(
        ["--model", "ckpt", "--port", "8001", "--enforce-eager", "--max-model-len", "2048",
         "--", "--weight-transfer-config", '{"backend": "nccl"}']
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
    assert cmd[-2:] == ["--weight-transfer-config", '{"backend": "nccl"}']


def test_print_command_prints_without_starting(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--model", "m", "--print-command", "--enable-sleep-mode"])
    out = capsys.readouterr().out
    assert "vllm.entrypoints.openai.api_server --model m" in out
    assert out.strip().endswith("--enable-sleep-mode")


def test_model_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([])
    assert "--model" in capsys.readouterr().err
