"""The vLLM server backend: a client for a fleet of vLLM OpenAI-compatible servers."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from coordexp_backends import vllm_adapter as adapter
from coordexp_backends.errors import RolloutError, ServerError
from coordexp_backends.fleet import Fleet
from coordexp_backends.prompts import image_size_kwargs, text_prompt_ids, tokenizer_of
from coordexp_backends.responses import EngineAnswer, make_rollouts
from coordexp_backends.rollout import (
    DecodeParams,
    Rollout,
    RolloutRequest,
    Timings,
    check_decode_batch_size,
    microbatches,
    request_seed,
)
from coordexp_backends.vllm_server_adapters import ServerAdapters, fleet_lora, server_lora
from coordexp_backends.vllm_sync import (
    NativeTransfer,
    Pairs,
    Transport,
    check_platform,
    http_cause,
    tensor_source,
    write_checkpoint,
)
from coordexp_backends.weights import (
    EngineLoRA,
    SyncDecision,
    SyncLog,
    SyncPlan,
    base_weights,
    is_adapter_model,
    named_weights,
)

log = logging.getLogger(__name__)

TIMEOUT_KEY = "rollout_matching.vllm.server.timeout_s"
INFER_TIMEOUT_KEY = "rollout_matching.vllm.server.infer_timeout_s"


class _ServerFailed(Exception):
    """A server failed a request in a way another server may not (retryable)."""


@dataclass(frozen=True, slots=True)
class _Call:
    """One HTTP inference request: ``requests`` of chunk ``chunk``, from call position ``start``."""

    chunk: int
    start: int
    requests: list[RolloutRequest]

    @property
    def ids(self) -> list[str]:
        return [r.request_id for r in self.requests]


@dataclass(slots=True)
class _Attempts:
    """A call's servers tried so far and why each failed."""

    call: _Call
    tried: list[str] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)


