"""FN injection: key allocation, commas, closing, and per-token span labels."""

from __future__ import annotations

from typing import Any

import pytest
from coordexp_parse_testing import ByteTokenizer, hf_tokenizer, object_lists, simple_descs
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_parse import (
    DetObject,
    InjectedAnswer,
    Owner,
    Role,
    build_injection,
    coord_token,
    inject_text,
    parse_rollout,
    parse_text,
    render_objects,
)

HF: Any = hf_tokenizer()
FAKE = ByteTokenizer()
CAT = DetObject("black cat", "bbox_2d", (110, 310, 410, 705))
DOG = DetObject("dog 🐶", "poly", (1, 2, 30, 4, 5, 60))
BIRD = DetObject("bird", "bbox_2d", (5, 5, 6, 6))
GOOD = '{"desc": "cat", "bbox_2d": ["<|coord_1|>", "<|coord_2|>", "<|coord_3|>", "<|coord_4|>"]}'


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def test_fn_keys_start_after_the_largest_key_including_dropped_entries() -> None:
    parse = parse_text('{"object_2": ' + GOOD + ', "object_9": {"desc": "x"}, "object_4": ')
    text = inject_text(parse, [BIRD])
    assert text == (
        '{"object_2": ' + GOOD + ', "object_9": {"desc": "x"}, "object_10": {"desc": "bird", '
        '"bbox_2d": ["<|coord_5|>", "<|coord_5|>", "<|coord_6|>", "<|coord_6|>"]}}'
    )


def test_no_entries_means_no_leading_comma() -> None:
    assert inject_text(parse_text('{"obj'), [BIRD]).startswith('{"object_1": {"desc": "bird"')
    assert inject_text(parse_text("garbage"), [BIRD]).startswith('{"object_1": {')


def test_no_fn_objects_just_closes_the_prefix() -> None:
    parse = parse_text('{"object_1": ' + GOOD + ", ")
    assert inject_text(parse, []) == '{"object_1": ' + GOOD + "}"
    assert inject_text(parse_text(""), []) == "{}"


def test_geometry_first_injection() -> None:
    text = inject_text(parse_text("{"), [BIRD], field_order="geometry_first")
    assert text.startswith('{"object_1": {"bbox_2d": [')


@given(object_lists(), object_lists(), st.data())
def test_injected_text_parses_to_prefix_objects_then_fn_objects(
    answer: list[DetObject], fn: list[DetObject], data: st.DataObject
) -> None:
    text = render_objects(answer)
    parse = parse_text(text[: data.draw(st.integers(0, len(text)))])
    reparse = parse_text(inject_text(parse, fn))
    assert reparse.ending == "closed"
    assert [o.to_det_object() for o in reparse.objects] == [
        *(o.to_det_object() for o in parse.objects),
        *fn,
    ]
    start = (parse.max_object_index or 0) + 1
    assert [o.index for o in reparse.objects[len(parse.objects) :]] == list(
        range(start, start + len(fn))
    )


def labels(answer: InjectedAnswer) -> list[tuple[str, str, str, int]]:
    """(text, owner, role, ordinal) per token; byte pieces of one character show it once."""
    rows = []
    last = None
    for (s, e), o, r, k in zip(
        answer.spans, answer.owners, answer.roles, answer.ordinals, strict=True
    ):
        rows.append(("" if (s, e) == last else answer.text[s:e], o.name, r.name, k))
        last = (s, e)
    return rows


