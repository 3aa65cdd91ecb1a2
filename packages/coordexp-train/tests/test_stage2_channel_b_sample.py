"""One Channel-B sample end to end (real tokenizer, parse, match, injection) and step stats."""

from __future__ import annotations

import dataclasses

import pytest
from transformers import PreTrainedTokenizerFast

from coordexp_match import match
from coordexp_parse import DetObject, build_injection, parse_rollout, render_objects
from coordexp_schema.sections.rollout import RolloutMatchingConfig
from coordexp_schema.sections.stage2_ab import ChannelBConfig
from coordexp_train.model import BUILTIN_SPECS
from coordexp_train.model.tiny_tokenizer import tokenizer_corpus, train_tiny_tokenizer
from coordexp_train.stage2 import build_channel_b_sample, channel_b_targets, step_stats

GTS = [
    DetObject("cat", "bbox_2d", (100, 100, 300, 300)),
    DetObject("dog", "bbox_2d", (500, 500, 700, 700)),
    DetObject("tree", "poly", (10, 10, 90, 10, 50, 80)),
]
PREDS = [
    DetObject("cat", "bbox_2d", (102, 98, 305, 298)),
    DetObject("car", "bbox_2d", (900, 900, 990, 990)),
]
WITH_DROP = (
    render_objects(PREDS)[:-1] + ', "object_3": {"desc": "dog", "bbox_2d": ["<|coord_5|>"]}}'
)
TRUNCATED = render_objects(PREDS)[:-1] + ', "object_3": {"desc": "tr'
MATCHING = RolloutMatchingConfig()
POLICY = ChannelBConfig()


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    spec = BUILTIN_SPECS["tiny-qwen3-vl"]
    return train_tiny_tokenizer(tokenizer_corpus(), bpe_vocab_size=spec.bpe_vocab_size)


def _ids(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
    return ids


def test_sample_is_the_composition_of_parse_match_inject_and_targets(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    ids = _ids(tokenizer, WITH_DROP)
    sample = build_channel_b_sample(ids, GTS, tokenizer, MATCHING, POLICY)
    parse = parse_rollout(ids, tokenizer)
    result = match(parse.objects, GTS, gate=0.3, top_k=10)
    answer = build_injection(parse, [GTS[1], GTS[2]], tokenizer, matched=[0])
    assert sample.parse == parse
    assert sample.result == result
    assert sample.answer == answer
    assert sample.targets == channel_b_targets(parse, answer, result, GTS, POLICY)
    assert sample.rollout_tokens == len(ids)


def test_matching_options_come_from_the_rollout_matching_section(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    ids = _ids(tokenizer, WITH_DROP)
    strict = dataclasses.replace(MATCHING, maskiou_gate=0.99)
    sample = build_channel_b_sample(ids, GTS, tokenizer, strict, POLICY)
    assert sample.result.pairs == []
    assert sample.result.fn == [0, 1, 2]


def test_geometry_first_injection(tokenizer: PreTrainedTokenizerFast) -> None:
    ids = _ids(tokenizer, TRUNCATED)
    sample = build_channel_b_sample(
        ids, GTS, tokenizer, MATCHING, POLICY, field_order="geometry_first"
    )
    assert '"object_3": {"bbox_2d": [' in sample.answer.text


def test_step_stats_count_matches_drops_truncation_and_lengths(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    a, b = _ids(tokenizer, WITH_DROP), _ids(tokenizer, TRUNCATED)
    samples = [build_channel_b_sample(ids, GTS, tokenizer, MATCHING, POLICY) for ids in (a, b)]
    stats = step_stats(samples)
    assert stats == {
        "rollouts": 2.0,
        "truncated": 1.0,
        "matched": 2.0,
        "fp": 2.0,
        "fn": 4.0,
        "dropped": 1.0,
        "dropped/wrong_arity": 1.0,
        "coord_unsupervised": 0.0,
        "rollout_len_mean": (len(a) + len(b)) / 2,
        "rollout_len_max": float(max(len(a), len(b))),
        "answer_len_mean": sum(len(s.answer.token_ids) for s in samples) / 2,
    }


def test_step_stats_of_no_samples_are_zero() -> None:
    stats = step_stats([])
    assert stats["rollouts"] == 0.0
    assert stats["rollout_len_mean"] == 0.0
    assert stats["rollout_len_max"] == 0.0


def test_an_empty_rollout_injects_every_ground_truth_object(
    tokenizer: PreTrainedTokenizerFast,
) -> None:
    sample = build_channel_b_sample([], GTS, tokenizer, MATCHING, POLICY)
    assert sample.result.fn == [0, 1, 2]
    assert sample.targets.coord_bins == GTS[0].coords + GTS[1].coords + GTS[2].coords
    assert step_stats([sample])["fn"] == 3.0
