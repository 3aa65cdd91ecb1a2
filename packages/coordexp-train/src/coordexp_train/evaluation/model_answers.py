"""A model's answers on evaluation images, through any rollout backend.

:class:`InferenceSettings` holds everything that must match training for the answers to
be comparable: the checkpoint and how to load it, the prompt (template variant, field
order, system prompt), the image sizing (``template.min_pixels`` / ``max_pixels``) and
the rollout section (backend, decoding, batch size). :func:`inference_settings` takes
them from a training config; :func:`model_predictions` loads the model, builds the
backend with ``coordexp_backends.create_backend`` (HF on the loaded model, or vLLM as
``rollout_matching`` says) and answers every image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from coordexp_schema import RolloutMatchingConfig, TrainingConfig
from coordexp_train.data.prompts import PromptSpec
from coordexp_train.evaluation.ground_truth import GroundTruthImage
from coordexp_train.evaluation.predictions import ImagePrediction

if TYPE_CHECKING:  # the model package imports torch; keep the text-only path light
    from coordexp_train.model.tiny_tokenizer import CoordTokenMode


@dataclass(frozen=True, slots=True)
class InferenceSettings:
    """How to load a model and ask it for answers (see the module docstring).

    Attributes:
        model: ``builtin:<name>`` or a checkpoint folder.
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        attn_implementation: transformers attention implementation (``sdpa``, …).
        coord_token_mode: how the coord tokens are registered (``added``/``special``).
        prompt: the training prompt.
        max_pixels: ``template.max_pixels``.
        min_pixels: ``template.min_pixels``.
        rollout: backend, decoding and batch size (``rollout_matching``).
    """

    model: str
    dtype: str
    attn_implementation: str
    coord_token_mode: CoordTokenMode
    prompt: PromptSpec
    max_pixels: int
    min_pixels: int | None
    rollout: RolloutMatchingConfig


def inference_settings(cfg: TrainingConfig, *, model: str | None = None) -> InferenceSettings:
    """The settings a training config implies (``model`` replaces ``model.model``).

    A config without ``rollout_matching`` (Stage 1) gets that section's defaults: the HF
    backend, greedy decoding.
    """
    t = cfg.template
    return InferenceSettings(
        model=model if model is not None else cfg.model.model,
        dtype=cfg.model.dtype,
        attn_implementation=cfg.model.attn_implementation,
        coord_token_mode=cfg.custom.coord_token_mode,
        prompt=PromptSpec(
            variant=t.prompt_variant,
            field_order=t.object_field_order,
            system_prompt=t.system_prompt,
        ),
        max_pixels=t.max_pixels,
        min_pixels=t.min_pixels,
        rollout=cfg.rollout_matching or RolloutMatchingConfig(),
    )


def with_decoding(
    settings: InferenceSettings, *, max_new_tokens: int | None, decode_batch_size: int | None
) -> InferenceSettings:
    """``settings`` with the answer cap and/or batch size replaced (None: keep)."""
    rollout = settings.rollout
    if max_new_tokens is not None:
        rollout = replace(rollout, max_new_tokens=max_new_tokens)
    if decode_batch_size is not None:
        rollout = replace(rollout, decode_batch_size=decode_batch_size)
    return replace(settings, rollout=rollout)


def model_predictions(
    settings: InferenceSettings,
    ground_truth: Sequence[GroundTruthImage],
    *,
    progress: bool = False,
) -> list[ImagePrediction]:
    """Load the model, answer every image through the configured backend, parse.

    Heavy imports (torch, transformers, the backends) happen here only. Greedy decoding
    gives the same predictions on every run with the same backend and weights.

    Raises:
        FileNotFoundError: the checkpoint folder does not exist.
        coordexp_train.model.CoordVocabError: the checkpoint has no coord tokens.
        coordexp_backends.RolloutError: the backend failed (names the request ids).
    """
    from coordexp_backends import create_backend, decode_params
    from coordexp_train.evaluation.rollouts import rollout_predictions
    from coordexp_train.model.loading import load_model_and_processor
    from coordexp_train.model.processor import set_image_size

    loaded = load_model_and_processor(settings, coord_token_mode=settings.coord_token_mode)
    set_image_size(loaded.processor, settings.max_pixels, settings.min_pixels)
    backend = create_backend(
        settings.rollout,
        processor=loaded.processor,
        model=loaded.model,
        model_path=loaded.directory,
    )
    return rollout_predictions(
        backend,
        ground_truth,
        decode_params(settings.rollout),
        prompt=settings.prompt,
        chunk_size=settings.rollout.decode_batch_size,
        progress=progress,
    )
