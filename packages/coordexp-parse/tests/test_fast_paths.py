"""The fast paths (canonical entry runs, tiled pieces, coord tokens found in the ids) are exact.

Each property parses random answers (valid, invalid and malformed entries, any
truncation) twice: as shipped, and with every fast path turned off (no canonical entry
patterns, byte-group alignment for every token, coord tokens located by character span).
The two results must be equal in every field, the prefix token spans included.
"""

from __future__ import annotations

from typing import Any

import pytest
from coordexp_parse_testing import ByteTokenizer, bins, det_objects, hf_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_parse import (
    DetObject,
    RolloutParse,
    RolloutParser,
    coord_token,
    parse_rollout,
    parse_text,
    render_objects,
    scanner,
    tokens,
)

HF: Any = hf_tokenizer()
FAKE = ByteTokenizer()
OBJECT = DetObject("black cat", "bbox_2d", (110, 310, 410, 705))
OBJECT_VALUE = render_objects([OBJECT])[len('{"object_1": ') : -1]

BOX = '["<|coord_1|>", "<|coord_2|>", "<|coord_3|>", "<|coord_4|>"]'
# Values the general path must judge: dropped ones, some canonical until a late
# character, and valid ones that are not spelled canonically.
ODD_VALUES = [
    '{"desc": "x", "bbox_2d": ["<|coord_5|>", "<|coord_1|>", "<|coord_2|>", "<|coord_3|>"]}',
    '{"desc": "x", "bbox_2d": ["<|coord_1|>", "<|coord_5|>", "<|coord_2|>", "<|coord_3|>"]}',
    '{"desc": "x", "bbox_2d": ["<|coord_1|>", "<|coord_2|>", "<|coord_3|>"]}',
    '{"desc": "x", "bbox_2d": [1, 2, 3, 4]}',
    '{"desc": "x", "bbox_2d": ["\\u003c|coord_1|>", "<|coord_2|>", "<|coord_3|>", "<|coord_4|>"]}',
    '{"desc": "x", "bbox_2d": ["<|coord_01|>", "<|coord_2|>", "<|coord_3|>", "<|coord_4|>"]}',
    f'{{"desc": "x", "bbox_2d": {BOX}, "a": 1}}',
    f'{{"desc": "  ", "bbox_2d": {BOX}}}',
    f'{{"bbox_2d": {BOX}}}',
    f'{{"desc": "x", "bbox": {BOX}}}',
    f'{{"desc": "x", "poly": {BOX}}}',
    f'{{"desc": "x", "desc": "y", "bbox_2d": {BOX}}}',
    '{"desc": "x"}',
    '{"desc": x}',
    "null",
    "[]",
    '{"desc":"x","bbox_2d":["<|coord_1|>","<|coord_2|>","<|coord_3|>","<|coord_4|>"]}',
    '{"desc": "x", "poly": [["<|coord_1|>", "<|coord_2|>"], ["<|coord_3|>", "<|coord_4|>"],'
    ' ["<|coord_5|>", "<|coord_6|>"]]}',
    f'{{"desc": "a \\"<|coord_7|>\\" \\u00e9", "bbox_2d": {BOX}}}',
    f'{{"desc": "<|coord_7|>", "bbox_2d": {BOX}}}',
    f'{{"bbox_2d": {BOX}, "desc": "<|coord_7|>"}}',
    '{ "desc" : "x" , "bbox_2d" : [ "<|coord_1|>" , "<|coord_2|>" , "<|coord_3|>" ,'
    ' "<|coord_4|>" ] }',
]
KEYS = st.one_of(
    st.integers(1, 6).map(lambda k: f"object_{k}"),
    st.sampled_from(["object_0", "object_01", "obj", "object_x"]),
)
SEPARATORS = st.sampled_from([", ", ", ", ", ", ",", " , ", ",\n", " ", ", , "])


def canonical_value(desc_and_geometry: Any, order: str) -> str:
    """The value text of one object as ``render_objects`` spells it."""
    text = render_objects([desc_and_geometry], field_order=order)  # type: ignore[arg-type]
    return text[len('{"object_1": ') : -1]


@st.composite
def answers(draw: st.DrawFn) -> str:
    """Answer text with valid, invalid and malformed entries, maybe closed and ended."""
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        choice = draw(st.sampled_from(["valid", "any_bins", "odd"]))
        if choice == "valid":
            order = draw(st.sampled_from(["desc_first", "geometry_first"]))
            value = canonical_value(draw(det_objects()), order)
        elif choice == "any_bins":  # canonical spelling, bbox maybe inverted
            coords = ", ".join(
                f'"{coord_token(k)}"' for k in draw(st.lists(bins, min_size=4, max_size=4))
            )
            value = f'{{"desc": "x", "bbox_2d": [{coords}]}}'
        else:
            value = draw(st.sampled_from(ODD_VALUES))
        parts.append(f'"{draw(KEYS)}": {value}')
        parts.append(draw(SEPARATORS))
    body = "".join(parts[:-1])
    head = draw(st.sampled_from(["{", "{", "pre {", " { "]))
    tail = draw(st.sampled_from(["}", "}<|im_end|>", "}} trailing", ""]))
    return head + body + tail


