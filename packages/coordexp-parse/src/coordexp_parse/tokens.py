"""Token-aligned rollout parsing: token ids → text with exact token ↔ character spans.

A :class:`RolloutParser` wraps a tokenizer (duck-typed, see :class:`TokenizerLike`),
checks once that it has the coord tokens and the end token, and caches each token id's
text piece. Parsing joins the pieces into the text and parses it with
:func:`~coordexp_parse.scanner.scan_text`, locating the token of each coordinate: it must
be exactly one coord token id. When every piece is whole, coord tokens are found in the
ids themselves and the prefix's character spans are summed only when read; ids with byte
pieces of one character are aligned group by group first.
"""

from __future__ import annotations

import re
import sys
import weakref
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from operator import itemgetter
from typing import Protocol

from coordexp_parse.codec import COORD_PREFIX, all_coord_tokens
from coordexp_parse.parsed import RolloutParse, Span, TokenSpans
from coordexp_parse.scanner import Locate, scan_text, stop_index

END_TOKEN = "<|im_end|>"
_REPLACEMENT = "\ufffd"
_MAX_GROUP = 8  # a group of byte pieces is cut after this many tokens
# Accented letters and emoji (byte pieces), and spaces before punctuation (which
# "clean-up" decoding would remove from single-token pieces).
_PROBE_TEXT = (
    '{"object_1": {"desc": "café 🐶 ü , . ! ? n\'t \'s", '
    '"bbox_2d": ["<|coord_0|>", "<|coord_999|>"]}}'
)
_CACHED_TEXT_LEN = 16  # re-encoded prefix tails and "}" are short: cache their ids
_CACHED_TEXTS = 4096
_DECODE_ERRORS = (ValueError, OverflowError, IndexError, KeyError, TypeError)
_WALK_BACK = 64  # tokens walked back from the end to find the prefix cut
_TABLE_LIMIT = 1 << 20  # ids below this also have their whole piece in a list, by id
# Token ids as the characters of a str: 4-byte unsigned ints read as UTF-32.
_ID_TYPECODE = "I" if array("I").itemsize == 4 else "L"
_UTF32 = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
_match_start = re.Match.start


def _may_spell_coord(piece: str) -> bool:
    """Whether ``piece`` ends in, or holds, the start of ``<|coord_``."""
    j = piece.find("<")
    while j >= 0:
        if COORD_PREFIX.startswith(piece[j : j + len(COORD_PREFIX)]):
            return True
        j = piece.find("<", j + 1)
    return False


def _id_class(ids: Sequence[int]) -> re.Pattern[str]:
    """A regular expression matching any one of ``ids`` as a character (see ``_UTF32``)."""
    return re.compile("[" + "".join(re.escape(chr(i)) for i in sorted(ids)) + "]")


class TokenizerLike(Protocol):
    """What the parser needs from a tokenizer; an HF fast tokenizer satisfies it.

    - ``encode(text, add_special_tokens=False)`` → token ids; each coord token text and
      ``<|im_end|>`` must encode to exactly one id.
    - ``decode(ids)`` → text (special tokens kept). Decoding tokens one at a time and
      concatenating must give the same text as decoding them together, except for byte
      pieces of one multi-byte character (they decode to U+FFFD alone and are grouped).
      Byte-level BPE tokenizers (GPT-2, Qwen) behave so; SentencePiece tokenizers that drop
      a leading space when decoding a lone token do not.
    """

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]:  # noqa: D102
        ...

    def decode(self, token_ids: list[int]) -> str:  # noqa: D102
        ...


class TokenizerError(ValueError):
    """The tokenizer cannot be used for rollout parsing (raised when the parser is built)."""


