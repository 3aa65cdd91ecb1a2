"""The HF backend: ``model.generate`` on the training model itself."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from coordexp_backends.errors import RolloutError
from coordexp_backends.prompts import make_detector, prompt_text, stop_token_ids, tokenizer_of
from coordexp_backends.repeat_terminate import RepeatTerminate
from coordexp_backends.responses import EngineAnswer, make_rollouts
from coordexp_backends.rollout import (
    DecodeParams,
    Rollout,
    RolloutRequest,
    Timings,
    check_decode_batch_size,
    microbatches,
    request_seed,
)


class RepeatTerminateLogits(LogitsProcessor):
    """Forces end-of-sequence in the rows whose repeat-terminate detector fired.

    One detector per row. Incremental: each call reads only the tokens generated since
    the previous call (one column per decoding step) and feeds them to the row's
    detector, so a rollout of T tokens costs O(T), not O(T^2). A row that has fired gets
    every logit but ``eos_id`` set to -inf, so its response ends ``[..., trigger, eos]``
    exactly as in the vLLM backends. One instance serves one ``generate`` call.
    """

    def __init__(self, detectors: list[RepeatTerminate], prompt_len: int, eos_id: int) -> None:
        self._detectors = detectors
        self._fed_until = prompt_len
        self._eos_id = eos_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask the rows that must stop (input_ids: (batch, prompt + generated))."""
        new = input_ids[:, self._fed_until :].tolist()
        self._fed_until = input_ids.shape[1]
        for row, (det, ids) in enumerate(zip(self._detectors, new, strict=True)):
            if det.verdict is None:
                det.feed_all(ids)
            if det.verdict is not None:
                scores[row, :] = float("-inf")
                scores[row, self._eos_id] = 0.0
        return scores


class HFBackend:
    """Rollouts with ``model.generate`` on the (training) model, no copy of the weights.

    Each call puts the model in eval mode under ``torch.no_grad``, left-pads each
    microbatch of ``decode_batch_size`` requests, generates with the KV cache, and
    restores the model's previous train/eval mode, even on error. Sampling runs on a
    forked RNG (CPU and the model's CUDA devices) seeded with the `request_seed` of the
    microbatch's first request, so the caller's RNG is untouched; the rows of a
    microbatch draw from that one stream, so HF samples depend on ``decode_batch_size``
    (vLLM's per-request seeds do not).

    Args:
        model: a transformers causal LM or Qwen-VL model whose ``generation_config``
            names the end-of-sequence id(s).
        processor: its tokenizer, or multimodal processor (needed for image requests).
        decode_batch_size: requests per ``generate`` call.
    """

    name = "hf"

    def __init__(self, model: Any, processor: Any, decode_batch_size: int) -> None:
        self.model = model
        self.processor = processor
        self.decode_batch_size = check_decode_batch_size(decode_batch_size)
        self._tokenizer = tokenizer_of(processor)
        self._stop_ids = stop_token_ids(model.generation_config)

    def generate(self, requests: Sequence[RolloutRequest], params: DecodeParams) -> list[Rollout]:
        """Roll out every request, in request order (see `RolloutBackend.generate`)."""
        was_training = self.model.training
        self.model.eval()
        try:
            out: list[Rollout] = []
            for offset, batch in microbatches(requests, self.decode_batch_size):
                out.extend(self._generate_batch(batch, params, offset))
            return out
        finally:
            self.model.train(was_training)

    def _inputs(self, batch: Sequence[RolloutRequest]) -> dict[str, torch.Tensor]:
        texts = [prompt_text(self.processor, r) for r in batch]
        images = [img for r in batch for img in r.images]
        if images and not hasattr(self.processor, "image_processor"):
            ids = [r.request_id for r in batch if r.images]
            raise RolloutError(
                f"requests {ids} carry images but the backend's processor has no image "
                "processor: pass the model's multimodal processor (AutoProcessor), not its "
                "tokenizer"
            )
        tok = self._tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        try:
            if images:
                enc = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
            else:
                enc = tok(texts, padding=True, add_special_tokens=False, return_tensors="pt")
        finally:
            tok.padding_side = side
        device = next(self.model.parameters()).device
        return {k: v.to(device) for k, v in enc.items()}

    def _generation_config(self, params: DecodeParams) -> GenerationConfig:
        pad = self._tokenizer.pad_token_id
        sampling: dict[str, Any] = {}
        if not params.greedy:
            sampling = {
                "temperature": params.temperature,
                "top_p": params.top_p,
                "top_k": params.top_k if params.top_k > 0 else None,
            }
        return GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            repetition_penalty=params.repetition_penalty,
            eos_token_id=list(self._stop_ids),
            pad_token_id=self._stop_ids[0] if pad is None else pad,
            **sampling,
        )

    def _generate_batch(
        self, batch: Sequence[RolloutRequest], params: DecodeParams, offset: int
    ) -> list[Rollout]:
        inputs = self._inputs(batch)
        prompt_len = inputs["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if params.repeat_terminate is not None:
            made = (make_detector(params, self._tokenizer) for _ in batch)
            detectors = [d for d in made if d is not None]
            processors.append(RepeatTerminateLogits(detectors, prompt_len, self._stop_ids[0]))
        seed = request_seed(params.seed, offset)
        rng = nullcontext() if seed is None else torch.random.fork_rng(devices=self._rng_devices())
        start = time.perf_counter()
        with rng, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            sequences = self.model.generate(
                **inputs,
                generation_config=self._generation_config(params),
                logits_processor=processors,
            )
        elapsed = time.perf_counter() - start
        timings = Timings(generate_s=elapsed, batch_size=len(batch))
        mask = inputs["attention_mask"].bool()
        answers: list[EngineAnswer] = []
        for row in range(len(batch)):
            prompt = inputs["input_ids"][row][mask[row]].tolist()
            response = _until_stop(sequences[row, prompt_len:].tolist(), self._stop_ids)
            answers.append((prompt, response, None))
        return make_rollouts(
            batch,
            answers,
            params,
            stop_ids=self._stop_ids,
            tokenizer=self._tokenizer,
            backend=self.name,
            timings=timings,
        )

    def _rng_devices(self) -> list[int]:
        return cuda_indices(p.device for p in self.model.parameters())

    def sync_weights(self, model: Any) -> None:
        """Adopt ``model`` (the HF backend runs on the training model: no copy is made)."""
        self.model = model

    def sleep(self) -> None:
        """No-op: the HF backend holds no memory of its own."""

    def wake_up(self) -> None:
        """No-op: the HF backend holds no memory of its own."""

    def close(self) -> None:
        """No-op: the HF backend owns nothing to release."""


def cuda_indices(devices: Iterable[torch.device]) -> list[int]:
    """Sorted indices of the CUDA devices among ``devices`` (the RNGs a seeded run forks).

    Tensor devices always carry an index; an index-less ``cuda`` device is ignored.
    """
    return sorted({d.index for d in devices if d.type == "cuda" and d.index is not None})


def _until_stop(ids: list[int], stop_ids: Sequence[int]) -> list[int]:
    """Generated ids up to and including the first stop id (what follows is padding)."""
    for i, t in enumerate(ids):
        if t in stop_ids:
            return ids[: i + 1]
    return ids
