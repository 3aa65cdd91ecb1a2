"""The coord sub-vocabulary of a tokenizer: the ids of the 1000 `<|coord_k|>` tokens.

Losses, metrics and the rollout path slice the LM head's logits with these ids; the
order of :attr:`CoordVocab.ids` is bin order (entry k is the id of ``<|coord_k|>``).

A model directory prepared by this package records the id range in a small JSON file
beside the tokenizer (:data:`COORD_VOCAB_FILE`); :func:`coord_vocab_of` always derives the
ids from the tokenizer itself and, when that file exists, checks that both agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from coordexp_parse import NUM_BINS, all_coord_tokens

COORD_VOCAB_FILE = "coord_vocab.json"
EXPAND_VOCAB_HINT = (
    "add them with `coordexp-train expand-vocab --src <model dir> --dst <new dir>` "
    "and point `model.model` at the new directory"
)


class CoordVocabError(ValueError):
    """A tokenizer (or its recorded coord range) does not hold the 1000 coord tokens."""


class TokenizerLike(Protocol):
    """The part of a Hugging Face tokenizer this module uses."""

    def get_vocab(self) -> dict[str, int]:
        """Token text → id, added tokens included."""
        ...


@dataclass(frozen=True, slots=True)
class CoordVocab:
    """The ids of the coord tokens in bin order.

    Attributes:
        ids: ``ids[k]`` is the token id of ``<|coord_k|>``, k in 0..999.
    """

    ids: tuple[int, ...]
    _bins: dict[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.ids) != NUM_BINS:
            raise CoordVocabError(f"expected {NUM_BINS} coord ids, got {len(self.ids)}")
        bins = {i: k for k, i in enumerate(self.ids)}
        if len(bins) != NUM_BINS:
            raise CoordVocabError("coord ids must be distinct")
        object.__setattr__(self, "_bins", bins)

    def __repr__(self) -> str:
        ends = f"first_id={self.ids[0]}, last_id={self.ids[-1]}"
        return f"CoordVocab({ends}, contiguous={self.contiguous})"

    @property
    def contiguous(self) -> bool:
        """Whether ``ids`` is ``first, first + 1, …, first + 999`` (slicing is then a view)."""
        first = self.ids[0]
        return all(i == first + k for k, i in enumerate(self.ids))

    @property
    def first_id(self) -> int:
        """The id of ``<|coord_0|>``."""
        return self.ids[0]

    def bin_of(self, token_id: int) -> int | None:
        """The bin of ``token_id``, or None when it is not a coord token."""
        return self._bins.get(token_id)

    def to_json(self) -> dict[str, Any]:
        """The record written to :data:`COORD_VOCAB_FILE`."""
        record: dict[str, Any] = {"num_bins": NUM_BINS, "contiguous": self.contiguous}
        if self.contiguous:
            record["first_id"] = self.first_id
            record["last_id"] = self.ids[-1]
        else:
            record["ids"] = list(self.ids)
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any], *, source: str) -> CoordVocab:
        """Read a record written by :meth:`to_json`; ``source`` names it in errors."""
        try:
            if record["num_bins"] != NUM_BINS:
                raise CoordVocabError(
                    f"{source}: num_bins is {record['num_bins']}, expected {NUM_BINS}"
                )
            if record["contiguous"]:
                first = int(record["first_id"])
                return cls(tuple(range(first, first + NUM_BINS)))
            return cls(tuple(int(i) for i in record["ids"]))
        except KeyError as e:
            raise CoordVocabError(f"{source}: missing field {e.args[0]!r}") from None


def coord_vocab_of(tokenizer: TokenizerLike, *, source: str = "tokenizer") -> CoordVocab:
    """Find the 1000 coord token ids in ``tokenizer``.

    Args:
        tokenizer: anything with ``get_vocab()`` (added tokens included).
        source: what to call the tokenizer in errors (e.g. its directory).

    Raises:
        CoordVocabError: some coord tokens are missing; the message says how many, names
            the first missing one and points at ``coordexp-train expand-vocab``.
    """
    vocab = tokenizer.get_vocab()
    tokens = all_coord_tokens()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        raise CoordVocabError(
            f"{source} lacks {len(missing)} of the {NUM_BINS} coord tokens "
            f"(first missing: {missing[0]}); {EXPAND_VOCAB_HINT}"
        )
    return CoordVocab(tuple(vocab[t] for t in tokens))


def write_coord_vocab(coord_vocab: CoordVocab, directory: Path) -> Path:
    """Write :data:`COORD_VOCAB_FILE` into ``directory``; return its path."""
    path = directory / COORD_VOCAB_FILE
    path.write_text(json.dumps(coord_vocab.to_json(), indent=2, sort_keys=True) + "\n")
    return path


def checked_coord_vocab(tokenizer: TokenizerLike, directory: Path) -> CoordVocab:
    """The tokenizer's coord vocab, checked against ``directory``'s recorded range if any.

    Raises:
        CoordVocabError: tokens missing (see :func:`coord_vocab_of`), or the recorded range
            in :data:`COORD_VOCAB_FILE` disagrees with the tokenizer.
    """
    found = coord_vocab_of(tokenizer, source=f"the tokenizer in {directory}")
    path = directory / COORD_VOCAB_FILE
    if path.exists():
        recorded = CoordVocab.from_json(json.loads(path.read_text()), source=str(path))
        if recorded != found:
            raise CoordVocabError(
                f"{path} records coord ids starting at {recorded.first_id} but the tokenizer "
                f"maps <|coord_0|> to {found.first_id}; the directory was modified after "
                "expand-vocab: re-run it from the original checkpoint"
            )
    return found
