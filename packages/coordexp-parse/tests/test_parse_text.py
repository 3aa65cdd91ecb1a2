"""Text parsing: strict validation with named drop reasons, prefixes, key indices, totality."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from coordexp_parse_testing import object_lists
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_parse import (
    DROP_REASONS,
    DetObject,
    inject_text,
    parse_text,
    render_objects,
)

C = ['"<|coord_1|>"', '"<|coord_2|>"', '"<|coord_3|>"', '"<|coord_4|>"']


def box(*bins: int) -> str:
    return "[" + ", ".join(f'"<|coord_{k}|>"' for k in bins) + "]"


BOX = "[" + ", ".join(C) + "]"
GOOD = '{"desc": "cat", "bbox_2d": ' + BOX + "}"


def one(value: str, key: str = "object_1") -> dict[str, int]:
    """Drop counts of an answer with one entry ``key: value``."""
    parse = parse_text("{" + json.dumps(key) + ": " + value + "}")
    assert parse.ending == "closed"
    return parse.dropped


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("[1, 2]", "key_invalid"),
        ('"cat"', "key_invalid"),
        ('{"desc": "cat", "desc": "dog", "bbox_2d": ' + BOX + "}", "key_invalid"),
        ('{"desc": "cat", "bbox_2d": ' + BOX + ', "poly": ' + BOX + "}", "key_invalid"),
        ('{"desc": "cat", "bbox_2d": ' + BOX + ', "score": 1}', "key_invalid"),
        ('{"desc": "cat", "bbox": [1], "label": 2}', "key_invalid"),
        ('{"bbox_2d": ' + BOX + "}", "missing_desc"),
        ('{"desc": "  ", "bbox_2d": ' + BOX + "}", "missing_desc"),
        ('{"desc": 5, "bbox_2d": ' + BOX + "}", "missing_desc"),
        ('{"desc": "cat"}', "missing_geom"),
        ('{"desc": "cat", "bbox": ' + BOX + "}", "unknown_geom"),
        ('{"desc": "cat", "bbox_2d": [1, 2, 3, 4]}', "non_coord_token"),
        ('{"desc": "cat", "bbox_2d": ["1", "2", "3", "4"]}', "non_coord_token"),
        (
            '{"desc": "cat", "bbox_2d": ["<|coord_1000|>", "<|coord_1|>"]}',
            "non_coord_token",
        ),
        (
            '{"desc": "cat", "bbox_2d": ["\\u003c|coord_1|>", ' + ", ".join(C[1:]) + "]}",
            "non_coord_token",
        ),
        ('{"desc": "cat", "bbox_2d": ' + "[" + ", ".join(C[:3]) + "]}", "wrong_arity"),
        ('{"desc": "cat", "bbox_2d": "<|coord_1|>"}', "wrong_arity"),
        ('{"desc": "cat", "poly": ' + BOX + "}", "wrong_arity"),
        ('{"desc": "cat", "poly": [' + ", ".join(C + C[:1]) + "]}", "wrong_arity"),
        (
            '{"desc": "cat", "poly": [[' + C[0] + "], [" + C[1] + "], [" + C[2] + "]]}",
            "wrong_arity",
        ),
        (
            '{"desc": "cat", "bbox_2d": ' + box(5, 1, 4, 2) + "}",
            "bbox_invalid",
        ),
        (
            '{"desc": "cat", "bbox_2d": ' + box(1, 5, 4, 2) + "}",
            "bbox_invalid",
        ),
        ('{"desc": "cat", "bbox_2d": [' + C[0] + "}]", "invalid_json"),
        ("tru", "invalid_json"),
        ('{"desc": "cat", "bbox_2d": NaN}', "invalid_json"),
    ],
)
def test_each_invalid_entry_is_dropped_with_its_reason(value: str, reason: str) -> None:
    assert one(value) == {reason: 1}


@pytest.mark.parametrize(
    "key", ["object_0", "object_01", "object", "obj_1", "Object_1", "object_1 "]
)
def test_keys_other_than_object_n_are_key_invalid(key: str) -> None:
    assert one(GOOD, key) == {"key_invalid": 1}


def test_a_repeated_key_is_dropped_and_the_first_kept() -> None:
    parse = parse_text('{"object_1": ' + GOOD + ', "object_1": ' + GOOD + "}")
    assert parse.dropped == {"duplicate_key": 1}
    assert [o.index for o in parse.objects] == [1]


def test_a_malformed_key_does_not_shadow_the_valid_key() -> None:
    parse = parse_text('{"object_01": ' + GOOD + ', "object_1": ' + GOOD + "}")
    assert parse.dropped == {"key_invalid": 1}
    assert [o.index for o in parse.objects] == [1]


def test_poly_as_pairs_is_flattened() -> None:
    pairs = (
        "[[" + C[0] + ", " + C[1] + "], [" + C[2] + ", " + C[3] + "], [" + C[0] + ", " + C[1] + "]]"
    )
    parse = parse_text('{"object_1": {"poly": ' + pairs + ', "desc": "tri"}}')
    assert [o.to_det_object() for o in parse.objects] == [
        DetObject("tri", "poly", (1, 2, 3, 4, 1, 2))
    ]


def test_any_json_whitespace_is_accepted() -> None:
    text = (
        '{ "object_7" :\n{"desc":"cat" ,"bbox_2d":[ "<|coord_1|>","<|coord_2|>" ,'
        '"<|coord_3|>","<|coord_4|>"]}\t}'
    )
    parse = parse_text(text)
    assert [(o.index, o.coords) for o in parse.objects] == [(7, (1, 2, 3, 4))]


def test_valid_objects_carry_exact_character_spans() -> None:
    text = render_objects([DetObject('ca"t', "bbox_2d", (1, 2, 3, 4))])
    (obj,) = parse_text(text).objects
    assert text[obj.span[0] : obj.span[1]] == text[len('{"object_1": ') : -1]
    assert text[obj.entry_span[0] : obj.entry_span[1]] == text[1:-1]
    assert text[obj.desc_span[0] : obj.desc_span[1]] == 'ca\\"t'
    assert [text[s:e] for s, e in obj.coord_spans] == [f"<|coord_{k}|>" for k in (1, 2, 3, 4)]
    assert obj.coord_token_positions is None


def test_drop_counts_are_reported_in_reason_order() -> None:
    text = '{"object_1": 1, "object_2": {"desc": "cat"}, "x": 2, "object_3": ' + GOOD + "}"
    parse = parse_text(text)
    assert parse.dropped == {"key_invalid": 2, "missing_geom": 1}
    assert list(parse.dropped) == [r for r in DROP_REASONS if r in parse.dropped]
    assert parse.num_dropped == 3
    assert [(e.key, e.reason, e.ordinal) for e in parse.entries] == [
        ("object_1", "key_invalid", None),
        ("object_2", "missing_geom", None),
        ("x", "key_invalid", None),
        ("object_3", None, 0),
    ]


def test_max_object_index_counts_dropped_entries() -> None:
    text = '{"object_2": ' + GOOD + ', "object_9": {"desc": ""}, "object_007": 3}'
    parse = parse_text(text)
    assert [o.index for o in parse.objects] == [2]
    assert parse.max_object_index == 9


def test_max_object_index_ignores_the_cut_partial_entry() -> None:
    parse = parse_text('{"object_2": ' + GOOD + ', "object_50": {"desc": "c')
    assert parse.max_object_index == 2
    assert parse.truncated


@pytest.mark.parametrize(
    ("text", "prefix", "ending"),
    [
        ("", "{", "no_object"),
        ("no json here", "{", "no_object"),
        ("{", "{", "truncated"),
        ('{"obj', "{", "truncated"),
        ('{"object_1": ' + GOOD[:-3], "{", "truncated"),
        ('{"object_1": ' + GOOD, '{"object_1": ' + GOOD, "truncated"),
        ('{"object_1": ' + GOOD + ", ", '{"object_1": ' + GOOD, "truncated"),
        ('{"object_1": ' + GOOD + "  }", '{"object_1": ' + GOOD, "closed"),
        ('{"object_1": ' + GOOD + "}trailing", '{"object_1": ' + GOOD, "closed"),
        ("{}", "{", "closed"),
        ('```json\n{"object_1": ' + GOOD + "}", '```json\n{"object_1": ' + GOOD, "closed"),
        (
            '{"object_1": ' + GOOD + ' "object_2": ' + GOOD + "}",
            '{"object_1": ' + GOOD,
            "syntax_error",
        ),
        ('{"object_1": ' + GOOD + ",}", '{"object_1": ' + GOOD, "syntax_error"),
        ('{"object_1" ' + GOOD + "}", "{", "syntax_error"),
        ('{"object_1": , "object_2": 1}', "{", "syntax_error"),
        ("{object_1: 1}", "{", "syntax_error"),
        ('{"obj\\x": 1}', "{", "syntax_error"),
    ],
)
def test_prefix_is_cut_at_the_last_complete_entry(text: str, prefix: str, ending: str) -> None:
    parse = parse_text(text)
    assert parse.prefix_text == prefix
    assert parse.ending == ending
    assert parse.truncated == (ending == "truncated")


@pytest.mark.parametrize("stop", ["<|im_end|>", "<|endoftext|>"])
def test_the_first_stop_string_ends_the_response(stop: str) -> None:
    text = '{"object_1": ' + GOOD + "}" + stop + '{"object_2": ' + GOOD + "}"
    parse = parse_text(text)
    assert parse.text == text[: text.index(stop)]
    assert [o.index for o in parse.objects] == [1]
    cut = parse_text('{"object_1": ' + GOOD + stop + "}")
    assert cut.ending == "truncated"


@given(object_lists(), st.data())
def test_every_truncation_point_of_a_valid_answer_gives_an_append_ready_prefix(
    objects: list[DetObject], data: st.DataObject
) -> None:
    text = render_objects(objects)
    full = parse_text(text)
    cut = data.draw(st.integers(0, len(text)))
    parse = parse_text(text[:cut])
    assert text.startswith(parse.prefix_text)
    assert parse.objects == tuple(o for o in full.objects if o.span[1] <= cut)
    closed = parse_text(inject_text(parse, []))
    assert closed.ending == "closed"
    assert closed.objects == parse.objects


def assert_append_ready(text: str) -> None:
    parse = parse_text(text)
    assert set(parse.dropped) <= set(DROP_REASONS)
    if parse.ending == "no_object":
        assert parse.prefix_text == "{"
    else:
        assert text.startswith(parse.prefix_text)
    closed = parse_text(inject_text(parse, []))
    assert closed.ending == "closed"
    assert closed.objects == parse.objects
    assert closed.dropped == parse.dropped
    assert closed.max_object_index == parse.max_object_index


FRAGMENTS = ['{', '}', '[', ']', '"', ":", ": ", ",", ", ", " ", "\\", '"object_1"',
             '"object_2"', '"object_02"', '"desc"', '"cat"', '"bbox_2d"', '"poly"', '"<|coord_5|>"',
             '"<|coord_9|>"', "<|coord_7|>", "1", "null", "<|im_end|>", "é", "\n"]  # fmt: skip
GARBAGE = st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join)


@settings(max_examples=300)
@given(GARBAGE)
def test_structured_garbage_parses_to_an_append_ready_prefix(text: str) -> None:
    assert_append_ready(text)


@given(st.text(max_size=200))
def test_random_text_parses_to_an_append_ready_prefix(text: str) -> None:
    assert_append_ready(text)


def test_parse_is_identical_across_processes_and_hash_seeds() -> None:
    text = '{"object_3": ' + GOOD + ', "object_1": {"desc": "x"}, "object_2": ' + GOOD
    code = "import sys, coordexp_parse as p\nr = p.parse_text(sys.argv[1])\nprint(repr(r))\n"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code, text],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "12345")
    }
    assert len(outs) == 1
    assert repr(parse_text(text)) + "\n" in outs
