"""What a rollout parse returns: valid objects, entries, drop counts and the prefix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal, NamedTuple, TypeAlias

from coordexp_parse.objects import DetObject, GeometryKind

#: Every reason an ``object_N`` entry can be dropped for, in reporting order.
#:
#: - ``key_invalid``: the key is not ``object_N`` (N ≥ 1, no leading zero); or the value is
#:   not a JSON object, repeats a key, holds two geometries or a key other than ``desc``
#:   and its one geometry.
#: - ``duplicate_key``: an earlier entry already used this ``object_N``.
#: - ``missing_desc``: no ``desc``, or it is not a string that is non-empty after strip.
#: - ``missing_geom``: neither ``bbox_2d`` nor ``poly`` (and no other key).
#: - ``unknown_geom``: no known geometry but one other key (``bbox``, ``polygon``, …).
#: - ``non_coord_token``: a coordinate that is not a coord token ``"<|coord_k|>"`` written
#:   literally (bare numbers, escapes, other strings; in token parses also a coord spelled
#:   with ordinary tokens instead of the one coord token).
#: - ``wrong_arity``: the geometry is not a list, a bbox without 4 values, a poly with an
#:   odd count or fewer than 6 values, or a poly pair that is not 2 values.
#: - ``bbox_invalid``: ``x2 < x1`` or ``y2 < y1``.
#: - ``invalid_json``: the value is complete but is not valid JSON.
DROP_REASONS: tuple[str, ...] = (
    "key_invalid",
    "duplicate_key",
    "missing_desc",
    "missing_geom",
    "unknown_geom",
    "non_coord_token",
    "wrong_arity",
    "bbox_invalid",
    "invalid_json",
)

#: How the scan of the answer ended.
#:
#: - ``closed``: the top-level object was closed by its ``}``.
#: - ``truncated``: the response ended inside the top-level object.
#: - ``syntax_error``: a character that cannot continue the top-level object (missing
#:   comma or colon, a non-string key, a trailing comma, …); the rest is ignored.
#: - ``no_object``: the response holds no ``{``.
Ending: TypeAlias = Literal["closed", "truncated", "syntax_error", "no_object"]

Span: TypeAlias = tuple[int, int]


class Entry(NamedTuple):
    """One complete ``"key": value`` entry of the top-level object, valid or dropped.

    A named tuple (immutable, cheap to build: a parse makes one per entry).

    Attributes:
        key: the decoded key text.
        index: N when the key is ``object_<digits>`` (leading zeros allowed here, so
            malformed keys still count for key allocation), else None.
        span: character span from the key's opening quote to the value's end.
        reason: the drop reason, or None when the entry is a valid object.
        ordinal: the position of the valid object in ``RolloutParse.objects``, or None.
    """

    key: str
    index: int | None  # type: ignore[assignment]  # the contract's name; shadows tuple.index
    span: Span
    reason: str | None
    ordinal: int | None


class ParsedObject(NamedTuple):
    """A valid object parsed from a rollout, with where it sits in the text and tokens.

    A named tuple (immutable, cheap to build: a parse makes one per object).

    Attributes:
        index: the N of its ``object_N`` key.
        desc: the decoded description (non-empty after strip).
        kind: ``"bbox_2d"`` or ``"poly"``.
        coords: flat norm1000 ints (a poly written as pairs is flattened).
        span: character span of the value ``{...}`` in the response text.
        entry_span: character span from the key's opening quote to the value's end.
        desc_span: character span of the desc string's content (inside the quotes).
        coord_spans: character span of each coord token, in ``coords`` order.
        coord_token_positions: for token parses, the index of each coord token in the
            response token ids (equal to its index in ``prefix_token_ids``); None for text
            parses.
    """

    index: int  # type: ignore[assignment]  # the contract's name; shadows tuple.index
    desc: str
    kind: GeometryKind
    coords: tuple[int, ...]
    span: Span
    entry_span: Span
    desc_span: Span
    coord_spans: tuple[Span, ...]
    coord_token_positions: tuple[int, ...] | None

    def to_det_object(self) -> DetObject:
        """The plain object (desc, kind, coords)."""
        return DetObject(self.desc, self.kind, self.coords)


class TokenSpans:
    """The character spans of a token sequence, computed when first read.

    Args:
        pieces: the text pieces of the leading tokens; they tile the text from 0 (each
            starts where the one before ends).
        starts: where each token after them starts.
        ends: where each token after them ends.

    The spans are a pure function of the arguments, computed once; two instances are
    equal when their spans are.
    """

    __slots__ = ("_ends", "_pieces", "_starts", "_tail_ends", "_tail_starts")

    def __init__(
        self, pieces: Sequence[str], starts: Sequence[int] = (), ends: Sequence[int] = ()
    ) -> None:
        self._pieces = pieces
        self._tail_starts = tuple(starts)
        self._tail_ends = tuple(ends)
        self._starts: tuple[int, ...] | None = None
        self._ends: tuple[int, ...] = ()

    def _compute(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if self._starts is None:
            ends = tuple(accumulate(map(len, self._pieces)))
            starts = (0, *ends[:-1]) if ends else ()
            self._starts = starts + self._tail_starts
            self._ends = ends + self._tail_ends
            self._pieces = ()
        return self._starts, self._ends

    @property
    def starts(self) -> tuple[int, ...]:
        """Where each token starts."""
        return self._compute()[0]

    @property
    def ends(self) -> tuple[int, ...]:
        """Where each token ends."""
        return self._compute()[1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenSpans):
            return NotImplemented
        return self._compute() == other._compute()

    def __hash__(self) -> int:
        return hash(self._compute())

    def __repr__(self) -> str:
        return f"TokenSpans(starts={self.starts}, ends={self.ends})"


@dataclass(frozen=True, slots=True)
class RolloutParse:
    """The result of parsing one response; a pure function of the input.

    Attributes:
        text: the response text up to (not including) the first stop string.
        objects: the valid objects in text order.
        entries: every complete entry of the retained prefix, in text order.
        dropped: reason → count of dropped entries (only reasons that occurred, in
            ``DROP_REASONS`` order).
        ending: how the scan ended (see ``Ending``).
        prefix_text: the append-ready prefix: ``text`` cut at the end of the last
            complete entry, or just after the top-level ``{`` when there is none, or
            ``"{"`` when there is no ``{``. It is an open top-level object: appending
            ``", "`` + entries (only when it holds entries) and ``"}"`` closes it.
        max_object_index: the largest N over every ``object_N`` key in the retained
            prefix, dropped entries included; None when there is none.
        prefix_token_ids: for token parses, the token ids of ``prefix_text`` (the
            response's own tokens; a token cut by the prefix end is re-encoded for its
            kept part); None for text parses.
        token_spans: for token parses, the character spans of the prefix tokens in
            ``prefix_text`` (read them as ``prefix_token_starts`` / ``_ends`` /
            ``_spans``); None for text parses.
    """

    text: str
    objects: tuple[ParsedObject, ...]
    entries: tuple[Entry, ...]
    dropped: dict[str, int]
    ending: Ending
    prefix_text: str
    max_object_index: int | None
    prefix_token_ids: tuple[int, ...] | None = None
    token_spans: TokenSpans | None = None

    @property
    def truncated(self) -> bool:
        """Whether the response ended inside the top-level object."""
        return self.ending == "truncated"

    @property
    def prefix_token_starts(self) -> tuple[int, ...] | None:
        """For token parses, where each prefix token starts in ``prefix_text``.

        Tokens that only form characters together share one span.
        """
        return None if self.token_spans is None else self.token_spans.starts

    @property
    def prefix_token_ends(self) -> tuple[int, ...] | None:
        """For token parses, where each prefix token ends in ``prefix_text``."""
        return None if self.token_spans is None else self.token_spans.ends

    @property
    def prefix_token_spans(self) -> tuple[Span, ...] | None:
        """For token parses, ``(start, end)`` of each prefix token; None for text parses."""
        if self.token_spans is None:
            return None
        return tuple(zip(self.token_spans.starts, self.token_spans.ends, strict=True))

    @property
    def num_dropped(self) -> int:
        """The number of dropped entries."""
        return sum(self.dropped.values())