class Alignment:
    """Token ids with the text they decode to and each token's character span.

    ``grouped`` is False when no byte pieces were grouped: then the spans tile the text,
    each token starting where the previous one ends.
    """

    __slots__ = ("ends", "grouped", "ids", "starts", "text")

    def __init__(
        self, ids: list[int], text: str, starts: list[int], ends: list[int], grouped: bool
    ) -> None:
        self.ids = ids
        self.text = text
        self.starts = starts
        self.ends = ends
        self.grouped = grouped

    def spans(self, offset: int = 0) -> list[Span]:
        """The spans as (start, end) pairs, shifted by ``offset``."""
        if not offset:
            return list(zip(self.starts, self.ends, strict=True))
        return [(s + offset, e + offset) for s, e in zip(self.starts, self.ends, strict=True)]


class RolloutParser:
    """A parser bound to one tokenizer: ``parse`` token ids, ``encode`` text, align pieces.

    Args:
        tokenizer: see :class:`TokenizerLike`.

    Raises:
        TokenizerError: the tokenizer lacks a coord token ``<|coord_k|>`` or ``<|im_end|>``
            as a single token, or does not decode token by token.
    """

    def __init__(self, tokenizer: TokenizerLike) -> None:
        self.tokenizer = tokenizer
        self._pieces: dict[int, str] = {}  # whole pieces (complete characters), by id
        self._table: list[str | None] = []  # the same, as a list indexed by id (or None)
        self._partial: dict[int, str] = {}  # pieces that are only part of a character
        self._undecodable: set[int] = set()
        self._encoded: dict[str, tuple[int, ...]] = {}  # short texts (prefix cuts, "}")
        self._spelling: set[int] = set()  # ids other than coord tokens that may spell one
        self._spelling_class: re.Pattern[str] | None = None
        tokens = all_coord_tokens()
        ids = self.encode("".join(tokens))
        if len(ids) != len(tokens) or any(
            self._decode([i]) != t for i, t in zip(ids, tokens, strict=True)
        ):
            missing = next(t for t in tokens if not self._is_one_token(t))
            raise TokenizerError(
                f"the tokenizer lacks the coord tokens: {missing!r} does not encode to one "
                "token id that decodes back to it. Add <|coord_0|>..<|coord_999|> to the "
                "tokenizer (e.g. `coordexp-train expand-vocab`) before parsing rollouts."
            )
        for i, token in zip(ids, tokens, strict=True):
            self._keep_whole(i, token)
        self.coord_ids: tuple[int, ...] = tuple(ids)
        self.coord_id_set = frozenset(ids)
        self._coord_id_class = _id_class(ids) if max(ids) < 0x110000 else None
        self._coord_chars = [chr(i) if i < 0x110000 else "" for i in ids]
        end = self.encode(END_TOKEN)
        if len(end) != 1 or self._decode(end) != END_TOKEN:
            raise TokenizerError(
                f"the tokenizer lacks {END_TOKEN!r} as one token (it encodes to {end}): "
                "use a Qwen chat tokenizer or add the token."
            )
        self.end_token_id: int = end[0]
        probe = self.align(self.encode(_PROBE_TEXT))
        if probe.text != _PROBE_TEXT:
            raise TokenizerError(
                "the tokenizer does not decode token by token: decoding the tokens of "
                f"{_PROBE_TEXT!r} one at a time gives {probe.text!r}. Use a byte-level BPE "
                "tokenizer (such as Qwen's) with clean_up_tokenization_spaces=False."
            )

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` with no special tokens added (short texts are cached)."""
        if len(text) > _CACHED_TEXT_LEN:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        ids = self._encoded.get(text)
        if ids is None:
            if len(self._encoded) >= _CACHED_TEXTS:
                self._encoded.clear()
            ids = self._encoded[text] = tuple(self.tokenizer.encode(text, add_special_tokens=False))
        return list(ids)

    def _is_one_token(self, text: str) -> bool:
        ids = self.encode(text)
        return len(ids) == 1 and self._decode(ids) == text

    def _decode(self, ids: list[int]) -> str:
        try:
            return self.tokenizer.decode(ids)
        except _DECODE_ERRORS:
            return ""

    def _learn(self, token_id: int) -> None:
        try:
            piece = self.tokenizer.decode([token_id])
        except _DECODE_ERRORS:  # an id the tokenizer cannot decode is an empty piece
            self._keep_whole(token_id, "")
            self._undecodable.add(token_id)
            return
        if _REPLACEMENT in piece:
            self._partial[token_id] = piece
        else:
            self._keep_whole(token_id, piece)
        if token_id not in self.coord_id_set and _may_spell_coord(piece):
            self._spelling.add(token_id)
            self._spelling_class = None

    def _keep_whole(self, token_id: int, piece: str) -> None:
        self._pieces[token_id] = piece
        if 0 <= token_id < _TABLE_LIMIT:
            if token_id >= len(self._table):
                self._table.extend([None] * (token_id + 1 - len(self._table)))
            self._table[token_id] = piece

    def _spelling_ids(self) -> re.Pattern[str] | None:
        """The learned ids other than coord tokens whose piece may spell part of one."""
        if self._spelling_class is None:
            searchable = [i for i in self._spelling if 0 <= i < 0x110000]
            self._spelling_class = _id_class(searchable) if searchable else None
        return self._spelling_class

    def _group(self, ids: list[int], i: int) -> tuple[int, str]:
        """End and text of the group starting at the partial token ``i``.

        The group ends at the first boundary j where decoding across it changes nothing:
        ``decode(ids[i:j]) + piece(ids[j]) == decode(ids[i:j + 1])`` (or at the end).
        """
        limit = min(len(ids), i + _MAX_GROUP)
        text = self._partial[ids[i]]
        for j in range(i + 1, limit):
            if ids[j] in self._undecodable:
                return j, text
            nxt = self._pieces.get(ids[j])
            if nxt is None:
                nxt = self._partial[ids[j]]
            joined = self._decode(ids[i : j + 1])
            if joined == text + nxt:
                return j, text
            text = joined
        return limit, text

    def align(self, token_ids: Sequence[int]) -> Alignment:
        """Decode ``token_ids`` and give every token its character span.

        A token whose piece is only part of a character (it decodes to U+FFFD alone)
        starts a group that extends over the following tokens up to the first boundary
        that decoding does not cross (at most 8 tokens); every token of a group gets the
        group's span and the group's text is what the tokens decode to together.
        """
        ids = list(token_ids)
        if ids and type(ids[0]) is not int:  # numpy / torch integers
            ids = list(map(int, ids))
        if len(ids) < 2:
            return self._align_slow(ids)
        try:  # one C-level pass over the ids
            pieces: tuple[str, ...] = itemgetter(*ids)(self._pieces)
        except KeyError:  # a partial piece, or an id not seen yet
            return self._align_slow(ids)
        ends = list(accumulate(map(len, pieces)))
        return Alignment(ids, "".join(pieces), [0, *ends[:-1]], ends, False)

    def _learn_all(self, ids: list[int]) -> None:
        for t in ids:
            if t not in self._pieces and t not in self._partial:
                self._learn(t)

    def _align_slow(self, ids: list[int]) -> Alignment:
        self._learn_all(ids)

        parts: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        grouped = False
        pos = 0
        i = 0
        n = len(ids)
        while i < n:
            piece = self._pieces.get(ids[i])
            j = i + 1
            if piece is None:
                j, piece = self._group(ids, i)
                grouped = grouped or j - i > 1
            parts.append(piece)
            starts.extend([pos] * (j - i))
            pos += len(piece)
            ends.extend([pos] * (j - i))
            i = j
        return Alignment(ids, "".join(parts), starts, ends, grouped)

    def _exact_locator(self, ids: list[int], starts: list[int], ends: list[int]) -> Locate:
        """Locate coord tokens by character spans (any alignment, grouped or not)."""
        coord_ids = self.coord_id_set
        n = len(ids)

        def locate(spans: tuple[Span, ...], coords: tuple[int, ...]) -> tuple[int, ...] | None:
            positions = []
            for s, e in spans:
                t = bisect_right(ends, s)  # the first token ending after s (skips empty pieces)
                if t == n or starts[t] != s or ends[t] != e or ids[t] not in coord_ids:
                    return None
                positions.append(t)
            return tuple(positions)

        return locate

    def _occurrence_locator(self, id_text: str | None, text: str) -> Locate | None:
        """Locate coord tokens in the ids directly, when every coord text is a coord token.

        When no id other than a coord token's can spell part of ``<|coord_`` (see
        :meth:`_learn`), the i-th occurrence of ``<|coord_`` in the text is the text of the
        i-th coord token id. Objects are located in text order: when no coord text lies
        between the last located coord and an object's first, its coords are the next
        coord ids, found by value in the ids read as a string (one character per id);
        otherwise by counting occurrences. None when some id could spell a coord, or the
        ids have no ``id_text`` (see :func:`_id_text`).
        """
        coord_class = self._coord_id_class
        if coord_class is None or id_text is None:
            return None
        spelling = self._spelling_ids()
        if spelling is not None and spelling.search(id_text) is not None:
            return None
        coord_chars = self._coord_chars
        find = id_text.find
        count = upto = token = 0  # occurrences, characters and tokens located so far
        every: list[int] = []  # position of each coord id, listed on first need

        def locate(spans: tuple[Span, ...], coords: tuple[int, ...]) -> tuple[int, ...]:
            nonlocal count, upto, token
            between = text.count(COORD_PREFIX, upto, spans[0][0])
            if between:
                if not every:
                    every.extend(map(_match_start, coord_class.finditer(id_text)))
                count += between
                positions = tuple(every[count : count + len(coords)])
            else:
                found = []
                t = token
                for k in coords:
                    t = find(coord_chars[k], t)
                    found.append(t)
                    t += 1
                positions = tuple(found)
            count += len(coords)
            upto = spans[-1][1]
            token = positions[-1] + 1
            return positions

        return locate

    def parse(self, token_ids: Sequence[int]) -> RolloutParse:
        """Parse response token ids (total: never raises; deterministic).

        ``token_ids`` may be any sequence of integers (Python, numpy or 0-d torch).

        The response ends at the first stop string in its text (``<|im_end|>``,
        ``<|endoftext|>``). Objects carry ``coord_token_positions``; a coordinate that is
        not exactly one coord token id is dropped as ``non_coord_token``. The prefix comes
        with its token ids and spans (see :class:`~coordexp_parse.RolloutParse`; the spans
        are computed when first read).
        """
        ids = list(token_ids)
        if ids and type(ids[0]) is not int:  # numpy / torch integers
            ids = list(map(int, ids))
        tiled = self._parse_tiled(ids)
        return tiled if tiled is not None else self._parse_aligned(self._align_slow(ids))

    def _parse_tiled(self, ids: list[int]) -> RolloutParse | None:
        """Parse ids whose pieces are all known whole characters (they tile the text).

        None when some id is only part of a character (then the ids need
        :meth:`_align_slow`). Spans of the prefix tokens are summed when first read.
        """
        id_text = _id_text(ids)
        tiled = self._tile(ids, id_text is not None)
        if tiled is None:
            return None
        pieces, full = tiled
        text = full[: stop_index(full)]
        locate = self._occurrence_locator(id_text, text)
        if locate is None:
            ends = list(accumulate(map(len, pieces)))
            locate = self._exact_locator(ids, [0, *ends[:-1]], ends)
        result = scan_text(text, locate)
        if result.ending == "no_object":
            return self._with_prefix(result, *self._brace())
        cut = len(result.prefix_text)
        k, start = _token_at(pieces, len(full), cut)
        if start == cut:
            return self._with_prefix(result, ids[:k], TokenSpans(pieces[:k]))
        tail = self.align(self.encode(text[start:cut]))  # the kept part of token k
        spans = TokenSpans(
            pieces[:k], [s + start for s in tail.starts], [e + start for e in tail.ends]
        )
        return self._with_prefix(result, ids[:k] + tail.ids, spans)

    def _tile(self, ids: list[int], indexable: bool) -> tuple[Sequence[str], str] | None:
        """Each id's whole piece and their text; None when some id is part of a character.

        ``indexable``: every id is a non-negative int, so the table of pieces can be
        indexed by all of them in one C-level pass (an id without a whole piece there,
        new or partial, makes the join fail and the ids are looked up again).
        """
        if indexable and len(ids) > 1:
            try:
                pieces: Sequence[str] = itemgetter(*ids)(self._table)
                return pieces, "".join(pieces)
            except (IndexError, TypeError):  # past the table, or None: not known whole
                pass
        try:
            pieces = list(map(self._pieces.__getitem__, ids))
        except KeyError:
            self._learn_all(ids)
            try:
                pieces = list(map(self._pieces.__getitem__, ids))
            except KeyError:
                return None
        return pieces, "".join(pieces)

    def _parse_aligned(self, al: Alignment) -> RolloutParse:
        """Parse with an exact alignment (byte groups, ids learned on the way)."""
        text = al.text[: stop_index(al.text)]
        result = scan_text(text, self._exact_locator(al.ids, al.starts, al.ends))
        if result.ending == "no_object":
            return self._with_prefix(result, *self._brace())
        cut = len(result.prefix_text)
        k = bisect_right(al.ends, cut)
        ids, starts, ends = al.ids[:k], al.starts[:k], al.ends[:k]
        if k < len(al.ids) and al.starts[k] < cut:  # the cut falls inside a token
            start = al.starts[k]
            tail = self.align(self.encode(text[start:cut]))
            ids += tail.ids
            starts += [s + start for s in tail.starts]
            ends += [e + start for e in tail.ends]
        return self._with_prefix(result, ids, TokenSpans((), starts, ends))

    def _brace(self) -> tuple[list[int], TokenSpans]:
        head = self.align(self.encode("{"))
        return head.ids, TokenSpans((), head.starts, head.ends)

    @staticmethod
    def _with_prefix(result: RolloutParse, ids: list[int], spans: TokenSpans) -> RolloutParse:
        return RolloutParse(
            result.text,
            result.objects,
            result.entries,
            result.dropped,
            result.ending,
            result.prefix_text,
            result.max_object_index,
            tuple(ids),
            spans,
        )


def _id_text(ids: list[int]) -> str | None:
    """The ids as the characters of a string (to search them with regular expressions).

    None when an id is negative or above U+10FFFF.
    """
    try:
        return array(_ID_TYPECODE, ids).tobytes().decode(_UTF32, "surrogatepass")
    except (OverflowError, UnicodeDecodeError):
        return None


def _token_at(pieces: Sequence[str], length: int, cut: int) -> tuple[int, int]:
    """``(k, start)``: tokens ``[0, k)`` end at or before ``cut``; token k starts at ``start``.

    ``pieces`` tile a text of ``length`` characters and the prefix cut is usually near its
    end, so this walks back from the end (up to 64 tokens) before summing from the start.
    """
    k, start = len(pieces), length
    while start > cut and len(pieces) - k < _WALK_BACK:
        k -= 1
        start -= len(pieces[k])
    if start > cut:
        ends = list(accumulate(map(len, pieces)))
        k = bisect_right(ends, cut)
        start = ends[k - 1] if k else 0
    return k, start


_PARSERS: weakref.WeakKeyDictionary[object, RolloutParser] = weakref.WeakKeyDictionary()


def parser_for(tokenizer: TokenizerLike) -> RolloutParser:
    """The cached :class:`RolloutParser` of ``tokenizer`` (built on first use).

    Raises:
        TokenizerError: see :class:`RolloutParser`.
    """
    try:
        return _PARSERS[tokenizer]
    except KeyError:
        parser = _PARSERS[tokenizer] = RolloutParser(tokenizer)
        return parser
    except TypeError:  # not weak-referenceable or not hashable: no cache
        return RolloutParser(tokenizer)


def parse_rollout(token_ids: Sequence[int], tokenizer: TokenizerLike) -> RolloutParse:
    """Parse response token ids with ``tokenizer`` (see :meth:`RolloutParser.parse`).

    Raises:
        TokenizerError: only when the tokenizer itself is unusable (checked once per
            tokenizer); any token sequence parses.
    """
    return parser_for(tokenizer).parse(token_ids)