class VLLMServerBackend:
    """Rollouts from a fleet of vLLM servers (``rollout_matching.vllm.server.servers[]``).

    A call splits the requests into contiguous chunks of ``decode_batch_size``; chunk i
    goes to the i-th healthy server (round robin). A text-only chunk decoded greedily or
    without a seed is one ``/v1/completions`` request with token-id prompts; otherwise
    each sample is its own request (``/v1/chat/completions`` for samples with images),
    so that every request carries its own `request_seed`, as in the colocate backend.
    Requests run concurrently on one bounded thread pool, at most ``max_in_flight`` per
    server (the rest wait in the client, not in a server's queue or the HTTP pool, which
    has a connection per slot), and the rollouts come back in request order.

    A request whose server fails (connection error, timeout, HTTP 5xx) is retried on
    another healthy server, at most ``max_retries`` times; the failed server takes no
    more work until a weight sync reaches it again (see `Fleet`). When a request cannot
    be recovered the call raises `ServerError` naming the server, its request ids and
    every cause, after the requests still in flight have finished. HTTP 4xx answers are
    request errors: raised, not retried. Servers are health-checked before first use.

    Weight sync, server by server: pause (letting running requests finish), send the
    weights, reset the prefix, multimodal and encoder caches, resume. ``transport`` says
    how the weights travel (``rollout_matching.vllm.sync.transport``):

    - ``checkpoint``: the model is saved to ``weights_dir`` (a folder every server can
      read) and each server reloads it through ``/collective_rpc reload_weights``.
    - ``gloo``, ``nccl``, ``ipc``: vLLM's native weight-transfer API (see `vllm_sync`):
      on a server's first sync ``/init_weight_transfer_engine`` opens its transfer group
      (the trainer hosts it on the server's ``group_port``), then every sync runs
      ``/start_weight_update``, ``/update_weights`` (while the trainer sends every
      parameter), ``/finish_weight_update``. The server must run that transport
      (``coordexp-rollout-server --weight-transfer ...``); nccl and ipc need GPUs.

    A PEFT (LoRA) model takes the path ``sync`` decides, as in the colocate backend: its
    merged weights (`named_weights`) through the transport, or its adapter as a new
    runtime-loaded vLLM LoRA version through ``weights_dir`` whatever the transport (see
    `vllm_server_adapters`). After a full sync requests name each server's model again;
    before an adapter sync that follows a full one, the base weights go back first.

    Servers must run with ``VLLM_SERVER_DEV_MODE=1`` (``coordexp-rollout-server`` does it).

    Args:
        servers: the servers' base URLs (``http://host:port``).
        processor: tokenizer used to template prompts and decode responses.
        decode_batch_size: requests per chunk.
        stop_ids: end-of-sequence ids (the model's generation config ``eos_token_id``).
        timeout_s: bound on health checks and control calls, and on connecting, sending
            and getting a pooled connection for inference (``server.timeout_s``).
        infer_timeout_s: bound on waiting for one inference answer, counted from when
            it is sent (``server.infer_timeout_s``). None: no bound, the client waits as
            long as generation takes; a server that hangs without closing the
            connection then blocks the call, so production runs should set one.
        max_retries: how many other servers a failed request may be retried on.
        weights_dir: a folder every server reads: full weights for the ``checkpoint``
            transport, and adapters (under ``lora/``) whatever the transport.
        sync: the sync-mode plan.
        max_in_flight: inference requests in flight per server (>= 1).
        transport: how weights travel (see above).
        group_ports: each server's ``group_port``, in server order (native transports).
        trainer_host: the address servers reach the trainer at (``gloo``/``nccl``); None:
            this machine's address on the route to each server.

    Attributes:
        native: the per-server transfer engines of a native transport (None: checkpoint).

    Raises:
        ValueError: an empty or duplicated server list, ``max_in_flight`` < 1, or a native
            transport without one group port per server.
    """

    name = "vllm-server"

    def __init__(
        self,
        servers: Sequence[str],
        processor: Any,
        decode_batch_size: int,
        stop_ids: Sequence[int],
        timeout_s: float,
        infer_timeout_s: float | None = None,
        max_retries: int = 2,
        weights_dir: str | Path | None = None,
        sync: SyncPlan | None = None,
        max_in_flight: int = 16,
        transport: Transport = "checkpoint",
        group_ports: Sequence[int] = (),
        trainer_host: str | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if transport != "checkpoint" and len(group_ports) != len(servers):
            raise ValueError(
                f"rollout_matching.vllm.sync.transport={transport} needs a group_port for "
                f"each of the {len(servers)} servers, got {len(group_ports)}"
            )
        self.fleet = Fleet(list(servers))
        self.processor = processor
        self.decode_batch_size = check_decode_batch_size(decode_batch_size)
        self.stop_ids = tuple(stop_ids)
        self.timeout_s = timeout_s
        self.infer_timeout_s = infer_timeout_s
        self.max_retries = max_retries
        self.max_in_flight = max_in_flight
        self.weights_dir = None if weights_dir is None else Path(weights_dir)
        self.sync = sync or SyncPlan()
        self._tokenizer = tokenizer_of(processor)
        slots = max_in_flight * len(self.fleet.servers)
        self._http = httpx.Client(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
        )
        self._infer_timeout = httpx.Timeout(
            connect=timeout_s, read=infer_timeout_s, write=timeout_s, pool=timeout_s
        )
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="vllm-server")
        self._models: dict[str, str] = {}
        self._ready = False
        self.transport = transport
        self.adapters: ServerAdapters | None = None
        self._holds_base = True  # servers hold the (PEFT base) checkpoint's weights
        self._log = SyncLog(self.name)
        self.native: NativeTransfer | None = None
        if transport != "checkpoint":
            ports = dict(zip(self.fleet.servers, group_ports, strict=True))
            self.native = NativeTransfer(transport, self._http, timeout_s, ports, trainer_host)

    # ------------------------------------------------------------------ health
    def check_health(self) -> None:
        """Probe every server (``/health``, ``/v1/models``); mark the unreachable ones dead.

        Raises:
            RolloutError: no server answered; the message lists each server and its cause.
        """
        for url in self.fleet.servers:
            try:
                self._probe(url)
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                cause = http_cause(exc, self.timeout_s, TIMEOUT_KEY)
                self.fleet.mark_dead(url, f"unreachable: {cause}")
        dead = [url for url in self.fleet.servers if url not in self._models]
        if len(dead) == len(self.fleet.servers):
            raise RolloutError(
                f"no vLLM server is reachable: {self.fleet.describe()}; start them with "
                "`coordexp-rollout-server` and check rollout_matching.vllm.server.servers"
            )
        if dead:
            log.warning("vLLM servers unreachable, left out: %s", self.fleet.describe())
        self._ready = True

    def _probe(self, url: str) -> None:
        """Health-check one server and learn the model name it serves."""
        self._get(url, adapter.ROUTES.health)
        models = self._get(url, "/v1/models").json()
        self._models[url] = str(models["data"][0]["id"])

    # ------------------------------------------------------------------ generate
    def generate(self, requests: Sequence[RolloutRequest], params: DecodeParams) -> list[Rollout]:
        """Roll out every request, in request order (see the class docstring)."""
        if not self._ready:
            self.check_health()
        home = self.fleet.healthy()
        pending = deque(_Attempts(call) for call in self._calls(requests, params))
        running: dict[Future[tuple[Any, float]], tuple[_Attempts, str]] = {}
        load: Counter[str] = Counter()
        done: dict[int, list[Rollout]] = {}
        failure: RolloutError | None = None
        while running or (pending and failure is None):
            if failure is None:
                failure = self._launch(pending, running, load, home, params)
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                attempts, url = running.pop(future)
                load[url] -= 1
                try:
                    body, elapsed = future.result()
                    done[attempts.call.start] = self._rollouts(
                        attempts.call, url, body, params, elapsed
                    )
                except _ServerFailed as exc:
                    attempts.causes.append(f"{url}: {exc}")
                    self.fleet.mark_dead(url, str(exc))
                    log.warning("vLLM server %s failed (%s); retrying elsewhere", url, exc)
                    pending.append(attempts)
                except RolloutError as exc:
                    failure = failure or exc
        if failure is not None:
            raise _unanswered(failure, requests, done)
        return [rollout for start in sorted(done) for rollout in done[start]]

    def _calls(self, requests: Sequence[RolloutRequest], params: DecodeParams) -> list[_Call]:
        """The HTTP requests of a call: one per chunk, or one per sample (see the class)."""
        own_seed = params.seed is not None and not params.greedy
        calls: list[_Call] = []
        for n, (offset, chunk) in enumerate(microbatches(requests, self.decode_batch_size)):
            if own_seed or any(r.images for r in chunk):
                calls.extend(_Call(n, offset + i, [r]) for i, r in enumerate(chunk))
            else:
                calls.append(_Call(n, offset, chunk))
        return calls

    def _launch(
        self,
        pending: deque[_Attempts],
        running: dict[Future[tuple[Any, float]], tuple[_Attempts, str]],
        load: Counter[str],
        home: list[str],
        params: DecodeParams,
    ) -> RolloutError | None:
        """Send every pending request whose server has a free slot; keep the others.

        Returns the error of a request no server is left to try, else None.
        """
        waiting: deque[_Attempts] = deque()
        while pending:
            attempts = pending.popleft()
            call = attempts.call
            untried = [u for u in self.fleet.healthy() if u not in attempts.tried]
            if not untried or len(attempts.tried) > self.max_retries:
                return ServerError(
                    attempts.tried[-1] if attempts.tried else "none",
                    call.ids,
                    f"chunk {call.chunk} failed on every server tried "
                    f"({'; '.join(attempts.causes) or 'no healthy server'}); "
                    f"fleet: {self.fleet.describe()}",
                )
            url = min(untried, key=lambda u: load[u])
            if not attempts.tried and home and home[call.chunk % len(home)] in untried:
                url = home[call.chunk % len(home)]
            if load[url] >= self.max_in_flight:
                waiting.append(attempts)
                continue
            attempts.tried.append(url)
            load[url] += 1
            route, body = self._body(url, call, params)
            running[self._pool.submit(self._infer, url, route, body, call.ids)] = (attempts, url)
        pending.extend(waiting)
        return None

    def _body(self, url: str, call: _Call, params: DecodeParams) -> tuple[str, dict[str, Any]]:
        """The route and body of ``call`` on the server ``url`` (through the synced adapter)."""
        served = None if self.adapters is None else self.adapters.served_name
        model = served or self._models[url]
        seed = request_seed(params.seed, call.start) if len(call.requests) == 1 else None
        first = call.requests[0]
        if first.images:
            body = adapter.chat_body(
                model,
                first.messages,
                first.images,
                params,
                self.stop_ids,
                seed,
                image_size_kwargs(self.processor),
            )
            return adapter.ROUTES.chat_completions, body
        prompts = [text_prompt_ids(self.processor, r) for r in call.requests]
        body = adapter.completion_body(model, prompts, params, self.stop_ids, seed)
        return adapter.ROUTES.completions, body

    def _infer(
        self, url: str, route: str, body: dict[str, Any], ids: list[str]
    ) -> tuple[Any, float]:
        """POST one inference request (worker thread): the JSON answer and its seconds.

        Raises:
            _ServerFailed: a retryable failure (connection, timeout, HTTP 5xx).
            ServerError: the server rejected the request (HTTP 4xx).
        """
        start = time.perf_counter()
        try:
            response = self._http.post(url + route, json=body, timeout=self._infer_timeout)
        except httpx.ReadTimeout as exc:
            raise _ServerFailed(http_cause(exc, self.infer_timeout_s, INFER_TIMEOUT_KEY)) from exc
        except httpx.HTTPError as exc:
            raise _ServerFailed(http_cause(exc, self.timeout_s, TIMEOUT_KEY)) from exc
        if response.status_code >= 500:
            raise _ServerFailed(f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise ServerError(
                url,
                ids,
                f"rejected the request: HTTP {response.status_code}: {response.text[:500]}",
            )
        return response.json(), time.perf_counter() - start

    def _rollouts(
        self, call: _Call, url: str, body: Any, params: DecodeParams, elapsed: float
    ) -> list[Rollout]:
        answers: list[EngineAnswer]
        if call.requests[0].images:
            answers = [adapter.chat_choice(body)]
        else:
            answers = adapter.completion_choices(body)
        if len(answers) != len(call.requests):
            raise ServerError(
                url, call.ids, f"answered {len(answers)} choices for {len(call.requests)} prompts"
            )
        return make_rollouts(
            call.requests,
            answers,
            params,
            stop_ids=self.stop_ids,
            tokenizer=self._tokenizer,
            backend=self.name,
            timings=Timings(generate_s=elapsed, batch_size=len(call.requests)),
            served_by=url,
        )

    # ------------------------------------------------------------------ weights
    def sync_weights(self, model: Any) -> None:
        """Push ``model``'s weights to every live server (see the class docstring).

        The path follows ``sync`` (`SyncPlan.decide`, logged when it changes): full
        weights (a plain model, or a PEFT model's merged through `named_weights`), or a
        PEFT model's adapter (see `_sync_adapter`). Dead servers that answer again receive
        the weights and rejoin; a server that fails the sync is marked dead (with a native
        transport its transfer group is dropped and reopened on its next sync).

        Raises:
            RolloutError: the adapter cannot be served and ``sync.fallback_to_full`` is
                false (names ``rollout_matching.vllm.sync.mode`` and how to start servers
                with LoRA); no ``weights_dir`` where one is needed; the transport cannot
                run here (nccl/ipc without CUDA); no server holds the new weights (lists
                each server's cause).
            ServerError: a server refused the adapter (HTTP 4xx, names it and vLLM's reason).
        """
        decision = self._decide(model)
        if decision.path == "adapter":
            self._sync_adapter(model)
        elif is_adapter_model(model):
            self._sync_full(model, lambda: named_weights(model))
            self._holds_base = False
        else:
            self._sync_full(model, None)
        self._log.record(decision)

    def _decide(self, model: Any) -> SyncDecision:
        """The sync path of ``model``; a PEFT model's is decided on what the fleet serves."""
        if not is_adapter_model(model):  # full, or the refusal of mode adapter
            return self.sync.decide(model, EngineLoRA(enabled=False, max_rank=0))
        if not self._ready:
            self.check_health()
        try:
            return self.sync.decide(model, self._fleet_lora())
        except RolloutError as exc:
            raise RolloutError(
                f"{exc}; vLLM servers serve adapters when every one is started with "
                "`coordexp-rollout-server --lora-max-rank R` (R >= the adapter's rank)"
            ) from exc

    def _sync_full(self, model: Any, weights: Pairs | None) -> None:
        """Send full weights to every live server, then stop serving any adapter.

        ``weights`` gives them as checkpoint pairs; None sends ``model`` itself
        (``save_pretrained``, or its parameters on a native transport).
        """
        check_platform(self.transport)
        if self.native is None:
            folder = self._folder(
                "weight sync (rollout_matching.vllm.sync.transport=checkpoint)",
                ", or choose a native transport",
            )
            if weights is None:
                model.save_pretrained(folder)
            else:
                write_checkpoint(weights(), folder)
        if not self._ready:
            self.check_health()
        for url in self.fleet.servers:
            if not self._revived(url):
                continue
            try:
                self._push(url, model, weights)
                self.fleet.mark_synced(url)
            except ServerError as exc:
                self._sync_failed(url, exc.cause)
            except httpx.HTTPError as exc:
                self._sync_failed(url, http_cause(exc, self.timeout_s, TIMEOUT_KEY))
            except (RuntimeError, ValueError, OSError) as exc:  # the transport's own failures
                self._sync_failed(url, f"{self.transport} transfer: {type(exc).__name__}: {exc}")
        if not self.fleet.healthy():
            raise RolloutError(f"no vLLM server holds the new weights: {self.fleet.describe()}")
        self._forget_adapter()

    def _forget_adapter(self) -> None:
        """Unload the served adapter version: requests name each server's model again."""
        if self.adapters is None or self.adapters.served is None:
            return
        for url in self.fleet.healthy():
            try:
                self.adapters.unload(url, self.adapters.served)
            except httpx.HTTPError as exc:
                self._sync_failed(url, http_cause(exc, self.timeout_s, TIMEOUT_KEY))
        self.adapters.served = None

    def _revived(self, url: str) -> bool:
        """Whether the server takes a sync: live, or dead but answering again (then stale)."""
        if self.fleet.state(url) != "dead":
            return True
        try:
            self._probe(url)
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            return False
        self.fleet.mark_alive(url)
        return True

    def _sync_adapter(self, model: Any) -> None:
        """Sync a PEFT model's LoRA adapter to every live server (`vllm_server_adapters`).

        After a full sync the servers hold merged weights: the base weights
        (`base_weights`) go first, through the transport, and the adapter goes to the
        servers that received them.

        Raises:
            RolloutError: no ``weights_dir``, or no server holds the adapter.
            ServerError: a server refused the adapter.
        """
        root = self._folder("adapter sync", "")
        if self.adapters is None:
            self.adapters = ServerAdapters(self._http, self.timeout_s, root / "lora")
        if self._holds_base:
            targets = [url for url in self.fleet.servers if self._revived(url)]
        else:
            self._sync_full(model, lambda: base_weights(model))
            self._holds_base = True
            targets = self.fleet.healthy()
        version, folder = self.adapters.publish(model)
        for url in targets:
            try:
                self.adapters.load(url, version, folder)
                self.fleet.mark_synced(url)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code < 500:
                    raise self.adapters.refused(url, exc) from exc
                self._sync_failed(url, http_cause(exc, self.timeout_s, TIMEOUT_KEY))
            except httpx.HTTPError as exc:
                self._sync_failed(url, http_cause(exc, self.timeout_s, TIMEOUT_KEY))
        if not self.fleet.healthy():
            raise RolloutError(f"no vLLM server holds the new adapter: {self.fleet.describe()}")
        self.adapters.served = version

    def _folder(self, what: str, alternative: str) -> Path:
        """``weights_dir``, which ``what`` needs.

        Raises:
            RolloutError: no ``weights_dir`` was given.
        """
        if self.weights_dir is None:
            raise RolloutError(
                f"vLLM server {what} needs weights_dir: a folder every server can read "
                f"(pass weights_dir= to create_backend){alternative}"
            )
        return self.weights_dir

    def _fleet_lora(self) -> EngineLoRA:
        """What LoRA every live server serves; a server that does not answer is marked dead."""
        served = []
        for url in self.fleet.healthy():
            try:
                served.append(server_lora(self._http, url, self.timeout_s))
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                self.fleet.mark_dead(url, http_cause(exc, self.timeout_s, TIMEOUT_KEY))
        return fleet_lora(served)

    def _push(self, url: str, model: Any, weights: Pairs | None) -> None:
        """Pause one server, send it the weights, reset its caches and resume it.

        A native transport's group is opened first, so a server that cannot join it is
        never left paused. ``weights``: as in `_sync_full`.
        """
        if self.native is not None:
            self.native.connect(url, model)
        self._post(url, adapter.ROUTES.pause, params={"mode": "wait"})
        if self.native is None:
            body = adapter.reload_rpc_body(str(self.weights_dir))
            self._post(url, adapter.ROUTES.collective_rpc, json=body)
        elif weights is None:
            self.native.push(url, adapter.weight_source(model))
        else:
            self.native.push(url, tensor_source(weights, lambda: base_weights(model)))
        for route in adapter.ROUTES.caches:
            self._post(url, route)
        self._post(url, adapter.ROUTES.resume)

    def _sync_failed(self, url: str, cause: str) -> None:
        """Mark a server that failed a sync dead (it stays paused: its weights are mixed)."""
        self.fleet.mark_dead(url, f"weight sync failed: {cause}")
        log.warning("vLLM server %s failed the weight sync: %s", url, cause)
        if self.native is not None:
            self.native.drop(url)

    def weight_checksums(self, url: str) -> dict[str, str]:
        """SHA-256 of every engine parameter of one server, read back through vLLM."""
        body = self._post(url, adapter.ROUTES.weight_checker, json={"action": "checksum"}).json()
        return dict(body["checksums"])

    # ------------------------------------------------------------------ lifecycle
    def sleep(self) -> None:
        """No-op: servers own their memory (use vLLM's ``/sleep`` route out of band)."""

    def wake_up(self) -> None:
        """No-op: see `sleep`."""

    def close(self) -> None:
        """Stop the worker threads, transfer groups and HTTP connections (servers keep running)."""
        self._pool.shutdown()
        if self.native is not None:
            self.native.close()
        if self.adapters is not None:
            self.adapters.close()
        self._http.close()

    def _get(self, url: str, route: str) -> httpx.Response:
        response = self._http.get(url + route, timeout=self.timeout_s)
        response.raise_for_status()
        return response

    def _post(self, url: str, route: str, **kwargs: Any) -> httpx.Response:
        response = self._http.post(url + route, timeout=self.timeout_s, **kwargs)
        response.raise_for_status()
        return response


def _unanswered(
    failure: RolloutError, requests: Sequence[RolloutRequest], done: dict[int, list[Rollout]]
) -> RolloutError:
    """``failure`` naming every request of the call left without a rollout, in order.

    Which chunk runs out of servers first depends on thread timing; the requests it
    leaves unanswered do not (when every server is down, all of them).
    """
    if not isinstance(failure, ServerError):
        return failure
    answered = {start + k for start, rollouts in done.items() for k in range(len(rollouts))}
    ids = [r.request_id for i, r in enumerate(requests) if i not in answered]
    return ServerError(failure.server, ids, failure.cause)
