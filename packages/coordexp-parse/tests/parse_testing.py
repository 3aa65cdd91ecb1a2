"""Test helpers: hypothesis strategies for objects, a real HF tokenizer and a fast fake."""

from __future__ import annotations

import functools
import json
import random
import re

from hypothesis import strategies as st

from coordexp_parse import STOP_STRINGS, DetObject, all_coord_tokens

bins = st.integers(0, 999)
# Descriptions: any text (quotes, backslashes, control characters, non-ASCII, emoji),
# non-empty after strip and free of stop strings.
descs = st.text(min_size=1, max_size=12).filter(
    lambda s: s.strip() != "" and not any(stop in s for stop in STOP_STRINGS)
)
simple_descs = st.sampled_from(["black cat", "red square", "café", "dog 🐶", 'a "q"', "x\\y"])


@st.composite
def bboxes(draw: st.DrawFn, desc: st.SearchStrategy[str] = descs) -> DetObject:
    x1, x2 = sorted((draw(bins), draw(bins)))
    y1, y2 = sorted((draw(bins), draw(bins)))
    return DetObject(draw(desc), "bbox_2d", (x1, y1, x2, y2))


@st.composite
def polys(draw: st.DrawFn, desc: st.SearchStrategy[str] = descs) -> DetObject:
    n = draw(st.integers(3, 6))
    return DetObject(draw(desc), "poly", tuple(draw(bins) for _ in range(2 * n)))


def det_objects(desc: st.SearchStrategy[str] = descs) -> st.SearchStrategy[DetObject]:
    return st.one_of(bboxes(desc), polys(desc))


def object_lists(
    desc: st.SearchStrategy[str] = descs, max_size: int = 5
) -> st.SearchStrategy[list[DetObject]]:
    return st.lists(det_objects(desc), max_size=max_size)


SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
DESCS = ["black cat", "red square", "person", "traffic light", "dog", "blue circle"]


def _corpus() -> list[str]:
    rng = random.Random(0)
    lines = []
    for _ in range(300):
        n = rng.randrange(1, 6)
        answer = {
            f"object_{j + 1}": {
                "desc": rng.choice(DESCS),
                "bbox_2d": [f"<|coord_{rng.randrange(1000)}|>" for _ in range(4)],
            }
            for j in range(n)
        }
        lines.append(json.dumps(answer))
    return lines


@functools.cache
def hf_tokenizer() -> object:
    """A small byte-level BPE ``PreTrainedTokenizerFast`` with coord and chat tokens.

    Trained on ASCII answers only, so non-ASCII characters ("é", emoji) become byte-level
    pieces that only form a character together.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL,
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>")
    fast.add_tokens([AddedToken(t, normalized=False, special=False) for t in all_coord_tokens()])
    return fast


class ByteTokenizer:
    """A fast pure-Python byte-level tokenizer with the same protocol as the HF one.

    Coord tokens and the chat special tokens are single ids; other text is UTF-8 bytes,
    greedily merged into a few multi-byte pieces, so non-ASCII characters split into
    byte pieces that decode to U+FFFD alone.
    """

    MERGES = (
        '{"',
        '":',
        ' "',
        '",',
        '"]',
        "]}",
        "}}",
        ", ",
        "object_",
        "desc",
        "bbox_2d",
        "poly",
        " {",
        "[",
        "cat",
        "black ",
    )

    def __init__(self, with_coords: bool = True, with_end: bool = True) -> None:
        specials = (["<|im_end|>"] if with_end else []) + ["<|endoftext|>"]
        specials += all_coord_tokens() if with_coords else []
        self.pieces: list[bytes] = [bytes([b]) for b in range(256)]
        self.pieces += [m.encode() for m in self.MERGES]
        self.special_ids = {t: len(self.pieces) + i for i, t in enumerate(specials)}
        self.pieces += [t.encode() for t in specials]
        self.merge_ids = {m.encode(): 256 + i for i, m in enumerate(self.MERGES)}
        self._split = re.compile("(" + "|".join(re.escape(t) for t in specials) + ")")

    def __len__(self) -> int:
        return len(self.pieces)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids: list[int] = []
        for part in self._split.split(text):
            if part in self.special_ids:
                ids.append(self.special_ids[part])
                continue
            data = part.encode()
            i = 0
            while i < len(data):
                for m, mid in self.merge_ids.items():
                    if data.startswith(m, i):
                        ids.append(mid)
                        i += len(m)
                        break
                else:
                    ids.append(data[i])
                    i += 1
        return ids

    def decode(self, token_ids: list[int]) -> str:
        return b"".join(self.pieces[i] for i in token_ids if 0 <= i < len(self.pieces)).decode(
            "utf-8", errors="replace"
        )
