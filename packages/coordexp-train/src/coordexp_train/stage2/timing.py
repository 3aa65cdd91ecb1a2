"""Wall-clock time per named phase of a training step (rollout, parse, match, …)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseTimes:
    """Accumulated seconds per phase name, in first-use order.

    Use :meth:`phase` as a context manager around each phase; the same name may be
    timed many times per step (per sample, per pack) and its durations add up.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall-clock duration of the ``with`` body to ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        """Seconds over all phases."""
        return sum(self.seconds.values())
