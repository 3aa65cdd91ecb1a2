"""Chat templating and token bookkeeping shared by every backend.

All backends template a request the same way: the processor's chat template with a
generation prompt, so the prompt token ids are identical whichever engine runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from coordexp_backends.repeat_terminate import RepeatTerminate
from coordexp_backends.rollout import DecodeParams, RolloutRequest


def tokenizer_of(processor: Any) -> Any:
    """The text tokenizer of a processor (a multimodal processor's ``.tokenizer``) or itself."""
    return getattr(processor, "tokenizer", processor)


def prompt_text(processor: Any, request: RolloutRequest) -> str:
    """Template ``request.messages`` with the chat template and a generation prompt."""
    text = processor.apply_chat_template(
        list(request.messages), tokenize=False, add_generation_prompt=True
    )
    if not isinstance(text, str):
        raise TypeError(
            f"request {request.request_id!r}: the processor's chat template returned "
            f"{type(text).__name__}, expected str"
        )
    return text


def text_prompt_ids(processor: Any, request: RolloutRequest) -> list[int]:
    """Prompt token ids of a text-only request (no special tokens added by the tokenizer).

    Raises:
        ValueError: the request carries images (those prompts are expanded by the
            multimodal processor, not here).
    """
    if request.images:
        raise ValueError(
            f"request {request.request_id!r} has {len(request.images)} image(s): its prompt "
            "ids come from the multimodal processor"
        )
    return encode_text(processor, prompt_text(processor, request))


def encode_text(processor: Any, text: str) -> list[int]:
    """Token ids of an already templated prompt (no special tokens added)."""
    return list(tokenizer_of(processor)(text, add_special_tokens=False)["input_ids"])


def image_size_kwargs(processor: Any) -> dict[str, Any]:
    """The image size the processor resizes to, as vLLM ``mm_processor_kwargs``.

    vLLM engines and servers size images by the checkpoint's own preprocessor config; the
    processor handed to a backend is the source of truth (the trainer sizes it from
    ``template.*_pixels``), so every multimodal request carries its ``size``. Empty for a
    processor without an image processor.
    """
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    return {"size": dict(size)} if size else {}


def stop_token_ids(generation_config: Any) -> tuple[int, ...]:
    """End-of-sequence ids of a generation config (``eos_token_id``: an int or a list).

    Raises:
        ValueError: the config names no end-of-sequence token.
    """
    eos = getattr(generation_config, "eos_token_id", None)
    ids = (eos,) if isinstance(eos, int) else tuple(eos or ())
    if not ids:
        raise ValueError(
            "the model's generation config has no eos_token_id: set it (e.g. to the id of "
            "<|im_end|>) so rollouts can stop"
        )
    return ids


def checkpoint_stop_ids(model_dir: str | Path) -> tuple[int, ...]:
    """End-of-sequence ids of a checkpoint folder's generation config (see `stop_token_ids`)."""
    from transformers import GenerationConfig

    return stop_token_ids(GenerationConfig.from_pretrained(model_dir))


def token_text_fn(tokenizer: Any) -> Callable[[int], str]:
    """A cached ``id -> decoded piece`` function for `RepeatTerminate`'s key counter."""
    cache: dict[int, str] = {}

    def piece(token_id: int) -> str:
        text = cache.get(token_id)
        if text is None:
            text = cache[token_id] = tokenizer.decode([token_id], skip_special_tokens=False)
        return text

    return piece


def make_detector(params: DecodeParams, tokenizer: Any) -> RepeatTerminate | None:
    """The repeat-terminate detector for ``params``, or None when it is off."""
    if params.repeat_terminate is None:
        return None
    return RepeatTerminate(params.repeat_terminate, token_text_fn(tokenizer))
