"""What a weight sync sends: the sync-path decision and the training model's weights.

A PEFT (LoRA) model is read through its own API only, so this module never imports
peft: ``peft_config`` and ``active_adapters`` of the model, ``get_base_model()``,
``save_pretrained(..., selected_adapters=...)``, and on its LoRA layers ``lora_A``,
``lora_B``, ``get_base_layer()``, ``get_delta_weight()``, ``lora_variant``,
``lora_bias``, ``scaling``, ``merged_adapters`` and ``disable_adapters``;
``modules_to_save`` / ``original_module`` of its full-copy wrappers and
``token_adapter.get_merged_weights()`` of its trainable-token wrappers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

import torch

from coordexp_backends.errors import RolloutError

SyncMode: TypeAlias = Literal["full", "adapter", "auto"]
SyncPath: TypeAlias = Literal["full", "adapter"]

logger = logging.getLogger(__name__)

_PLAIN_INITS = frozenset({"gaussian", "eva", "orthogonal"})
"""String ``init_lora_weights`` values that leave the base weights untouched."""


def is_adapter_model(model: Any) -> bool:
    """Whether ``model`` carries LoRA adapters (a PEFT model: it has ``peft_config``)."""
    return hasattr(model, "peft_config")


@dataclass(frozen=True, slots=True)
class EngineLoRA:
    """The LoRA adapters an engine can serve.

    Attributes:
        enabled: the engine was started with LoRA support (vLLM ``enable_lora``).
        max_rank: the largest adapter rank it accepts (vLLM ``max_lora_rank``).
        tower: it also serves LoRA on the vision tower and connector (vLLM
            ``enable_tower_connector_lora``, honoured for models whose vLLM implementation
            supports it, Qwen3-VL among them). Without it vLLM loads a vision-tower adapter
            and silently ignores it.
    """

    enabled: bool
    max_rank: int
    tower: bool = False


@dataclass(frozen=True, slots=True)
class SyncDecision:
    """The path one sync takes and why (the reason is what the sync log prints)."""

    path: SyncPath
    reason: str


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """How `sync_weights` sends weights (``rollout_matching.vllm.sync``).

    ``full`` sends full weights (a PEFT model's LoRA deltas merged into its base
    weights); ``adapter`` sends the LoRA adapter; ``auto`` sends the adapter of a PEFT
    model and full weights of a plain one. When the adapter cannot be served (see
    `adapter_problems`) the sync falls back to full weights if ``fallback_to_full``,
    else fails.
    """

    mode: SyncMode = "full"
    fallback_to_full: bool = True

    def decide(self, model: Any, engine: EngineLoRA) -> SyncDecision:
        """The path of syncing ``model`` into an engine that serves ``engine`` adapters.

        Pure: same model structure, config and plan give the same decision.

        Raises:
            RolloutError: the adapter cannot be served and ``fallback_to_full`` is false;
                the message names ``rollout_matching.vllm.sync.mode`` and every reason.
        """
        peft = is_adapter_model(model)
        if self.mode == "full" or (self.mode == "auto" and not peft):
            what = "LoRA merged into the base weights" if peft else "plain model"
            return SyncDecision("full", f"sync.mode={self.mode}, {what}")
        problems = adapter_problems(model, engine)
        if not problems:
            name = model.active_adapters[0]
            rank = max_rank(model.peft_config[name])
            what = f"LoRA adapter {name!r} rank {rank}"
            return SyncDecision("adapter", f"sync.mode={self.mode}, {what}")
        reasons = "; ".join(problems)
        if self.fallback_to_full:
            what = "fell back to full weights (fallback_to_full)"
            return SyncDecision("full", f"sync.mode={self.mode} {what}: {reasons}")
        raise RolloutError(
            f"rollout_matching.vllm.sync.mode={self.mode}: the LoRA adapter cannot be synced: "
            f"{reasons}. Fix that, set rollout_matching.vllm.sync.fallback_to_full: true "
            "(merged full weights are sent instead) or sync.mode: full"
        )


class SyncLog:
    """Logs a sync's path and reason when the path differs from the previous sync's.

    One line per change of path, not one per optimizer step (a reason may name a
    per-sync folder, so reasons alone are not compared).
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.last: SyncPath | None = None

    def record(self, decision: SyncDecision) -> None:
        """Log ``decision`` at INFO level unless the previous sync took the same path."""
        if decision.path != self.last:
            logger.info("%s weight sync: %s (%s)", self.backend, decision.path, decision.reason)
        self.last = decision.path


