"""From the ids an engine generated to `Rollout`s: one finish-reason rule for every backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

from coordexp_backends.prompts import make_detector
from coordexp_backends.repeat_terminate import RepeatTerminate
from coordexp_backends.rollout import DecodeParams, FinishReason, Rollout, RolloutRequest, Timings

EngineAnswer: TypeAlias = tuple[list[int], list[int], str | None]
"""``(prompt ids, response ids, engine finish reason)`` of one generated request.

The engine finish reason is vLLM's (``stop``, ``length``, ``abort``, …), or None where
the engine reports none (HF ``generate``).
"""


def finish_reason(
    response_ids: Sequence[int],
    stop_ids: Sequence[int],
    max_new_tokens: int,
    detector: RepeatTerminate | None,
) -> FinishReason:
    """Finish reason of an untrimmed response, the same rule for every backend.

    ``repeat_terminated`` when the detector fires on the response (the backend then forced
    the end-of-sequence token), else ``stop`` when it ends with a stop id, else ``length``
    when it has ``max_new_tokens`` tokens, else ``error`` (the engine ended it otherwise).
    """
    if detector is not None and detector.check(response_ids) is not None:
        return "repeat_terminated"
    if response_ids and response_ids[-1] in stop_ids:
        return "stop"
    if len(response_ids) >= max_new_tokens:
        return "length"
    return "error"


def make_rollouts(
    requests: Sequence[RolloutRequest],
    answers: Sequence[EngineAnswer],
    params: DecodeParams,
    *,
    stop_ids: Sequence[int],
    tokenizer: Any,
    backend: str,
    timings: Timings,
    served_by: str | None = None,
) -> list[Rollout]:
    """One `Rollout` per request, pairing ``requests[i]`` with ``answers[i]``.

    The ids are kept exactly as given: the caller passes the prompt as the engine saw it
    and the untrimmed response (through its end-of-sequence token when there is one, no
    padding). ``response_text`` is ``tokenizer.decode(response, skip_special_tokens=False)``
    (no special-token cleanup, so text and ids agree). The finish reason is `finish_reason`
    with ``params``' repeat-terminate rules, except that an answer the engine aborted
    (engine finish reason ``abort``) is an ``error``. Deterministic: a pure function of
    its inputs.

    Args:
        requests: the requests, in the order of ``answers``.
        answers: the engine's `EngineAnswer` for each request.
        params: the decoding parameters the answers were generated with.
        stop_ids: the end-of-sequence ids.
        tokenizer: the text tokenizer that decodes responses.
        backend: the backend's name (`Rollout.backend`).
        timings: the timings of the call that produced every answer.
        served_by: the server base URL that produced them (server backend), else None.

    Raises:
        ValueError: ``requests`` and ``answers`` differ in length (names the request ids).
    """
    if len(answers) != len(requests):
        ids = [r.request_id for r in requests]
        raise ValueError(
            f"{len(answers)} engine answers for {len(requests)} requests {ids}: "
            "each request needs exactly one answer"
        )
    detector = make_detector(params, tokenizer)
    rollouts = []
    for request, (prompt, response, engine_reason) in zip(requests, answers, strict=True):
        reason = finish_reason(response, stop_ids, params.max_new_tokens, detector)
        rollouts.append(
            Rollout(
                request_id=request.request_id,
                prompt_token_ids=tuple(prompt),
                response_token_ids=tuple(response),
                response_text=tokenizer.decode(response, skip_special_tokens=False),
                finish_reason="error" if engine_reason == "abort" else reason,
                backend=backend,
                timings=timings,
                served_by=served_by,
            )
        )
    return rollouts
