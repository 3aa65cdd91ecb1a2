"""Segments with ids, packs of segments, and the policy for segments longer than a pack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from coordexp_pack.bin_packing import check_capacity, packing

OversizePolicy: TypeAlias = Literal["error", "own_pack"]
OVERSIZE_POLICIES: tuple[OversizePolicy, ...] = ("error", "own_pack")


@dataclass(frozen=True, slots=True)
class Segment:
    """One training sample after rollout, parsing and FN injection: never split.

    Attributes:
        id: a non-empty string unique among the segments packed together.
        length: its token count, an int >= 1.
        supervised_tokens: how many of its tokens carry loss, an int in 0..length; None
            means all of them. Summed per accumulation window for loss normalisation.

    Raises:
        ValueError: on construction, when a rule above is broken; the message names the id.
    """

    id: str
    length: int
    supervised_tokens: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"segment id must be a non-empty string, got {self.id!r}")
        if isinstance(self.length, bool) or not isinstance(self.length, int) or self.length < 1:
            raise ValueError(
                f"segment {self.id!r}: length must be an int >= 1, got {self.length!r}"
            )
        sup = self.supervised_tokens
        if sup is not None and (
            isinstance(sup, bool) or not isinstance(sup, int) or not 0 <= sup <= self.length
        ):
            raise ValueError(
                f"segment {self.id!r}: supervised_tokens must be None or an int in "
                f"0..{self.length} (its length), got {sup!r}"
            )

    @property
    def loss_tokens(self) -> int:
        """Tokens carrying loss: ``supervised_tokens``, or ``length`` when that is None."""
        return self.length if self.supervised_tokens is None else self.supervised_tokens


@dataclass(frozen=True, slots=True)
class Pack:
    """Segments laid out one after another in one sequence of at most ``capacity`` tokens.

    Attributes:
        segments: in layout order, which is their input order.
        capacity: the pack's token capacity. Only a pack made under the ``own_pack``
            policy holds more (one segment, see :attr:`oversize`).
    """

    segments: tuple[Segment, ...]
    capacity: int

    @property
    def length(self) -> int:
        """Tokens in the pack."""
        return sum(s.length for s in self.segments)

    @property
    def fill(self) -> float:
        """``length / capacity``; above 1 only for an oversize pack."""
        return self.length / self.capacity

    @property
    def oversize(self) -> bool:
        """True for a lone segment longer than ``capacity`` that the trainer must truncate."""
        return self.length > self.capacity

    @property
    def ids(self) -> tuple[str, ...]:
        """Segment ids in layout order."""
        return tuple(s.id for s in self.segments)


def pack_segments(
    segments: Sequence[Segment], capacity: int, oversize: OversizePolicy = "error"
) -> list[Pack]:
    """Pack segments as :func:`coordexp_pack.pack` does, applying the oversize policy.

    A segment longer than ``capacity`` raises under ``"error"``. Under ``"own_pack"`` it
    gets a pack of its own (flagged :attr:`Pack.oversize`) that the trainer truncates to
    ``capacity``. That is safe only when the cut falls inside the assistant answer: the
    kept part must hold the whole prompt, every vision placeholder token of its images
    (their count must match the image grid) and per-sample position ids; the cut-off tail
    loses its loss (in Channel B that can be injected FN objects and the closing brace),
    and ``supervised_tokens`` should already count only what survives the cut. When the
    prompt alone does not fit, the trainer must fail instead.

    Args:
        segments: the segments, with unique ids, in input order.
        capacity: the token capacity of one pack (``training.packing_length``, or
            ``global_max_length`` when that is unset), an int >= 1.
        oversize: ``"error"`` (default) or ``"own_pack"`` (``training.packing_oversize``).

    Returns:
        Packs ordered by their first segment's input position, segments within a pack in
        input order; every segment in exactly one pack. A pure function of the segment
        sequence (ids do not influence the layout), ``capacity`` and ``oversize``.

    Raises:
        ValueError: a bad capacity or policy, a non-Segment item, a repeated id (both
            positions named), or under ``"error"`` a segment longer than ``capacity``
            (its id, length and the capacity named).
    """
    check_oversize(oversize)
    check_capacity(capacity)
    check_segments(segments)
    return packs_of(segments, capacity, oversize)


def packs_of(segments: Sequence[Segment], capacity: int, oversize: OversizePolicy) -> list[Pack]:
    """:func:`pack_segments` of arguments already checked (the policy still applies).

    Raises:
        ValueError: under ``"error"``, a segment longer than ``capacity``.
    """
    fitting: list[int] = []
    groups: list[list[int]] = []
    for i, seg in enumerate(segments):
        if seg.length <= capacity:
            fitting.append(i)
        elif oversize == "own_pack":
            groups.append([i])
        else:
            raise ValueError(
                f"segment {seg.id!r} has length {seg.length}, longer than the pack capacity "
                f"{capacity}; segments are never split: raise the capacity "
                "(training.packing_length), shorten the segment, or set "
                "training.packing_oversize: own_pack if the trainer can truncate it safely"
            )
    placed = packing([segments[i].length for i in fitting], capacity)
    groups.extend([fitting[j] for j in p] for p in placed)
    groups.sort(key=lambda g: g[0])
    return [Pack(tuple(segments[i] for i in g), capacity) for g in groups]


def check_oversize(oversize: str) -> None:
    """Raise ValueError unless ``oversize`` is one of :data:`OVERSIZE_POLICIES`."""
    if oversize not in OVERSIZE_POLICIES:
        raise ValueError(
            f"oversize policy must be one of {list(OVERSIZE_POLICIES)} "
            f"(training.packing_oversize), got {oversize!r}"
        )


def check_segments(segments: Sequence[Segment]) -> None:
    """Check that every item is a :class:`Segment` and no id repeats.

    Raises:
        ValueError: naming the position of a non-Segment item, or a repeated id and both
            of its positions.
    """
    first_at: dict[str, int] = {}
    for i, seg in enumerate(segments):
        if not isinstance(seg, Segment):
            raise ValueError(f"item at position {i} must be a Segment, got {type(seg).__name__}")
        seen = first_at.setdefault(seg.id, i)
        if seen != i:
            raise ValueError(
                f"segment id {seg.id!r} appears at positions {seen} and {i}; "
                "ids must be unique among the segments packed together"
            )
