"""The preflight contract: assignment lines, ROLLOUT_CONTRACT_JSON, the validator."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from coordexp_schema import TrainingConfig, parse_strict
from coordexp_schema.contract import (
    ContractError,
    preflight_lines,
    rollout_contract,
    validate_contract,
)
from coordexp_schema.preflight import main

Payload = Callable[..., dict[str, Any]]
SERVERS = [
    {"base_url": "http://10.0.0.1:8000", "group_port": 51216},
    {"base_url": "http://10.0.0.2:8000", "group_port": 51216},
]


def server_config(payload: Payload) -> TrainingConfig:
    p = payload("stage2_ab_training")
    p["rollout_matching"]["rollout_backend"] = "vllm"
    p["rollout_matching"]["vllm"] = {"mode": "server", "server": {"servers": SERVERS}}
    return parse_strict(TrainingConfig, p)


def assignments(text: str) -> dict[str, str]:
    """Parse assignment lines the way a POSIX shell would (shlex, posix mode)."""
    out: dict[str, str] = {}
    for token in shlex.split(text, posix=True):
        name, _, value = token.partition("=")
        out[name] = value
    return out


def test_contract_of_a_server_config(payload: Payload) -> None:
    assert rollout_contract(server_config(payload)) == {
        "rollout_backend": "vllm",
        "vllm_mode": "server",
        "server_base_urls": ["http://10.0.0.1:8000", "http://10.0.0.2:8000"],
        "trainer_variant": "stage2_ab_training",
        "server_group_ports": [51216, 51216],
        "decode_batch_size": 2,
    }


def test_contract_of_hf_and_stage1_configs(payload: Payload) -> None:
    hf = rollout_contract(parse_strict(TrainingConfig, payload("rollout_matching_sft")))
    assert (hf["rollout_backend"], hf["vllm_mode"], hf["server_base_urls"]) == ("hf", None, [])
    stage1 = rollout_contract(parse_strict(TrainingConfig, payload()))
    assert (stage1["rollout_backend"], stage1["vllm_mode"]) == ("none", None)


def test_assignment_lines_carry_single_line_json_ending_in_newline(
    payload: Payload, tmp_path: Path
) -> None:
    text = preflight_lines(server_config(payload), tmp_path / "c.yaml")
    values = assignments(text)
    value = values["ROLLOUT_CONTRACT_JSON"]
    assert value.endswith("}\n")
    assert value.count("\n") == 1
    assert json.loads(value)["server_base_urls"] == [s["base_url"] for s in SERVERS]
    assert values["COORDEXP_SERVER_BASE_URLS"] == "http://10.0.0.1:8000 http://10.0.0.2:8000"
    assert values["COORDEXP_VLLM_MODE"] == "server"
    assert values["COORDEXP_CONFIG"] == str((tmp_path / "c.yaml").resolve())
    assert validate_contract(value)["vllm_mode"] == "server"


def test_values_with_quotes_and_spaces_are_shell_quoted(payload: Payload) -> None:
    p = payload()
    p["training"]["output_dir"] = "runs/it's a $HOME `x`"
    values = assignments(preflight_lines(parse_strict(TrainingConfig, p), "c.yaml"))
    assert values["COORDEXP_OUTPUT_DIR"] == "runs/it's a $HOME `x`"


GOOD = '{"rollout_backend":"hf","vllm_mode":null,"server_base_urls":[]}\n'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (GOOD[:-1], "must end with a newline"),
        (GOOD[:-2] + "\n}\n", "must be single-line JSON + one newline"),
        (GOOD + "\n", "must be single-line JSON + one newline"),
        ("{not json}\n", "is not valid JSON"),
        ("[1]\n", "must be a JSON object"),
        (
            '{"rollout_backend":"hf","vllm_mode":null}\n',
            "lacks the required key 'server_base_urls'",
        ),
        ('{"vllm_mode":null,"server_base_urls":[]}\n', "lacks the required key 'rollout_backend'"),
        (
            '{"rollout_backend":3,"vllm_mode":null,"server_base_urls":[]}\n',
            "rollout_backend must be a non-empty string, got 3",
        ),
        (
            '{"rollout_backend":"vllm","vllm_mode":1,"server_base_urls":[]}\n',
            "vllm_mode must be a string or null, got 1",
        ),
        (
            '{"rollout_backend":"vllm","vllm_mode":"server","server_base_urls":"http://a"}\n',
            "server_base_urls must be a list of strings, got 'http://a'",
        ),
        (
            '{"rollout_backend":"vllm","vllm_mode":"server","server_base_urls":[]}\n',
            "server_base_urls must be non-empty exactly when vllm_mode is server",
        ),
        (
            '{"rollout_backend":"hf","vllm_mode":"server","server_base_urls":["http://a"]}\n',
            "vllm_mode must be null for rollout_backend 'hf'",
        ),
    ],
)
def test_validator_rejects_malformed_or_incomplete_contracts(value: str, message: str) -> None:
    with pytest.raises(ContractError, match=message.replace("(", r"\(").replace("+", r"\+")):
        validate_contract(value)


def test_validator_accepts_extra_keys() -> None:
    value = GOOD[:-2] + ',"future_key":{"a":1}}\n'
    assert validate_contract(value)["future_key"] == {"a": 1}


def test_check_mode_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", GOOD]) == 0
    assert main(["--check", GOOD[:-1]]) == 1
    err = capsys.readouterr().err
    assert "invalid rollout contract: ROLLOUT_CONTRACT_JSON must end with a newline" in err


def test_invalid_config_prints_nothing_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model: {model: x}\nextra: {}\n")
    assert main(["--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "extra" in err
    assert "training: missing required key" in err
