"""Every call into vLLM's version-sensitive API, in one place (vLLM >= 0.28, < 0.33).

The rest of the package talks to vLLM only through these functions (in process) and
through `ServerRoutes` (over HTTP), so a vLLM upgrade touches this module alone. vLLM is
imported inside the functions: importing this module does not import vLLM.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from coordexp_backends.responses import EngineAnswer
from coordexp_backends.rollout import DecodeParams, RepeatTerminateParams

REPEAT_TERMINATE_ARG = "coordexp_repeat_terminate"
"""``SamplingParams.extra_args`` key carrying the repeat-terminate rules (JSON) and eos id."""

LOGITS_PROCESSOR = "coordexp_backends.vllm_logits:RepeatTerminateProcessor"
"""Fully qualified name of our vLLM logits processor (engine arg / ``--logits-processors``)."""


def create_llm(model: str, engine_kwargs: Mapping[str, Any]) -> Any:
    """Start an in-process ``vllm.LLM`` with our logits processor registered."""
    from vllm import LLM

    kwargs = dict(engine_kwargs)
    kwargs["logits_processors"] = [*kwargs.get("logits_processors", ()), LOGITS_PROCESSOR]
    return LLM(model=model, **kwargs)


def sleep_mode_platform() -> tuple[bool, str]:
    """Whether vLLM's sleep mode exists on this machine's platform, and the platform name."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available()), str(current_platform.device_type)


def repeat_terminate_arg(params: DecodeParams, eos_id: int) -> str | None:
    """The JSON value of `REPEAT_TERMINATE_ARG` for ``params`` (None when it is off)."""
    rt = params.repeat_terminate
    if rt is None:
        return None
    return json.dumps({"eos_id": eos_id, **dataclasses.asdict(rt)}, sort_keys=True)


def parse_repeat_terminate_arg(raw: str) -> tuple[RepeatTerminateParams, int]:
    """The rules and eos id encoded by `repeat_terminate_arg` (its exact inverse)."""
    spec = json.loads(raw)
    eos_id = int(spec.pop("eos_id"))
    return RepeatTerminateParams(**spec), eos_id


def sampling_fields(params: DecodeParams, stop_ids: Sequence[int]) -> dict[str, Any]:
    """Sampling fields shared by ``SamplingParams`` and the OpenAI completion request."""
    fields: dict[str, Any] = {
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k if params.top_k > 0 else 0,
        "repetition_penalty": params.repetition_penalty,
        "stop_token_ids": list(stop_ids),
        "skip_special_tokens": False,
    }
    return fields


def sampling_params(params: DecodeParams, stop_ids: Sequence[int], seed: int | None) -> Any:
    """A ``vllm.SamplingParams`` for ``params`` (``seed`` is the request's own seed)."""
    from vllm import SamplingParams

    extra = repeat_terminate_arg(params, stop_ids[0])
    return SamplingParams(
        **sampling_fields(params, stop_ids),
        seed=seed,
        detokenize=False,  # backends decode the response ids themselves
        extra_args=None if extra is None else {REPEAT_TERMINATE_ARG: extra},
    )


def engine_prompt(
    prompt_ids: list[int] | None,
    text: str,
    images: Sequence[Any],
    image_kwargs: Mapping[str, Any],
) -> Any:
    """A vLLM prompt: token ids for text-only requests, text plus images for multimodal.

    ``image_kwargs`` (``prompts.image_size_kwargs``) become the request's
    ``mm_processor_kwargs``, so the engine sizes images as the backend's processor does.
    """
    if images:
        prompt = {"prompt": text, "multi_modal_data": {"image": list(images)}}
        return {**prompt, "mm_processor_kwargs": dict(image_kwargs)} if image_kwargs else prompt
    assert prompt_ids is not None
    return {"prompt_token_ids": prompt_ids}


def llm_generate(llm: Any, prompts: list[Any], sampling: list[Any]) -> list[Any]:
    """``LLM.generate`` without progress bars; returns vLLM ``RequestOutput`` objects."""
    return list(llm.generate(prompts, sampling, use_tqdm=False))


def output_fields(output: Any) -> EngineAnswer:
    """The `EngineAnswer` (prompt ids, response ids, vLLM finish reason) of a ``RequestOutput``."""
    completion = output.outputs[0]
    return list(output.prompt_token_ids), list(completion.token_ids), completion.finish_reason


