"""A carry buffer: under-filled packs wait for the next call's segments instead of training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordexp_pack.bin_packing import check_capacity
from coordexp_pack.segments import (
    OversizePolicy,
    Pack,
    Segment,
    check_oversize,
    check_segments,
    packs_of,
)


@dataclass(frozen=True, slots=True)
class PackRound:
    """What one call to :class:`CarryPacker` did with its segments.

    Every segment given so far is in exactly one of: a pack returned by some call, the
    carry buffer, or some call's ``dropped``.

    Attributes:
        packs: packs to train on now, ordered as :func:`pack_segments` orders them.
        carried: the carry buffer after the call, in arrival order.
        dropped: segments discarded by :meth:`CarryPacker.flush` under ``drop_last``.
    """

    packs: tuple[Pack, ...]
    carried: tuple[Segment, ...]
    dropped: tuple[Segment, ...]


class CarryPacker:
    """Packs successive batches of segments, carrying under-filled packs forward.

    Each :meth:`add` packs the carry buffer followed by the new segments (one input
    sequence, carry first, both in arrival order) as :func:`pack_segments` does; the
    arguments are checked once, in the constructor, and only the new segments per call. A pack
    whose fill is below ``min_fill_ratio`` goes back to the carry buffer, unless one of
    its segments has already waited ``max_carry_calls`` calls: then it is returned
    anyway, so no segment waits longer and an unreachable ratio cannot hoard the data.
    :meth:`flush` ends an epoch: it packs the buffer and returns every pack, or under
    ``drop_last`` drops (and reports) the packs below the ratio.

    The output of every call is a pure function of the constructor arguments and the
    sequence of calls with their segments.
    """

    def __init__(
        self,
        capacity: int,
        *,
        min_fill_ratio: float = 0.0,
        drop_last: bool = False,
        oversize: OversizePolicy = "error",
        max_carry_calls: int = 1,
    ) -> None:
        """Configure the packer.

        Args:
            capacity: tokens per pack (``training.packing_length`` or
                ``global_max_length``), an int >= 1.
            min_fill_ratio: packs filled below this fraction of ``capacity`` are carried
                (``training.packing_min_fill_ratio``), a number in [0, 1].
            drop_last: whether :meth:`flush` drops under-filled packs instead of
                returning them (``training.packing_drop_last``).
            oversize: policy for segments longer than ``capacity``, see
                :func:`pack_segments` (``training.packing_oversize``).
            max_carry_calls: the most calls a segment may wait in the buffer, int >= 1.

        Raises:
            ValueError: an argument outside the range stated above, naming it.
        """
        check_capacity(capacity)
        if (
            isinstance(min_fill_ratio, bool)
            or not isinstance(min_fill_ratio, int | float)
            or not 0.0 <= min_fill_ratio <= 1.0
        ):
            raise ValueError(
                "min_fill_ratio (training.packing_min_fill_ratio) must be a number in "
                f"[0, 1], got {min_fill_ratio!r}"
            )
        check_oversize(oversize)
        if (
            isinstance(max_carry_calls, bool)
            or not isinstance(max_carry_calls, int)
            or max_carry_calls < 1
        ):
            raise ValueError(f"max_carry_calls must be an int >= 1, got {max_carry_calls!r}")
        self._capacity = capacity
        self._min_fill_ratio = float(min_fill_ratio)
        self._drop_last = bool(drop_last)
        self._oversize: OversizePolicy = oversize
        self._max_carry_calls = max_carry_calls
        self._carry: list[Segment] = []
        self._waited: dict[str, int] = {}

    @property
    def carry(self) -> tuple[Segment, ...]:
        """Segments waiting for the next call, in arrival order."""
        return tuple(self._carry)

    def add(self, segments: Sequence[Segment]) -> PackRound:
        """Pack the carry buffer plus ``segments``; carry the under-filled packs.

        Args:
            segments: new segments in arrival order; ids must differ from each other and
                from the ids waiting in the carry buffer.

        Returns:
            The packs to train on now and the new carry buffer (``dropped`` is empty).

        Raises:
            ValueError: a non-Segment item or an id repeated within ``segments`` (naming
                positions in ``segments``), an id already waiting in the buffer, or any
                error of :func:`pack_segments`; the buffer is left unchanged.
        """
        check_segments(segments)
        for seg in segments:
            if seg.id in self._waited:
                raise ValueError(
                    f"segment id {seg.id!r} is already waiting in the carry buffer; "
                    "ids must be unique until their segment is packed"
                )
        pool = [*self._carry, *segments]
        ready: list[Pack] = []
        waiting: list[Segment] = []
        for p in packs_of(pool, self._capacity, self._oversize):
            overdue = any(self._waited.get(s.id, 0) >= self._max_carry_calls for s in p.segments)
            if p.fill >= self._min_fill_ratio or overdue:
                ready.append(p)
            else:
                waiting.extend(p.segments)
        position = {seg.id: i for i, seg in enumerate(pool)}
        waiting.sort(key=lambda s: position[s.id])
        self._waited = {s.id: self._waited.get(s.id, 0) + 1 for s in waiting}
        self._carry = waiting
        return PackRound(tuple(ready), tuple(waiting), ())

    def flush(self) -> PackRound:
        """End the epoch: pack the carry buffer and empty it.

        Returns:
            Every pack of the buffer, or under ``drop_last`` only those at or above
            ``min_fill_ratio``, with the segments of the others in ``dropped`` (in
            arrival order).
        """
        carry = self._carry
        packs = packs_of(carry, self._capacity, self._oversize)
        self._carry = []
        self._waited = {}
        if not self._drop_last:
            return PackRound(tuple(packs), (), ())
        kept = tuple(p for p in packs if p.fill >= self._min_fill_ratio)
        dropped_ids = {s.id for p in packs if p.fill < self._min_fill_ratio for s in p.segments}
        return PackRound(kept, (), tuple(s for s in carry if s.id in dropped_ids))
