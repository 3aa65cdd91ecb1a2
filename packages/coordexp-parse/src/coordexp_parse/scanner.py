"""Text-level parsing of an answer: entries, strict validation, the append-ready prefix.

The scan finds the first ``{`` (text before it is ignored), then reads ``"key": value``
members of that top-level object one by one. Each complete value is decoded with the
standard library's JSON decoder and validated strictly (see ``DROP_REASONS``); invalid
entries are counted and dropped, never repaired. The scan stops at the closing ``}``, at
the end of the text (truncated) or at the first character that cannot continue the
object (syntax error). It never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from json.decoder import scanstring  # type: ignore[attr-defined]  # C-accelerated
from operator import itemgetter
from typing import Any, NamedTuple, TypeAlias, cast

from coordexp_parse.codec import COORD_BINS, COORD_PATTERN
from coordexp_parse.objects import GEOMETRY_KINDS, GeometryKind, arity_problem, bbox_ordered
from coordexp_parse.parsed import DROP_REASONS, Ending, Entry, ParsedObject, RolloutParse, Span
from coordexp_parse.render import STOP_STRINGS

_WS = re.compile(r"[ \t\n\r]*")
# A complete JSON string (escapes not validated here; the decoder does that).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_STRUCTURAL = re.compile(r'["{}\[\]]')
_SCALAR_END = re.compile(r"[,}\][ \t\n\r]")
_OBJECT_KEY = re.compile(r"object_([0-9]+)")
_VALID_OBJECT_KEY = re.compile(r"object_[1-9][0-9]*")

# Fast path: one valid entry spelled canonically (as ``render_objects`` writes it), in
# either field order, matched at the key's opening quote: a bbox with a group per coord
# token, or a poly with its coord list as one group. Anything else, or anything the checks
# after the match reject, takes the general path, which decides the drop reason.
_POLY = r'"poly": \[(?P<coords>"' + COORD_PATTERN + '"(?:, "' + COORD_PATTERN + r'")*)\]'
_BBOX = r'"bbox_2d": \[' + ", ".join(f'"(?P<c{i}>{COORD_PATTERN})"' for i in range(4)) + r"\]"
_DESC = r'"desc": "(?P<desc>[^"\\\x00-\x1f]*(?:\\.[^"\\\x00-\x1f]*)*)"'
_KEY = r'"object_(?P<n>[1-9][0-9]*)": '


class _FastForm(NamedTuple):
    """One canonical entry spelling: its pattern, geometry, and coord groups (bbox)."""

    pattern: re.Pattern[str]
    kind: GeometryKind
    coord_spans: Callable[[tuple[Span, ...]], tuple[Span, ...]] | None


def _fast_form(pattern: str, kind: GeometryKind) -> _FastForm:
    compiled = re.compile(pattern)
    if kind == "poly":
        return _FastForm(compiled, kind, None)
    groups = [compiled.groupindex[f"c{i}"] for i in range(4)]
    return _FastForm(compiled, kind, itemgetter(*groups))


_FAST_ENTRY: tuple[_FastForm, ...] = (
    _fast_form(_KEY + r"(?P<value>\{" + _DESC + ", " + _BBOX + r"\})", "bbox_2d"),
    _fast_form(_KEY + r"(?P<value>\{" + _BBOX + ", " + _DESC + r"\})", "bbox_2d"),
    _fast_form(_KEY + r"(?P<value>\{" + _DESC + ", " + _POLY + r"\})", "poly"),
    _fast_form(_KEY + r"(?P<value>\{" + _POLY + ", " + _DESC + r"\})", "poly"),
)

#: Maps the character spans of an object's coord tokens, with their bins, to their token
#: positions, or None when a coordinate is not exactly one coord token (token parses supply
#: one). The spans are those of one valid geometry value, in order: between them the text
#: holds only JSON punctuation and whitespace. Calls come in text order.
Locate: TypeAlias = Callable[[tuple[Span, ...], tuple[int, ...]], tuple[int, ...] | None]


class _Duplicate:
    """Stands in for a JSON object that repeats a key."""


_DUPLICATE = _Duplicate()


def _pairs(pairs: list[tuple[str, Any]]) -> Any:
    result = dict(pairs)
    return _DUPLICATE if len(result) != len(pairs) else result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_reject_constant)


def stop_index(text: str) -> int:
    """The index of the first stop string in ``text``, or ``len(text)``."""
    cut = len(text)
    for stop in STOP_STRINGS:
        i = text.find(stop, 0, cut)
        if i >= 0:
            cut = i
    return cut


def _value_extent(text: str, pos: int) -> int | None:
    """End of the JSON-like value starting at ``pos`` by bracket depth; None if it runs off."""
    c = text[pos]
    if c == '"':
        m = _STRING.match(text, pos)
        return None if m is None else m.end()
    if c in "{[":
        depth = 0
        i = pos
        while True:
            m = _STRUCTURAL.search(text, i)
            if m is None:
                return None
            ch = m.group()
            if ch == '"':
                s = _STRING.match(text, m.start())
                if s is None:
                    return None
                i = s.end()
                continue
            depth += 1 if ch in "{[" else -1
            i = m.end()
            if depth == 0:
                return i
    m = _SCALAR_END.search(text, pos)
    return None if m is None else m.start()


def _coords_of(kind: GeometryKind, geom: Any) -> tuple[tuple[int, ...] | None, str | None]:
    """Decoded geometry → (flat bins, None) or (None, drop reason)."""
    if not isinstance(geom, list):
        return None, "wrong_arity"
    items: list[Any] = geom
    if kind == "poly" and items and all(isinstance(p, list) for p in items):
        if any(len(p) != 2 for p in items):
            return None, "wrong_arity"
        items = [v for p in items for v in p]
    bins = []
    for v in items:
        k = COORD_BINS.get(v) if isinstance(v, str) else None
        if k is None:
            return None, "non_coord_token"
        bins.append(k)
    if arity_problem(kind, len(bins)) is not None:
        return None, "wrong_arity"
    if kind == "bbox_2d" and not bbox_ordered(bins):
        return None, "bbox_invalid"
    return tuple(bins), None


def _classify(value: Any) -> tuple[str | None, GeometryKind | None, tuple[int, ...]]:
    """Validate a decoded value → (reason or None, kind, coords)."""
    if not isinstance(value, dict):
        return "key_invalid", None, ()
    geoms = [k for k in value if k in GEOMETRY_KINDS]
    others = [k for k in value if k != "desc" and k not in GEOMETRY_KINDS]
    if len(geoms) > 1 or (geoms and others) or len(others) > 1:
        return "key_invalid", None, ()
    desc = value.get("desc")
    if not isinstance(desc, str) or not desc.strip():
        return "missing_desc", None, ()
    if not geoms:
        return ("unknown_geom" if others else "missing_geom"), None, ()
    kind = cast(GeometryKind, geoms[0])
    coords, reason = _coords_of(kind, value[kind])
    if coords is None:
        return reason, None, ()
    return None, kind, coords


def _member_value_spans(text: str, start: int) -> list[Span]:
    """Value spans of the members of the (valid, decoded) JSON object at ``start``."""
    spans: list[Span] = []
    i = start + 1
    while True:
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if text[i] == "}":
            return spans
        if text[i] == ",":
            i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
        key = _STRING.match(text, i)
        assert key is not None  # the object decoded, so its members are well formed
        i = _WS.match(text, key.end()).end() + 1  # type: ignore[union-attr]  # past ':'
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        end = _value_extent(text, i)
        assert end is not None
        spans.append((i, end))
        i = end


def _valid_object(
    text: str,
    index: int,
    value: dict[str, Any],
    kind: GeometryKind,
    coords: tuple[int, ...],
    span: Span,
    entry_start: int,
) -> ParsedObject | None:
    """Locate desc and coord tokens of a valid value; None when a coord is not literal."""
    members = _member_value_spans(text, span[0])
    keys = list(value)
    desc_start, desc_end = members[keys.index("desc")]
    geom_start, geom_end = members[keys.index(kind)]
    coord_spans = []
    for m in _STRING.finditer(text, geom_start, geom_end):
        s, e = m.start() + 1, m.end() - 1
        if text[s:e] not in COORD_BINS:  # decoded to a coord token only through escapes
            return None
        coord_spans.append((s, e))
    desc_span = (desc_start + 1, desc_end - 1)
    entry_span = (entry_start, span[1])
    return ParsedObject(
        index, value["desc"], kind, coords, span, entry_span, desc_span, tuple(coord_spans), None
    )


def _poly_tokens(m: re.Match[str]) -> tuple[tuple[int, ...], tuple[Span, ...]] | None:
    """Bins and coord-token spans of a canonical poly match; None for a wrong arity."""
    tokens = m.group("coords")[1:-1].split('", "')
    if arity_problem("poly", len(tokens)) is not None:
        return None
    spans = []
    s = m.start("coords") + 1
    for token in tokens:
        e = s + len(token)
        spans.append((s, e))
        s = e + 4  # '", "'
    return tuple(map(COORD_BINS.__getitem__, tokens)), tuple(spans)


class _Scan:
    """Mutable state of one scan; ``result`` builds the immutable parse."""

    def __init__(self, text: str, locate: Locate | None) -> None:
        self.text = text
        self.locate = locate
        self.objects: list[ParsedObject] = []
        self.entries: list[Entry] = []
        self.dropped: dict[str, int] = {}
        self.seen: set[int] = set()
        self.max_index: int | None = None

    def fast_entries(self, pos: int) -> int | None:
        """Record the run of canonically spelled valid entries starting at ``pos``.

        Entries separated by exactly ``", "`` are consumed while each matches a fast
        pattern and passes the checks; the first one that does not is left to the general
        path. Returns the end of the last recorded entry, or None when none was.
        """
        text, seen, objects, entries, locate = (
            self.text,
            self.seen,
            self.objects,
            self.entries,
            self.locate,
        )
        last = None
        forms = _FAST_ENTRY
        coord_bin = COORD_BINS.__getitem__
        while True:
            for form in forms:
                m = form.pattern.match(text, pos)
                if m is not None:
                    break
            else:
                return last
            if forms[0] is not form:  # answers repeat one spelling: try it first
                forms = (form, *_FAST_ENTRY)
            digits, desc = m.group("n", "desc")
            index = int(digits)
            if "\\" in desc:
                try:
                    desc = scanstring(text, m.start("desc"))[0]
                except ValueError:
                    return last
            if index in seen or not desc.strip():
                return last
            if form.coord_spans is not None:
                coords = tuple(map(coord_bin, m.group("c0", "c1", "c2", "c3")))
                if not bbox_ordered(coords):
                    return last
                coord_spans = form.coord_spans(m.regs)
            else:
                poly = _poly_tokens(m)
                if poly is None:
                    return last
                coords, coord_spans = poly
            positions = None
            if locate is not None:
                positions = locate(coord_spans, coords)
                if positions is None:
                    return last
            if self.max_index is None or index > self.max_index:
                self.max_index = index
            seen.add(index)
            end = m.end()
            entry_span = (pos, end)
            entries.append(Entry("object_" + digits, index, entry_span, None, len(objects)))
            objects.append(
                ParsedObject(
                    index,
                    desc,
                    form.kind,
                    coords,
                    m.span("value"),
                    entry_span,
                    m.span("desc"),
                    coord_spans,
                    positions,
                )
            )
            last = end
            if not text.startswith(", ", end):
                return last
            pos = end + 2

    def add_entry(self, key: str, entry_start: int, vspan: Span, value: Any, decoded: bool) -> None:
        """Validate and record one complete entry (``decoded`` False: not valid JSON)."""
        m = _OBJECT_KEY.fullmatch(key)
        index = None if m is None else int(m.group(1))
        if index is not None and (self.max_index is None or index > self.max_index):
            self.max_index = index
        reason: str | None
        obj: ParsedObject | None = None
        if index is None or _VALID_OBJECT_KEY.fullmatch(key) is None:
            reason = "key_invalid"
        else:
            if index in self.seen:
                reason = "duplicate_key"
            elif not decoded:
                reason = "invalid_json"
            elif value is _DUPLICATE:
                reason = "key_invalid"
            else:
                reason, kind, coords = _classify(value)
                if reason is None and kind is not None:
                    obj = _valid_object(self.text, index, value, kind, coords, vspan, entry_start)
                    if obj is not None and self.locate is not None:
                        positions = self.locate(obj.coord_spans, obj.coords)
                        obj = (
                            None
                            if positions is None
                            else obj._replace(coord_token_positions=positions)
                        )
                    reason = "non_coord_token" if obj is None else None
            self.seen.add(index)
        entry_span = (entry_start, vspan[1])
        if obj is not None:
            self.entries.append(Entry(key, index, entry_span, None, len(self.objects)))
            self.objects.append(obj)
            return
        assert reason is not None
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.entries.append(Entry(key, index, entry_span, reason, None))

    def result(self, ending: Ending, cut: int) -> RolloutParse:
        prefix = "{" if ending == "no_object" else self.text[:cut]
        return RolloutParse(
            text=self.text,
            objects=tuple(self.objects),
            entries=tuple(self.entries),
            dropped={r: self.dropped[r] for r in DROP_REASONS if r in self.dropped},
            ending=ending,
            prefix_text=prefix,
            max_object_index=self.max_index,
        )


def _decode_value(text: str, pos: int) -> tuple[Any, int | None, bool]:
    """Decode the value at ``pos`` → (value, end or None when it runs off, decoded ok)."""
    try:
        value, end = _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError):
        return None, _value_extent(text, pos), False
    if end == len(text) and not isinstance(value, dict | list | str):
        return None, None, False  # a number or literal may continue past the end
    return value, end, True


def _general_entry(scan: _Scan, pos: int) -> int | Ending:
    """Read and record the entry whose key starts at ``pos``: its end, or how the scan ends."""
    text = scan.text
    n = len(text)
    try:
        key, key_end = scanstring(text, pos + 1)
    except ValueError:
        return "truncated" if _STRING.match(text, pos) is None else "syntax_error"
    entry_start = pos
    pos = _WS.match(text, key_end).end()  # type: ignore[union-attr]
    if pos == n:
        return "truncated"
    if text[pos] != ":":
        return "syntax_error"
    pos = _WS.match(text, pos + 1).end()  # type: ignore[union-attr]
    if pos == n:
        return "truncated"
    if text[pos] in ",}]":
        return "syntax_error"
    value, end, ok = _decode_value(text, pos)
    if end is None:
        return "truncated"
    scan.add_entry(key, entry_start, (pos, end), value, ok)
    return end


def scan_text(text: str, locate: Locate | None = None) -> RolloutParse:
    """Parse response text already cut at its first stop string.

    Args:
        text: the response text.
        locate: for token parses, maps coord spans to token positions (see ``Locate``).
    """
    scan = _Scan(text, locate)
    n = len(text)
    open_at = text.find("{")
    if open_at < 0:
        return scan.result("no_object", 0)
    pos = cut = open_at + 1
    first = True
    while True:
        pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
        if pos == n:
            return scan.result("truncated", cut)
        c = text[pos]
        if c == "}" and first:
            return scan.result("closed", cut)
        if c != '"':
            return scan.result("syntax_error", cut)
        fast = scan.fast_entries(pos)
        end = _general_entry(scan, pos) if fast is None else fast
        if isinstance(end, str):
            return scan.result(end, cut)
        cut = end
        pos = _WS.match(text, end).end()  # type: ignore[union-attr]
        if pos == n:
            return scan.result("truncated", cut)
        if text[pos] == "}":
            return scan.result("closed", cut)
        if text[pos] != ",":
            return scan.result("syntax_error", cut)
        pos += 1
        first = False


def parse_text(text: str) -> RolloutParse:
    """Parse an assistant answer given as text (no tokenizer): total, never raises.

    The text is cut at its first stop string (``<|im_end|>``, ``<|endoftext|>``). Objects
    are validated strictly; invalid entries are dropped and counted by reason. Token
    fields of the result are None. Same input → same result, in every process.
    """
    return scan_text(text[: stop_index(text)])