def test_labels_of_a_matched_an_fp_and_an_fn_object() -> None:
    ids = encode(HF, render_objects([CAT, DOG]) + "<|im_end|>")
    parse = parse_rollout(ids, HF)
    answer = build_injection(parse, [BIRD], HF, matched=[1])
    rows = labels(answer)
    assert (
        answer.text
        == render_objects([CAT, DOG])[:-1]
        + inject_text(parse, [BIRD])[len(parse.prefix_text) :]
        + "<|im_end|>"
    )
    assert HF.decode(list(answer.token_ids)) == answer.text
    cat = {(o, r) for _, o, r, k in rows[: answer.prefix_length] if k == 0}
    assert cat == {("FP", "STRUCTURE"), ("FP", "DESC"), ("FP", "COORD")}
    assert "".join(t for t, o, r, _ in rows if o == "FP" and r == "DESC") == "black cat"
    assert "".join(t for t, o, r, _ in rows if o == "MATCHED" and r == "DESC") == "dog 🐶"
    assert "".join(t for t, o, r, _ in rows if o == "FN" and r == "DESC") == "bird"
    fn_text = "".join(t for t, o, _, _ in rows if o == "FN")
    assert fn_text == ', "object_3": ' + render_objects([BIRD])[len('{"object_1": ') : -1]
    assert rows[-2:] == [("}", "NONE", "CLOSE", -1), ("<|im_end|>", "NONE", "END", -1)]
    # '{"' touches the first key, so it is the FP's; only the comma between entries is nobody's.
    assert rows[0][:2] == ('{"', "FP")
    assert [t for t, o, _, _ in rows[: answer.prefix_length] if o == "NONE"] == [","]
    assert answer.fn_indices == (3,)
    assert answer.token_ids[-1] == encode(HF, "<|im_end|>")[0]


def test_coord_positions_point_at_the_coord_tokens_with_coord_role() -> None:
    ids = encode(HF, render_objects([CAT, DOG]))
    parse = parse_rollout(ids, HF)
    answer = build_injection(parse, [BIRD, DOG], HF, matched=[0])
    assert answer.pred_coord_positions == tuple(o.coord_token_positions for o in parse.objects)
    coords = [*CAT.coords, *DOG.coords, *BIRD.coords, *DOG.coords]
    positions = [p for ps in (*answer.pred_coord_positions, *answer.fn_coord_positions) for p in ps]
    assert [HF.decode([answer.token_ids[p]]) for p in positions] == [coord_token(k) for k in coords]
    assert sorted(positions) == [t for t, r in enumerate(answer.roles) if r is Role.COORD]


def test_dropped_prefix_entries_are_owned_by_nobody() -> None:
    text = '{"object_1": {"desc": "x", "bbox_2d": []}, "object_2": ' + GOOD
    parse = parse_rollout(encode(HF, text), HF)
    answer = build_injection(parse, [BIRD], HF, matched=[0])
    first_entry_end = text.index("}, ") + 1
    for (s, _e), owner in zip(answer.spans, answer.owners, strict=True):
        if s < first_entry_end:
            assert owner is Owner.NONE
    assert Owner.MATCHED in answer.owners[: answer.prefix_length]


def test_the_close_brace_is_its_own_token_even_where_the_tokenizer_merges() -> None:
    parse = parse_rollout(encode(FAKE, "{"), FAKE)
    answer = build_injection(parse, [BIRD], FAKE)
    closes = [t for t, r in enumerate(answer.roles) if r is Role.CLOSE]
    assert [FAKE.decode([answer.token_ids[t]]) for t in closes] == ["}"]
    natural = encode(FAKE, answer.text.removesuffix("<|im_end|>"))
    assert FAKE.decode([natural[-1]]) == "}}"  # what encoding the whole answer would give
    assert FAKE.decode([answer.token_ids[closes[0] - 1]]) == "}"


def test_a_text_parse_cannot_be_injected_at_token_level() -> None:
    with pytest.raises(ValueError, match="needs a token parse"):
        build_injection(parse_text("{"), [BIRD], HF)


def test_matched_indices_must_name_parsed_objects() -> None:
    parse = parse_rollout(encode(HF, render_objects([CAT])), HF)
    with pytest.raises(ValueError, match=r"matched indices \[1\] are outside"):
        build_injection(parse, [], HF, matched=[0, 1])


def check_injection(parse: Any, fn: list[DetObject], tokenizer: Any, matched: set[int]) -> None:
    answer = build_injection(parse, fn, tokenizer, matched=matched)
    n = len(answer.token_ids)
    assert len(answer.owners) == len(answer.roles) == len(answer.ordinals) == len(answer.spans) == n
    assert answer.token_ids[: answer.prefix_length] == parse.prefix_token_ids
    reparse = parse_rollout(list(answer.token_ids), tokenizer)
    assert reparse.ending == "closed"
    expected = [*(o.to_det_object() for o in parse.objects), *fn]
    assert [o.to_det_object() for o in reparse.objects] == expected
    positions = [*answer.pred_coord_positions, *answer.fn_coord_positions]
    assert [o.coord_token_positions for o in reparse.objects] == positions
    for t, (owner, ordinal) in enumerate(zip(answer.owners, answer.ordinals, strict=True)):
        if owner is Owner.FN:
            assert t >= answer.prefix_length
            assert 0 <= ordinal < len(fn)
        elif owner in (Owner.MATCHED, Owner.FP):
            assert t < answer.prefix_length
            assert (ordinal in matched) == (owner is Owner.MATCHED)
        else:
            assert ordinal == -1
    assert answer.roles[-1] is Role.END