def load_weights(llm: Any, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Load checkpoint-format ``(name, tensor)`` pairs into an in-process engine (CPU/GPU).

    Uses the worker's ``reload_weights`` (the engine must run its worker in this process:
    ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` or an in-process executor), then drops every cache
    computed with the old weights (see `reset_caches`).
    """
    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(list(weights))})
    reset_caches(llm)


def reset_caches(llm: Any) -> None:
    """Drop the prefix (KV), multimodal-input and encoder caches of an in-process engine.

    The worker's reload clears its own encoder cache, but the scheduler still believes the
    old vision embeddings are cached ("Encoder cache miss" on the next image request)
    unless the engine-level encoder cache is reset too.
    """
    llm.reset_prefix_cache()
    llm.reset_mm_cache()
    llm.llm_engine.reset_encoder_cache()


def reload_from_path(llm: Any, weights_path: str) -> None:
    """Reload an in-process engine's weights from a checkpoint folder, then reset caches."""
    llm.collective_rpc("reload_weights", kwargs={"weights_path": weights_path})
    reset_caches(llm)


def weight_checksums(llm: Any) -> dict[str, str]:
    """SHA-256 of every engine parameter (vLLM's names, worker-rank prefixed), in process."""
    out: dict[str, str] = {}
    for worker in llm.collective_rpc("compute_weight_checksums"):
        out.update(worker)
    return out


def tensor_checksum(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes, computed the way vLLM's weight checker does."""
    data = tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()
    return hashlib.sha256(data.tobytes()).hexdigest()


def sleep(llm: Any, level: int) -> None:
    """Put the engine to sleep (level 1: offload weights; level 2: discard them)."""
    llm.sleep(level=level)


def wake_up(llm: Any) -> None:
    """Wake a sleeping engine."""
    llm.wake_up()


def shutdown(llm: Any) -> None:
    """Shut an in-process engine down and free its memory."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None:
        core.shutdown()


@dataclass(frozen=True, slots=True)
class ServerRoutes:
    """The vLLM OpenAI-server routes the server client uses (dev-mode routes marked).

    ``pause``/``resume``/``collective_rpc``/the ``reset_*_cache`` routes/``weight_checker``
    and the weight-transfer routes (``get_world_size`` … ``finish_weight_update``) exist
    only with ``VLLM_SERVER_DEV_MODE=1`` (our ``coordexp-rollout-server`` sets it).
    """

    health: str = "/health"
    completions: str = "/v1/completions"
    chat_completions: str = "/v1/chat/completions"
    pause: str = "/pause"
    resume: str = "/resume"
    collective_rpc: str = "/collective_rpc"
    reset_prefix_cache: str = "/reset_prefix_cache"
    reset_mm_cache: str = "/reset_mm_cache"
    reset_encoder_cache: str = "/reset_encoder_cache"
    weight_checker: str = "/weight_checker"
    get_world_size: str = "/get_world_size"
    init_weight_transfer_engine: str = "/init_weight_transfer_engine"
    start_weight_update: str = "/start_weight_update"
    update_weights: str = "/update_weights"
    finish_weight_update: str = "/finish_weight_update"

    @property
    def caches(self) -> tuple[str, ...]:
        """The routes that drop caches computed with old weights (prefix, mm, encoder)."""
        return (self.reset_prefix_cache, self.reset_mm_cache, self.reset_encoder_cache)


ROUTES = ServerRoutes()


def completion_body(
    model: str,
    prompt_ids: list[list[int]],
    params: DecodeParams,
    stop_ids: Sequence[int],
    seed: int | None,
) -> dict[str, Any]:
    """A ``/v1/completions`` body for token-id prompts returning exact token ids."""
    return _request_body(model, {"prompt": prompt_ids}, params, stop_ids, seed)


def completion_choices(body: Mapping[str, Any]) -> list[EngineAnswer]:
    """One `EngineAnswer` per prompt of a ``/v1/completions`` response, in prompt order."""
    choices = sorted(body["choices"], key=lambda c: int(c["index"]))
    return [
        (list(c["prompt_token_ids"]), list(c["token_ids"]), c.get("finish_reason")) for c in choices
    ]


def chat_messages(messages: Sequence[Mapping[str, Any]], images: Sequence[Any]) -> list[Any]:
    """OpenAI chat messages: each ``{"type": "image"}`` part gets its image as a PNG data URL.

    Images are encoded losslessly (PNG), so the server sees the caller's exact pixels.
    """
    pending = iter(images)
    out: list[Any] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append(dict(message))
            continue
        parts = []
        for part in content:
            if part.get("type") == "image":
                url = _png_data_url(next(pending))
                parts.append({"type": "image_url", "image_url": {"url": url}})
            else:
                parts.append(dict(part))
        out.append({**message, "content": parts})
    return out


def _png_data_url(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_body(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    images: Sequence[Any],
    params: DecodeParams,
    stop_ids: Sequence[int],
    seed: int | None,
    image_kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """A ``/v1/chat/completions`` body (the server templates, with a generation prompt).

    ``image_kwargs`` go as ``mm_processor_kwargs``: the server sizes the images as the
    client's processor does, not by the checkpoint's preprocessor config.
    """
    inputs: dict[str, Any] = {
        "messages": chat_messages(messages, images),
        "add_generation_prompt": True,
    }
    if image_kwargs:
        inputs["mm_processor_kwargs"] = dict(image_kwargs)
    return _request_body(model, inputs, params, stop_ids, seed)


def _request_body(
    model: str,
    inputs: Mapping[str, Any],
    params: DecodeParams,
    stop_ids: Sequence[int],
    seed: int | None,
) -> dict[str, Any]:
    """An inference body: ``inputs``, sampling fields, exact token ids back, no streaming.

    ``seed`` and the repeat-terminate ``vllm_xargs`` are added when set.
    """
    body: dict[str, Any] = {
        "model": model,
        **inputs,
        **sampling_fields(params, stop_ids),
        "return_token_ids": True,
        "stream": False,
    }
    if seed is not None:
        body["seed"] = seed
    extra = repeat_terminate_arg(params, stop_ids[0])
    if extra is not None:
        body["vllm_xargs"] = {REPEAT_TERMINATE_ARG: extra}
    return body


def chat_choice(body: Mapping[str, Any]) -> EngineAnswer:
    """The `EngineAnswer` of a one-sample chat completion response."""
    choice = body["choices"][0]
    return list(body["prompt_token_ids"]), list(choice["token_ids"]), choice.get("finish_reason")


def reload_rpc_body(weights_path: str) -> dict[str, Any]:
    """``/collective_rpc`` body asking every worker to reload weights from a folder."""
    return {"method": "reload_weights", "kwargs": {"weights_path": weights_path}}


TRANSFER_BACKENDS: Mapping[str, str] = {"gloo": "coordexp_gloo", "nccl": "nccl", "ipc": "ipc"}
"""vLLM weight-transfer backend name of each native ``vllm.sync.transport``."""


def register_weight_transfer_engines() -> None:
    """Register our gloo transport in vLLM's worker and trainer factories (idempotent).

    The ``vllm.general_plugins`` entry point of this package, so every vLLM process
    (server, engine core, workers) knows ``coordexp_gloo``; the trainer calls it before
    building its side. The engine module is imported only when an engine is built.
    """
    from vllm.distributed.weight_transfer import (
        WeightTransferEngineFactory,
        WeightTransferTrainerFactory,
    )

    name, module = TRANSFER_BACKENDS["gloo"], "coordexp_backends.vllm_gloo"
    registrations = (
        (WeightTransferEngineFactory, "GlooWeightTransferEngine"),
        (WeightTransferTrainerFactory, "GlooTrainerWeightTransferEngine"),
    )
    for factory, cls in registrations:
        try:
            factory.register_engine(name, module, cls)
        except ValueError:  # registered already (plugins may load more than once)
            continue


def trainer_transfer_engine(
    transport: str,
    client: Any,
    model: torch.nn.Module,
    *,
    master_address: str,
    master_port: int,
    world_size: int,
    timeout_s: float,
) -> Any:
    """Build and rendezvous vLLM's trainer-side engine of ``transport`` for one server.

    ``client`` is a ``VLLMWeightSyncClient`` for that server; ``model``'s parameters are
    the source sent on every ``send_weights()``. ``gloo`` and ``nccl`` open a group of
    ``world_size`` ranks (this trainer rank 0, the sender) whose store listens on
    ``master_port`` and which the server reaches at ``master_address``; ``ipc`` needs no
    rendezvous (the server shares this process's GPU).
    """
    from vllm.distributed.weight_transfer import WeightTransferTrainerFactory

    info: Any
    if transport == "gloo":
        from coordexp_backends.vllm_gloo import GlooTrainerInitInfo

        register_weight_transfer_engines()
        info = GlooTrainerInitInfo(
            master_address=master_address,
            master_port=master_port,
            world_size=world_size,
            timeout_s=timeout_s,
            rank=0,
        )
    elif transport == "nccl":
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        info = NCCLTrainerInitInfo(
            master_address=master_address, master_port=master_port, world_size=world_size, rank=0
        )
    elif transport == "ipc":
        from vllm.distributed.weight_transfer.ipc_engine import IPCTrainerInitInfo

        info = IPCTrainerInitInfo(rank=0)
    else:
        raise ValueError(f"unknown weight transfer {transport!r}; expected one of gloo, nccl, ipc")
    return WeightTransferTrainerFactory.trainer_init(
        info, client=client, source=weight_source(model)
    )


def weight_source(model: torch.nn.Module) -> Any:
    """A vLLM ``WeightSource`` over ``model``'s parameters (checkpoint names)."""
    from vllm.distributed.weight_transfer import ModuleSource

    return ModuleSource(model)
