"""What a weight sync sends: the sync-mode decision and the training model's weights."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import torch

from coordexp_backends.errors import RolloutError

SyncMode: TypeAlias = Literal["full", "adapter", "auto"]


def is_adapter_model(model: Any) -> bool:
    """Whether ``model`` carries LoRA adapters (a PEFT model: it has ``peft_config``)."""
    return hasattr(model, "peft_config")


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """How `sync_weights` sends weights (``rollout_matching.vllm.sync``).

    This release sends full weights. ``auto`` picks full for a plain model; ``adapter``
    on a plain model falls back to full when ``fallback_to_full``. A PEFT (LoRA) model is
    refused with guidance: adapter transfer (vLLM LoRA requests) is not implemented yet.
    """

    mode: SyncMode = "full"
    fallback_to_full: bool = True

    def check(self, model: Any) -> None:
        """Raise unless full weights of ``model`` can be sent under this plan.

        Raises:
            RolloutError: ``model`` is a PEFT model, or ``mode`` is ``adapter`` without
                ``fallback_to_full``.
        """
        if is_adapter_model(model):
            raise RolloutError(
                f"rollout_matching.vllm.sync.mode={self.mode}: the model is a PEFT (LoRA) "
                "model and adapter weight sync is not implemented in coordexp-backends; "
                "merge the adapter into the base weights before syncing, or use "
                "rollout_backend: hf"
            )
        if self.mode == "adapter" and not self.fallback_to_full:
            raise RolloutError(
                "rollout_matching.vllm.sync.mode=adapter needs a PEFT (LoRA) model, got a "
                "plain model and fallback_to_full is false: set sync.mode to full or auto, "
                "or fallback_to_full: true"
            )


def named_weights(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The model's checkpoint-format ``(name, tensor)`` pairs (detached, as stored)."""
    for name, tensor in model.state_dict().items():
        yield name, tensor.detach()