@settings(max_examples=40, deadline=None)
@given(object_lists(simple_descs), object_lists(simple_descs, max_size=3), st.data())
def test_token_injection_reparses_exactly_on_the_real_tokenizer(
    answer: list[DetObject], fn: list[DetObject], data: st.DataObject
) -> None:
    ids = encode(HF, render_objects(answer))
    parse = parse_rollout(ids[: data.draw(st.integers(0, len(ids)))], HF)
    matched = (
        data.draw(st.sets(st.integers(0, max(0, len(parse.objects) - 1))))
        if parse.objects
        else set()
    )
    check_injection(parse, fn, HF, matched)


@settings(max_examples=150, deadline=None)
@given(object_lists(), object_lists(max_size=3), st.data())
def test_token_injection_reparses_exactly_on_the_byte_tokenizer(
    answer: list[DetObject], fn: list[DetObject], data: st.DataObject
) -> None:
    ids = encode(FAKE, render_objects(answer))
    parse = parse_rollout(ids[: data.draw(st.integers(0, len(ids)))], FAKE)
    matched = (
        data.draw(st.sets(st.sampled_from(range(len(parse.objects))))) if parse.objects else set()
    )
    check_injection(parse, fn, FAKE, matched)


CODES = [*range(256), *range(256, 256 + len(ByteTokenizer.MERGES)), *FAKE.special_ids.values()]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(CODES), max_size=60), object_lists(max_size=2))
def test_injection_after_random_tokens_reparses_exactly(
    ids: list[int], fn: list[DetObject]
) -> None:
    check_injection(parse_rollout(ids, FAKE), fn, FAKE, set())


def test_token_parse_and_injection_are_identical_across_processes_and_hash_seeds() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    helpers = Path(__file__).with_name("parse_testing.py")
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('h', {str(helpers)!r})\n"
        "h = importlib.util.module_from_spec(spec); spec.loader.exec_module(h)\n"
        "import coordexp_parse as p\n"
        "tok = h.ByteTokenizer()\n"
        "objs = [p.DetObject('café', 'poly', (1, 2, 3, 4, 5, 6)),\n"
        "        p.DetObject('a', 'bbox_2d', (1, 1, 2, 2))]\n"
        "ids = tok.encode(p.render_objects(objs))[:-9]\n"
        "r = p.parse_rollout(ids, tok)\n"
        "print(repr(r)); print(repr(p.build_injection(r, objs, tok, matched=[0])))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("0", "1", "4242")
    }
    assert len(outs) == 1
    assert "MATCHED" in outs.pop()


def test_a_coord_token_inside_a_desc_is_desc_not_coord() -> None:
    odd = DetObject("<|coord_5|> cat", "bbox_2d", (1, 2, 3, 4))
    ids = encode(HF, render_objects([odd]))
    coord_5 = encode(HF, "<|coord_5|>")[0]
    assert coord_5 in ids
    parse = parse_rollout(ids, HF)
    assert [o.to_det_object() for o in parse.objects] == [odd]
    answer = build_injection(parse, [odd], HF, matched=[0])
    roles = [r for t, r in zip(answer.token_ids, answer.roles, strict=True) if t == coord_5]
    assert roles == [Role.DESC, Role.DESC]
    assert reparse_coords(answer) == [*odd.coords, *odd.coords]


def reparse_coords(answer: InjectedAnswer) -> list[int]:
    positions = [p for ps in (*answer.pred_coord_positions, *answer.fn_coord_positions) for p in ps]
    return [int(HF.decode([answer.token_ids[p]])[8:-2]) for p in positions]
