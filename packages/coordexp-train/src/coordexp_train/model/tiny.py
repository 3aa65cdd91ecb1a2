"""The built-in tiny Qwen3-VL: built offline from a named recipe, cached on disk.

``model.model: builtin:<name>`` selects one of :data:`BUILTIN_SPECS`:

* ``tiny-qwen3-vl`` — text tower hidden 128 × 2 layers, vision tower 2 blocks of width 32
  (≈0.9 M parameters): fast enough for unit tests and the HF/vLLM backend checks.
* ``small-qwen3-vl`` — text hidden 256 × 4 layers, vision 4 blocks of width 128 (≈5.6 M
  parameters): more capacity for the CPU demo, at several times the step cost.

Both initialise the vision tower's learned position table (``visual.pos_embed``) with
standard deviation :attr:`TinyModelSpec.vision_position_std` (0.5) instead of transformers'
0.02. Patch features start near 0.3 per dimension, so at 0.02 a visual token barely says
where it is, and a random model learns to read colours but not positions: on the
one-shape demo data, the held-out coordinate loss with real images equalled the loss with
images shuffled across samples after 600 steps at 0.02, and was already lower at 150
steps at 0.5 (docs/demo.md has the measurements).

Both keep Qwen3-VL's real shapes where they matter: text ``head_dim`` 64 (vLLM's CPU
attention kernels reject smaller heads), interleaved mRoPE with ``mrope_section``
``[12, 10, 10]`` (sums to head_dim / 2), 16-pixel patches merged 2×2, DeepStack on the
first vision block.

A build is a pure function of the recipe: the spec, the coord-token mode, the tokenizer
corpus, the chat template, the source of the builder modules and the torch /
transformers / tokenizers versions. The recipe's SHA-256 names the cache folder
``<cache>/models/<name>-<digest[:16]>``, so any recipe change builds a fresh folder (see
:mod:`coordexp_train.data.cache` for the root and the atomic build).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import tokenizers
import torch
import transformers
from transformers import GenerationConfig, Qwen3VLConfig, Qwen3VLForConditionalGeneration

from coordexp_train.data.cache import cached_build, default_cache_dir
from coordexp_train.model import chat_template, coord_init, processor, tiny_tokenizer
from coordexp_train.model.coord_init import BUILTIN_SCALE, init_coord_rows
from coordexp_train.model.coord_vocab import coord_vocab_of, write_coord_vocab
from coordexp_train.model.embeddings import input_embedding, output_embedding
from coordexp_train.model.processor import (
    MERGE_SIZE,
    PATCH_SIZE,
    TEMPORAL_PATCH_SIZE,
    build_qwen3_vl_processor,
)
from coordexp_train.model.tiny_tokenizer import (
    ENDOFTEXT,
    IM_END,
    IMAGE_PAD,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    CoordTokenMode,
    tokenizer_corpus,
    train_tiny_tokenizer,
)

BUILTIN_PREFIX = "builtin:"
RECIPE_FILE = "coordexp_builtin.json"


@dataclass(frozen=True, slots=True)
class TinyModelSpec:
    """Sizes and init of a built-in model. Text ``head_dim`` is fixed at 64 (see module doc).

    ``vision_position_std`` is the standard deviation of the vision position table at
    initialisation (see the module docstring).
    """

    text_hidden_size: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_intermediate_size: int
    vision_depth: int
    vision_hidden_size: int
    vision_heads: int
    vision_intermediate_size: int
    vision_position_std: float = 0.5
    bpe_vocab_size: int = 1024
    seed: int = 0
    min_pixels: int = 32 * 32
    max_pixels: int = 512 * 512


TEXT_HEAD_DIM = 64
VOCAB_MULTIPLE = 64
MROPE_SECTION = (12, 10, 10)

BUILTIN_SPECS: dict[str, TinyModelSpec] = {
    "tiny-qwen3-vl": TinyModelSpec(
        text_hidden_size=128,
        text_layers=2,
        text_heads=2,
        text_kv_heads=1,
        text_intermediate_size=256,
        vision_depth=2,
        vision_hidden_size=32,
        vision_heads=2,
        vision_intermediate_size=64,
    ),
    "small-qwen3-vl": TinyModelSpec(
        text_hidden_size=256,
        text_layers=4,
        text_heads=4,
        text_kv_heads=2,
        text_intermediate_size=768,
        vision_depth=4,
        vision_hidden_size=128,
        vision_heads=4,
        vision_intermediate_size=256,
    ),
}


def builtin_name(model_ref: str) -> str | None:
    """The built-in name in ``builtin:<name>``, or None when ``model_ref`` is a path.

    Raises:
        ValueError: ``builtin:`` with a name not in :data:`BUILTIN_SPECS`.
    """
    if not model_ref.startswith(BUILTIN_PREFIX):
        return None
    name = model_ref[len(BUILTIN_PREFIX) :]
    if name not in BUILTIN_SPECS:
        known = ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_SPECS)
        raise ValueError(f"unknown built-in model {model_ref!r}; known: {known}")
    return name


def recipe(spec: TinyModelSpec, coord_token_mode: CoordTokenMode | None) -> dict[str, object]:
    """Everything a build depends on, as JSON-ready data."""
    sources = {
        m.__name__: Path(m.__file__ or "").read_text()
        for m in (chat_template, coord_init, processor, tiny_tokenizer)
    }
    sources[__name__] = Path(__file__).read_text()
    return {
        "spec": dataclasses.asdict(spec),
        "coord_token_mode": coord_token_mode,
        "corpus": tokenizer_corpus(),
        "sources": sources,
        "versions": {
            "torch": torch.__version__.split("+")[0],
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
    }


def recipe_digest(spec: TinyModelSpec, coord_token_mode: CoordTokenMode | None = "added") -> str:
    """SHA-256 (hex) of :func:`recipe`."""
    blob = json.dumps(recipe(spec, coord_token_mode), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def ensure_builtin_model(
    name: str,
    *,
    cache_dir: Path | None = None,
    coord_token_mode: CoordTokenMode = "added",
) -> Path:
    """Return the folder of built-in model ``name``, building it on first use.

    Args:
        name: a key of :data:`BUILTIN_SPECS` (without the ``builtin:`` prefix).
        cache_dir: cache root; default :func:`default_cache_dir`.
        coord_token_mode: how the coord tokens are registered (part of the recipe).

    Returns:
        A checkpoint folder loadable like any local Qwen3-VL checkpoint.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in BUILTIN_SPECS:
        raise ValueError(f"unknown built-in model {name!r}; known: {sorted(BUILTIN_SPECS)}")
    spec = BUILTIN_SPECS[name]
    folder = (cache_dir or default_cache_dir()) / "models"
    folder = folder / f"{name}-{recipe_digest(spec, coord_token_mode)[:16]}"
    return cached_build(
        folder,
        lambda out: build_tiny_model(spec, out, coord_token_mode=coord_token_mode, name=name),
    )