def max_rank(config: Any) -> int:
    """The largest rank of a LoRA config (``r`` and every ``rank_pattern`` value)."""
    return max([int(config.r), *(int(r) for r in (config.rank_pattern or {}).values())])


def adapter_problems(model: Any, engine: EngineLoRA) -> list[str]:
    """Why ``model``'s active adapter cannot be served as a vLLM LoRA (empty: it can).

    vLLM serves plain LoRA on linear layers of the language model, and of the vision
    tower only when ``engine.tower``; not on non-linear layers, not with
    ``modules_to_save`` copies or trainable token rows, not LoRA variants (DoRA, ...),
    biases, inits that rewrite the base weights (PiSSA, OLoRA, LoftQ, ...), nor ranks
    above the engine's ``max_lora_rank``.
    """
    if not is_adapter_model(model):
        return ["the model is not a PEFT (LoRA) model"]
    problems = []
    if not engine.enabled:
        problems.append("the engine was started without LoRA (rollout_matching.vllm.enable_lora)")
    active = list(model.active_adapters)
    if len(active) != 1:
        return [*problems, f"{len(active)} adapters are active ({active}); vLLM serves one"]
    config = model.peft_config[active[0]]
    kind = str(getattr(config.peft_type, "value", config.peft_type))
    if kind != "LORA":
        return [*problems, f"the adapter is {kind}, not LoRA"]
    if config.modules_to_save:
        problems.append(f"modules_to_save {sorted(config.modules_to_save)} are full copies")
    if getattr(config, "trainable_token_indices", None):
        problems.append("trainable token rows (trainable_token_indices) are not LoRA")
    if config.bias != "none" or getattr(config, "lora_bias", False):
        problems.append("the adapter trains biases")
    init = config.init_lora_weights
    if isinstance(init, str) and init.lower() not in _PLAIN_INITS:
        problems.append(f"init_lora_weights={init!r} rewrites the base weights")
    if getattr(config, "layer_replication", None):
        problems.append("layer_replication changes the base model")
    rank = max_rank(config)
    if rank > engine.max_rank:
        problems.append(f"rank {rank} is above the engine's max_lora_rank {engine.max_rank}")
    problems.extend(_layer_problems(model.get_base_model(), active[0], engine.tower))
    return problems


def _layer_problems(base: Any, adapter: str, tower_lora: bool) -> list[str]:
    towers = [] if tower_lora else _vision_towers(base)
    vision, nonlinear, variant, merged = [], [], [], []
    for name, layer in _lora_layers(base):
        if not _carries(layer, adapter):
            continue
        if any(name.startswith(t + ".") for t in towers):
            vision.append(name)
        if not isinstance(layer.get_base_layer(), torch.nn.Linear):
            nonlinear.append(name)
        if adapter in layer.lora_variant:
            variant.append(name)
        if adapter in layer.merged_adapters:
            merged.append(name)
    found = []
    if vision:
        found.append(
            f"it targets vision-tower modules ({_few(vision)}) and the engine was started "
            "without enable_tower_connector_lora"
        )
    if nonlinear:
        found.append(f"it targets non-linear layers ({_few(nonlinear)})")
    if variant:
        found.append(f"it is a LoRA variant (DoRA, ...) on {_few(variant)}")
    if merged:
        found.append(f"it is merged into the base weights on {_few(merged)}")
    return found


def _few(names: list[str]) -> str:
    more = f", ... {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _vision_towers(base: Any) -> list[str]:
    """Names of the submodules built from the model's ``vision_config`` (Qwen-VL ``visual``)."""
    vision = getattr(base.config, "vision_config", None)
    if vision is None:
        return []
    return [
        name
        for name, module in base.named_modules()
        if name and type(getattr(module, "config", None)) is type(vision)
    ]


def _carries(layer: Any, adapter: str) -> bool:
    """Whether a LoRA layer holds ``adapter`` (linear ``lora_A`` or embedding factors)."""
    return adapter in layer.lora_A or adapter in getattr(layer, "lora_embedding_A", {})


def _lora_layers(base: Any) -> Iterator[tuple[str, Any]]:
    for name, module in base.named_modules():
        if isinstance(getattr(module, "lora_A", None), torch.nn.ModuleDict):
            yield name, module


