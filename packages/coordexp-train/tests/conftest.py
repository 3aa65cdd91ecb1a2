"""Shared fixtures of the coordexp-train tests."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from coordexp_train.model import LoadedModel, load_model_and_processor


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The built-in tiny Qwen3-VL (float32, sdpa), fresh per test module.

    Built once per session into the session's temporary cache; each module loads its own
    copy, so a module that trains or changes modes cannot leak into another.
    """
    settings = SimpleNamespace(
        model="builtin:tiny-qwen3-vl", dtype="float32", attn_implementation="sdpa"
    )
    cache = tmp_path_factory.getbasetemp() / "coordexp-cache"
    return load_model_and_processor(settings, cache_dir=cache)
