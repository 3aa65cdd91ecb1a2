"""Models for CoordExp training: the built-in tiny Qwen3-VL, loading, coord vocabulary.

Public API:

* :class:`CoordVocab` / :func:`coord_vocab_of` — the coord token ids in bin order.
* :func:`load_model_and_processor` — model + processor + coord vocab for ``model.model``.
* :func:`ensure_builtin_model` / :data:`BUILTIN_SPECS` — the cached tiny models.
* :func:`expand_vocab` — add the coord tokens to a stock checkpoint.
"""

from coordexp_train.data.cache import default_cache_dir
from coordexp_train.model.coord_vocab import (
    COORD_VOCAB_FILE,
    CoordVocab,
    CoordVocabError,
    coord_vocab_of,
)
from coordexp_train.model.expand_vocab import ExpandVocabError, expand_vocab
from coordexp_train.model.loading import LoadedModel, load_model_and_processor, resolve_model_dir
from coordexp_train.model.tiny import (
    BUILTIN_PREFIX,
    BUILTIN_SPECS,
    TinyModelSpec,
    build_tiny_model,
    ensure_builtin_model,
)

__all__ = [
    "BUILTIN_PREFIX",
    "BUILTIN_SPECS",
    "COORD_VOCAB_FILE",
    "CoordVocab",
    "CoordVocabError",
    "ExpandVocabError",
    "LoadedModel",
    "TinyModelSpec",
    "build_tiny_model",
    "coord_vocab_of",
    "default_cache_dir",
    "ensure_builtin_model",
    "expand_vocab",
    "load_model_and_processor",
    "resolve_model_dir",
]
