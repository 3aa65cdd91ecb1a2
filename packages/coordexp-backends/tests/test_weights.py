"""The sync plan (``rollout_matching.vllm.sync``) and the weights a sync sends."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch

from coordexp_backends import RolloutError
from coordexp_backends.weights import SyncPlan, named_weights


class PeftLike(torch.nn.Linear):
    """Stands for a PEFT model: what the plan checks is the ``peft_config`` attribute."""

    peft_config: ClassVar[dict[str, Any]] = {"default": {}}


@pytest.mark.parametrize("mode", ["full", "auto"])
def test_full_and_auto_send_a_plain_model(mode: str, model: Any) -> None:
    SyncPlan(mode=mode).check(model)  # type: ignore[arg-type]


def test_adapter_mode_falls_back_to_full_for_a_plain_model_only_when_allowed(model: Any) -> None:
    SyncPlan(mode="adapter", fallback_to_full=True).check(model)
    with pytest.raises(RolloutError, match=r"sync\.mode=adapter needs a PEFT \(LoRA\) model"):
        SyncPlan(mode="adapter", fallback_to_full=False).check(model)


@pytest.mark.parametrize("mode", ["full", "adapter", "auto"])
def test_a_peft_model_is_refused_with_guidance(mode: str) -> None:
    with pytest.raises(
        RolloutError, match=r"PEFT \(LoRA\) model.*plain checkpoints only.*colocate"
    ):
        SyncPlan(mode=mode).check(PeftLike(2, 2))  # type: ignore[arg-type]


def test_named_weights_are_the_checkpoint_state_dict(model: Any) -> None:
    pairs = dict(named_weights(model))
    assert pairs.keys() == model.state_dict().keys()
    assert "lm_head.weight" in pairs
    assert all(not t.requires_grad for t in pairs.values())
    assert torch.equal(pairs["model.norm.weight"], model.model.norm.weight)
