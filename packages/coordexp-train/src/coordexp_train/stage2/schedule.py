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
