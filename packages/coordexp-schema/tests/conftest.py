"""Shared fixtures: minimal valid config payloads per trainer variant."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]

_BASE: dict[str, Any] = {
    "model": {"model": "builtin:tiny-qwen3-vl"},
    "data": {"train_jsonl": "train.jsonl"},
    "training": {"output_dir": "out"},
}
_ROLLOUT: dict[str, Any] = {"rollout_backend": "hf", "decode_batch_size": 2}


def make_payload(variant: str = "stage1_sft") -> dict[str, Any]:
    """A minimal valid payload for ``variant``."""
    payload = copy.deepcopy(_BASE)
    payload["custom"] = {"trainer_variant": variant}
    if variant != "stage1_sft":
        payload["rollout_matching"] = copy.deepcopy(_ROLLOUT)
    if variant == "stage2_ab_training":
        payload["stage2_ab"] = {"schedule": {"b_ratio": 0.5}}
    return payload


@pytest.fixture
def payload() -> Callable[..., dict[str, Any]]:
    return make_payload


@pytest.fixture
def repo() -> Path:
    return REPO
