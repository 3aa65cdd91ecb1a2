"""RepeatTerminate: the pure detector, against brute-force oracles and by example."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_backends import RepeatTerminate, RepeatTerminateParams

TEXT = {i: chr(ord("a") + i) for i in range(26)}


def piece(i: int) -> str:
    return TEXT.get(i, "?")


def run_oracle(ids: list[int], limit: int, min_new: int) -> int | None:
    """First position p >= min_new-1 where ids[p-limit..p] are all equal."""
    for p in range(len(ids)):
        if p + 1 >= min_new and p >= limit and len(set(ids[p - limit : p + 1])) == 1:
            return p
    return None


def ngram_oracle(ids: list[int], n: int, k: int, min_new: int) -> int | None:
    """First position p where the n*k tokens ending at p are one n-gram k times."""
    for p in range(len(ids)):
        start = p + 1 - n * k
        if p + 1 < min_new or start < 0:
            continue
        window = ids[start : p + 1]
        if all(window[j] == window[j % n] for j in range(len(window))):
            return p
    return None


ids_strategy = st.lists(st.integers(0, 3), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ids=ids_strategy, limit=st.integers(1, 5), min_new=st.integers(0, 10))
def test_token_repeat_fires_at_the_first_run_longer_than_the_limit(
    ids: list[int], limit: int, min_new: int
) -> None:
    rt = RepeatTerminate(
        RepeatTerminateParams(min_new_tokens=min_new, max_consecutive_token_repeats=limit)
    )
    verdict = rt.check(ids)
    expected = run_oracle(ids, limit, min_new)
    assert (verdict.position if verdict else None) == expected
    if verdict is not None:
        assert verdict.rule == "token_repeat"


@settings(max_examples=150, deadline=None)
@given(ids=ids_strategy, n=st.integers(1, 4), k=st.integers(2, 4), min_new=st.integers(0, 10))
def test_ngram_repeat_fires_when_the_tail_is_one_ngram_k_times(
    ids: list[int], n: int, k: int, min_new: int
) -> None:
    rt = RepeatTerminate(
        RepeatTerminateParams(min_new_tokens=min_new, ngram_size=n, ngram_repeats=k)
    )
    verdict = rt.check(ids)
    assert (verdict.position if verdict else None) == ngram_oracle(ids, n, k, min_new)


@settings(max_examples=100, deadline=None)
@given(ids=ids_strategy, limit=st.integers(1, 4), n=st.integers(1, 3), k=st.integers(2, 3))
def test_feeding_one_at_a_time_equals_checking_the_sequence(
    ids: list[int], limit: int, n: int, k: int
) -> None:
    params = RepeatTerminateParams(
        max_consecutive_token_repeats=limit, ngram_size=n, ngram_repeats=k
    )
    rt = RepeatTerminate(params)
    fed = None
    for t in ids:
        fed = rt.feed(t)
        if fed is not None:
            break
    assert fed == rt.check(ids)
    if fed is not None:
        # Earliest: the prefix before the trigger is clean; later tokens keep the verdict.
        assert rt.check(ids[: fed.position]) is None
        assert rt.feed(0) == fed


def test_check_does_not_touch_the_incremental_state() -> None:
    rt = RepeatTerminate(RepeatTerminateParams(max_consecutive_token_repeats=2))
    rt.feed_all([1, 1])
    assert rt.check([5, 5, 5]) is not None
    assert rt.tokens_seen == 2
    assert rt.verdict is None
    assert rt.feed(1) is not None


def test_reset_forgets_everything() -> None:
    rt = RepeatTerminate(RepeatTerminateParams(max_consecutive_token_repeats=1))
    assert rt.feed_all([3, 3]) is not None
    rt.reset()
    assert rt.verdict is None
    assert rt.tokens_seen == 0
    assert rt.feed(3) is None


def test_token_repeat_example_names_the_token() -> None:
    v = RepeatTerminate(RepeatTerminateParams(max_consecutive_token_repeats=3)).check(
        [1, 2, 7, 7, 7, 7, 8]
    )
    assert v is not None
    assert (v.rule, v.position) == ("token_repeat", 5)
    assert "token 7 repeated 4 times" in v.detail


def test_ngram_example() -> None:
    v = RepeatTerminate(RepeatTerminateParams(ngram_size=2, ngram_repeats=3)).check(
        [9, 1, 2, 1, 2, 1, 2, 5]
    )
    assert v is not None
    assert (v.rule, v.position) == ("ngram_repeat", 6)
    assert "2-gram [1, 2] repeated 3 times" in v.detail


def test_min_new_tokens_defers_every_rule() -> None:
    params = RepeatTerminateParams(min_new_tokens=6, max_consecutive_token_repeats=2)
    assert RepeatTerminate(params).check([4, 4, 4, 1, 2, 3]) is None  # run ended before 6
    v = RepeatTerminate(params).check([1, 2, 3, 4, 4, 4])
    assert v is not None
    assert v.position == 5


def test_disabled_rules_never_fire() -> None:
    assert RepeatTerminate(RepeatTerminateParams()).check([1] * 100) is None


def key_ids(text: str) -> list[int]:
    """Token ids of ``text`` under a char-level vocabulary (id = index in VOCAB)."""
    return [VOCAB.index(c) for c in text]


VOCAB = list('{}"_:, object0123456789abcdesx')


def char_piece(i: int) -> str:
    return VOCAB[i]


def test_object_keys_fires_on_the_closing_quote_of_the_key_past_the_limit() -> None:
    text = '{"object_1": {}, "object_2": {}, "object_3": {}}'
    rt = RepeatTerminate(RepeatTerminateParams(max_object_keys=2), char_piece)
    v = rt.check(key_ids(text))
    assert v is not None
    assert v.rule == "object_keys"
    third = text.index('"object_3"') + len('"object_3"') - 1
    assert v.position == third
    assert "3 object keys > max 2" in v.detail


@settings(max_examples=100, deadline=None)
@given(
    keys=st.lists(st.integers(1, 120), max_size=8),
    cuts=st.lists(st.integers(1, 6), min_size=1, max_size=20),
    limit=st.integers(1, 8),
)
def test_object_key_count_does_not_depend_on_how_text_is_split_into_tokens(
    keys: list[int], cuts: list[int], limit: int
) -> None:
    text = "{" + ", ".join(f'"object_{k}": {{"desc": "x"}}' for k in keys) + "}"
    # Tokenise the same text into pieces of varying sizes: ids index into `pieces`.
    pieces, i, j = [], 0, 0
    while i < len(text):
        size = cuts[j % len(cuts)]
        pieces.append(text[i : i + size])
        i, j = i + size, j + 1
    rt = RepeatTerminate(RepeatTerminateParams(max_object_keys=limit), lambda t: pieces[t])
    v = rt.check(range(len(pieces)))
    assert (v is not None) == (len(keys) > limit)
    if v is not None:
        # It fires on the piece that completes key number limit + 1, not before.
        complete = re.compile(r'"object_[0-9]+"')
        assert len(complete.findall("".join(pieces[: v.position + 1]))) == limit + 1
        assert len(complete.findall("".join(pieces[: v.position]))) == limit


def test_object_keys_needs_token_texts() -> None:
    with pytest.raises(ValueError, match="max_object_keys needs the tokenizer's token texts"):
        RepeatTerminate(RepeatTerminateParams(max_object_keys=3))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (RepeatTerminateParams(min_new_tokens=-1), "min_new_tokens must be >= 0"),
        (RepeatTerminateParams(max_consecutive_token_repeats=0), "max_consecutive_token_repeats"),
        (RepeatTerminateParams(ngram_size=2), "ngram_size and ngram_repeats go together"),
        (RepeatTerminateParams(ngram_size=2, ngram_repeats=1), "ngram_repeats must be >= 2"),
    ],
)
def test_bad_rules_are_refused_with_the_key_named(
    params: RepeatTerminateParams, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RepeatTerminate(params)
