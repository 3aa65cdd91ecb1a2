"""FN injection: extend a rollout's append-ready prefix with missed ground-truth objects.

The continuation is ``prefix_text`` + (``", "`` when the prefix holds entries) + the FN
entries joined by ``", "`` with keys ``object_{m+1}``, ``object_{m+2}``, … (m =
``max_object_index``, counting dropped entries too, so keys never collide) + ``"}"``.
:func:`inject_text` returns that text; :func:`build_injection` returns its token ids with
per-token labels (owner, role, object ordinal) from which a trainer builds its loss masks
without parsing again.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import IntEnum

from coordexp_parse.parsed import RolloutParse, Span
from coordexp_parse.render import FieldOrder, ObjectLike, render_entries
from coordexp_parse.scanner import scan_text
from coordexp_parse.tokens import END_TOKEN, RolloutParser, TokenizerLike, parser_for


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
    if parse.prefix_token_ids is None or parse.prefix_token_spans is None:
        raise ValueError("build_injection needs a token parse (parse_rollout), not parse_text")
    bad = [i for i in matched if not 0 <= i < len(parse.objects)]
    if bad:
        raise ValueError(
            f"matched indices {bad} are outside parse.objects (0..{len(parse.objects) - 1})"
        )
    tail = _fn_tail(parse, fn_objects, field_order)
    ids = list(parse.prefix_token_ids)
    spans = list(parse.prefix_token_spans)
    prefix_length = len(ids)
    pos = len(parse.prefix_text)
    close_start = 0
    for piece in (tail, "}"):
        close_start = len(ids)
        if not piece:
            continue
        al = parser.align(parser.encode(piece))
        if al.text != piece:
            raise ValueError(f"the tokenizer does not encode {piece!r} back to itself: {al.text!r}")
        ids += al.ids
        spans += al.spans(pos)
        pos += len(piece)
    ids.append(parser.end_token_id)
    spans.append((pos, pos + len(END_TOKEN)))
    text = parse.prefix_text + tail + "}" + END_TOKEN
    return _label(
        parse, fn_objects, parser, ids, spans, text, prefix_length, close_start, set(matched)
    )


def _label(
    parse: RolloutParse,
    fn_objects: Sequence[ObjectLike],
    parser: RolloutParser,
    ids: list[int],
    spans: list[Span],
    text: str,
    prefix_length: int,
    close_start: int,
    matched: set[int],
) -> InjectedAnswer:
    full = scan_text(text[: -len(END_TOKEN)])
    n_pred = len(parse.objects)
    expected: list[tuple[int, str, str, tuple[int, ...]]]
    expected = [(o.index, o.desc, o.kind, o.coords) for o in parse.objects]
    start = (parse.max_object_index or 0) + 1
    expected += [(start + j, o.desc, o.kind, tuple(o.coords)) for j, o in enumerate(fn_objects)]
    got = [(o.index, o.desc, o.kind, o.coords) for o in full.objects]
    if full.ending != "closed" or got != expected:
        raise ValueError("the injected answer does not parse back to prefix objects + FN objects")
    ends = [e for _, e in spans]
    # Owner of each object in full.objects: prefix objects then FN objects.
    obj_owner = [(Owner.MATCHED if i in matched else Owner.FP, i) for i in range(n_pred)] + [
        (Owner.FN, j) for j in range(len(fn_objects))
    ]
    coord_pos: list[tuple[int, ...]] = []
    for obj in full.objects:
        positions = []
        for s, e in obj.coord_spans:
            t = bisect_right(ends, s)
            if spans[t] != (s, e) or ids[t] not in parser.coord_id_set:
                raise ValueError(f"coordinate at characters {s}..{e} is not one coord token")
            positions.append(t)
        coord_pos.append(tuple(positions))
    coord_at = {t: k for k, ps in enumerate(coord_pos) for t in ps}
    owners: list[Owner] = []
    roles: list[Role] = []
    ordinals: list[int] = []
    entries = full.entries
    entry_ends = [e.span[1] for e in entries]
    for t, (a, b) in enumerate(spans):
        if t >= close_start:
            owners.append(Owner.NONE)
            roles.append(Role.END if t == len(ids) - 1 else Role.CLOSE)
            ordinals.append(-1)
            continue
        if t in coord_at:
            owner, ordinal = obj_owner[coord_at[t]]
            owners.append(owner)
            roles.append(Role.COORD)
            ordinals.append(ordinal)
            continue
        b = max(b, a + 1)
        hit = []
        k = bisect_right(entry_ends, a)
        while k < len(entries) and entries[k].span[0] < b:
            hit.append(entries[k])
            k += 1
        if t >= prefix_length and not hit:  # a tail separator: part of the FN entry after it
            hit = [entries[k]]
        owner, ordinal = _owner_of(
            [None if e.ordinal is None else obj_owner[e.ordinal] for e in hit]
        )
        is_desc = owner is not Owner.NONE and any(
            e.ordinal is not None and _overlaps(full.objects[e.ordinal].desc_span, a, b)
            for e in hit
        )
        owners.append(owner)
        roles.append(Role.DESC if is_desc else Role.STRUCTURE)
        ordinals.append(ordinal)
    return InjectedAnswer(
        token_ids=tuple(ids),
        owners=tuple(owners),
        roles=tuple(roles),
        ordinals=tuple(ordinals),
        spans=tuple(spans),
        text=text,
        prefix_length=prefix_length,
        fn_indices=tuple(range(start, start + len(fn_objects))),
        pred_coord_positions=tuple(coord_pos[:n_pred]),
        fn_coord_positions=tuple(coord_pos[n_pred:]),
    )


def _owner_of(labels: list[tuple[Owner, int] | None]) -> tuple[Owner, int]:
    """A token's owner from the entries it overlaps (None: a dropped entry).

    FP wins (an FP's tokens stay neutral); otherwise the first owner when every overlapped
    entry is a valid object; NONE when it touches no entry or a dropped one.
    """
    for label in labels:
        if label is not None and label[0] is Owner.FP:
            return label
    if not labels or None in labels:
        return Owner.NONE, -1
    first = labels[0]
    assert first is not None
    return first


def _overlaps(span: Span, a: int, b: int) -> bool:
    return a < span[1] and span[0] < b
