"""What a backend is asked (`RolloutRequest`, `DecodeParams`) and what it answers (`Rollout`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

FinishReason: TypeAlias = Literal["stop", "length", "repeat_terminated", "error"]
FINISH_REASONS: tuple[FinishReason, ...] = ("stop", "length", "repeat_terminated", "error")


@dataclass(frozen=True, slots=True)
class RolloutRequest:
    """One chat sample to roll out.

    Backends template the messages themselves, with the processor's chat template and a
    generation prompt (``add_generation_prompt=True``), so every backend sees the same
    prompt token ids. Images are passed separately, in the order their ``{"type":
    "image"}`` parts appear in ``messages``.

    Attributes:
        request_id: caller's id; returned unchanged in the rollout and named in errors.
        messages: chat messages (``{"role": ..., "content": str | list of parts}``).
        images: PIL images for the image parts, in order (empty for text-only samples).
    """

    request_id: str
    messages: Sequence[Mapping[str, Any]]
    images: Sequence[Any] = ()


@dataclass(frozen=True, slots=True)
class RepeatTerminateParams:
    """The repeat-terminate rules (see `RepeatTerminate`); a None rule is off."""

    min_new_tokens: int = 0
    max_consecutive_token_repeats: int | None = None
    ngram_size: int | None = None
    ngram_repeats: int | None = None
    max_object_keys: int | None = None


@dataclass(frozen=True, slots=True)
class DecodeParams:
    """Decoding parameters, identical in meaning for every backend.

    Attributes:
        max_new_tokens: response length cap (finish reason ``length`` when reached).
        temperature: 0 means greedy (argmax); > 0 samples.
        top_p: nucleus mass in (0, 1]; 1 is off.
        top_k: number of candidates; -1 (or 0) is off.
        repetition_penalty: 1.0 is off; applied to prompt and response tokens.
        seed: base seed for sampling; None leaves sampling unseeded. Greedy ignores it.
            Every backend derives the seed of each request from it with `request_seed`.
        repeat_terminate: rules that end a degenerate rollout early, or None.
    """

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1
    repetition_penalty: float = 1.0
    seed: int | None = None
    repeat_terminate: RepeatTerminateParams | None = None

    @property
    def greedy(self) -> bool:
        """Whether decoding is argmax (temperature 0)."""
        return self.temperature == 0.0


@dataclass(frozen=True, slots=True)
class Timings:
    """Wall-clock timings of the engine call that produced a rollout.

    Attributes:
        generate_s: seconds of the microbatch (HF, colocate) or HTTP request (server)
            that produced this rollout, shared by every rollout of that call.
        batch_size: number of requests in that call.
    """

    generate_s: float
    batch_size: int


@dataclass(frozen=True, slots=True)
class Rollout:
    """One rollout, with the same meaning for every backend.

    Attributes:
        request_id: the request's id.
        prompt_token_ids: the templated prompt as the engine saw it (image placeholders
            expanded for multimodal prompts).
        response_token_ids: every generated token, exactly as generated: untrimmed, with
            the final end-of-sequence token when there is one, no padding.
        response_text: ``tokenizer.decode(response_token_ids, skip_special_tokens=False)``.
        finish_reason: ``stop`` (an end-of-sequence token), ``length`` (``max_new_tokens``
            reached), ``repeat_terminated`` (a repeat-terminate rule fired and the
            backend forced end-of-sequence) or ``error`` (the engine aborted it).
        backend: ``hf``, ``vllm-colocate`` or ``vllm-server``.
        timings: wall-clock timings of the call that produced it.
        served_by: the server base URL that produced it (server backend), else None.
    """

    request_id: str
    prompt_token_ids: tuple[int, ...]
    response_token_ids: tuple[int, ...]
    response_text: str
    finish_reason: FinishReason
    backend: str
    timings: Timings = field(compare=False)
    served_by: str | None = field(default=None, compare=False)

    def payload(self) -> dict[str, Any]:
        """The fields downstream parsing and matching use, identical across backends."""
        return {
            "request_id": self.request_id,
            "prompt_token_ids": list(self.prompt_token_ids),
            "response_token_ids": list(self.response_token_ids),
            "response_text": self.response_text,
            "finish_reason": self.finish_reason,
        }


def microbatches(
    requests: Sequence[RolloutRequest], size: int
) -> list[tuple[int, list[RolloutRequest]]]:
    """Split ``requests`` into contiguous runs of ``size``: ``(offset of the run, run)``.

    Raises:
        ValueError: ``size`` < 1 (``rollout_matching.decode_batch_size``).
    """
    check_decode_batch_size(size)
    return [(i, list(requests[i : i + size])) for i in range(0, len(requests), size)]


def check_decode_batch_size(size: int) -> int:
    """Return ``size`` if it is a valid ``decode_batch_size`` (>= 1), else raise ValueError."""
    if size < 1:
        raise ValueError(f"decode_batch_size must be >= 1, got {size}")
    return size


_MASK63 = (1 << 63) - 1


def request_seed(base_seed: int | None, request_index: int) -> int | None:
    """The sampling seed of the request at ``request_index`` of one `generate` call.

    The one seeding rule of every backend: vLLM colocate and server give each request its
    own seed (so identical prompts in one call sample differently, and the two backends
    sample identically); HF seeds each microbatch with the seed of its first request.
    The seed is ``mix(mix(base_seed) + request_index)`` where ``mix`` is SplitMix64's
    finaliser taken modulo 2**63, a bijection: deterministic (no process hash), distinct
    indices of one call always get distinct seeds, and consecutive base seeds (a trainer
    passing ``seed + step``) do not reuse each other's request seeds.

    Args:
        base_seed: `DecodeParams.seed`; None means unseeded.
        request_index: 0-based position of the request in the ``generate`` call.

    Returns:
        A seed in ``[0, 2**63)``, or None when ``base_seed`` is None.

    Raises:
        ValueError: ``request_index`` < 0.
    """
    if request_index < 0:
        raise ValueError(f"request_index must be >= 0, got {request_index}")
    if base_seed is None:
        return None
    return _mix63((_mix63(base_seed & _MASK63) + request_index) & _MASK63)


def _mix63(x: int) -> int:
    """SplitMix64's finaliser modulo 2**63: each step, hence the whole, is a bijection."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK63
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK63
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK63
    return x ^ (x >> 31)
