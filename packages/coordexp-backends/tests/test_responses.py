"""`make_rollouts`: exact ids, raw decode, and the finish-reason rule every backend shares."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_backends import DecodeParams, RepeatTerminateParams, RolloutRequest, Timings
from coordexp_backends.responses import EngineAnswer, make_rollouts

TIMINGS = Timings(generate_s=0.5, batch_size=1)
MAX_NEW = 6


def one(
    tokenizer: Any,
    response: list[int],
    engine_reason: str | None,
    params: DecodeParams | None = None,
) -> Any:
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    answer: EngineAnswer = ([1, 2, 3], response, engine_reason)
    [rollout] = make_rollouts(
        [RolloutRequest("r0", [{"role": "user", "content": "hi"}])],
        [answer],
        params or DecodeParams(max_new_tokens=MAX_NEW),
        stop_ids=(eos,),
        tokenizer=tokenizer,
        backend="vllm-server",
        timings=TIMINGS,
        served_by="http://127.0.0.1:1",
    )
    return rollout


@settings(max_examples=40, deadline=None)
@given(
    body=st.lists(st.integers(30, 300), max_size=MAX_NEW),
    ends_with_eos=st.booleans(),
    engine_reason=st.sampled_from([None, "stop", "length"]),
)
def test_ids_are_exact_text_is_the_raw_decode_and_the_reason_follows_the_ids(
    tokenizer: Any, body: list[int], ends_with_eos: bool, engine_reason: str | None
) -> None:
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    response = [*body, eos] if ends_with_eos else body
    rollout = one(tokenizer, response, engine_reason)
    assert rollout.request_id == "r0"
    assert rollout.prompt_token_ids == (1, 2, 3)
    assert rollout.response_token_ids == tuple(response)
    assert rollout.response_text == tokenizer.decode(response, skip_special_tokens=False)
    assert rollout.response_text.endswith("<|im_end|>") == ends_with_eos
    expected = "stop" if ends_with_eos else "length" if len(body) >= MAX_NEW else "error"
    assert rollout.finish_reason == expected
    assert (rollout.backend, rollout.served_by, rollout.timings) == (
        "vllm-server",
        "http://127.0.0.1:1",
        TIMINGS,
    )


def test_an_aborted_answer_is_an_error_whatever_its_ids(tokenizer: Any) -> None:
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert one(tokenizer, [40, 41, eos], "stop").finish_reason == "stop"
    assert one(tokenizer, [40, 41, eos], "abort").finish_reason == "error"


def test_a_fired_repeat_rule_is_repeat_terminated_unless_aborted(tokenizer: Any) -> None:
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rules = RepeatTerminateParams(max_consecutive_token_repeats=2)
    params = DecodeParams(max_new_tokens=MAX_NEW, repeat_terminate=rules)
    assert one(tokenizer, [40, 40, 40, eos], "stop", params).finish_reason == "repeat_terminated"
    assert one(tokenizer, [40, 41, 40, eos], "stop", params).finish_reason == "stop"
    assert one(tokenizer, [40, 40, 40, eos], "abort", params).finish_reason == "error"


def test_requests_and_answers_must_pair_up(tokenizer: Any) -> None:
    with pytest.raises(ValueError, match=r"1 engine answers for 2 requests \['r0', 'r1'\]"):
        make_rollouts(
            [RolloutRequest("r0", []), RolloutRequest("r1", [])],
            [([1], [2], None)],
            DecodeParams(max_new_tokens=MAX_NEW),
            stop_ids=(0,),
            tokenizer=tokenizer,
            backend="hf",
            timings=TIMINGS,
        )
