"""Channel-B per-token targets on a real rollout: real tokenizer, parse, match, injection."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import pytest
from transformers import PreTrainedTokenizerFast

from coordexp_match import MatchResult, match
from coordexp_parse import (
    DetObject,
    InjectedAnswer,
    RolloutParse,
    build_injection,
    coord_token,
    parse_rollout,
    render_objects,
)
from coordexp_schema.sections.stage2_ab import ChannelBConfig
from coordexp_train.model import BUILTIN_SPECS
from coordexp_train.model.tiny_tokenizer import tokenizer_corpus, train_tiny_tokenizer
from coordexp_train.stage2 import ChannelBTargets, channel_b_targets

CAT = DetObject("cat", "bbox_2d", (100, 100, 300, 300))
DOG = DetObject("dog", "bbox_2d", (500, 500, 700, 700))
TREE = DetObject("tree", "poly", (10, 10, 90, 10, 50, 80))
GTS = [CAT, DOG, TREE]
#: The rollout finds the cat (slightly off), invents a car (FP), writes a dog with one
#: coordinate (dropped: wrong arity) and is cut inside a fourth object.
PREDS = [
    DetObject("cat", "bbox_2d", (102, 98, 305, 298)),
    DetObject("car", "bbox_2d", (900, 900, 990, 990)),
]
DROPPED = ', "object_3": {"desc": "dog", "bbox_2d": ["<|coord_5|>"]}'
TRUNCATED = ', "object_4": {"desc": "tr'


class Sample(NamedTuple):
    parse: RolloutParse
    answer: InjectedAnswer
    result: MatchResult


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    spec = BUILTIN_SPECS["tiny-qwen3-vl"]
    return train_tiny_tokenizer(tokenizer_corpus(), bpe_vocab_size=spec.bpe_vocab_size)


def _sample(tokenizer: PreTrainedTokenizerFast, rollout: str) -> Sample:
    parse = parse_rollout(tokenizer.encode(rollout, add_special_tokens=False), tokenizer)
    result = match(parse.objects, GTS)
    answer = build_injection(
        parse, [GTS[j] for j in result.fn], tokenizer, matched=[p for p, _ in result.pairs]
    )
    return Sample(parse, answer, result)


@pytest.fixture(scope="module")
def sample(tokenizer: PreTrainedTokenizerFast) -> Sample:
    s = _sample(tokenizer, render_objects(PREDS)[:-1] + DROPPED + TRUNCATED)
    assert s.result.pairs == [(0, 0)]
    assert s.result.fp == [1]
    assert s.result.fn == [1, 2]
    assert s.parse.num_dropped == 1
    return s


def _targets(s: Sample, **policy: object) -> ChannelBTargets:
    return channel_b_targets(s.parse, s.answer, s.result, GTS, ChannelBConfig(**policy))  # type: ignore[arg-type]


def _tokens_in(answer: InjectedAnswer, start: int, end: int) -> list[int]:
    """Tokens whose character span overlaps ``[start, end)`` of the answer text."""
    return [i for i, (a, b) in enumerate(answer.spans) if a < end and b > start]


def _tokens_of(answer: InjectedAnswer, needle: str, occurrence: int = 0) -> list[int]:
    start = -1
    for _ in range(occurrence + 1):
        start = answer.text.index(needle, start + 1)
    return _tokens_in(answer, start, start + len(needle))


def _entry(answer: InjectedAnswer, key: str) -> list[int]:
    """The tokens of ``"object_N": {...}`` (from its key up to its closing brace)."""
    start = answer.text.index(f'"{key}"')
    end = answer.text.index("}", start) + 1
    return _tokens_in(answer, start, end)


def test_matched_desc_is_masked_and_matched_structure_supervised(sample: Sample) -> None:
    t = _targets(sample)
    a = sample.answer
    assert [t.ce_weights[i] for i in _tokens_of(a, "cat")] == [0.0]
    structure = _tokens_of(a, '"object_1": {"desc": "') + _tokens_of(a, '", "bbox_2d": ["', 0)
    assert structure
    assert all(t.ce_weights[i] == 1.0 for i in structure)


def test_fp_object_is_fully_neutral(sample: Sample) -> None:
    t = _targets(sample, stop_neutral=False, desc_ce_weight=2.0)
    fp = _entry(sample.answer, "object_2")
    assert len(fp) > 10
    assert all(t.ce_weights[i] == 0.0 for i in fp)
    assert not set(fp) & set(t.coord_positions)


def test_dropped_entry_is_masked(sample: Sample) -> None:
    t = _targets(sample, stop_neutral=False)
    dropped = _entry(sample.answer, "object_3")
    assert len(dropped) > 10
    assert all(t.ce_weights[i] == 0.0 for i in dropped)


def test_fn_structure_and_desc_are_supervised_with_desc_ce_weight(sample: Sample) -> None:
    t = _targets(sample, desc_ce_weight=0.25)
    a = sample.answer
    dog_desc = _tokens_of(a, "dog", occurrence=1)  # the first "dog" is the dropped entry
    tree_desc = _tokens_of(a, "tree")
    assert dog_desc
    assert all(t.ce_weights[i] == 0.25 for i in dog_desc + tree_desc)
    fn_keys = _tokens_of(a, '"object_4": {"desc": "') + _tokens_of(a, '"object_5": {"desc": "')
    assert fn_keys
    assert all(t.ce_weights[i] == 1.0 for i in fn_keys)


def test_coord_tokens_never_carry_token_ce(sample: Sample) -> None:
    t = _targets(sample, stop_neutral=False)
    assert all(t.ce_weights[p] == 0.0 for p in t.coord_positions)


def test_coord_targets_are_the_matched_and_injected_ground_truth(sample: Sample) -> None:
    t = _targets(sample)
    a = sample.answer
    assert (
        t.coord_positions
        == a.pred_coord_positions[0] + a.fn_coord_positions[0] + (a.fn_coord_positions[1])
    )
    # the matched cat learns the GT box, not its own predicted bins
    assert t.coord_bins == CAT.coords + DOG.coords + TREE.coords
    assert t.coord_object == (0,) * 4 + (1,) * 4 + (2,) * 6
    fn_positions = a.fn_coord_positions[0] + a.fn_coord_positions[1]
    fn_bins = t.coord_bins[4:]
    assert len(fn_positions) == len(fn_bins) == 10
    # each injected coord token is the token of its own target bin
    assert [a.text[slice(*a.spans[p])] for p in fn_positions] == [coord_token(b) for b in fn_bins]


def test_boxes_group_the_four_coords_of_each_box_and_skip_polygons(sample: Sample) -> None:
    t = _targets(sample)
    assert t.box_index == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert [t.coord_bins[j] for j in t.box_index[1]] == list(DOG.coords)


@pytest.mark.parametrize("stop_neutral", [True, False])
def test_outer_close_and_end_token_follow_stop_neutral(sample: Sample, stop_neutral: bool) -> None:
    t = _targets(sample, stop_neutral=stop_neutral, drop_invalid_struct_ce_multiplier=1.0)
    a = sample.answer
    close = _tokens_in(a, len(a.text) - len("}<|im_end|>"), len(a.text) - len("<|im_end|>"))
    end = len(a.token_ids) - 1
    assert a.text[slice(*a.spans[end])] == "<|im_end|>"
    expected = 0.0 if stop_neutral else 1.0
    assert [t.ce_weights[i] for i in [*close, end]] == [expected] * (len(close) + 1)


def test_default_policy_is_stop_neutral(sample: Sample) -> None:
    assert _targets(sample).ce_weights[-1] == 0.0


def test_drop_multiplier_scales_tail_structure_only_when_objects_were_dropped(
    sample: Sample, tokenizer: PreTrainedTokenizerFast
) -> None:
    a = sample.answer
    fn_key = _tokens_of(a, '"object_4": {"desc": "')
    matched_key = _tokens_of(a, '"object_1": {"desc": "')
    t = _targets(sample, stop_neutral=False, drop_invalid_struct_ce_multiplier=3.0)
    assert {t.ce_weights[i] for i in fn_key} == {3.0}
    assert {t.ce_weights[i] for i in matched_key} == {1.0}
    assert t.ce_weights[-1] == 3.0  # the end token is part of the tail
    assert t.ce_weights[_tokens_of(a, "tree")[0]] == 1.0  # desc keeps desc_ce_weight

    clean = _sample(tokenizer, render_objects(PREDS)[:-1] + TRUNCATED)
    assert clean.parse.num_dropped == 0
    u = _targets(clean, stop_neutral=False, drop_invalid_struct_ce_multiplier=3.0)
    assert {u.ce_weights[i] for i in _tokens_of(clean.answer, '"object_3": {"desc": "')} == {1.0}


def test_a_bbox_matched_to_a_polygon_learns_its_enclosing_box(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    box_on_tree = DetObject("tree", "bbox_2d", (10, 10, 90, 80))
    s = _sample(tokenizer, render_objects([box_on_tree]))
    assert (0, 2) in s.result.pairs
    t = _targets(s)
    assert t.coord_bins[:4] == (10, 10, 90, 80)
    assert t.box_index[0] == (0, 1, 2, 3)
    assert t.unsupervised_coord_objects == 0


def test_targets_are_deterministic(sample: Sample) -> None:
    assert _targets(sample, desc_ce_weight=0.5) == _targets(sample, desc_ce_weight=0.5)


def test_an_answer_built_without_the_fn_objects_is_refused(
    sample: Sample, tokenizer: PreTrainedTokenizerFast
) -> None:
    wrong = build_injection(sample.parse, [], tokenizer, matched=[0])
    with pytest.raises(ValueError, match="holds 0 FN objects but the match has 2"):
        channel_b_targets(sample.parse, wrong, sample.result, GTS, ChannelBConfig())


def test_an_answer_with_other_matched_labels_is_refused(
    sample: Sample, tokenizer: PreTrainedTokenizerFast
) -> None:
    wrong = build_injection(sample.parse, [DOG, TREE], tokenizer, matched=[0, 1])
    with pytest.raises(ValueError, match="parsed object 1 is labelled MATCHED in the answer"):
        channel_b_targets(sample.parse, wrong, sample.result, GTS, ChannelBConfig())


def test_an_answer_missing_a_matched_label_is_refused(
    sample: Sample, tokenizer: PreTrainedTokenizerFast
) -> None:
    wrong = build_injection(sample.parse, [DOG, TREE], tokenizer, matched=[])
    with pytest.raises(ValueError, match="parsed object 0 is labelled FP in the answer but the"):
        channel_b_targets(sample.parse, wrong, sample.result, GTS, ChannelBConfig())


def test_match_indices_outside_the_objects_are_refused(sample: Sample) -> None:
    bad = dataclasses.replace(sample.result, pairs=[(0, 7)])
    with pytest.raises(ValueError, match=r"gts \[7\] \(there are 3 ground-truth objects\)"):
        channel_b_targets(sample.parse, sample.answer, bad, GTS, ChannelBConfig())


def test_plain_values_work_as_the_policy(sample: Sample) -> None:
    class Plain:
        stop_neutral = False
        drop_invalid_struct_ce_multiplier = 1.0
        desc_ce_weight = 0.5

    t = channel_b_targets(sample.parse, sample.answer, sample.result, GTS, Plain())
    assert t == _targets(sample, stop_neutral=False, desc_ce_weight=0.5)