def exact_rollout_parse(ids: list[int], tokenizer: Any) -> RolloutParse:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scanner, "_FAST_ENTRY", ())
        mp.setattr(RolloutParser, "_parse_tiled", lambda self, ids: None)
        return parse_rollout(ids, tokenizer)


def assert_same_parse(fast: RolloutParse, exact: RolloutParse) -> None:
    assert fast == exact
    assert fast.prefix_token_spans == exact.prefix_token_spans


@settings(max_examples=200, deadline=None)
@given(answers(), st.data())
def test_text_fast_path_equals_the_exact_scanner(text: str, data: st.DataObject) -> None:
    text = text[: data.draw(st.integers(0, len(text)))]
    fast = parse_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scanner, "_FAST_ENTRY", ())
        exact = parse_text(text)
    assert fast == exact


@settings(max_examples=150, deadline=None)
@given(answers(), st.data())
def test_token_fast_paths_equal_the_exact_parse_on_the_byte_tokenizer(
    text: str, data: st.DataObject
) -> None:
    ids = FAKE.encode(text)
    ids = ids[: data.draw(st.integers(0, len(ids)))]
    assert_same_parse(parse_rollout(ids, FAKE), exact_rollout_parse(ids, FAKE))


@settings(max_examples=60, deadline=None)
@given(answers(), st.data())
def test_token_fast_paths_equal_the_exact_parse_on_the_real_tokenizer(
    text: str, data: st.DataObject
) -> None:
    ids = list(HF.encode(text, add_special_tokens=False))
    ids = ids[: data.draw(st.integers(0, len(ids)))]
    assert_same_parse(parse_rollout(ids, HF), exact_rollout_parse(ids, HF))


def test_canonical_entries_take_the_fast_path_and_the_exact_parse_does_not() -> None:
    """Guards the properties above: they compare two different code paths."""
    objects = [OBJECT, DetObject("tree", "poly", (1, 2, 30, 4, 5, 60))]
    text = render_objects(objects) + "<|im_end|>"
    ids = FAKE.encode(text)
    general: list[int] = []
    by_span: list[int] = []
    original = scanner._general_entry
    original_locator = RolloutParser._exact_locator

    def counting(scan: Any, pos: int) -> Any:
        general.append(pos)
        return original(scan, pos)

    def counting_locator(self: RolloutParser, *args: Any) -> Any:
        by_span.append(1)
        return original_locator(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scanner, "_general_entry", counting)
        mp.setattr(RolloutParser, "_exact_locator", counting_locator)
        fast = parse_rollout(ids, FAKE)
        assert general == []
        assert by_span == []
        exact = exact_rollout_parse(ids, FAKE)
        assert len(general) == 2
        assert by_span == [1]
    assert len(fast.objects) == 2
    assert_same_parse(fast, exact)


VALID = (
    '"object_3": {"desc": "dog", "bbox_2d": ["<|coord_7|>", "<|coord_8|>", "<|coord_9|>",'
    ' "<|coord_9|>"]}'
)


@pytest.mark.parametrize(
    ("before", "by_span"),
    [
        # coord tokens of a dropped entry lie between the valid ones
        (
            '"object_2": {"desc": "x", "bbox_2d": ["<|coord_9|>", "<|coord_1|>",'
            ' "<|coord_2|>", "<|coord_3|>"]}, ',
            False,
        ),
        # a coord token inside a desc
        (
            '"object_2": {"desc": "<|coord_7|> and <|coord_8|>", "bbox_2d": ["<|coord_7|>",'
            ' "<|coord_8|>", "<|coord_9|>", "<|coord_9|>"]}, ',
            False,
        ),
        # a "<" spelled by an ordinary token: coord tokens are located by character span
        (
            '"object_2": {"desc": "a < b", "bbox_2d": ["<|coord_7|>", "<|coord_8|>",'
            ' "<|coord_9|>", "<|coord_9|>"]}, ',
            True,
        ),
    ],
    ids=["dropped-coords", "coord-in-desc", "less-than"],
)
@pytest.mark.parametrize("tokenizer", [HF, FAKE], ids=["hf", "fake"])
def test_coord_tokens_after_other_coord_texts_are_located_exactly(
    before: str, by_span: bool, tokenizer: Any
) -> None:
    text = '{"object_1": ' + OBJECT_VALUE + ", " + before + VALID + "}<|im_end|>"
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    located_by_span: list[int] = []
    original_locator = RolloutParser._exact_locator

    def counting_locator(self: RolloutParser, *args: Any) -> Any:
        located_by_span.append(1)
        return original_locator(self, *args)

    counted: list[int] = []  # coord tokens listed to locate by counting occurrences

    def listing(match: Any) -> int:
        counted.append(1)
        return int(match.start())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RolloutParser, "_exact_locator", counting_locator)
        mp.setattr(tokens, "_match_start", listing)
        fast = parse_rollout(ids, tokenizer)
    assert bool(located_by_span) == by_span
    assert bool(counted) != by_span
    assert_same_parse(fast, exact_rollout_parse(ids, tokenizer))
    assert [o.index for o in fast.objects][-1] == 3
    for obj in fast.objects:
        assert obj.coord_token_positions is not None
        assert [tokenizer.decode([ids[t]]) for t in obj.coord_token_positions] == [
            coord_token(k) for k in obj.coords
        ]
