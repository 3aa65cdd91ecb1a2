"""Qwen-VL processors: building the tiny model's and loading a checkpoint's.

The processor joins the tokenizer, the image processor (Qwen2-VL family: resize so both
sides are multiples of ``patch_size * merge_size`` with the pixel count inside
``[min_pixels, max_pixels]``, then cut into patches) and the chat template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoProcessor, PreTrainedTokenizerBase, ProcessorMixin, Qwen3VLProcessor
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

#: Qwen3-VL's vision geometry: 16-pixel patches merged 2×2 into one LLM token.
PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2


def build_qwen3_vl_processor(
    tokenizer: PreTrainedTokenizerBase,
    *,
    min_pixels: int,
    max_pixels: int,
) -> Qwen3VLProcessor:
    """A ``Qwen3VLProcessor`` over ``tokenizer`` with Qwen3-VL's patch geometry.

    Normalisation is mean 0.5 / std 0.5 per channel, as in Qwen3-VL. ``min_pixels`` and
    ``max_pixels`` are the processor's defaults; the data pipeline passes the template's
    bounds on every call anyway.
    """
    image_processor = Qwen2VLImageProcessor(
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=MERGE_SIZE,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )
    video_processor = Qwen3VLVideoProcessor(
        patch_size=PATCH_SIZE, temporal_patch_size=TEMPORAL_PATCH_SIZE, merge_size=MERGE_SIZE
    )
    return Qwen3VLProcessor(  # type: ignore[no-untyped-call]
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


def load_processor(directory: Path) -> ProcessorMixin:
    """Load a checkpoint's multimodal processor.

    Raises:
        ValueError: the directory yields no image processor (``AutoProcessor`` silently
            returns a bare tokenizer when ``preprocessor_config.json`` /
            ``processor_config.json`` is missing or its classes cannot load).
    """
    processor: ProcessorMixin = AutoProcessor.from_pretrained(str(directory))  # type: ignore[no-untyped-call]
    if getattr(processor, "image_processor", None) is None:
        raise ValueError(
            f"{directory}: no image processor could be loaded (AutoProcessor returned "
            f"{type(processor).__name__}); the directory needs the processor files of a "
            "Qwen-VL checkpoint (processor_config.json or preprocessor_config.json)"
        )
    if getattr(processor, "chat_template", None) is None:
        raise ValueError(
            f"{directory}: the processor has no chat template; copy chat_template.jinja "
            "(or chat_template.json) from the original checkpoint"
        )
    return processor


def set_image_size(processor: Any, max_pixels: int, min_pixels: int | None = None) -> None:
    """Make ``processor`` resize images as training does (``template.*_pixels``).

    Every consumer of the processor that does not pass a size itself (the rollout
    backends, evaluation) then sizes images exactly as the training encoder does, so a
    rollout's prompt equals the training prompt of the same image. ``min_pixels`` None
    means one merged patch (``(patch_size * merge_size)²``), the training default.

    Raises:
        ValueError: ``max_pixels`` is below one merged patch or below ``min_pixels``.
    """
    image_processor = processor.image_processor
    factor = int(image_processor.patch_size) * int(image_processor.merge_size)
    low = min_pixels if min_pixels is not None else factor * factor
    if max_pixels < max(low, factor * factor):
        raise ValueError(
            f"max_pixels must be >= min_pixels ({low}) and >= one merged patch "
            f"({factor * factor}), got {max_pixels}"
        )
    image_processor.size = {"shortest_edge": low, "longest_edge": max_pixels}
