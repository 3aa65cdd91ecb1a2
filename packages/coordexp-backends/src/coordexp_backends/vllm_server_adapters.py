"""LoRA adapter sync to vLLM servers: what they serve, and loading each synced version.

Servers must serve LoRA (``coordexp-rollout-server --lora-max-rank R``: vLLM's
``--enable-lora`` with runtime adapter loading) and start from the PEFT model's base
checkpoint. Each sync saves the adapter under a new version in a folder every server
reads, loads it on every live server (``/v1/load_lora_adapter``) and unloads the previous
version; inference requests then name the adapter as their ``model``. A full-weight sync
unloads the served version, so requests name the server's own model again.

This module does not import vLLM (the routes and bodies come from `vllm_lora`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx

from coordexp_backends import vllm_lora
from coordexp_backends.errors import ServerError
from coordexp_backends.weights import EngineLoRA

log = logging.getLogger(__name__)

SERVER_INFO = "/server_info"


def server_lora(http: httpx.Client, url: str, timeout_s: float) -> EngineLoRA:
    """What LoRA the server ``url`` serves, read from its config (``/server_info``).

    Raises:
        httpx.HTTPError: the server did not answer.
    """
    response = http.get(url + SERVER_INFO, params={"config_format": "json"}, timeout=timeout_s)
    response.raise_for_status()
    config = response.json()["vllm_config"].get("lora_config")
    if not config:
        return EngineLoRA(enabled=False, max_rank=0)
    tower = bool(config.get("enable_tower_connector_lora", False))
    return EngineLoRA(enabled=True, max_rank=int(config["max_lora_rank"]), tower=tower)


def fleet_lora(servers: list[EngineLoRA]) -> EngineLoRA:
    """What every one of ``servers`` serves (an adapter must suit them all)."""
    if not servers or not all(s.enabled for s in servers):
        return EngineLoRA(enabled=False, max_rank=0)
    return EngineLoRA(
        enabled=True,
        max_rank=min(s.max_rank for s in servers),
        tower=all(s.tower for s in servers),
    )


class ServerAdapters:
    """The synced adapter versions of a server fleet.

    Args:
        http: the backend's HTTP client.
        timeout_s: bound on each call.
        root: the folder every server reads the adapters from.
    """

    def __init__(self, http: httpx.Client, timeout_s: float, root: Path) -> None:
        self.http = http
        self.timeout_s = timeout_s
        self.versions = vllm_lora.AdapterVersions(root)
        self.served: int | None = None  # the version requests use, once one is loaded

    @property
    def served_name(self) -> str | None:
        """The ``model`` name requests use: the served version's, None when none is served."""
        return None if self.served is None else vllm_lora.adapter_name(self.served)

    def publish(self, model: Any) -> tuple[int, Path]:
        """Save ``model``'s adapter as the next version (see `vllm_lora.AdapterVersions`)."""
        return self.versions.publish(model)

    def load(self, url: str, version: int, folder: Path) -> None:
        """Load ``version`` on the server ``url`` and unload the served version, if any.

        Raises:
            httpx.HTTPError: the server failed or refused the adapter (HTTP 4xx: vLLM's
                reason is in the response).
        """
        body = vllm_lora.load_adapter_body(version, str(folder))
        self._post(url, vllm_lora.LOAD_ROUTE, body)
        if self.served is not None:
            self.unload(url, self.served)

    def unload(self, url: str, version: int) -> None:
        """Unload ``version`` from the server ``url``; a server without it is only logged.

        Raises:
            httpx.HTTPError: the server did not answer (an HTTP error status is logged).
        """
        try:
            self._post(url, vllm_lora.UNLOAD_ROUTE, vllm_lora.unload_adapter_body(version))
        except httpx.HTTPStatusError as exc:  # e.g. a restarted server never had it
            log.info("vLLM server %s did not unload adapter %d: %s", url, version, exc)

    def refused(self, url: str, exc: httpx.HTTPStatusError) -> ServerError:
        """The error of a server that refused the adapter (not a server failure)."""
        return ServerError(
            url,
            [],
            f"refused the LoRA adapter ({vllm_lora.LOAD_ROUTE}): HTTP "
            f"{exc.response.status_code}: {exc.response.text[:300]}",
        )

    def close(self) -> None:
        """Remove the saved adapter folders."""
        self.versions.close()

    def _post(self, url: str, route: str, body: dict[str, Any]) -> None:
        response = self.http.post(url + route, json=body, timeout=self.timeout_s)
        response.raise_for_status()