def build_tiny_model(
    spec: TinyModelSpec,
    out_dir: Path,
    *,
    coord_token_mode: CoordTokenMode | None = "added",
    name: str = "custom",
) -> None:
    """Build a random-initialised tiny Qwen3-VL with its processor into ``out_dir``.

    The embedding and LM head have ``len(tokenizer)`` rounded up to a multiple of
    :data:`VOCAB_MULTIPLE` rows, as stock Qwen checkpoints do (the extra rows are never
    produced by the tokenizer). Coord rows follow
    :func:`~coordexp_train.model.coord_init.init_coord_rows` with
    :data:`~coordexp_train.model.coord_init.BUILTIN_SCALE`, over the rows of the tokens
    before them. With ``coord_token_mode=None`` the tokenizer has no coord tokens: a
    stand-in for a stock checkpoint that ``expand-vocab`` must prepare.

    Deterministic: the same ``spec`` (its ``seed`` included) gives the same tokenizer and
    the same weights. The global torch RNG state is left as it was.
    """
    tokenizer = train_tiny_tokenizer(
        tokenizer_corpus(), bpe_vocab_size=spec.bpe_vocab_size, coord_token_mode=coord_token_mode
    )
    proc = build_qwen3_vl_processor(
        tokenizer, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (ENDOFTEXT, IM_END)}
    config = _model_config(spec, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = Qwen3VLForConditionalGeneration(config)  # type: ignore[no-untyped-call]
        with torch.no_grad():
            model.model.visual.pos_embed.weight.normal_(0.0, spec.vision_position_std)
    if coord_token_mode is not None:
        coord_ids = coord_vocab_of(tokenizer).ids
        for weight in (input_embedding(model), output_embedding(model)):
            assert weight is not None
            init_coord_rows(weight, coord_ids, coord_ids[0], scale=BUILTIN_SCALE)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=[ids[IM_END], ids[ENDOFTEXT]],
        pad_token_id=ids[ENDOFTEXT],
        do_sample=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    proc.save_pretrained(str(out_dir))
    if coord_token_mode is not None:
        write_coord_vocab(coord_vocab_of(tokenizer), out_dir)
    (out_dir / RECIPE_FILE).write_text(
        json.dumps(
            {
                "name": name,
                "recipe_sha256": recipe_digest(spec, coord_token_mode),
                "spec": dataclasses.asdict(spec),
                "coord_token_mode": coord_token_mode,
                "parameters": sum(p.numel() for p in model.parameters()),
            },
            indent=2,
        )
        + "\n"
    )


def _model_config(
    spec: TinyModelSpec, tokenizer: transformers.PreTrainedTokenizerBase
) -> Qwen3VLConfig:
    def tid(token: str) -> int:
        value = tokenizer.convert_tokens_to_ids(token)
        assert isinstance(value, int)
        return value

    text = {
        "vocab_size": -(-len(tokenizer) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE,
        "hidden_size": spec.text_hidden_size,
        "intermediate_size": spec.text_intermediate_size,
        "num_hidden_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "num_key_value_heads": spec.text_kv_heads,
        "head_dim": TEXT_HEAD_DIM,
        "max_position_embeddings": 32768,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": list(MROPE_SECTION),
            "mrope_interleaved": True,
        },
        "pad_token_id": tid(ENDOFTEXT),
        "eos_token_id": tid(IM_END),
    }
    vision = {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden_size,
        "intermediate_size": spec.vision_intermediate_size,
        "num_heads": spec.vision_heads,
        "out_hidden_size": spec.text_hidden_size,
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "num_position_embeddings": 1024,
        "deepstack_visual_indexes": [0],
    }
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tid(IMAGE_PAD),
        video_token_id=tid(VIDEO_PAD),
        vision_start_token_id=tid(VISION_START),
        vision_end_token_id=tid(VISION_END),
        tie_word_embeddings=False,
    )
