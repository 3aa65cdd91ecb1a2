"""The launcher preflight contract: shell assignments derived from a loaded config.

The launcher ``eval``s the lines :func:`preflight_lines` returns. One of them is
``ROLLOUT_CONTRACT_JSON``, whose value is single-line JSON followed by exactly one newline
and holds at least ``rollout_backend`` (string), ``vllm_mode`` (string or null) and
``server_base_urls`` (list of strings); more keys are allowed.
:func:`validate_contract` rejects a malformed or incomplete contract before launch.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from coordexp_schema.config import TrainingConfig

CONTRACT_VARIABLE = "ROLLOUT_CONTRACT_JSON"
NO_ROLLOUT = "none"
"""``rollout_backend`` of a config whose trainer does not roll out (``stage1_sft``)."""


class ContractError(ValueError):
    """A preflight contract is malformed or incomplete; the message says which rule broke."""


def rollout_contract(cfg: TrainingConfig) -> dict[str, Any]:
    """The rollout contract of a config.

    Returns:
        ``rollout_backend`` (``hf``, ``vllm``, or ``none`` when the trainer does not roll
        out), ``vllm_mode`` (``colocate``/``server`` for vLLM, else null),
        ``server_base_urls`` (server mode only, else empty) and the extras
        ``trainer_variant``, ``server_group_ports``, ``decode_batch_size``.
    """
    rollout = cfg.rollout_matching
    backend = rollout.rollout_backend if rollout is not None else NO_ROLLOUT
    mode = rollout.vllm.mode if rollout is not None and backend == "vllm" else None
    servers = rollout.vllm.server.servers if rollout is not None and mode == "server" else ()
    return {
        "rollout_backend": backend,
        "vllm_mode": mode,
        "server_base_urls": [s.base_url for s in servers],
        "trainer_variant": cfg.custom.trainer_variant,
        "server_group_ports": [s.group_port for s in servers],
        "decode_batch_size": rollout.decode_batch_size if rollout is not None else None,
    }


def contract_value(contract: dict[str, Any]) -> str:
    """The ``ROLLOUT_CONTRACT_JSON`` value: compact single-line JSON plus one newline."""
    return json.dumps(contract, separators=(",", ":"), sort_keys=False) + "\n"


def preflight_lines(cfg: TrainingConfig, config_path: str | Path) -> str:
    """Shell assignment lines for a launcher to ``eval`` (values quoted with ``shlex``).

    Variables: ``COORDEXP_CONFIG`` (absolute path), ``COORDEXP_TRAINER_VARIANT``,
    ``COORDEXP_OUTPUT_DIR``, ``COORDEXP_ROLLOUT_BACKEND``, ``COORDEXP_VLLM_MODE`` (empty
    when not vLLM), ``COORDEXP_SERVER_BASE_URLS`` (space-separated),
    ``COORDEXP_SERVER_TIMEOUT_S`` and ``ROLLOUT_CONTRACT_JSON``. Deterministic: the same
    config gives the same bytes.
    """
    contract = rollout_contract(cfg)
    rollout = cfg.rollout_matching
    timeout = rollout.vllm.server.timeout_s if rollout is not None else None
    values = {
        "COORDEXP_CONFIG": str(Path(config_path).resolve()),
        "COORDEXP_TRAINER_VARIANT": cfg.custom.trainer_variant,
        "COORDEXP_OUTPUT_DIR": cfg.training.output_dir,
        "COORDEXP_ROLLOUT_BACKEND": contract["rollout_backend"],
        "COORDEXP_VLLM_MODE": contract["vllm_mode"] or "",
        "COORDEXP_SERVER_BASE_URLS": " ".join(contract["server_base_urls"]),
        "COORDEXP_SERVER_TIMEOUT_S": "" if timeout is None else f"{timeout:g}",
        CONTRACT_VARIABLE: contract_value(contract),
    }
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def validate_contract(value: str) -> dict[str, Any]:
    """Check a ``ROLLOUT_CONTRACT_JSON`` value and return the decoded contract.

    Rules: exactly one trailing newline and no other line break; a JSON object;
    ``rollout_backend`` a non-empty string; ``vllm_mode`` a string or null (null unless
    the backend is ``vllm``); ``server_base_urls`` a list of strings, non-empty exactly
    when ``vllm_mode`` is ``server``.

    Raises:
        ContractError: naming the first rule the value breaks.
    """
    if not value.endswith("\n"):
        raise ContractError(f"{CONTRACT_VARIABLE} must end with a newline")
    body = value[:-1]
    if "\n" in body or "\r" in body:
        raise ContractError(f"{CONTRACT_VARIABLE} must be single-line JSON + one newline")
    try:
        contract = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ContractError(f"{CONTRACT_VARIABLE} is not valid JSON: {exc}") from None
    if not isinstance(contract, dict):
        raise ContractError(f"{CONTRACT_VARIABLE} must be a JSON object")
    for key in ("rollout_backend", "vllm_mode", "server_base_urls"):
        if key not in contract:
            raise ContractError(f"{CONTRACT_VARIABLE} lacks the required key {key!r}")
    backend, mode, urls = (
        contract["rollout_backend"],
        contract["vllm_mode"],
        contract["server_base_urls"],
    )
    if not isinstance(backend, str) or not backend:
        raise ContractError(f"rollout_backend must be a non-empty string, got {backend!r}")
    if mode is not None and not isinstance(mode, str):
        raise ContractError(f"vllm_mode must be a string or null, got {mode!r}")
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise ContractError(f"server_base_urls must be a list of strings, got {urls!r}")
    if mode is not None and backend != "vllm":
        raise ContractError(f"vllm_mode must be null for rollout_backend {backend!r}")
    if (mode == "server") != bool(urls):
        raise ContractError("server_base_urls must be non-empty exactly when vllm_mode is server")
    return contract
