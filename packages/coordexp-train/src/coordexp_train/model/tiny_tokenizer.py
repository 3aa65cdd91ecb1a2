"""The built-in tiny model's tokenizer.

A byte-level BPE trained on the fly, plus Qwen's chat and vision special tokens and the
1000 coord tokens.

Token ids, in order: ``<|endoftext|>`` 0, ``<|im_start|>`` 1, ``<|im_end|>`` 2, the 256
byte symbols and the learned merges, then the four vision tokens, then ``<|coord_0|>`` …
``<|coord_999|>`` (contiguous, in bin order).

Chat and vision tokens are *special* (dropped by ``decode(skip_special_tokens=True)``).
Coord tokens are ordinary *added* tokens by default (``coord_token_mode="added"``): they
are never split, and decoding keeps their text even with ``skip_special_tokens=True``, so
rollout text from any backend still holds the coordinates. ``"special"`` makes them
special tokens (then such a decode drops them: only use it when every consumer decodes
with ``skip_special_tokens=False``).

Training is deterministic: the same corpus and vocabulary size give the same
``tokenizer.json`` byte for byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Literal, TypeAlias

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from coordexp_parse import all_coord_tokens
from coordexp_train.data.prompts import all_prompt_texts
from coordexp_train.data.synthetic_scene import PALETTES, SHAPES
from coordexp_train.model.chat_template import CHAT_TEMPLATE

CoordTokenMode: TypeAlias = Literal["added", "special"]

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
CHAT_SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)
VISION_SPECIAL_TOKENS = (VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

_COORD_SPLIT = re.compile(r"<\|coord_\d+\|>")

#: Object words beyond the synthetic shapes, so real descriptions tokenise reasonably.
_EXTRA_WORDS = [
    "person",
    "man",
    "woman",
    "child",
    "dog",
    "cat",
    "bird",
    "horse",
    "car",
    "bus",
    "truck",
    "bicycle",
    "boat",
    "chair",
    "table",
    "cup",
    "bottle",
    "book",
    "phone",
    "laptop",
    "tree",
    "sign",
    "light",
    "window",
    "door",
    "black",
    "white",
    "grey",
    "brown",
    "large",
    "small",
    "left",
    "right",
    "top",
    "bottom",
]


def tokenizer_corpus() -> list[str]:
    """The text the BPE merges are learned from (deterministic, sorted).

    Prompts, and answer-shaped JSON for every synthetic description with the coord
    tokens cut out, because the tokenizer sees text between added tokens that way.
    """
    descs = [f"{c} {s}" for palette in PALETTES.values() for c in palette for s in SHAPES]
    descs += _EXTRA_WORDS
    lines = list(all_prompt_texts())
    for n, desc in enumerate(sorted(set(descs)), start=1):
        coords = ["<|coord_0|>"] * (6 if n % 3 == 0 else 4)
        kind = "poly" if n % 3 == 0 else "bbox_2d"
        for entry in ({"desc": desc, kind: coords}, {kind: coords, "desc": desc}):
            answer = json.dumps({f"object_{n % 12 + 1}": entry, "object_1": entry})
            lines.extend(piece for piece in _COORD_SPLIT.split(answer) if piece)
    lines.append("{}")
    return sorted(set(lines))


def add_coord_tokens(core: Tokenizer, coord_token_mode: CoordTokenMode) -> None:
    """Append the 1000 coord tokens, in bin order, as added or special tokens."""
    special = coord_token_mode == "special"
    coords = [AddedToken(t, special=special, normalized=False) for t in all_coord_tokens()]
    if special:
        core.add_special_tokens(coords)
    else:
        core.add_tokens(coords)


def train_tiny_tokenizer(
    corpus: Iterable[str],
    *,
    bpe_vocab_size: int,
    coord_token_mode: CoordTokenMode | None = "added",
) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE and wrap it with the special and coord tokens.

    Args:
        corpus: training text.
        bpe_vocab_size: size of the BPE part (bytes + merges + the 3 chat tokens); the
            trainer stops early when the corpus has no more pairs to merge.
        coord_token_mode: ``added`` or ``special`` (see the module docstring); None
            leaves the coord tokens out, giving a base tokenizer like a stock Qwen
            checkpoint's (what ``expand-vocab`` starts from).

    Returns:
        A fast tokenizer with eos ``<|im_end|>``, pad ``<|endoftext|>`` and the chat
        template of :mod:`coordexp_train.model.chat_template`.
    """
    if coord_token_mode not in ("added", "special", None):
        raise ValueError(f"coord_token_mode must be 'added' or 'special', got {coord_token_mode!r}")
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab_size,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=list(CHAT_SPECIAL_TOKENS),
    )
    core.train_from_iterator(list(corpus), trainer=trainer)
    core.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in VISION_SPECIAL_TOKENS]
    )
    if coord_token_mode is not None:
        add_coord_tokens(core, coord_token_mode)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
