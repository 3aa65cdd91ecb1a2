"""`RepeatTerminate` as a vLLM (V1) logits processor; loaded by vLLM by qualified name.

Importing this module imports vLLM: only engines load it (``logits_processors=[...]`` or
``--logits-processors coordexp_backends.vllm_logits:RepeatTerminateProcessor``). A request
opts in through ``SamplingParams.extra_args`` (see `vllm_adapter.repeat_terminate_arg`);
when its detector fires, every logit but the eos id is set to -inf, as in the HF backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from coordexp_backends.prompts import token_text_fn
from coordexp_backends.repeat_terminate import RepeatTerminate
from coordexp_backends.vllm_adapter import REPEAT_TERMINATE_ARG, parse_repeat_terminate_arg


class _RequestStop:
    """Per-request state: a detector fed the request's output ids as they grow."""

    def __init__(self, detector: RepeatTerminate, eos_id: int) -> None:
        self._detector = detector
        self._eos_id = eos_id

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        det = self._detector
        if det.verdict is None:
            det.feed_all(output_ids[det.tokens_seen :])
        if det.verdict is not None:
            logits.fill_(float("-inf"))
            logits[self._eos_id] = 0.0
        return logits


class RepeatTerminateProcessor(AdapterLogitsProcessor):  # type: ignore[misc]
    """vLLM logits processor applying each request's repeat-terminate rules."""

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        super().__init__(vllm_config, device, is_pin_memory)
        self._tokenizer_name = vllm_config.model_config.tokenizer
        self._token_text: Callable[[int], str] | None = None

    def is_argmax_invariant(self) -> bool:
        """False: forcing eos changes the argmax."""
        return False

    def new_req_logits_processor(self, params: Any) -> _RequestStop | None:
        """A per-request processor when the request carries repeat-terminate rules."""
        raw = (params.extra_args or {}).get(REPEAT_TERMINATE_ARG)
        if raw is None:
            return None
        rules, eos_id = parse_repeat_terminate_arg(raw)
        text = self._text_fn() if rules.max_object_keys is not None else None
        return _RequestStop(RepeatTerminate(rules, text), eos_id)

    def _text_fn(self) -> Callable[[int], str]:
        if self._token_text is None:
            from transformers import AutoTokenizer

            self._token_text = token_text_fn(AutoTokenizer.from_pretrained(self._tokenizer_name))
        return self._token_text
