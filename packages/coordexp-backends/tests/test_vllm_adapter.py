"""The vLLM adapter's request encoding (no vLLM needed): repeat-terminate rules on the wire."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_backends import DecodeParams, RepeatTerminateParams
from coordexp_backends.prompts import image_size_kwargs
from coordexp_backends.vllm_adapter import (
    REPEAT_TERMINATE_ARG,
    chat_body,
    completion_body,
    engine_prompt,
    parse_repeat_terminate_arg,
    repeat_terminate_arg,
)

LIMIT = st.one_of(st.none(), st.integers(1, 10_000))
RULES = st.builds(
    RepeatTerminateParams,
    min_new_tokens=st.integers(0, 10_000),
    max_consecutive_token_repeats=LIMIT,
    ngram_size=LIMIT,
    ngram_repeats=LIMIT,
    max_object_keys=LIMIT,
)


@settings(max_examples=100, deadline=None)
@given(rules=RULES, eos=st.integers(0, 200_000))
def test_the_engine_side_reads_back_exactly_the_rules_sent(
    rules: RepeatTerminateParams, eos: int
) -> None:
    raw = repeat_terminate_arg(DecodeParams(max_new_tokens=8, repeat_terminate=rules), eos)
    assert raw is not None
    assert parse_repeat_terminate_arg(raw) == (rules, eos)
    fields = {f.name for f in dataclasses.fields(RepeatTerminateParams)}
    assert set(json.loads(raw)) == fields | {"eos_id"}


def test_no_rules_send_nothing() -> None:
    params = DecodeParams(max_new_tokens=8)
    assert repeat_terminate_arg(params, 2) is None
    body = completion_body("m", [[1, 2]], params, (2,), seed=None)
    assert "vllm_xargs" not in body
    assert "seed" not in body


def test_a_completion_body_asks_for_exact_token_ids() -> None:
    rules = RepeatTerminateParams(max_consecutive_token_repeats=3)
    params = DecodeParams(max_new_tokens=8, temperature=0.5, repeat_terminate=rules)
    body = completion_body("m", [[1, 2]], params, (2, 3), seed=11)
    assert body["prompt"] == [[1, 2]]
    assert body["seed"] == 11
    assert body["return_token_ids"] is True
    assert body["skip_special_tokens"] is False
    assert body["stop_token_ids"] == [2, 3]
    assert parse_repeat_terminate_arg(body["vllm_xargs"][REPEAT_TERMINATE_ARG]) == (rules, 2)


def test_image_requests_carry_the_processors_image_size() -> None:
    """vLLM would size images by the checkpoint's config: the processor's size goes along."""
    size = {"shortest_edge": 1024, "longest_edge": 4096}
    processor = SimpleNamespace(image_processor=SimpleNamespace(size=size))
    kwargs = image_size_kwargs(processor)
    assert kwargs == {"size": size}
    assert image_size_kwargs(SimpleNamespace()) == {}  # a plain tokenizer: nothing to send
    image = object()
    prompt = engine_prompt(None, "text", [image], kwargs)
    assert prompt["mm_processor_kwargs"] == {"size": size}
    assert prompt["multi_modal_data"] == {"image": [image]}
    assert "mm_processor_kwargs" not in engine_prompt([1, 2], "", (), kwargs)
    messages = [{"role": "user", "content": "hi"}]
    body = chat_body("m", messages, (), DecodeParams(max_new_tokens=4), (2,), None, kwargs)
    assert body["mm_processor_kwargs"] == {"size": size}
