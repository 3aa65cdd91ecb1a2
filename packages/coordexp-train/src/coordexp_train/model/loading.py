"""Loading a model, its processor and its coord vocabulary for training.

``model.model`` is either ``builtin:<name>`` (built into the cache on first use, see
:mod:`coordexp_train.model.tiny`) or a local checkpoint directory. Training refuses a
checkpoint whose tokenizer lacks the 1000 coord tokens, pointing at
``coordexp-train expand-vocab``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from transformers import AutoModelForImageTextToText, PreTrainedModel, ProcessorMixin

from coordexp_train.model.coord_vocab import (
    EXPAND_VOCAB_HINT,
    CoordVocab,
    CoordVocabError,
    checked_coord_vocab,
)
from coordexp_train.model.embeddings import input_embedding
from coordexp_train.model.processor import load_processor
from coordexp_train.model.tiny import builtin_name, ensure_builtin_model
from coordexp_train.model.tiny_tokenizer import CoordTokenMode

#: The file that marks a peft adapter folder.
ADAPTER_CONFIG = "adapter_config.json"


class ModelSettings(Protocol):
    """The fields of the config's ``model`` section this module reads."""

    @property
    def model(self) -> str:
        """``builtin:<name>`` or a checkpoint directory."""
        ...

    @property
    def dtype(self) -> str:
        """``auto``, ``float32``, ``bfloat16`` or ``float16``."""
        ...

    @property
    def attn_implementation(self) -> str:
        """``eager``, ``sdpa`` or ``flash_attention_2``."""
        ...


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """What training needs from a checkpoint.

    Attributes:
        model: the ``…ForConditionalGeneration`` model (Qwen3-VL, or Qwen2.5-VL).
        processor: its multimodal processor (tokenizer, image processor, chat template).
        coord_vocab: the coord token ids in bin order.
        directory: the folder it was loaded from (the cache folder for built-ins).
    """

    model: PreTrainedModel
    processor: ProcessorMixin
    coord_vocab: CoordVocab
    directory: Path


def resolve_model_dir(
    model_ref: str,
    *,
    cache_dir: Path | None = None,
    coord_token_mode: CoordTokenMode = "added",
) -> Path:
    """The checkpoint folder ``model_ref`` names, building a built-in one if needed.

    Raises:
        FileNotFoundError: a path that is not a directory with a ``config.json`` (a LoRA
            adapter folder is named as such, see :func:`refuse_adapter_folder`).
        ValueError: an unknown ``builtin:`` name.
    """
    name = builtin_name(model_ref)
    if name is not None:
        return ensure_builtin_model(name, cache_dir=cache_dir, coord_token_mode=coord_token_mode)
    directory = Path(model_ref).expanduser()
    refuse_adapter_folder(model_ref, directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"model.model: {model_ref!r} is not a checkpoint directory (no config.json there); "
            "give a local Qwen3-VL checkpoint folder or builtin:tiny-qwen3-vl"
        )
    return directory


def refuse_adapter_folder(model_ref: str, directory: Path) -> None:
    """Refuse a LoRA adapter folder given where a whole checkpoint is expected.

    Raises:
        FileNotFoundError: ``directory`` holds ``adapter_config.json`` and no
            ``config.json`` (a LoRA run's ``checkpoint-<step>/`` or ``final_adapter/``);
            the message names ``model.model`` and the merged ``final/`` to use instead.
    """
    if (directory / ADAPTER_CONFIG).is_file() and not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"model.model: {model_ref!r} is a LoRA adapter folder ({ADAPTER_CONFIG}, no "
            "config.json); give a whole checkpoint: a LoRA run writes the merged model to "
            "<training.output_dir>/final"
        )


def load_model_and_processor(
    settings: ModelSettings,
    *,
    coord_token_mode: CoordTokenMode = "added",
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load the model, processor and coord vocabulary that ``settings`` names.

    Args:
        settings: the config's ``model`` section (or anything with its three fields).
        coord_token_mode: ``custom.coord_token_mode``; the tokenizer's coord tokens must
            be registered that way (special or not).
        cache_dir: cache root for built-in models (default: ``data.cache.default_cache_dir``).

    Raises:
        FileNotFoundError: ``settings.model`` is neither a built-in nor a checkpoint.
        CoordVocabError: the tokenizer lacks coord tokens, registers them the other way,
            or the model's embedding is too small for them; the message says what to run.
        ValueError: no image processor or chat template in the directory.
    """
    directory = resolve_model_dir(
        settings.model, cache_dir=cache_dir, coord_token_mode=coord_token_mode
    )
    processor = load_processor(directory)
    tokenizer = processor.tokenizer
    coord_vocab = checked_coord_vocab(tokenizer, directory)
    _check_coord_mode(tokenizer, coord_vocab, coord_token_mode, directory)
    model = AutoModelForImageTextToText.from_pretrained(
        str(directory),
        dtype=settings.dtype,
        attn_implementation=settings.attn_implementation,
    )
    rows = input_embedding(model).shape[0]
    if max(coord_vocab.ids) >= rows:
        raise CoordVocabError(
            f"{directory}: the tokenizer has coord ids up to {max(coord_vocab.ids)} but the "
            f"model's embedding has only {rows} rows; {EXPAND_VOCAB_HINT}"
        )
    return LoadedModel(
        model=model, processor=processor, coord_vocab=coord_vocab, directory=directory
    )


def _check_coord_mode(
    tokenizer: object, coord_vocab: CoordVocab, mode: CoordTokenMode, directory: Path
) -> None:
    decoder = getattr(tokenizer, "added_tokens_decoder", {})
    entry = decoder.get(coord_vocab.first_id)
    is_special = bool(getattr(entry, "special", False))
    if is_special != (mode == "special"):
        found = "special" if is_special else "added"
        raise CoordVocabError(
            f"{directory}: the coord tokens are registered as {found} tokens but "
            f"custom.coord_token_mode is {mode!r}; set custom.coord_token_mode: {found}, or "
            f"re-run `coordexp-train expand-vocab --coord-token-mode {mode}` from the "
            "original checkpoint"
        )
