"""Every vLLM LoRA call (adapter sync), in process and over HTTP (vLLM >= 0.28, < 0.33).

vLLM caches adapters by integer id and prefix-caches by adapter name and path, so each
sync publishes the adapter under a new version: a fresh folder, a new id and a new name
(`adapter_name`). Old versions are dropped from the engine and from disk.

In process (colocate): `engine_lora` says what the engine serves, `add_adapter` loads a
version (the engine reads the folder then), `llm_generate` passes its ``LoRARequest``.

Server (for the server backend's adapter sync): start vLLM with `server_args` and the
environment variable `RUNTIME_LORA_ENV` set to ``1``; per sync, POST
`load_adapter_body` to `LOAD_ROUTE` on every server, send inference requests with
``"model": adapter_name(version)``, then POST `unload_adapter_body` of the previous
version to `UNLOAD_ROUTE`. The folder must be readable by every server.

Importing this module does not import vLLM.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from coordexp_backends.errors import RolloutError
from coordexp_backends.weights import EngineLoRA, save_adapter

RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
"""Environment variable (``1``) that enables the server's adapter load/unload routes."""

LOAD_ROUTE = "/v1/load_lora_adapter"
UNLOAD_ROUTE = "/v1/unload_lora_adapter"


def adapter_name(version: int) -> str:
    """The engine-side name of an adapter version (the ``model`` of server requests)."""
    return f"coordexp-lora-{version}"


def server_args(max_rank: int) -> list[str]:
    """The vLLM server arguments serving one runtime-loaded adapter of rank <= ``max_rank``."""
    return ["--enable-lora", "--max-lora-rank", str(max_rank), "--max-loras", "1"]


def load_adapter_body(version: int, folder: str) -> dict[str, Any]:
    """The `LOAD_ROUTE` body loading the adapter saved in ``folder`` as ``version``."""
    return {"lora_name": adapter_name(version), "lora_path": folder}


def unload_adapter_body(version: int) -> dict[str, Any]:
    """The `UNLOAD_ROUTE` body dropping adapter ``version``."""
    return {"lora_name": adapter_name(version)}


def engine_lora(llm: Any) -> EngineLoRA:
    """What LoRA an in-process engine serves (see `EngineLoRA`)."""
    config = llm.llm_engine.vllm_config.lora_config
    if config is None:
        return EngineLoRA(enabled=False, max_rank=0)
    tower = bool(getattr(config, "enable_tower_connector_lora", False))
    return EngineLoRA(enabled=True, max_rank=int(config.max_lora_rank), tower=tower)


def add_adapter(llm: Any, version: int, folder: Path) -> Any:
    """Load the adapter in ``folder`` into an in-process engine; returns its ``LoRARequest``.

    Raises:
        RolloutError: vLLM refused the adapter (its message is included).
    """
    from vllm.lora.request import LoRARequest

    request = LoRARequest(adapter_name(version), version, str(folder))
    try:
        llm.llm_engine.add_lora(request)
    except Exception as exc:  # vLLM reports a bad adapter as ValueError or RuntimeError
        raise RolloutError(f"vLLM refused the LoRA adapter saved in {folder}: {exc}") from exc
    return request


def remove_adapter(llm: Any, request: Any) -> None:
    """Drop an adapter from an in-process engine."""
    llm.llm_engine.remove_lora(request.lora_int_id)


def llm_generate(llm: Any, prompts: list[Any], sampling: list[Any], lora: Any) -> list[Any]:
    """``LLM.generate`` of every prompt through the adapter ``lora`` (a ``LoRARequest``)."""
    return list(llm.generate(prompts, sampling, use_tqdm=False, lora_request=lora))


class AdapterVersions:
    """Saves each sync's adapter to a fresh versioned folder and keeps only the newest.

    Versions count 1, 2, ... (vLLM adapter ids must be positive). Folders are
    ``<root>/adapter-<version>``; ``root`` defaults to a new temporary folder, removed by
    `close`.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="coordexp-lora-")) if root is None else Path(root)
        self.version = 0

    def publish(self, model: Any) -> tuple[int, Path]:
        """Save ``model``'s active adapter as the next version; older folders are removed.

        Returns:
            the version and the folder holding ``adapter_config.json``.
        """
        self.version += 1
        folder = self.root / f"adapter-{self.version:06d}"
        saved = save_adapter(model, folder)
        for old in self.root.glob("adapter-*"):
            if old != folder:
                shutil.rmtree(old)
        return self.version, saved

    def close(self) -> None:
        """Remove the saved adapters (and the root folder when it was created here)."""
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            for old in self.root.glob("adapter-*"):
                shutil.rmtree(old)
