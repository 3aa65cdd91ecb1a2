"""Parameter groups of a Qwen-VL model: vision tower, aligner, language model.

A parameter belongs to the **aligner** when its name contains ``visual.merger`` or
``visual.deepstack_merger_list`` (the vision-to-language projections), to the **vision
tower** when it contains ``visual.`` otherwise, and to the **llm** in every other case
(embeddings, decoder layers, final norm, ``lm_head``). The rule holds for Qwen3-VL and
Qwen2.5-VL, wrapped or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

GroupName = Literal["vision_tower", "aligner", "llm"]
GROUP_NAMES: tuple[GroupName, ...] = ("vision_tower", "aligner", "llm")
_ALIGNER_MARKERS = ("visual.merger", "visual.deepstack_merger_list")


def group_of(parameter_name: str) -> GroupName:
    """The group a parameter belongs to, from its qualified name."""
    if any(marker in parameter_name for marker in _ALIGNER_MARKERS):
        return "aligner"
    if "visual." in parameter_name:
        return "vision_tower"
    return "llm"


@dataclass(frozen=True)
class GroupSettings:
    """Trainability and learning rate of each group (from ``tuner`` and ``training``)."""

    frozen: frozenset[GroupName]
    learning_rates: dict[GroupName, float]
    weight_decay: float


def apply_freezing(model: nn.Module, frozen: frozenset[GroupName]) -> dict[GroupName, int]:
    """Set ``requires_grad`` by group; return the trainable parameter count of each group.

    Raises:
        ValueError: when nothing is left to train (the message names the tuner flags).
    """
    counts: dict[GroupName, int] = dict.fromkeys(GROUP_NAMES, 0)
    for name, param in model.named_parameters():
        group = group_of(name)
        param.requires_grad_(group not in frozen)
        if param.requires_grad:
            counts[group] += param.numel()
    if not any(counts.values()):
        raise ValueError(
            "tuner: every parameter is frozen (freeze_vision_tower, freeze_aligner and "
            "freeze_llm are all true); unfreeze at least one group"
        )
    return counts


def optimizer_groups(model: nn.Module, settings: GroupSettings) -> list[dict[str, Any]]:
    """AdamW parameter groups: one per (group, decay) pair holding trainable parameters.

    Biases and other 1-D parameters (norm scales) get no weight decay. Each returned dict
    has ``params``, ``lr``, ``weight_decay`` and ``name`` (e.g. ``llm/decay``). Group order
    and parameter order follow ``model.named_parameters()``, so they are deterministic.
    """
    buckets: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = group_of(name)
        decay = param.dim() > 1
        key = f"{group}/{'decay' if decay else 'no_decay'}"
        if key not in buckets:
            buckets[key] = {
                "name": key,
                "params": [],
                "lr": settings.learning_rates[group],
                "weight_decay": settings.weight_decay if decay else 0.0,
            }
        buckets[key]["params"].append(param)
    return list(buckets.values())
