"""FN injection: extend a rollout's append-ready prefix with missed ground-truth objects.

The continuation is ``prefix_text`` + (``", "`` when the prefix holds entries) + the FN
entries joined by ``", "`` with keys ``object_{m+1}``, ``object_{m+2}``, … (m =
``max_object_index``, counting dropped entries too, so keys never collide) + ``"}"``.
:func:`inject_text` returns that text; :func:`build_injection` returns its token ids with
per-token labels (owner, role, object ordinal) from which a trainer builds its loss masks
without parsing again.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import IntEnum

from coordexp_parse.parsed import Entry, RolloutParse, Span
from coordexp_parse.render import FieldOrder, ObjectLike, render_entries
from coordexp_parse.scanner import scan_text
from coordexp_parse.tokens import END_TOKEN, Alignment, RolloutParser, TokenizerLike, parser_for


class Owner(IntEnum):
    """Which object a token belongs to."""

    NONE = 0  #: no valid object: ``{``, separators between prefix entries, dropped entries
    MATCHED = 1  #: a parsed prediction the caller matched to ground truth
    FP = 2  #: a parsed prediction the caller left unmatched
    FN = 3  #: an injected ground-truth object (its leading ``", "`` included)


class Role(IntEnum):
    """What a token is inside the answer."""

    STRUCTURE = 0  #: keys, quotes, brackets, separators, ``{``
    DESC = 1  #: overlaps the content of a ``desc`` string
    COORD = 2  #: a coord token of an object's geometry
    CLOSE = 3  #: the outermost ``}`` (always its own token(s))
    END = 4  #: the end token ``<|im_end|>``


@dataclass(frozen=True, slots=True)
class InjectedAnswer:
    """The teacher-forced answer: rollout prefix + FN entries + ``}`` + ``<|im_end|>``.

    Every per-token tuple is aligned with ``token_ids``.

    Attributes:
        token_ids: prefix ids (the rollout's own tokens) followed by the encoded FN
            entries, the encoded ``}`` and the end token id.
        owners: :class:`Owner` of each token. A prefix token overlapping several entries
            is MATCHED only when all of them are matched, FP when any is FP, else NONE.
        roles: :class:`Role` of each token.
        ordinals: for MATCHED/FP tokens the index into ``parse.objects``; for FN tokens
            the index into ``fn_objects``; -1 for NONE.
        spans: each token's character span in ``text``.
        text: the decoded answer, ending with ``<|im_end|>``.
        prefix_length: how many leading tokens come from the rollout prefix.
        fn_indices: the N of the key given to each FN object.
        pred_coord_positions: coord token positions of each ``parse.objects`` entry.
        fn_coord_positions: coord token positions of each FN object.
    """

    token_ids: tuple[int, ...]
    owners: tuple[Owner, ...]
    roles: tuple[Role, ...]
    ordinals: tuple[int, ...]
    spans: tuple[Span, ...]
    text: str
    prefix_length: int
    fn_indices: tuple[int, ...]
    pred_coord_positions: tuple[tuple[int, ...], ...]
    fn_coord_positions: tuple[tuple[int, ...], ...]


def _fn_tail(parse: RolloutParse, fn_objects: Sequence[ObjectLike], field_order: FieldOrder) -> str:
    start = (parse.max_object_index or 0) + 1
    entries = render_entries(fn_objects, start, field_order)
    if not entries:
        return ""
    return (", " if parse.entries else "") + ", ".join(entries)


def inject_text(
    parse: RolloutParse, fn_objects: Sequence[ObjectLike], field_order: FieldOrder = "desc_first"
) -> str:
    """The closed answer: ``parse.prefix_text`` + FN entries + ``"}"`` (no end token).

    ``parse_text`` of the result gives ``parse.objects`` followed by ``fn_objects`` (keys
    from ``max_object_index + 1``), in order.

    Raises:
        ValueError: an FN object cannot be rendered (see ``render_value``).
    """
    return parse.prefix_text + _fn_tail(parse, fn_objects, field_order) + "}"


def build_injection(
    parse: RolloutParse,
    fn_objects: Sequence[ObjectLike],
    tokenizer: TokenizerLike | RolloutParser,
    *,
    matched: Collection[int] = (),
    field_order: FieldOrder = "desc_first",
) -> InjectedAnswer:
    """Token ids and per-token labels of the FN-injected answer (deterministic).

    The prefix's tokens, entries and coord token positions are the parse's own; only the
    FN entries are encoded and parsed (to check they read back as ``fn_objects``).

    Args:
        parse: a token parse (from ``parse_rollout`` / ``RolloutParser.parse``).
        fn_objects: ground-truth objects to inject, in order.
        tokenizer: the tokenizer the rollout was parsed with (or its parser).
        matched: indices into ``parse.objects`` matched to ground truth; the other
            parsed objects are FP.
        field_order: field order of the injected entries.

    Raises:
        ValueError: ``parse`` is a text parse, ``matched`` holds an index outside
            ``parse.objects``, an FN object cannot be rendered, or the tokenizer does not
            encode the injected text back to itself.
    """
    parser = tokenizer if isinstance(tokenizer, RolloutParser) else parser_for(tokenizer)
    if parse.prefix_token_ids is None or parse.token_spans is None:
        raise ValueError("build_injection needs a token parse (parse_rollout), not parse_text")
    bad = [i for i in matched if not 0 <= i < len(parse.objects)]
    if bad:
        raise ValueError(
            f"matched indices {bad} are outside parse.objects (0..{len(parse.objects) - 1})"
        )
    tail = _fn_tail(parse, fn_objects, field_order)
    ids = list(parse.prefix_token_ids)
    starts = list(parse.token_spans.starts)
    ends = list(parse.token_spans.ends)
    prefix_length = len(ids)
    tail_tokens = _encode_exactly(parser, tail)
    close_start = prefix_length + len(tail_tokens.ids)
    pos = len(parse.prefix_text)
    for al in (tail_tokens, _encode_exactly(parser, "}")):
        ids += al.ids
        starts += [s + pos for s in al.starts]
        ends += [e + pos for e in al.ends]
        pos += len(al.text)
    ids.append(parser.end_token_id)
    starts.append(pos)
    ends.append(pos + len(END_TOKEN))
    text = parse.prefix_text + tail + "}" + END_TOKEN
    fn = _FnEntries(parse, fn_objects, parser.coord_id_set, tail, tail_tokens)
    n = len(ids)
    matched_set = set(matched)
    # (owner, ordinal) of each object: prefix objects, then FN objects.
    obj_label = [(Owner.MATCHED if i in matched_set else Owner.FP, i) for i in range(fn.n_pred)]
    obj_label += [(Owner.FN, j) for j in range(len(fn_objects))]
    entries = [*parse.entries, *fn.entries]
    owners, ordinals = _entry_labels(entries, obj_label, len(parse.prefix_text), starts, ends)
    roles = [Role.STRUCTURE] * n
    roles[close_start : n - 1] = [Role.CLOSE] * (n - 1 - close_start)
    roles[n - 1] = Role.END
    coord_pos = [*(o.coord_token_positions or () for o in parse.objects), *fn.coord_positions]
    desc_spans = [*(o.desc_span for o in parse.objects), *fn.desc_spans]
    for k, (ds, de) in enumerate(desc_spans):
        owner, ordinal = obj_label[k]
        for t in coord_pos[k]:
            owners[t] = owner
            ordinals[t] = ordinal
            roles[t] = Role.COORD
        for t in range(bisect_right(ends, ds), bisect_left(starts, de)):
            if owners[t] is not Owner.NONE:
                roles[t] = Role.DESC
    start = (parse.max_object_index or 0) + 1
    return InjectedAnswer(
        token_ids=tuple(ids),
        owners=tuple(owners),
        roles=tuple(roles),
        ordinals=tuple(ordinals),
        spans=tuple(zip(starts, ends, strict=True)),
        text=text,
        prefix_length=prefix_length,
        fn_indices=tuple(range(start, start + len(fn_objects))),
        pred_coord_positions=tuple(coord_pos[: fn.n_pred]),
        fn_coord_positions=tuple(coord_pos[fn.n_pred :]),
    )


def _encode_exactly(parser: RolloutParser, text: str) -> Alignment:
    """The tokens of ``text``, aligned; raises ValueError when they do not decode to it."""
    al = parser.align(parser.encode(text))
    if al.text != text:
        raise ValueError(f"the tokenizer does not encode {text!r} back to itself: {al.text!r}")
    return al


class _FnEntries:
    """The injected FN entries, parsed back and placed in the answer's characters and tokens.

    The entries are parsed alone (as ``"{" + entries + "}"``), checked to read back as the
    FN objects with their keys, and shifted into place: ``entries`` and ``desc_spans`` in
    answer characters, ``coord_positions`` in answer tokens (the tail's tokens follow the
    ``prefix_length`` prefix tokens).

    Raises:
        ValueError: the entries do not read back, or a coordinate is not one coord token.
    """

    def __init__(
        self,
        parse: RolloutParse,
        fn_objects: Sequence[ObjectLike],
        coord_ids: Collection[int],
        tail: str,
        tail_tokens: Alignment,
    ) -> None:
        self.n_pred = len(parse.objects)
        lead = 2 if parse.entries and fn_objects else 0  # the ", " before the first entry
        scan = scan_text("{" + tail[lead:] + "}")
        start = (parse.max_object_index or 0) + 1
        expected = [(start + j, o.desc, o.kind, tuple(o.coords)) for j, o in enumerate(fn_objects)]
        got = [(o.index, o.desc, o.kind, o.coords) for o in scan.objects]
        if scan.ending != "closed" or got != expected:
            raise ValueError("the injected FN entries do not parse back to the FN objects")
        to_tail = lead - 1  # FN-scan characters → tail characters
        shift = len(parse.prefix_text) + to_tail  # FN-scan characters → answer characters
        tail_starts, tail_ends, tail_ids = tail_tokens.starts, tail_tokens.ends, tail_tokens.ids
        offset = len(parse.prefix_token_ids or ())
        self.entries = [
            Entry(e.key, e.index, _shifted(e.span, shift), None, self.n_pred + j)
            for j, e in enumerate(scan.entries)
        ]
        self.desc_spans = [_shifted(o.desc_span, shift) for o in scan.objects]
        self.coord_positions: list[tuple[int, ...]] = []
        for o in scan.objects:
            positions = []
            for s, e in o.coord_spans:
                s, e = s + to_tail, e + to_tail
                t = bisect_right(tail_ends, s)
                if (
                    t == len(tail_ends)
                    or (tail_starts[t], tail_ends[t]) != (s, e)
                    or tail_ids[t] not in coord_ids
                ):
                    raise ValueError(f"coordinate at characters {s}..{e} is not one coord token")
                positions.append(offset + t)
            self.coord_positions.append(tuple(positions))


_NOBODY = (Owner.NONE, -1)


def _shifted(span: Span, by: int) -> Span:
    return span[0] + by, span[1] + by


def _entry_labels(
    entries: Sequence[Entry],
    obj_label: list[tuple[Owner, int]],
    tail_start: int,
    starts: list[int],
    ends: list[int],
) -> tuple[list[Owner], list[int]]:
    """Owner and ordinal of every token, from the entries its characters overlap.

    An FN entry's span is widened back over the separator before it. A token touching
    several entries (only the first and last token of an entry can) combines their
    labels: FP wins, then NONE when one is a dropped entry, else the first.
    """
    n = len(starts)
    owners = [Owner.NONE] * n
    ordinals = [-1] * n
    labelled = bytearray(n)
    previous_end = tail_start
    for entry in entries:
        s, e = entry.span
        label = _NOBODY if entry.ordinal is None else obj_label[entry.ordinal]
        if label[0] is Owner.FN:
            s, previous_end = previous_end, e
        t0, t1 = bisect_right(ends, s), bisect_left(starts, e)
        if t0 >= t1:
            continue
        if t1 - t0 > 2:
            inner = t1 - t0 - 2
            owners[t0 + 1 : t1 - 1] = [label[0]] * inner
            ordinals[t0 + 1 : t1 - 1] = [label[1]] * inner
            labelled[t0 + 1 : t1 - 1] = b"\x01" * inner
        for t in {t0, t1 - 1}:
            owner, ordinal = _combine((owners[t], ordinals[t]), label) if labelled[t] else label
            owners[t] = owner
            ordinals[t] = ordinal
            labelled[t] = 1
    return owners, ordinals


def _combine(first: tuple[Owner, int], second: tuple[Owner, int]) -> tuple[Owner, int]:
    if first[0] is Owner.FP:
        return first
    if second[0] is Owner.FP:
        return second
    if first[0] is Owner.NONE or second[0] is Owner.NONE:
        return _NOBODY
    return first
