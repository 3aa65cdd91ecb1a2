"""Post-rollout packing: Channel-B teacher-forced samples into packs of ``capacity`` tokens.

The capacity is ``training.packing_length`` (or ``global_max_length``). A sample longer
than the capacity (a long rollout plus injected objects) is dropped and counted, never
truncated: a cut answer would train a truncated JSON object. The rest are packed with
coordexp-pack's deterministic :class:`~coordexp_pack.CarryPacker`, in arrival order, within
one optimizer step: a pack filled below ``training.packing_min_fill_ratio`` waits for the
next micro-batch of the step, and the step's last micro-batch flushes the buffer (under
``training.packing_drop_last`` the packs still under-filled then are dropped and counted).
No sample waits past its optimizer step, so each step trains on its own rollouts and a
checkpoint never holds a half-packed buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordexp_pack import CarryPacker, Pack, Segment
from coordexp_train.stage2.teacher_forced import TeacherForcedSample


@dataclass(frozen=True, slots=True)
class PostRolloutPacks:
    """What one micro-batch trains.

    Attributes:
        packs: each pack's samples in layout order; packs in coordexp-pack's order.
        too_long: the samples left out because they exceed the capacity.
        underfilled: samples dropped at the end of the step under ``packing_drop_last``.
    """

    packs: tuple[tuple[TeacherForcedSample, ...], ...]
    too_long: tuple[TeacherForcedSample, ...]
    underfilled: tuple[TeacherForcedSample, ...]


class PostRolloutPacker:
    """Packs each micro-batch's samples, carrying under-filled packs within the step.

    Args:
        capacity: tokens per pack, >= 1.
        min_fill_ratio: ``training.packing_min_fill_ratio``.
        drop_last: ``training.packing_drop_last``.

    The output of every call is a pure function of the arguments and the sequence of
    calls (lengths, order, ``end_of_step``).

    Raises:
        ValueError: a capacity < 1 or a ratio outside [0, 1] (naming the setting).
    """

    def __init__(
        self, capacity: int, *, min_fill_ratio: float = 0.0, drop_last: bool = False
    ) -> None:
        if capacity < 1:
            raise ValueError(f"training.packing_length must be >= 1, got {capacity}")
        self.capacity = capacity
        self._packer = CarryPacker(capacity, min_fill_ratio=min_fill_ratio, drop_last=drop_last)
        self._waiting: dict[str, TeacherForcedSample] = {}
        self._next_id = 0

    def add(self, samples: Sequence[TeacherForcedSample], *, end_of_step: bool) -> PostRolloutPacks:
        """Pack ``samples`` after the carried ones; flush the buffer when ``end_of_step``."""
        too_long = tuple(s for s in samples if s.sample.length > self.capacity)
        segments = []
        for s in samples:
            if s.sample.length <= self.capacity:
                key = str(self._next_id)
                self._next_id += 1
                self._waiting[key] = s
                segments.append(Segment(key, s.sample.length))
        ready: list[Pack] = list(self._packer.add(segments).packs)
        dropped: tuple[Segment, ...] = ()
        if end_of_step:
            end = self._packer.flush()
            ready.extend(end.packs)
            dropped = end.dropped
        packs = tuple(tuple(self._waiting.pop(seg.id) for seg in p.segments) for p in ready)
        underfilled = tuple(self._waiting.pop(seg.id) for seg in dropped)
        return PostRolloutPacks(packs, too_long, underfilled)
