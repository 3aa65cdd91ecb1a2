"""The HF backend on a tiny random Qwen3: fields, padding, modes, microbatching, finish reasons."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
import torch

from coordexp_backends import (
    DecodeParams,
    HFBackend,
    RepeatTerminateParams,
    RolloutBackend,
    RolloutError,
    RolloutRequest,
)
from coordexp_backends.hf import cuda_indices
from coordexp_backends.prompts import text_prompt_ids

GREEDY = DecodeParams(max_new_tokens=12)


def greedy_loop(model: Any, prompt: list[int], steps: int, stop: int) -> list[int]:
    """Reference: argmax one token at a time with full forwards, no cache, no padding."""
    ids = list(prompt)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(torch.tensor([ids])).logits[0, -1]
            t = int(logits.argmax())
            out.append(t)
            ids.append(t)
            if t == stop:
                break
    return out


def test_hf_backend_satisfies_the_protocol(model: Any, tokenizer: Any) -> None:
    assert isinstance(HFBackend(model, tokenizer, 2), RolloutBackend)


def test_rollouts_come_back_in_request_order_with_every_field(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    reqs = tiny.requests(5)
    out = HFBackend(model, tokenizer, 2).generate(reqs, GREEDY)
    assert [r.request_id for r in out] == [r.request_id for r in reqs]
    for req, r in zip(reqs, out, strict=True):
        assert list(r.prompt_token_ids) == text_prompt_ids(tokenizer, req)
        assert r.backend == "hf"
        assert r.response_text == tokenizer.decode(r.response_token_ids, skip_special_tokens=False)
        assert r.finish_reason in ("stop", "length")
        assert r.served_by is None


def test_response_ids_are_the_exact_untrimmed_greedy_continuation(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for r in HFBackend(model, tokenizer, 3).generate(tiny.requests(3), GREEDY):
        expected = greedy_loop(model, list(r.prompt_token_ids), GREEDY.max_new_tokens, im_end)
        assert list(r.response_token_ids) == expected


def test_left_padded_batches_match_one_request_at_a_time(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    reqs = tiny.requests(6, seed=1)
    lengths = {len(text_prompt_ids(tokenizer, r)) for r in reqs}
    assert len(lengths) > 1  # the batch really needs padding
    batched = HFBackend(model, tokenizer, 6).generate(reqs, GREEDY)
    single = HFBackend(model, tokenizer, 1).generate(reqs, GREEDY)
    assert [r.payload() for r in batched] == [r.payload() for r in single]


def test_decode_batch_size_is_the_microbatch(model: Any, tokenizer: Any, tiny: ModuleType) -> None:
    prefill_batches: list[int] = []

    def record(_module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:  # prefill, not a cached decode step
            prefill_batches.append(ids.shape[0])

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        out = HFBackend(model, tokenizer, 2).generate(tiny.requests(5), GREEDY)
    finally:
        handle.remove()
    assert prefill_batches == [2, 2, 1]
    assert [r.timings.batch_size for r in out] == [2, 2, 2, 2, 1]


def test_model_runs_in_eval_mode_without_grad_and_its_mode_is_restored(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    seen: list[tuple[bool, bool]] = []
    handle = model.register_forward_pre_hook(
        lambda m, _args: seen.append((m.training, torch.is_grad_enabled()))
    )
    try:
        model.train()
        HFBackend(model, tokenizer, 2).generate(tiny.requests(2), GREEDY)
        assert model.training
        model.eval()
        HFBackend(model, tokenizer, 2).generate(tiny.requests(2), GREEDY)
        assert not model.training
    finally:
        handle.remove()
    assert seen
    assert set(seen) == {(False, False)}


def test_train_mode_is_restored_when_generation_fails(model: Any, tokenizer: Any) -> None:
    model.train()
    bad = RolloutRequest("bad", [{"role": "user", "content": "x"}], images=("not an image",))
    with pytest.raises(
        RolloutError, match=r"requests \['bad'\] carry images .* no image processor"
    ):
        HFBackend(model, tokenizer, 1).generate([bad], GREEDY)
    assert model.training


def test_finish_reason_length_when_max_new_tokens_is_reached(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    out = HFBackend(model, tokenizer, 2).generate(tiny.requests(2), DecodeParams(max_new_tokens=5))
    assert [len(r.response_token_ids) for r in out] == [5, 5]
    assert {r.finish_reason for r in out} == {"length"}


def test_finish_reason_stop_keeps_the_stop_token(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    req = tiny.requests(1)
    first = HFBackend(model, tokenizer, 1).generate(req, GREEDY)[0].response_token_ids
    stop = first[3]
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"), stop]
    r = HFBackend(model, tokenizer, 1).generate(req, GREEDY)[0]
    cut = first.index(stop)
    assert r.response_token_ids == first[: cut + 1]
    assert r.finish_reason == "stop"


def test_repeat_terminate_forces_eos_right_after_the_trigger(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    rules = RepeatTerminateParams(max_consecutive_token_repeats=2, ngram_size=2, ngram_repeats=3)
    reqs = tiny.requests(6)
    plain = HFBackend(model, tokenizer, 3).generate(reqs, DecodeParams(max_new_tokens=16))
    cut = HFBackend(model, tokenizer, 3).generate(
        reqs, DecodeParams(max_new_tokens=16, repeat_terminate=rules)
    )
    from coordexp_backends import RepeatTerminate

    detector = RepeatTerminate(rules)
    fired = 0
    for p, c in zip(plain, cut, strict=True):
        verdict = detector.check(p.response_token_ids)
        if verdict is None:
            assert c.payload() == p.payload()
        else:
            fired += 1
            assert c.response_token_ids == (*p.response_token_ids[: verdict.position + 1], im_end)
            assert c.finish_reason == "repeat_terminated"
    assert fired >= 1  # the random model does repeat itself


def test_sampling_is_seeded_and_leaves_the_callers_rng_alone(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    params = DecodeParams(max_new_tokens=10, temperature=1.0, top_k=50, seed=3)
    backend = HFBackend(model, tokenizer, 2)
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a = backend.generate(tiny.requests(4), params)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = backend.generate(tiny.requests(4), params)
    other = backend.generate(
        tiny.requests(4), DecodeParams(max_new_tokens=10, temperature=1.0, seed=4)
    )
    assert [r.payload() for r in a] == [r.payload() for r in b]
    assert [r.response_token_ids for r in a] != [r.response_token_ids for r in other]


def test_sync_weights_makes_the_next_rollouts_come_from_the_new_model(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    other = tiny.build_model(tokenizer, seed=1)
    backend = HFBackend(model, tokenizer, 2)
    before = backend.generate(tiny.requests(3), GREEDY)
    backend.sync_weights(other)
    after = backend.generate(tiny.requests(3), GREEDY)
    expected = HFBackend(other, tokenizer, 2).generate(tiny.requests(3), GREEDY)
    assert [r.payload() for r in after] == [r.payload() for r in expected]
    assert [r.response_token_ids for r in after] != [r.response_token_ids for r in before]


def test_decode_batch_size_must_be_positive(model: Any, tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="decode_batch_size must be >= 1, got 0"):
        HFBackend(model, tokenizer, 0)


def test_a_model_without_eos_is_refused_with_guidance(model: Any, tokenizer: Any) -> None:
    model.generation_config.eos_token_id = None
    with pytest.raises(ValueError, match="no eos_token_id"):
        HFBackend(model, tokenizer, 1)


def test_identical_prompts_in_one_microbatch_sample_differently(
    model: Any, tokenizer: Any, tiny: ModuleType
) -> None:
    params = DecodeParams(max_new_tokens=10, temperature=1.0, seed=5)
    same = [RolloutRequest(f"r{i}", tiny.requests(1)[0].messages) for i in range(4)]
    out = HFBackend(model, tokenizer, 4).generate(same, params)
    assert len({r.response_token_ids for r in out}) > 1


def test_seeded_sampling_forks_only_the_models_devices(
    model: Any, tokenizer: Any, tiny: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = torch.random.fork_rng
    forks: list[dict[str, Any]] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        forks.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.random, "fork_rng", recording)
    params = DecodeParams(max_new_tokens=4, temperature=1.0, seed=1)
    HFBackend(model, tokenizer, 2).generate(tiny.requests(3), params)
    assert forks == [{"devices": []}, {"devices": []}]  # CPU model: no CUDA RNG to fork


def test_cuda_indices_are_the_distinct_cuda_devices() -> None:
    devices = [torch.device("cuda", 1), torch.device("cpu"), torch.device("cuda", 0)]
    assert cuda_indices([*devices, torch.device("cuda", 1)]) == [0, 1]
    assert cuda_indices([torch.device("cpu"), torch.device("meta")]) == []