def named_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's checkpoint-format ``(name, tensor)`` pairs (detached).

    A plain model gives its state dict. A PEFT model gives its base model's weights
    under the base checkpoint's names with the active adapters folded in exactly as
    peft's ``merge_and_unload`` would (LoRA deltas via ``get_delta_weight`` added in
    the base dtype, ``modules_to_save`` copies, trainable token rows), computed one
    tensor at a time, without changing the model.
    """
    if not is_adapter_model(model):
        for name, tensor in model.state_dict().items():
            yield name, tensor.detach()
        return
    yield from _peft_weights(model, merge=True)


def base_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """A PEFT model's base weights without its adapters, under the checkpoint's names."""
    yield from _peft_weights(model, merge=False)


def _peft_weights(model: Any, merge: bool) -> Iterator[tuple[str, torch.Tensor]]:
    base = model.get_base_model()
    wrappers = _peft_wrappers(base)
    done: set[str] = set()
    with torch.no_grad():
        for key, tensor in base.state_dict().items():
            owner = _owner(key, wrappers)
            if owner is None:
                yield key, tensor.detach()
            elif owner not in done:
                done.add(owner)
                for name, value in _unwrapped_state(wrappers[owner], merge):
                    yield f"{owner}.{name}", value.detach()


def _peft_wrappers(base: Any) -> dict[str, Any]:
    """The outermost PEFT wrapper modules by name (LoRA layers, full copies, token rows)."""
    found: dict[str, Any] = {}
    for name, module in base.named_modules():
        is_wrapper = (
            isinstance(getattr(module, "lora_A", None), torch.nn.ModuleDict)
            or hasattr(module, "original_module")
            or hasattr(module, "token_adapter")
        )
        if is_wrapper and _owner(name + ".", found) is None:
            found[name] = module
    return found


def _owner(key: str, wrappers: dict[str, Any]) -> str | None:
    parts = key.split(".")
    for end in range(1, len(parts)):
        prefix = ".".join(parts[:end])
        if prefix in wrappers:
            return prefix
    return None


def _unwrapped_state(wrapper: Any, merge: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """A wrapper's state as its unwrapped module would hold it (merged or base-only)."""
    active = [] if wrapper.disable_adapters else list(wrapper.active_adapters)
    if hasattr(wrapper, "token_adapter"):
        layer = wrapper.token_adapter
        state = dict(layer.base_layer.state_dict())
        if merge:
            state["weight"] = layer.get_merged_weights(active)
        yield from state.items()
    elif hasattr(wrapper, "original_module"):
        chosen = wrapper.modules_to_save[active[0]] if merge and active else wrapper.original_module
        yield from chosen.state_dict().items()
    else:
        state = dict(wrapper.get_base_layer().state_dict())
        if merge:
            _merge_lora(wrapper, active, state)
        yield from state.items()


def _merge_lora(layer: Any, active: list[str], state: dict[str, torch.Tensor]) -> None:
    """Fold ``active`` LoRA adapters into ``state`` (the base layer's) as peft merges them."""
    for adapter in active:
        if not _carries(layer, adapter) or adapter in layer.merged_adapters:
            continue
        weight = state["weight"].clone()
        if adapter in layer.lora_variant:
            weight = layer.lora_variant[adapter].merge_safe(layer, adapter, weight)
        else:
            weight += layer.get_delta_weight(adapter)
        state["weight"] = weight
        if layer.lora_bias[adapter]:
            if "bias" not in state:
                raise RolloutError(
                    f"the LoRA bias (lora_bias) of adapter {adapter!r} cannot be merged into "
                    "a layer without bias: set lora_bias: false"
                )
            state["bias"] = state["bias"] + layer.lora_B[adapter].bias * layer.scaling[adapter]


def save_adapter(model: Any, folder: Path) -> Path:
    """Save ``model``'s active adapter in peft format; returns the folder holding it.

    Only the adapter is written (``adapter_config.json``, ``adapter_model.safetensors``),
    never embedding layers; peft puts an adapter not named ``default`` in a subfolder.
    """
    name = model.active_adapters[0]
    model.save_pretrained(str(folder), selected_adapters=[name], save_embedding_layers=False)
    return folder if name == "default" else folder / name
