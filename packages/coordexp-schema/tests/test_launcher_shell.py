"""The preflight round trip through a real shell, and scripts/launch.sh."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordexp_schema import load_config
from coordexp_schema.contract import contract_value, rollout_contract

REPO = Path(__file__).resolve().parents[3]
SERVER_CONFIG = REPO / "configs/stage2_ab/vllm_server.yaml"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def bash(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script, "bash", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        cwd=REPO,
        check=False,
        timeout=60,
    )


def test_eval_of_preflight_output_round_trips_the_contract() -> None:
    run = bash(
        'eval "$(coordexp-preflight --config "$1")"; printf "%s" "$ROLLOUT_CONTRACT_JSON"; '
        'printf "|%s|%s" "$COORDEXP_VLLM_MODE" "$COORDEXP_SERVER_BASE_URLS"',
        str(SERVER_CONFIG),
    )
    assert run.returncode == 0, run.stderr
    contract, mode, urls = run.stdout.split("|")
    assert contract == contract_value(rollout_contract(load_config(SERVER_CONFIG)))
    assert contract.endswith("\n")
    assert json.loads(contract)["server_base_urls"] == urls.split()
    assert mode == "server"


def test_preflight_output_is_identical_across_hash_seeds() -> None:
    outputs = {
        subprocess.run(
            ["coordexp-preflight", "--config", str(SERVER_CONFIG)],
            capture_output=True,
            env={**ENV, "PYTHONHASHSEED": seed},
            check=True,
            timeout=60,
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outputs) == 1


def test_check_mode_accepts_the_evaluated_contract_and_rejects_a_stripped_one() -> None:
    run = bash(
        'eval "$(coordexp-preflight --config "$1")" && '
        'coordexp-preflight --check "$ROLLOUT_CONTRACT_JSON" && echo accepted; '
        "coordexp-preflight --check \"${ROLLOUT_CONTRACT_JSON%$'\\n'}\" || echo rejected",
        str(SERVER_CONFIG),
    )
    assert run.stdout.split() == ["accepted", "rejected"], run.stderr
    assert "must end with a newline" in run.stderr


def test_launcher_dry_run_prints_the_training_command() -> None:
    env = {**ENV, "COORDEXP_SKIP_SERVER_CHECK": "1", "NPROC_PER_NODE": "2"}
    run = bash('scripts/launch.sh --dry-run "$1" training.seed=7', str(SERVER_CONFIG), env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [
        "torchrun", "--nproc_per_node", "2", "-m", "coordexp_train", "--config",
        str(SERVER_CONFIG), "--override", "training.seed=7",
    ]  # fmt: skip
    assert "launch: stage2_ab_training, rollout backend vllm (server)" in run.stderr


def test_launcher_runs_coordexp_train_on_one_process() -> None:
    env = {**ENV, "COORDEXP_SKIP_SERVER_CHECK": "1"}
    run = bash('scripts/launch.sh --dry-run "$1"', str(SERVER_CONFIG), env=env)
    assert run.stdout.split() == ["coordexp-train", "--config", str(SERVER_CONFIG)]


def test_launcher_rejects_arguments_that_are_not_overrides() -> None:
    run = bash('scripts/launch.sh --dry-run "$1" --verbose', str(SERVER_CONFIG))
    assert run.returncode == 2
    assert "expected KEY=VALUE overrides after the config, got '--verbose'" in run.stderr


def test_launcher_stops_on_an_invalid_config() -> None:
    run = bash(
        'scripts/launch.sh --dry-run "$1" rollout_matching.decode_batch_sise=4', str(SERVER_CONFIG)
    )
    assert run.returncode == 1
    assert run.stdout == ""
    assert "rollout_matching.decode_batch_sise (override" in run.stderr
    assert "did you mean 'decode_batch_size'?" in run.stderr
    assert "launch: preflight rejected" in run.stderr


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthy_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="the launcher probes with curl")
def test_launcher_probes_server_health(healthy_server: str) -> None:
    dead = "http://127.0.0.1:9"
    overrides = [
        f"rollout_matching.vllm.server.servers[0].base_url={healthy_server}",
        f"rollout_matching.vllm.server.servers[1].base_url={dead}",
        "rollout_matching.vllm.server.servers[1].group_port=51217",
    ]
    run = bash('scripts/launch.sh --dry-run "$@"', str(SERVER_CONFIG), *overrides)
    assert run.returncode == 1
    assert f"launch: vLLM server {dead} is not healthy" in run.stderr
    run = bash(
        'scripts/launch.sh --dry-run "$@"',
        str(SERVER_CONFIG),
        *overrides[:1],
        f"rollout_matching.vllm.server.servers[1].base_url={healthy_server}/",
        "rollout_matching.vllm.server.servers[1].group_port=51217",
    )
    assert "already used" in run.stderr  # same host and port twice is a config error
    single = [*overrides[:1], "rollout_matching.vllm.server.servers=[]"]
    run = bash('scripts/launch.sh --dry-run "$@"', str(SERVER_CONFIG), *single)
    assert "list at least one server" in run.stderr
