"""Token-aligned parsing on a real HF byte-level BPE tokenizer and a fast byte tokenizer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from coordexp_parse_testing import ByteTokenizer, hf_tokenizer, object_lists, simple_descs
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_parse import (
    DetObject,
    RolloutParse,
    RolloutParser,
    TokenizerError,
    coord_token,
    parse_rollout,
    parse_text,
    parser_for,
    render_objects,
)

HF: Any = hf_tokenizer()
FAKE = ByteTokenizer()
OBJECTS = [
    DetObject("black cat", "bbox_2d", (110, 310, 410, 705)),
    DetObject("café 🐶 ü", "poly", (1, 2, 30, 4, 5, 60)),
    DetObject('a "quoted" dog', "bbox_2d", (0, 0, 999, 999)),
]


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def check_token_invariants(parse: RolloutParse, tokenizer: Any, ids: list[int]) -> None:
    """What every token parse guarantees, whatever the input."""
    assert parse.prefix_token_ids is not None
    assert parse.prefix_token_spans is not None
    prefix_ids = list(parse.prefix_token_ids)
    decoded = tokenizer.decode([i for i in prefix_ids if i >= 0])  # the parser: -1 → ""
    if "\ufffd" in decoded:  # invalid UTF-8 from random ids: replacement counts may differ
        assert decoded.replace("\ufffd", "") == parse.prefix_text.replace("\ufffd", "")
    else:
        assert decoded == parse.prefix_text
    assert len(parse.prefix_token_spans) == len(prefix_ids)
    assert parse.prefix_token_spans[-1][1] == len(parse.prefix_text)
    for obj in parse.objects:
        assert obj.coord_token_positions is not None
        for k, t in zip(obj.coords, obj.coord_token_positions, strict=True):
            assert ids[t] == prefix_ids[t]
            assert tokenizer.decode([ids[t]]) == coord_token(k)


@pytest.mark.parametrize("tokenizer", [HF, FAKE], ids=["hf", "fake"])
def test_valid_answer_parses_with_exact_coord_token_positions(tokenizer: Any) -> None:
    text = render_objects(OBJECTS)
    ids = encode(tokenizer, text + "<|im_end|>")
    parse = parse_rollout(ids, tokenizer)
    assert [o.to_det_object() for o in parse.objects] == OBJECTS
    assert parse.ending == "closed"
    assert parse.text == text
    assert parse.prefix_text == text[:-1]
    check_token_invariants(parse, tokenizer, ids)
    if tokenizer is HF:  # its "}" tokens stand alone: the prefix is the rollout's own ids
        assert parse.prefix_token_ids == tuple(ids[: len(ids) - 2])


def test_byte_pieces_of_one_character_share_its_span() -> None:
    text = render_objects([DetObject("🐶", "bbox_2d", (1, 2, 3, 4))])
    ids = encode(HF, text)
    pieces = [HF.decode([i]) for i in ids]
    assert pieces.count("\ufffd") == 4  # the emoji is four byte-level tokens
    parse = parse_rollout(ids, HF)
    (obj,) = parse.objects
    assert obj.desc == "🐶"
    spans = parse.prefix_token_spans
    assert spans is not None
    group = [s for s, p in zip(spans, pieces, strict=False) if p == "\ufffd"]
    assert len(set(group)) == 1
    assert parse.text[group[0][0] : group[0][1]] == "🐶"


def test_multi_character_tokens_map_to_their_characters() -> None:
    ids = encode(HF, render_objects(OBJECTS))
    parse = parse_rollout(ids, HF)
    spans = parse.prefix_token_spans
    assert spans is not None
    for t, (s, e) in enumerate(spans):
        piece = HF.decode([parse.prefix_token_ids[t]])  # type: ignore[index]
        if "\ufffd" not in piece:
            assert parse.prefix_text[s:e] == piece


def test_a_cut_inside_a_token_re_encodes_the_kept_part() -> None:
    # The byte tokenizer merges "}}": the prefix must end after the first "}".
    ids = encode(FAKE, render_objects(OBJECTS[:1]))
    assert FAKE.decode([ids[-1]]) == "}}"
    parse = parse_rollout(ids, FAKE)
    assert parse.prefix_text.endswith("]}")
    assert parse.prefix_token_ids is not None
    assert list(parse.prefix_token_ids) == ids[:-1] + encode(FAKE, "}")
    check_token_invariants(parse, FAKE, ids)


def test_no_brace_gives_the_encoded_brace_as_prefix() -> None:
    parse = parse_rollout(encode(HF, "I see nothing."), HF)
    assert parse.ending == "no_object"
    assert parse.prefix_text == "{"
    assert parse.prefix_token_ids == tuple(encode(HF, "{"))


def test_a_coord_spelled_with_ordinary_tokens_is_non_coord_token() -> None:
    text = render_objects(OBJECTS[:1])
    ids = encode(HF, text)
    spelled = encode(HF, "<|") + encode(HF, "coord_110|>")
    t = ids.index(encode(HF, "<|coord_110|>")[0])
    ids = ids[:t] + spelled + ids[t + 1 :]
    assert HF.decode(ids) == text
    assert parse_text(text).objects != ()
    parse = parse_rollout(ids, HF)
    assert parse.objects == ()
    assert parse.dropped == {"non_coord_token": 1}
    assert parse.entries[0].reason == "non_coord_token"


def test_the_stop_token_ends_the_response() -> None:
    text = render_objects(OBJECTS[:1])
    ids = encode(HF, text) + encode(HF, "<|im_end|>") + encode(HF, render_objects(OBJECTS))
    assert parse_rollout(ids, HF).objects == parse_rollout(encode(HF, text), HF).objects


def test_parse_rollout_caches_one_parser_per_tokenizer() -> None:
    assert parser_for(HF) is parser_for(HF)
    assert parser_for(HF) is not parser_for(FAKE)


def test_a_tokenizer_without_coord_tokens_is_rejected_when_the_parser_is_built() -> None:
    with pytest.raises(TokenizerError, match=r"lacks the coord tokens: '<\|coord_0\|>'"):
        RolloutParser(ByteTokenizer(with_coords=False))


def test_a_real_tokenizer_without_coord_tokens_is_rejected() -> None:
    from transformers import PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=hf_base_tokenizer(HF))
    assert len(bare) < len(HF)
    with pytest.raises(TokenizerError, match="expand-vocab"):
        RolloutParser(bare)


def hf_base_tokenizer(fast: Any) -> Any:
    """The backend tokenizer of ``fast`` with the coord tokens removed from its vocabulary."""
    import json

    from tokenizers import Tokenizer

    data = json.loads(fast.backend_tokenizer.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if "coord" not in t["content"]]
    return Tokenizer.from_str(json.dumps(data))


def test_a_tokenizer_without_the_end_token_is_rejected() -> None:
    with pytest.raises(TokenizerError, match=re.escape("lacks '<|im_end|>'")):
        RolloutParser(ByteTokenizer(with_end=False))


class LeadingSpaceDropper(ByteTokenizer):
    """Decodes a lone token without its leading space, like SentencePiece tokenizers."""

    def decode(self, token_ids: list[int]) -> str:
        text = super().decode(token_ids)
        return text.lstrip(" ") if len(token_ids) == 1 else text


def test_a_tokenizer_that_does_not_decode_token_by_token_is_rejected() -> None:
    with pytest.raises(TokenizerError, match="does not decode token by token"):
        RolloutParser(LeadingSpaceDropper())


@settings(max_examples=60, deadline=None)
@given(object_lists(simple_descs), st.data())
def test_token_parse_agrees_with_text_parse_at_every_truncation(
    objects: list[DetObject], data: st.DataObject
) -> None:
    ids = encode(HF, render_objects(objects))
    k = data.draw(st.integers(0, len(ids)))
    parse = parse_rollout(ids[:k], HF)
    text_parse = parse_text(HF.decode(ids[:k]))
    assert parse.text == text_parse.text
    assert [o.to_det_object() for o in parse.objects] == [
        o.to_det_object() for o in text_parse.objects
    ]
    assert parse.prefix_text == text_parse.prefix_text
    assert parse.dropped == text_parse.dropped
    assert parse.max_object_index == text_parse.max_object_index
    check_token_invariants(parse, HF, ids)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-3, len(HF) + 3), max_size=60))
def test_random_token_ids_never_raise_on_the_real_tokenizer(ids: list[int]) -> None:
    parse = parse_rollout(ids, HF)
    if min(ids, default=0) >= 0 and "\ufffd" not in HF.decode(ids):
        assert parse.text == HF.decode(ids)[: len(parse.text)]
    check_token_invariants(parse, HF, ids)


CODES = [*range(256), *range(256, 256 + len(ByteTokenizer.MERGES)), *FAKE.special_ids.values()]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(CODES), max_size=80))
def test_random_token_ids_never_raise_on_the_byte_tokenizer(ids: list[int]) -> None:
    parse = parse_rollout(ids, FAKE)
    check_token_invariants(parse, FAKE, ids)


@settings(max_examples=100)
@given(object_lists(), st.data())
def test_random_truncation_of_valid_token_answers(
    objects: list[DetObject], data: st.DataObject
) -> None:
    ids = encode(FAKE, render_objects(objects) + "<|im_end|>")
    k = data.draw(st.integers(0, len(ids)))
    full = parse_rollout(ids, FAKE)
    parse = parse_rollout(ids[:k], FAKE)
    assert parse.objects == tuple(o for o in full.objects if o.span[1] <= len(parse.text))
    check_token_invariants(parse, FAKE, ids)


@pytest.mark.parametrize("tokenizer", [HF, FAKE], ids=["hf", "fake"])
def test_a_genuine_replacement_character_in_a_desc_survives(tokenizer: Any) -> None:
    obj = DetObject("a\ufffd\ufffdb é", "bbox_2d", (1, 2, 3, 4))
    ids = encode(tokenizer, render_objects([obj]))
    parse = parse_rollout(ids, tokenizer)
    assert [o.to_det_object() for o in parse.objects] == [obj]
    assert parse.text == tokenizer.decode(ids)


def test_undecodable_ids_are_empty_pieces_that_end_a_byte_group() -> None:
    half = encode(HF, "é")[:1]
    assert HF.decode(half) == "\ufffd"
    ids = [*half, -1, *encode(HF, "<|im_end|>"), *encode(HF, "{}")]
    parse = parse_rollout(ids, HF)
    assert parse.text == "\ufffd"
    assert parse.ending == "no_object"


def test_numpy_token_ids_parse_like_python_ints() -> None:
    import numpy as np

    ids = encode(HF, render_objects(OBJECTS))
    assert parse_rollout(np.array(ids[:-3], dtype=np.int64), HF) == parse_rollout(ids[:-3], HF)


class SpaceCleaner(ByteTokenizer):
    """Has a " ," token and removes spaces before punctuation when decoding (clean-up)."""

    MERGES = (*ByteTokenizer.MERGES, " ,")

    def decode(self, token_ids: list[int]) -> str:
        text = super().decode(token_ids)
        for mark in ",.!?":
            text = text.replace(" " + mark, mark)
        return text


def test_a_tokenizer_that_cleans_up_spaces_when_decoding_is_rejected() -> None:
    with pytest.raises(TokenizerError, match="clean_up_tokenization_spaces=False"):
        RolloutParser(SpaceCleaner())
