"""The Stage-2 A/B schedule: which channel runs at an optimizer step."""

from __future__ import annotations

import math
from typing import Literal, TypeAlias

Channel: TypeAlias = Literal["A", "B"]


def channel_at_step(step: int, b_ratio: float) -> Channel:
    """The channel of optimizer step ``step`` (``stage2_ab.schedule.b_ratio`` = ``b_ratio``).

    Step ``s`` runs Channel B iff ``floor((s + 1)·r) > floor(s·r)``, so steps ``0..n−1``
    hold ``floor(n·r)`` B steps, spread evenly; ``r = 0`` is always A and ``r = 1`` always
    B. A pure function of its arguments: identical on every rank, run and process.

    Raises:
        ValueError: ``step`` is negative or not an int, or ``b_ratio`` is outside [0, 1].
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"optimizer step must be an int >= 0, got {step!r}")
    if not 0.0 <= b_ratio <= 1.0:
        raise ValueError(f"stage2_ab.schedule.b_ratio must be in [0, 1], got {b_ratio!r}")
    return "B" if math.floor((step + 1) * b_ratio) > math.floor(step * b_ratio) else "A"


def needs_weight_sync(step: int, synced_step: int, every_steps: int) -> bool:
    """Whether a Channel-B step must push the trained weights to the rollout engine first.

    Called only before B steps (A steps never roll out, so never sync). The engine holds
    the weights as they were after ``synced_step`` optimizer steps (0: the starting
    checkpoint); the current weights are those after ``step`` steps. Sync iff they are at
    least ``every_steps`` (``stage2_ab.weight_sync_every_steps``) steps stale, so a B
    step's rollouts are never more than ``every_steps − 1`` updates behind. Pure, so
    identical on every rank.

    Raises:
        ValueError: ``synced_step`` outside ``0..step`` or ``every_steps < 1``.
    """
    if not 0 <= synced_step <= step:
        raise ValueError(f"synced_step must be in 0..{step} (the current step), got {synced_step}")
    if every_steps < 1:
        raise ValueError(f"stage2_ab.weight_sync_every_steps must be >= 1, got {every_steps}")
    return step - synced_step >= every_steps
