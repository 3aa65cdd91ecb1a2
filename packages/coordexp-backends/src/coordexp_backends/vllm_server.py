"""The vLLM server backend: a client for a fleet of vLLM OpenAI-compatible servers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from coordexp_backends import vllm_adapter as adapter
from coordexp_backends.errors import RolloutError, ServerError
from coordexp_backends.fleet import Fleet
from coordexp_backends.prompts import stop_token_ids, text_prompt_ids, tokenizer_of
from coordexp_backends.responses import EngineAnswer, make_rollouts
from coordexp_backends.rollout import (
    DecodeParams,
    Rollout,
    RolloutRequest,
    Timings,
    check_decode_batch_size,
    microbatches,
)
from coordexp_backends.weights import SyncPlan

log = logging.getLogger(__name__)


class _ChunkFailed(Exception):
    """A server failed a chunk in a way another server may not (retryable)."""


class VLLMServerBackend:
    """Rollouts from a fleet of vLLM servers (``rollout_matching.vllm.server.servers[]``).

    A call splits the requests into contiguous chunks of ``decode_batch_size``, sends
    chunk i to the i-th healthy server (round robin) concurrently (a text-only chunk is one
    ``/v1/completions`` request with token-id prompts; a chunk with images is one
    ``/v1/chat/completions`` request per sample, sent together), and reassembles the
    rollouts in request order. A chunk whose server fails (connection error, timeout,
    HTTP 5xx) is retried on another healthy server, at most ``max_retries`` times; the
    failed server takes no more work until a weight sync reaches it again (see `Fleet`).
    When a chunk cannot be recovered the call raises `ServerError` naming the server, the
    chunk's request ids and every cause. HTTP 4xx answers are request errors: raised at
    once, not retried. Servers are health-checked before first use.

    Weight sync (CPU-portable path): the model is saved to ``weights_dir`` (a folder every
    server can read) and each server is paused, told to ``reload_weights`` from it through
    ``/collective_rpc``, has its prefix, multimodal and encoder caches reset, and is
    resumed. Servers must run with ``VLLM_SERVER_DEV_MODE=1`` (``coordexp-rollout-server``
    does it).

    Args:
        servers: the servers' base URLs (``http://host:port``).
        processor: tokenizer used to template prompts and decode responses.
        decode_batch_size: requests per HTTP request.
        stop_ids: end-of-sequence ids (the model's generation config ``eos_token_id``).
        timeout_s: bound on health checks and control calls (``server.timeout_s``).
        infer_timeout_s: bound on one completion request (``server.infer_timeout_s``);
            None: no bound on generation (connecting stays bounded by ``timeout_s``).
        max_retries: how many other servers a failed chunk may be retried on.
        weights_dir: where `sync_weights` saves the model for the servers to load.
        sync: the sync-mode plan.
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
    ) -> None:
        self.fleet = Fleet(list(servers))
        self.processor = processor
        self.decode_batch_size = check_decode_batch_size(decode_batch_size)
        self.stop_ids = tuple(stop_ids)
        self.timeout_s = timeout_s
        self.infer_timeout_s = infer_timeout_s
        self.max_retries = max_retries
        self.weights_dir = None if weights_dir is None else Path(weights_dir)
        self.sync = sync or SyncPlan()
        self._tokenizer = tokenizer_of(processor)
        self._http = httpx.Client(timeout=timeout_s)
        self._lock = threading.Lock()
        self._models: dict[str, str] = {}
        self._ready = False

    @classmethod
    def stop_ids_of(cls, model_dir: str | Path) -> tuple[int, ...]:
        """End-of-sequence ids from a checkpoint folder's generation config."""
        from transformers import GenerationConfig

        return stop_token_ids(GenerationConfig.from_pretrained(model_dir))

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
                self.fleet.mark_dead(url, f"unreachable: {_cause(exc, self.timeout_s)}")
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
        chunks = microbatches(requests, self.decode_batch_size)
        with ThreadPoolExecutor(max_workers=max(1, len(chunks))) as pool:
            futures = [
                pool.submit(self._run_chunk, n, chunk, params, offset)
                for n, (offset, chunk) in enumerate(chunks)
            ]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return [rollout for f in futures for rollout in f.result()]

    def _run_chunk(
        self, n: int, requests: list[RolloutRequest], params: DecodeParams, offset: int
    ) -> list[Rollout]:
        ids = [r.request_id for r in requests]
        seed = None if params.seed is None else params.seed + offset
        causes: list[str] = []
        tried: list[str] = []
        url: str | None = None
        for attempt in range(self.max_retries + 1):
            with self._lock:
                healthy = [u for u in self.fleet.healthy() if u not in tried]
            if not healthy:
                break
            url = healthy[n % len(healthy)] if attempt == 0 else healthy[0]
            tried.append(url)
            start = time.perf_counter()
            try:
                results = self._request(url, requests, params, seed)
            except _ChunkFailed as exc:
                self._fail(url, str(exc), causes)
                continue
            timings = Timings(generate_s=time.perf_counter() - start, batch_size=len(requests))
            return self._rollouts(requests, results, params, timings, url)
        where = url or "none"
        raise ServerError(
            where,
            ids,
            f"chunk {n} failed on every server tried "
            f"({'; '.join(causes) or 'no healthy server'}); fleet: {self.fleet.describe()}",
        )

    def _request(
        self, url: str, requests: list[RolloutRequest], params: DecodeParams, seed: int | None
    ) -> list[EngineAnswer]:
        """One chunk on one server: a token-id completion, or chat requests for images."""
        ids = [r.request_id for r in requests]
        model = self._models[url]
        if not any(r.images for r in requests):
            prompts = [text_prompt_ids(self.processor, r) for r in requests]
            body = adapter.completion_body(model, prompts, params, self.stop_ids, seed)
            return adapter.completion_choices(
                self._infer(url, adapter.ROUTES.completions, body, ids)
            )
        bodies = [
            adapter.chat_body(model, r.messages, r.images, params, self.stop_ids, seed)
            for r in requests
        ]
        with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
            answers = list(
                pool.map(
                    lambda b: self._infer(url, adapter.ROUTES.chat_completions, b, ids), bodies
                )
            )
        return [adapter.chat_choice(a) for a in answers]

    def _infer(self, url: str, route: str, body: dict[str, Any], ids: list[str]) -> Any:
        """POST an inference request; `_ChunkFailed` for retryable failures."""
        try:
            response = self._http.post(
                url + route,
                json=body,
                timeout=httpx.Timeout(self.infer_timeout_s, connect=self.timeout_s),
            )
        except httpx.HTTPError as exc:
            key = "rollout_matching.vllm.server.infer_timeout_s"
            raise _ChunkFailed(_cause(exc, self.infer_timeout_s, key)) from exc
        if response.status_code >= 500:
            raise _ChunkFailed(f"HTTP {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise ServerError(
                url,
                ids,
                f"rejected the request: HTTP {response.status_code}: {response.text[:500]}",
            )
        return response.json()

    def _fail(self, url: str, cause: str, causes: list[str]) -> None:
        causes.append(f"{url}: {cause}")
        with self._lock:
            self.fleet.mark_dead(url, cause)
        log.warning("vLLM server %s failed (%s); retrying its chunk elsewhere", url, cause)

    def _rollouts(
        self,
        requests: list[RolloutRequest],
        choices: list[EngineAnswer],
        params: DecodeParams,
        timings: Timings,
        url: str,
    ) -> list[Rollout]:
        if len(choices) != len(requests):
            raise ServerError(
                url,
                [r.request_id for r in requests],
                f"answered {len(choices)} choices for {len(requests)} prompts",
            )
        return make_rollouts(
            requests,
            choices,
            params,
            stop_ids=self.stop_ids,
            tokenizer=self._tokenizer,
            backend=self.name,
            timings=timings,
            served_by=url,
        )

    # ------------------------------------------------------------------ weights
    def sync_weights(self, model: Any) -> None:
        """Push ``model``'s weights to every live server (see the class docstring).

        Dead servers that answer again receive the weights and rejoin; a server that fails
        the sync is marked dead.

        Raises:
            RolloutError: no ``weights_dir`` was given, or no server holds the new weights.
        """
        self.sync.check(model)
        if self.weights_dir is None:
            raise RolloutError(
                "vLLM server weight sync needs weights_dir: a folder every server can read "
                "(pass weights_dir= to create_backend)"
            )
        if not self._ready:
            self.check_health()
        model.save_pretrained(self.weights_dir)
        for url in self.fleet.servers:
            if self.fleet.states[url] == "dead":
                try:
                    self._probe(url)
                except (httpx.HTTPError, KeyError, IndexError, ValueError):
                    continue
                self.fleet.mark_alive(url)
            try:
                self._post(url, adapter.ROUTES.pause, params={"mode": "wait"})
                self._post(
                    url,
                    adapter.ROUTES.collective_rpc,
                    json=adapter.reload_rpc_body(str(self.weights_dir)),
                )
                for route in adapter.ROUTES.caches:
                    self._post(url, route)
                self._post(url, adapter.ROUTES.resume)
                self.fleet.mark_synced(url)
            except httpx.HTTPError as exc:
                self.fleet.mark_dead(url, f"weight sync failed: {_cause(exc, self.timeout_s)}")
        if not self.fleet.healthy():
            raise RolloutError(f"no vLLM server holds the new weights: {self.fleet.describe()}")

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
        """Close the HTTP connections (the servers keep running)."""
        self._http.close()

    def _get(self, url: str, route: str) -> httpx.Response:
        response = self._http.get(url + route, timeout=self.timeout_s)
        response.raise_for_status()
        return response

    def _post(self, url: str, route: str, **kwargs: Any) -> httpx.Response:
        response = self._http.post(url + route, timeout=self.timeout_s, **kwargs)
        response.raise_for_status()
        return response


def _cause(
    exc: BaseException, timeout: float | None, key: str = "rollout_matching.vllm.server.timeout_s"
) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        key, timeout = "rollout_matching.vllm.server.timeout_s", None
    if isinstance(exc, httpx.TimeoutException):
        limit = "" if timeout is None else f" after {timeout:g} s"
        return f"timed out{limit} ({key}): {type(exc).__name__}"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}: {exc.response.text[:300]}"
    return f"{type(exc).__name__}: {exc}"
