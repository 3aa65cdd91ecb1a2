"""The vLLM colocate backend: an in-process vLLM engine fed the training model's weights."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from coordexp_backends import vllm_adapter as adapter
from coordexp_backends import vllm_lora
from coordexp_backends.errors import RolloutError
from coordexp_backends.prompts import (
    checkpoint_stop_ids,
    encode_text,
    image_size_kwargs,
    prompt_text,
    tokenizer_of,
)
from coordexp_backends.responses import make_rollouts
from coordexp_backends.rollout import (
    DecodeParams,
    Rollout,
    RolloutRequest,
    Timings,
    check_decode_batch_size,
    microbatches,
    request_seed,
)
from coordexp_backends.weights import (
    SyncDecision,
    SyncLog,
    SyncPlan,
    base_weights,
    named_weights,
)


class VLLMColocateBackend:
    """Rollouts from a vLLM engine living in the training process (one per rank or TP group).

    The engine starts from the checkpoint folder ``model_path`` (the same weights as the
    training model, or as a PEFT model's base model). `sync_weights` takes the path
    ``sync`` decides (logged when it changes): full weights (a PEFT model's merged) are
    loaded through the worker's in-place ``reload_weights`` (the path that works on CPU
    and GPU alike in process); an adapter is saved to a fresh folder under
    ``adapter_dir`` and loaded as a new vLLM LoRA, which every later `generate` uses
    until the next sync. An adapter that vLLM refuses falls back to full weights when
    ``sync.fallback_to_full``. Before an adapter sync that follows a full one, the
    engine gets the PEFT model's base weights back. ``sleep``/``wake_up`` release and
    re-acquire engine memory when ``sleep_level`` > 0; after a level-2 sleep the last
    synced weights are reloaded.

    Args:
        model_path: checkpoint folder (config, weights, tokenizer, generation config).
        processor: tokenizer or multimodal processor used to template requests.
        decode_batch_size: requests per engine call.
        engine_kwargs: ``vllm.LLM`` keyword arguments (dtype, gpu_memory_utilization, …).
        sleep_level: 0 (never sleep), 1 or 2 (needs a platform with vLLM sleep mode).
        sync: how `sync_weights` treats adapters (see `SyncPlan`).
        adapter_dir: where synced adapters are saved (a temporary folder when None).

    Raises:
        RolloutError: ``sleep_level`` > 0 on a platform without sleep mode (CPU).
    """

    name = "vllm-colocate"

    def __init__(
        self,
        model_path: str,
        processor: Any,
        decode_batch_size: int,
        engine_kwargs: Mapping[str, Any],
        sleep_level: int = 0,
        sync: SyncPlan | None = None,
        adapter_dir: str | Path | None = None,
    ) -> None:
        self.processor = processor
        self.decode_batch_size = check_decode_batch_size(decode_batch_size)
        self.sleep_level = sleep_level
        self.sync = sync or SyncPlan()
        if sleep_level > 0:
            available, platform = adapter.sleep_mode_platform()
            if not available:
                raise RolloutError(
                    f"rollout_matching.vllm.sleep_level={sleep_level} needs vLLM's sleep mode, "
                    f"which the {platform!r} platform does not have: set sleep_level: 0"
                )
        self._tokenizer = tokenizer_of(processor)
        self._stop_ids = checkpoint_stop_ids(model_path)
        self._model_path = model_path
        self._last_model: Any = None
        self.llm = adapter.create_llm(
            model_path, {**engine_kwargs, "enable_sleep_mode": sleep_level > 0}
        )
        self._engine_lora = vllm_lora.engine_lora(self.llm)
        self._adapters = vllm_lora.AdapterVersions(adapter_dir)
        self._lora: Any = None  # the LoRARequest of the synced adapter, if any
        self._holds_base = True  # engine weights are the (PEFT base) checkpoint's
        self._log = SyncLog(self.name)

    def generate(self, requests: Sequence[RolloutRequest], params: DecodeParams) -> list[Rollout]:
        """Roll out every request, in request order (see `RolloutBackend.generate`)."""
        out: list[Rollout] = []
        for offset, batch in microbatches(requests, self.decode_batch_size):
            out.extend(self._generate_batch(batch, params, offset))
        return out

    def _generate_batch(
        self, batch: Sequence[RolloutRequest], params: DecodeParams, offset: int
    ) -> list[Rollout]:
        prompts = []
        image_kwargs = image_size_kwargs(self.processor)
        for r in batch:
            text = prompt_text(self.processor, r)
            ids = None if r.images else encode_text(self.processor, text)
            prompts.append(adapter.engine_prompt(ids, text, r.images, image_kwargs))
        sampling = [
            adapter.sampling_params(params, self._stop_ids, request_seed(params.seed, offset + i))
            for i in range(len(batch))
        ]
        start = time.perf_counter()
        if self._lora is None:
            outputs = adapter.llm_generate(self.llm, prompts, sampling)
        else:
            outputs = vllm_lora.llm_generate(self.llm, prompts, sampling, self._lora)
        timings = Timings(generate_s=time.perf_counter() - start, batch_size=len(batch))
        return make_rollouts(
            batch,
            [adapter.output_fields(output) for output in outputs],
            params,
            stop_ids=self._stop_ids,
            tokenizer=self._tokenizer,
            backend=self.name,
            timings=timings,
        )

    def sync_weights(self, model: Any) -> None:
        """Make the next rollouts come from ``model``: its adapter or its full weights.

        Raises:
            RolloutError: the adapter cannot be synced and ``sync.fallback_to_full`` is
                false (the message names ``rollout_matching.vllm.sync.mode``).
        """
        decision = self.sync.decide(model, self._engine_lora)
        if decision.path == "adapter":
            try:
                self._sync_adapter(model)
            except RolloutError as exc:
                if not self.sync.fallback_to_full:
                    raise RolloutError(
                        f"rollout_matching.vllm.sync.mode={self.sync.mode}: {exc}; set "
                        "rollout_matching.vllm.sync.fallback_to_full: true to send merged "
                        "full weights instead"
                    ) from exc
                what = "fell back to full weights (fallback_to_full)"
                decision = SyncDecision("full", f"sync.mode={self.sync.mode} {what}: {exc}")
        if decision.path == "full":
            self._sync_full(model)
        self._log.record(decision)
        self._last_model = model

    def _sync_adapter(self, model: Any) -> None:
        if not self._holds_base:
            adapter.load_weights(self.llm, base_weights(model))
            self._holds_base = True
        version, folder = self._adapters.publish(model)
        request = vllm_lora.add_adapter(self.llm, version, folder)
        self._drop_adapter()
        self._lora = request

    def _sync_full(self, model: Any) -> None:
        adapter.load_weights(self.llm, named_weights(model))
        self._holds_base = False
        self._drop_adapter()

    def _drop_adapter(self) -> None:
        if self._lora is not None:
            vllm_lora.remove_adapter(self.llm, self._lora)
            self._lora = None

    def weight_checksums(self) -> dict[str, str]:
        """SHA-256 of every engine parameter, read back from the engine."""
        return adapter.weight_checksums(self.llm)

    def sleep(self) -> None:
        """Release engine memory (no-op when ``sleep_level`` is 0)."""
        if self.sleep_level > 0:
            adapter.sleep(self.llm, self.sleep_level)

    def wake_up(self) -> None:
        """Re-acquire engine memory; after a level-2 sleep, reload the last synced weights."""
        if self.sleep_level == 0:
            return
        adapter.wake_up(self.llm)
        if self.sleep_level == 2:
            if self._last_model is None:
                adapter.reload_from_path(self.llm, self._model_path)
            elif self._lora is not None:  # the adapter sits on the base weights
                adapter.load_weights(self.llm, base_weights(self._last_model))
            else:
                adapter.load_weights(self.llm, named_weights(self._last_model))

    def close(self) -> None:
        """Shut the engine down and remove the saved adapters."""
        adapter.shutdown(self.llm)
        self._adapters.close()
