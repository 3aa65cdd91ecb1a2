"""Post-rollout packing: Channel-B teacher-forced samples into packs of ``capacity`` tokens.

The capacity is ``training.packing_length`` (or ``global_max_length``). A sample longer
than the capacity (a long rollout plus injected objects) is dropped and counted, never
truncated: a cut answer would train a truncated JSON object. The rest are packed with
coordexp-pack's deterministic packer, in step order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordexp_pack import Segment, pack_segments
from coordexp_train.stage2.teacher_forced import TeacherForcedSample


@dataclass(frozen=True, slots=True)
class PostRolloutPacks:
    """The step's packs.

    Attributes:
        packs: each pack's samples in layout order; packs in coordexp-pack's order.
        too_long: the samples left out because they exceed the capacity.
    """

    packs: tuple[tuple[TeacherForcedSample, ...], ...]
    too_long: tuple[TeacherForcedSample, ...]


def pack_teacher_forced(samples: Sequence[TeacherForcedSample], capacity: int) -> PostRolloutPacks:
    """Pack ``samples`` (a pure function of their lengths, order and ``capacity``).

    Raises:
        ValueError: ``capacity`` < 1.
    """
    if capacity < 1:
        raise ValueError(f"training.packing_length must be >= 1, got {capacity}")
    fitting = [s for s in samples if s.sample.length <= capacity]
    too_long = tuple(s for s in samples if s.sample.length > capacity)
    segments = [Segment(str(k), s.sample.length) for k, s in enumerate(fitting)]
    packs = pack_segments(segments, capacity)
    return PostRolloutPacks(
        packs=tuple(tuple(fitting[int(seg.id)] for seg in p.segments) for p in packs),
        too_long=too_long,
    )
