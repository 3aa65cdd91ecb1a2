"""The one factory: the normalised ``rollout_matching`` section in, a `RolloutBackend` out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordexp_backends.errors import RolloutError
from coordexp_backends.hf import HFBackend
from coordexp_backends.prompts import checkpoint_stop_ids, stop_token_ids
from coordexp_backends.protocol import RolloutBackend
from coordexp_backends.rollout import DecodeParams, RepeatTerminateParams
from coordexp_backends.weights import SyncPlan
from coordexp_schema import RepeatTerminateConfig, RolloutMatchingConfig


def decode_params(cfg: RolloutMatchingConfig, seed: int | None = None) -> DecodeParams:
    """Decoding parameters of the normalised ``rollout_matching`` section.

    Args:
        cfg: the section (already validated by coordexp-schema).
        seed: the seed to use when ``decoding.seed`` is null (the trainer passes
            ``training.seed`` combined with the global step).

    Raises:
        RolloutError: ``decode_mode: beam`` (no backend implements beam search yet).
    """
    if cfg.decode_mode == "beam":
        raise RolloutError(
            "rollout_matching.decode_mode=beam is not supported by the rollout backends; "
            "use greedy or sample"
        )
    d = cfg.decoding
    return DecodeParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=0.0 if cfg.decode_mode == "greedy" else d.temperature,
        top_p=d.top_p,
        top_k=d.top_k,
        repetition_penalty=cfg.repetition_penalty,
        seed=d.seed if d.seed is not None else seed,
        repeat_terminate=repeat_terminate_params(cfg.repeat_terminate),
    )


def repeat_terminate_params(cfg: RepeatTerminateConfig) -> RepeatTerminateParams | None:
    """The detector rules of ``rollout_matching.repeat_terminate`` (None when disabled)."""
    if not cfg.enabled:
        return None
    return RepeatTerminateParams(
        min_new_tokens=cfg.min_new_tokens,
        max_consecutive_token_repeats=cfg.max_consecutive_token_repeats,
        ngram_size=cfg.ngram_size,
        ngram_repeats=cfg.ngram_repeats,
        max_object_keys=cfg.max_object_keys,
    )


def create_backend(
    rollout_cfg: RolloutMatchingConfig,
    *,
    processor: Any,
    model: Any = None,
    model_path: str | Path | None = None,
    engine_kwargs: Mapping[str, Any] | None = None,
    weights_dir: str | Path | None = None,
    max_retries: int = 2,
) -> RolloutBackend:
    """Build the backend named by ``rollout_backend`` and ``vllm.mode``.

    Args:
        rollout_cfg: the normalised ``rollout_matching`` section.
        processor: tokenizer or multimodal processor of the model (every backend).
        model: the training model (``hf``; ``vllm`` colocate runs its engine in the
            model's dtype; ``vllm`` server reads its eos ids from it).
        model_path: checkpoint folder the engine starts from (``vllm`` colocate; server:
            where eos ids are read when ``model`` is not given).
        engine_kwargs: extra ``vllm.LLM`` arguments for colocate (dtype, executor, seed),
            applied over the ones derived from ``rollout_matching.vllm`` and ``model``.
        weights_dir: folder the servers read synced weights from (``vllm`` server with
            ``vllm.sync.transport: checkpoint``); colocate keeps synced LoRA adapters
            under ``<weights_dir>/lora`` (a temporary folder without it).
        max_retries: other servers a failed chunk may be retried on (``vllm`` server).

    Raises:
        ValueError: a runtime argument the chosen backend needs is missing.
    """
    size = rollout_cfg.decode_batch_size
    if rollout_cfg.rollout_backend == "hf":
        if model is None:
            raise ValueError(
                "rollout_matching.rollout_backend=hf needs model= (the training model)"
            )
        return HFBackend(model, processor, size)
    v = rollout_cfg.vllm
    sync = SyncPlan(mode=v.sync.mode, fallback_to_full=v.sync.fallback_to_full)
    if v.mode == "colocate":
        from coordexp_backends.vllm_colocate import VLLMColocateBackend

        if model_path is None:
            raise ValueError(
                "rollout_matching.vllm.mode=colocate needs model_path= (a checkpoint folder "
                "holding the training model's current weights)"
            )
        kwargs: dict[str, Any] = {
            "tensor_parallel_size": v.tensor_parallel_size,
            "gpu_memory_utilization": v.gpu_memory_utilization,
            "enable_lora": v.enable_lora,
            "enable_prefix_caching": v.enable_prefix_caching,
            "enforce_eager": v.enforce_eager,
        }
        optional = {
            "max_model_len": v.max_model_len,
            "max_num_seqs": v.max_num_seqs,
            "max_num_batched_tokens": v.max_num_batched_tokens,
        }
        kwargs.update({k: val for k, val in optional.items() if val is not None})
        if model is not None:
            # vLLM's "auto" would run a float32 checkpoint in bfloat16 or float16.
            kwargs["dtype"] = str(model.dtype).removeprefix("torch.")
        kwargs.update(engine_kwargs or {})
        adapter_dir = None if weights_dir is None else Path(weights_dir) / "lora"
        return VLLMColocateBackend(
            str(model_path), processor, size, kwargs, v.sleep_level, sync, adapter_dir=adapter_dir
        )
    from coordexp_backends.vllm_server import VLLMServerBackend

    if model is not None:
        stops = stop_token_ids(model.generation_config)
    elif model_path is not None:
        stops = checkpoint_stop_ids(model_path)
    else:
        raise ValueError(
            "rollout_matching.vllm.mode=server needs model= or model_path= (for the eos ids)"
        )
    return VLLMServerBackend(
        [s.base_url for s in v.server.servers],
        processor,
        size,
        stops,
        timeout_s=v.server.timeout_s,
        infer_timeout_s=v.server.infer_timeout_s,
        max_in_flight=v.server.max_in_flight,
        max_retries=max_retries,
        weights_dir=weights_dir,
        sync=sync,
        transport=v.sync.transport,
        group_ports=[s.group_port for s in v.server.servers],
        trainer_host=v.sync.trainer_host,
    )
