"""Token-aligned rollout parsing: token ids → text with exact token ↔ character spans.

A :class:`RolloutParser` wraps a tokenizer (duck-typed, see :class:`TokenizerLike`),
checks once that it has the coord tokens and the end token, and caches each token id's
text piece. Parsing then maps every token to its character span and parses the text with
:func:`~coordexp_parse.scanner.scan_text`, locating the token of each coordinate: it must
be exactly one coord token id.
"""

from __future__ import annotations

import weakref
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from operator import itemgetter
from typing import Protocol

from coordexp_parse.codec import all_coord_tokens
from coordexp_parse.parsed import RolloutParse, Span
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
        self._pieces: dict[int, str] = {}
        self._partial: dict[int, str] = {}  # pieces that are only part of a character
        self._undecodable: set[int] = set()
        self._encoded: dict[str, tuple[int, ...]] = {}  # short texts (prefix cuts, "}")
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
        self._pieces.update(zip(ids, tokens, strict=True))
        self.coord_ids: tuple[int, ...] = tuple(ids)
        self.coord_id_set = frozenset(ids)
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
            self._pieces[token_id] = ""
            self._undecodable.add(token_id)
            return
        if _REPLACEMENT in piece:
            self._partial[token_id] = piece
        else:
            self._pieces[token_id] = piece

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

    def _align_slow(self, ids: list[int]) -> Alignment:
        for t in ids:
            if t not in self._pieces and t not in self._partial:
                self._learn(t)

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

    def _locator(self, al: Alignment) -> Locate:
        starts, ends, ids, coord_ids = al.starts, al.ends, al.ids, self.coord_id_set
        n = len(ids)
        tiled = not al.grouped

        def locate(spans: tuple[Span, ...]) -> tuple[int, ...] | None:
            # Common case, in one step: coord tokens at a constant stride (the tokens of
            # the separators repeat), and the tokens from the first to the last tile the
            # geometry from its first coord's start to its last coord's end. Coord pieces
            # start with "<" and the geometry's only "<" are its coords' starts, so then
            # each coord token sits exactly on its coord.
            first = bisect_right(ends, spans[0][0])  # the first token ending after it
            stride = bisect_right(ends, spans[1][0], first) - first if len(spans) > 1 else 1
            last = first + stride * (len(spans) - 1)
            if (
                tiled
                and stride > 0
                and last < n
                and starts[first] == spans[0][0]
                and ends[last] == spans[-1][1]
                and coord_ids.issuperset(ids[first : last + 1 : stride])
            ):
                return tuple(range(first, last + 1, stride))
            positions = []
            for s, e in spans:
                t = bisect_right(ends, s)  # the first token ending after s (skips empty pieces)
                if t == n or starts[t] != s or ends[t] != e or ids[t] not in coord_ids:
                    return None
                positions.append(t)
            return tuple(positions)

        return locate

    def parse(self, token_ids: Sequence[int]) -> RolloutParse:
        """Parse response token ids (total: never raises; deterministic).

        ``token_ids`` may be any sequence of integers (Python, numpy or 0-d torch).

        The response ends at the first stop string in its text (``<|im_end|>``,
        ``<|endoftext|>``). Objects carry ``coord_token_positions``; a coordinate that is
        not exactly one coord token id is dropped as ``non_coord_token``. The prefix comes
        with its token ids and spans (see :class:`~coordexp_parse.RolloutParse`).
        """
        al = self.align(token_ids)
        text = al.text[: stop_index(al.text)]
        result = scan_text(text, self._locator(al))
        if result.ending == "no_object":
            head = self.align(self.encode("{"))
            ids, starts, ends = head.ids, head.starts, head.ends
        else:
            cut = len(result.prefix_text)
            k = bisect_right(al.ends, cut)
            ids, starts, ends = al.ids[:k], al.starts[:k], al.ends[:k]
            if k < len(al.ids) and al.starts[k] < cut:  # the cut falls inside a token
                start = al.starts[k]
                tail = self.align(self.encode(text[start:cut]))
                ids += tail.ids
                starts += [s + start for s in tail.starts]
                ends += [e + start for e in tail.ends]
        return RolloutParse(
            result.text,
            result.objects,
            result.entries,
            result.dropped,
            result.ending,
            result.prefix_text,
            result.max_object_index,
            tuple(ids),
            tuple(starts),
            tuple(ends),
        )


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
