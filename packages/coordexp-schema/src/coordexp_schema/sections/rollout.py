"""The ``rollout_matching`` section: rollout decoding, matching knobs and the vLLM backend.

The trainer receives this section, normalised, as its ``rollout_matching_cfg``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from coordexp_schema.fields import knob

LEGACY_SERVER_GUIDANCE = (
    "the paired form vllm.server.base_url + vllm.server.group_port was removed; list each "
    "server under vllm.server.servers[], e.g.\n"
    "      vllm:\n"
    "        server:\n"
    "          servers:\n"
    "            - {base_url: http://10.0.0.1:8000, group_port: 51216}\n"
    "            - {base_url: http://10.0.0.2:8000, group_port: 51216}"
)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, kw_only=True)
class DecodingConfig:
    """Sampling parameters of rollouts."""

    temperature: float = knob(0.0, ge=0, doc="Sampling temperature; 0 with greedy decoding.")
    top_p: float = knob(1.0, gt=0, le=1, doc="Nucleus sampling mass.")
    top_k: int = knob(-1, doc="Keep the k most likely tokens; -1: no limit.")
    seed: int | None = knob(
        None, doc="Base seed of rollout sampling (combined with the step); null: training.seed."
    )

    def validate(self) -> Iterator[tuple[str, str]]:
        """``top_k`` is -1 or at least 1."""
        if self.top_k != -1 and self.top_k < 1:
            yield "top_k", f"must be -1 (no limit) or >= 1, got {self.top_k}"


@dataclass(frozen=True, kw_only=True)
class RepeatTerminateConfig:
    """Stop a rollout early when it degenerates into repetition."""

    enabled: bool = knob(False, doc="Turn the repetition stop on.")
    min_new_tokens: int = knob(0, ge=0, doc="Never stop before this many new tokens.")
    max_consecutive_token_repeats: int = knob(
        32, ge=1, doc="Stop after the same token repeats this many times in a row."
    )
    ngram_size: int = knob(16, ge=1, doc="Length of the n-gram watched for repeats.")
    ngram_repeats: int = knob(4, ge=2, doc="Stop when one n-gram occurs this many times.")
    max_object_keys: int | None = knob(
        None, ge=1, doc="Stop after this many `object_N` keys; null: no limit."
    )


@dataclass(frozen=True, kw_only=True)
class OffloadConfig:
    """Move training state off the GPU while a colocated vLLM engine rolls out."""

    enabled: bool = knob(False, doc="Offload during rollouts (vLLM colocate only).")
    offload_model: bool = knob(False, doc="Offload the training model's weights.")
    offload_optimizer: bool = knob(False, doc="Offload the optimizer state.")

    def validate(self) -> Iterator[tuple[str, str]]:
        """Enabled offload must offload something."""
        if self.enabled and not (self.offload_model or self.offload_optimizer):
            yield "", "enabled is true but neither offload_model nor offload_optimizer is"


@dataclass(frozen=True, kw_only=True)
class MonitorDumpConfig:
    """Periodic dumps of rollouts, matches and targets for inspection."""

    enabled: bool = knob(
        False,
        doc=(
            "Write monitor dumps: a Channel-B step's rollouts as JSONL (text, parsed and "
            "ground-truth objects, match) and PNG overlays of prediction vs ground truth."
        ),
    )
    every_steps: int = knob(
        100,
        ge=1,
        doc="Dump the first Channel-B step at or after every N-th optimizer step (0 included).",
    )
    max_events: int = knob(20, ge=1, doc="Stop dumping after this many dumps.")
    max_samples: int = knob(4, ge=1, doc="Samples per dump.")
    max_text_chars: int = knob(4000, ge=1, doc="Truncate each dumped text to this many chars.")
    out_dir: str | None = knob(None, doc="Dump folder; null: `<output_dir>/monitor_dump`.")


@dataclass(frozen=True, kw_only=True)
class ServerEndpoint:
    """One vLLM rollout server."""

    base_url: str = knob(doc="HTTP(S) base URL of the server, e.g. `http://10.0.0.1:8000`.")
    group_port: int = knob(
        ge=1,
        le=65535,
        doc=(
            "Rendezvous port of this server's weight-transfer group (`sync.transport` gloo or "
            "nccl): the trainer listens on it and the server's workers connect."
        ),
    )


@dataclass(frozen=True, kw_only=True)
class VllmServerConfig:
    """The fleet of external vLLM servers (`vllm.mode: server`)."""

    REJECTED_KEYS: ClassVar[Mapping[str, str]] = {
        "base_url": LEGACY_SERVER_GUIDANCE,
        "group_port": LEGACY_SERVER_GUIDANCE,
    }

    timeout_s: float = knob(
        240.0,
        gt=0,
        doc="Seconds for health checks, weight-sync calls, connecting and sending a request.",
    )
    infer_timeout_s: float | None = knob(
        None, gt=0, doc="Seconds to wait for one generate answer; null: as long as it takes."
    )
    max_in_flight: int = knob(
        16, ge=1, doc="Generate requests in flight per server; more wait in the client."
    )
    servers: tuple[ServerEndpoint, ...] = knob((), doc="The servers, one entry each.")

    def validate(self) -> Iterator[tuple[str, str]]:
        """URLs are http(s) with a host; ports are unique per host."""
        used: dict[str, dict[int, str]] = {}
        for i, server in enumerate(self.servers):
            where = f"servers[{i}]"
            parts = urlsplit(server.base_url)
            try:
                port = parts.port
            except ValueError:
                yield f"{where}.base_url", f"has an invalid port: {server.base_url!r}"
                continue
            if parts.scheme not in ("http", "https") or not parts.hostname:
                yield (
                    f"{where}.base_url",
                    (f"must be an http:// or https:// URL with a host, got {server.base_url!r}"),
                )
                continue
            if parts.hostname == "0.0.0.0":
                yield (
                    f"{where}.base_url",
                    (
                        "0.0.0.0 is a listen address, not one a client can reach; use the "
                        "server's IP or host name"
                    ),
                )
            host = parts.hostname
            http_port = port if port is not None else (443 if parts.scheme == "https" else 80)
            for kind, p in (("base_url", http_port), ("group_port", server.group_port)):
                previous = used.setdefault(host, {}).get(p)
                if previous is not None:
                    yield (
                        f"{where}.{kind}",
                        (
                            f"port {p} on host {host} is already used by {previous}; each server "
                            "needs its own HTTP port and group port"
                        ),
                    )
                else:
                    used[host][p] = f"{where}.{kind}"


@dataclass(frozen=True, kw_only=True)
class VllmSyncConfig:
    """How trained weights reach the vLLM engines."""

    mode: Literal["full", "adapter", "auto"] = knob(
        "full",
        doc="Push full weights, only the LoRA adapter, or `auto` (adapter when training LoRA).",
    )
    fallback_to_full: bool = knob(
        True, doc="When an adapter push fails, push the full weights instead of stopping."
    )
    transport: Literal["checkpoint", "gloo", "nccl", "ipc"] = knob(
        "checkpoint",
        doc=(
            "How full weights reach vLLM servers (`vllm.mode: server`). `checkpoint`: save to "
            "a folder every server reads, then reload (CPU and GPU). `gloo`, `nccl`, `ipc`: "
            "vLLM's native weight-transfer API; the server must run the same transport "
            "(`coordexp-rollout-server --weight-transfer ...`). `gloo` sends over TCP (CPU "
            "or GPU); `nccl` over NCCL between GPUs, across nodes; `ipc` by CUDA IPC to "
            "servers sharing the trainer's GPU, on the same machine."
        ),
    )
    trainer_host: str | None = knob(
        None,
        doc=(
            "Address the servers reach the trainer at (transports gloo and nccl); null: this "
            "machine's address on the route to each server."
        ),
    )


@dataclass(frozen=True, kw_only=True)
class VllmConfig:
    """The vLLM rollout backend (`rollout_backend: vllm`)."""

    mode: Literal["colocate", "server"] = knob(
        "colocate", doc="An engine inside each training process, or external servers."
    )
    tensor_parallel_size: int = knob(1, ge=1, doc="Tensor-parallel size of a colocated engine.")
    gpu_memory_utilization: float = knob(
        0.45, gt=0, le=1, doc="Fraction of device memory a colocated engine may reserve."
    )
    max_model_len: int | None = knob(
        None, ge=1, doc="Longest prompt + rollout in tokens; null: the model's limit."
    )
    enable_lora: bool = knob(False, doc="Serve LoRA adapters (needed for adapter sync).")
    enable_prefix_caching: bool = knob(True, doc="Reuse the KV cache of shared prompt prefixes.")
    sleep_level: Literal[0, 1, 2] = knob(
        0, doc="Put a colocated engine to sleep between rollouts: 0 no, 1 offload, 2 discard."
    )
    enforce_eager: bool = knob(False, doc="Disable CUDA graphs.")
    max_num_seqs: int | None = knob(
        None, ge=1, doc="Sequences per engine step; null: vLLM's default."
    )
    max_num_batched_tokens: int | None = knob(
        None, ge=1, doc="Tokens per engine step; null: vLLM's default."
    )
    server: VllmServerConfig = knob(factory=VllmServerConfig, doc="Server fleet (mode server).")
    sync: VllmSyncConfig = knob(factory=VllmSyncConfig, doc="Weight sync to the engines.")

    def validate(self) -> Iterator[tuple[str, str]]:
        """Server mode needs servers; colocate mode lists none; the transport fits them."""
        if self.mode == "server" and not self.server.servers:
            yield "server.servers", "vllm.mode is server: list at least one server"
        if self.mode == "colocate" and self.server.servers:
            yield (
                "server.servers",
                (
                    "vllm.mode is colocate, so these servers would be ignored: remove them or "
                    "set vllm.mode: server"
                ),
            )
        yield from self._transport_problems()

    def _transport_problems(self) -> Iterator[tuple[str, str]]:
        """``sync.transport`` and ``sync.trainer_host`` agree with the mode and the servers."""
        transport, host = self.sync.transport, self.sync.trainer_host
        if transport != "checkpoint" and self.mode == "colocate":
            yield (
                "sync.transport",
                (
                    f"{transport} applies to vllm.mode server; a colocated engine loads weights "
                    "in process: remove sync.transport or set vllm.mode: server"
                ),
            )
        if host is not None and transport not in ("gloo", "nccl"):
            yield "sync.trainer_host", f"only transports gloo and nccl use it, not {transport}"
        if host == "0.0.0.0":
            yield (
                "sync.trainer_host",
                "0.0.0.0 is a listen address, not one a server can reach; use the trainer's "
                "IP or host name",
            )
        if transport in ("gloo", "nccl"):
            seen: dict[int, int] = {}
            for i, server in enumerate(self.server.servers):
                first = seen.setdefault(server.group_port, i)
                if first != i:
                    yield (
                        f"server.servers[{i}].group_port",
                        (
                            f"sync.transport {transport}: the trainer hosts every server's "
                            f"transfer group, so group ports must differ; {server.group_port} "
                            f"is servers[{first}].group_port already"
                        ),
                    )
        if transport == "ipc":
            for i, server in enumerate(self.server.servers):
                if urlsplit(server.base_url).hostname not in LOOPBACK_HOSTS:
                    yield (
                        f"server.servers[{i}].base_url",
                        (
                            "sync.transport ipc shares CUDA memory, so servers must run on "
                            "the trainer's machine: use a loopback URL (127.0.0.1, localhost "
                            f"or [::1]), got {server.base_url!r}"
                        ),
                    )


@dataclass(frozen=True, kw_only=True)
class RolloutMatchingConfig:
    """Rollouts, their decoding, Hungarian matching and the rollout backend."""

    rollout_backend: Literal["hf", "vllm"] = knob(
        "hf", doc="`hf` (transformers generate on the training model) or `vllm`."
    )
    decode_batch_size: int = knob(
        1, gt=0, doc="Rollout requests per generate call: the one rollout microbatch knob."
    )
    decode_mode: Literal["greedy", "sample", "beam"] = knob(
        "greedy", doc="Greedy, sampling (`decoding.*`) or beam search (`num_beams`)."
    )
    max_new_tokens: int = knob(512, gt=0, doc="Longest rollout in tokens.")
    num_beams: int = knob(1, ge=1, doc="Beams for `decode_mode: beam`.")
    repetition_penalty: float = knob(1.0, gt=0, doc="Repetition penalty (1.0: none).")
    decoding: DecodingConfig = knob(factory=DecodingConfig, doc="Sampling parameters.")
    repeat_terminate: RepeatTerminateConfig = knob(
        factory=RepeatTerminateConfig, doc="Early stop on degenerate repetition."
    )
    candidate_top_k: int | None = knob(
        10, ge=1, doc="Match each prediction only against its k best-IoU truths; null: all."
    )
    maskiou_gate: float = knob(0.3, ge=0, le=1, doc="Pairs with IoU below this cannot be matched.")
    maskiou_resolution: int = knob(
        256, ge=8, doc="Side of the virtual canvas that polygon IoU is rasterised on."
    )
    fp_cost: float = knob(1.0, ge=0, doc="Cost of leaving a prediction unmatched.")
    fn_cost: float = knob(1.0, ge=0, doc="Cost of leaving a truth unmatched.")
    offload: OffloadConfig = knob(factory=OffloadConfig, doc="Offload during rollouts.")
    monitor_dump: MonitorDumpConfig = knob(factory=MonitorDumpConfig, doc="Monitor dumps.")
    vllm: VllmConfig = knob(factory=VllmConfig, doc="vLLM backend (`rollout_backend: vllm`).")

    def validate(self) -> Iterator[tuple[str, str]]:
        """Decoding mode agrees with its parameters; offload needs a colocated engine."""
        temperature = self.decoding.temperature
        if self.decode_mode == "greedy" and temperature != 0:
            yield (
                "decoding.temperature",
                (
                    f"decode_mode is greedy, so temperature must be 0, got {temperature}; "
                    "set decode_mode: sample to sample"
                ),
            )
        if self.decode_mode == "sample" and temperature == 0:
            yield "decoding.temperature", "decode_mode is sample: temperature must be > 0"
        if self.decode_mode == "beam" and self.num_beams < 2:
            yield "num_beams", f"decode_mode is beam: num_beams must be >= 2, got {self.num_beams}"
        if self.decode_mode != "beam" and self.num_beams != 1:
            yield "num_beams", "only decode_mode beam uses num_beams; set it to 1 or use beam"
        colocated = self.rollout_backend == "vllm" and self.vllm.mode == "colocate"
        if self.offload.enabled and not colocated:
            yield (
                "offload.enabled",
                ("offload only applies to rollout_backend vllm with vllm.mode colocate"),
            )
