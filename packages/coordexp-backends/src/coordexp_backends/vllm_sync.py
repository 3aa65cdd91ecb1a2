"""Weight sync to vLLM servers through vLLM's native weight-transfer API.

`ServerSyncClient` implements vLLM's ``VLLMWeightSyncClient`` protocol (the four
control-plane calls a trainer-side transfer engine drives) over our httpx client, with
our timeouts and errors that name the server and the route. `NativeTransfer` keeps one
trainer-side engine per server (one transfer group each, rendezvous on the server's
``group_port``), opened on the server's first sync and dropped when a sync fails.

This module does not import vLLM; the engines come from `vllm_adapter` when first needed.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

import httpx
import torch

from coordexp_backends import vllm_adapter as adapter
from coordexp_backends.errors import RolloutError, ServerError

Transport: TypeAlias = Literal["checkpoint", "gloo", "nccl", "ipc"]

TRANSPORT_KEY = "rollout_matching.vllm.sync.transport"
TIMEOUT_KEY = "rollout_matching.vllm.server.timeout_s"

SERVER_HINT = "start the server with `coordexp-rollout-server --weight-transfer {transport}`"


def http_cause(exc: BaseException, limit: float | None, key: str) -> str:
    """An HTTP failure's account; a timeout names its limit and config key (``key``)."""
    if isinstance(exc, httpx.TimeoutException):
        bound = "" if limit is None else f" after {limit:g} s"
        return f"timed out{bound} ({key}): {type(exc).__name__}"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}: {exc.response.text[:300]}"
    return f"{type(exc).__name__}: {exc}"


class ServerSyncClient:
    """vLLM's ``VLLMWeightSyncClient`` protocol for one server, over ``http``.

    Every call is bounded by ``timeout_s`` (``update_weights`` included: it returns when
    the server has received and loaded every tensor).

    Raises (every method):
        ServerError: the call failed (connection, timeout, HTTP error); the message names
            the server, the route, the cause, and what to check.
    """

    def __init__(self, http: httpx.Client, url: str, timeout_s: float, transport: str) -> None:
        self.http = http
        self.url = url
        self.timeout_s = timeout_s
        self.transport = transport

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        """Have the server's workers join the transfer (``/init_weight_transfer_engine``)."""
        self._post(adapter.ROUTES.init_weight_transfer_engine, {"init_info": init_info})

    def start_weight_update(self) -> None:
        """Open an update on the server (``/start_weight_update``)."""
        self._post(adapter.ROUTES.start_weight_update, None)

    def update_weights(self, update_info: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Have the server receive and load one update (``/update_weights``)."""
        self._post(adapter.ROUTES.update_weights, {"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        """Close the update (``/finish_weight_update``), optionally naming its version."""
        body = None if weight_version is None else {"weight_version": weight_version}
        self._post(adapter.ROUTES.finish_weight_update, body)

    def world_size(self) -> int:
        """The server's worker count across data parallelism (``/get_world_size``)."""
        try:
            response = self.http.get(
                self.url + adapter.ROUTES.get_world_size, timeout=self.timeout_s
            )
            response.raise_for_status()
            return int(response.json()["world_size"])
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
            raise self._error(adapter.ROUTES.get_world_size, exc) from exc

    def _post(self, route: str, body: dict[str, Any] | None) -> None:
        try:
            response = self.http.post(self.url + route, json=body, timeout=self.timeout_s)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise self._error(route, exc) from exc

    def _error(self, route: str, exc: BaseException) -> ServerError:
        cause = http_cause(exc, self.timeout_s, TIMEOUT_KEY)
        hint = SERVER_HINT.format(transport=self.transport)
        return ServerError(
            self.url,
            [],
            f"weight transfer call {route} failed ({TRANSPORT_KEY}={self.transport}): {cause}; "
            f"check the server's log, and {hint}",
        )


def route_address(url: str) -> str:
    """This machine's address on the route to ``url``'s host (no packet is sent)."""
    host = urlsplit(url).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])


def check_platform(transport: str) -> None:
    """Refuse a GPU-only transport on a trainer without CUDA.

    Raises:
        RolloutError: ``transport`` is ``nccl`` or ``ipc`` and no CUDA device is visible;
            the message names the config key and the transports that run on CPU.
    """
    if transport in ("nccl", "ipc") and not torch.cuda.is_available():
        raise RolloutError(
            f"{TRANSPORT_KEY}={transport} needs CUDA GPUs on the trainer and the servers, "
            "but this trainer sees none (torch.cuda.is_available() is False); on CPU use "
            "transport: gloo (native weight-transfer API over TCP) or checkpoint"
        )


class NativeTransfer:
    """One trainer-side vLLM transfer engine per server, for ``transport`` (not checkpoint).

    Args:
        transport: ``gloo``, ``nccl`` or ``ipc``.
        http: the backend's HTTP client.
        timeout_s: bound on each control call and on the gloo rendezvous and broadcasts.
        group_ports: each server's rendezvous port (``servers[].group_port``): the trainer
            hosts that server's transfer group on it.
        trainer_host: the address the servers reach this trainer at; None: this machine's
            address on the route to each server.
    """

    def __init__(
        self,
        transport: str,
        http: httpx.Client,
        timeout_s: float,
        group_ports: Mapping[str, int],
        trainer_host: str | None = None,
    ) -> None:
        self.transport = transport
        self.http = http
        self.timeout_s = timeout_s
        self.group_ports = dict(group_ports)
        self.trainer_host = trainer_host
        self._engines: dict[str, Any] = {}

    def connect(self, url: str, model: torch.nn.Module) -> None:
        """Open the server's transfer group unless it is open (``model``: the source).

        Raises:
            ServerError: a control call failed (names the server and route).
            Exception: what the transport raised (rendezvous failures).
        """
        if url in self._engines:
            return
        client = ServerSyncClient(self.http, url, self.timeout_s, self.transport)
        self._engines[url] = adapter.trainer_transfer_engine(
            self.transport,
            client,
            model,
            master_address=self.trainer_host or route_address(url),
            master_port=self.group_ports[url],
            world_size=1 + client.world_size(),
            timeout_s=self.timeout_s,
        )

    def push(self, url: str, model: torch.nn.Module) -> None:
        """Send ``model``'s parameters to the server ``url`` (one update round trip).

        The caller connects first, pauses the server before, and resets its caches and
        resumes it after.

        Raises:
            ServerError: a control call failed (names the server and route).
            Exception: what the transport raised (broadcast failures).
        """
        engine = self._engines[url]
        engine.source = adapter.weight_source(model)
        engine.send_weights()

    def drop(self, url: str) -> None:
        """Forget the server's group after a failure (the next push opens a new one)."""
        engine = self._engines.pop(url, None)
        if engine is not None:
            engine.shutdown()

    def close(self) -> None:
        """Shut every transfer group down."""
        for url in list(self._engines):
            self.drop(url)
