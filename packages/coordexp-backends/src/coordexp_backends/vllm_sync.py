"""Weight sync to vLLM servers through vLLM's native weight-transfer API.

`ServerSyncClient` implements vLLM's ``VLLMWeightSyncClient`` protocol (the four
control-plane calls a trainer-side transfer engine drives) over our httpx client, with
our timeouts and errors that name the server and the route. `NativeTransfer` keeps one
trainer-side engine per server (one transfer group each, rendezvous on the server's
``group_port``), opened on the server's first sync and dropped when a sync fails.
`tensor_source` and `write_checkpoint` carry weights given as ``(name, tensor)`` pairs (a
PEFT model's merged or base weights) through a native transport or the checkpoint one.

This module imports vLLM only inside `tensor_source`; the engines come from `vllm_adapter`
when first needed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

import httpx
import torch
from safetensors.torch import save_file

from coordexp_backends import vllm_adapter as adapter
from coordexp_backends.errors import RolloutError, ServerError

Transport: TypeAlias = Literal["checkpoint", "gloo", "nccl", "ipc"]

TRANSPORT_KEY = "rollout_matching.vllm.sync.transport"
TIMEOUT_KEY = "rollout_matching.vllm.server.timeout_s"

CHECKPOINT_FILE = "model.safetensors"

Pairs: TypeAlias = Callable[[], Iterable[tuple[str, torch.Tensor]]]
"""A fresh pass over checkpoint-format ``(name, tensor)`` pairs on every call."""

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

    def push(self, url: str, source: Any) -> None:
        """Send ``source`` (a vLLM ``WeightSource``) to the server ``url`` (one round trip).

        The caller connects first, pauses the server before, and resets its caches and
        resumes it after.

        Raises:
            ServerError: a control call failed (names the server and route).
            Exception: what the transport raised (broadcast failures).
        """
        engine = self._engines[url]
        engine.source = source
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


def tensor_source(weights: Pairs, layout: Pairs) -> Any:
    """A vLLM ``WeightSource`` sending the pairs of ``weights()`` (a fresh pass per send).

    ``layout()`` gives pairs of the same names, dtypes and shapes in the same order,
    read for the metadata only (e.g. a PEFT model's base weights for its merged ones:
    merging keeps every name, dtype and shape, and reading the base computes nothing).
    """
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class PairsSource(WeightSource):  # type: ignore[misc]
        def metadata(self) -> list[ParamMeta]:
            return [ParamMeta(name, t.dtype, tuple(t.shape)) for name, t in layout()]

        def __iter__(self) -> Any:
            return iter(weights())

    return PairsSource()


def write_checkpoint(weights: Iterable[tuple[str, torch.Tensor]], folder: Path) -> Path:
    """Write ``weights`` as ``folder/model.safetensors`` for vLLM's ``reload_weights``.

    vLLM reloads from a folder by reading every top-level ``*.safetensors`` file (or those
    an index names), so earlier ones and their index are removed first. A tensor tied to
    one written before (the same storage, shape and strides: ``lm_head`` of a model with
    tied embeddings) is left out, as ``save_pretrained`` leaves it out and vLLM loads
    the tied model from the first name; other tensors sharing storage are copied.

    Returns:
        The file written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stale in [*folder.glob("*.safetensors"), *folder.glob("*.safetensors.index.json")]:
        stale.unlink()
    tensors: dict[str, torch.Tensor] = {}
    written: dict[int, list[torch.Tensor]] = {}
    for name, tensor in weights:
        ptr = tensor.untyped_storage().data_ptr()
        sharing = written.get(ptr, [])
        if any(_same_view(tensor, other) for other in sharing):
            continue
        kept = (
            tensor.contiguous()
            if not sharing
            else tensor.clone(memory_format=torch.contiguous_format)
        )
        written.setdefault(kept.untyped_storage().data_ptr(), []).append(kept)
        tensors[name] = kept
    path = folder / CHECKPOINT_FILE
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.storage_offset() == b.storage_offset()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
    )
