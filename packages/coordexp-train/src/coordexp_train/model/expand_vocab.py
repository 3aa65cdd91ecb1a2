"""``expand-vocab``: add the 1000 coord tokens to a checkpoint's tokenizer and model.

The new tokens get the ids ``len(tokenizer) … len(tokenizer) + 999`` in bin order
(contiguous). The input embedding and the LM head are resized to
``max(old rows, len(new tokenizer) rounded up to a multiple of 64)`` rows; stock Qwen
checkpoints already carry unused padding rows past the tokenizer, which coord ids may
reuse — every coord row is re-initialised either way.

Every coord row of the embedding (and of the LM head unless it is tied) is set by
:func:`coordexp_train.model.coord_init.init_coord_rows` with scale
:data:`~coordexp_train.model.coord_init.EXPAND_SCALE` (0.1), the reference rows being the
existing tokens (ids below the old tokenizer length): the mean row plus a small, smooth,
deterministic per-bin offset. The id range is recorded in ``coord_vocab.json`` beside the
tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken
from transformers import AutoModelForImageTextToText

from coordexp_parse import NUM_BINS, all_coord_tokens
from coordexp_train.model.coord_init import EXPAND_SCALE, init_coord_rows
from coordexp_train.model.coord_vocab import CoordVocab, coord_vocab_of, write_coord_vocab
from coordexp_train.model.embeddings import input_embedding, output_embedding
from coordexp_train.model.processor import load_processor
from coordexp_train.model.tiny_tokenizer import CoordTokenMode

ROW_MULTIPLE = 64


class ExpandVocabError(ValueError):
    """The source or destination of ``expand-vocab`` is not usable."""


def expand_vocab(src: Path, dst: Path, *, coord_token_mode: CoordTokenMode = "added") -> CoordVocab:
    """Write a copy of checkpoint ``src`` with the coord tokens added into ``dst``.

    Args:
        src: a local Qwen-VL checkpoint folder (model, tokenizer, processor files).
        dst: a new folder (must not exist, or be empty).
        coord_token_mode: register the coord tokens as ``added`` (default; decode keeps
            them under ``skip_special_tokens=True``) or ``special`` tokens.

    Returns:
        The coord vocabulary of the new checkpoint (also written to ``coord_vocab.json``).

    Raises:
        ExpandVocabError: ``src`` is not a checkpoint folder, ``dst`` is not empty, or the
            tokenizer already holds some or all coord tokens.
    """
    if not (src / "config.json").is_file():
        raise ExpandVocabError(
            f"--src {src} is not a checkpoint folder (no config.json); give the folder of a "
            "local Qwen-VL checkpoint"
        )
    if dst.exists() and any(dst.iterdir()):
        raise ExpandVocabError(f"--dst {dst} is not empty; give a new folder")
    processor = load_processor(src)
    tokenizer = processor.tokenizer
    vocab = tokenizer.get_vocab()
    present = [t for t in all_coord_tokens() if t in vocab]
    if present:
        what = "all" if len(present) == NUM_BINS else f"{len(present)} of the"
        raise ExpandVocabError(
            f"the tokenizer in {src} already holds {what} {NUM_BINS} coord tokens "
            f"(e.g. {present[0]}); expand-vocab only prepares checkpoints without them"
        )
    old_len = len(tokenizer)
    special = coord_token_mode == "special"
    tokenizer.add_tokens(
        [AddedToken(t, special=special, normalized=False) for t in all_coord_tokens()],
        special_tokens=special,
    )
    coord_vocab = coord_vocab_of(tokenizer, source=f"the expanded tokenizer of {src}")

    model = AutoModelForImageTextToText.from_pretrained(str(src), dtype="auto")
    old_rows = input_embedding(model).shape[0]
    wanted = -(-len(tokenizer) // ROW_MULTIPLE) * ROW_MULTIPLE
    model.resize_token_embeddings(max(old_rows, wanted), mean_resizing=False)
    embedding = input_embedding(model)
    ids = list(coord_vocab.ids)
    init_coord_rows(embedding, ids, old_len, scale=EXPAND_SCALE)
    head = output_embedding(model)
    if head is not None and head.data_ptr() != embedding.data_ptr():  # untied LM head
        init_coord_rows(head, ids, old_len, scale=EXPAND_SCALE)

    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    processor.save_pretrained(str(dst))
    write_coord_vocab(coord_vocab, dst)
    return coord_vocab
