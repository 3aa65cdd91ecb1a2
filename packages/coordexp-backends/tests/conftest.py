"""Session fixtures: the tiny Qwen3 and its tokenizer, built once and saved once."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _load_tiny_lm() -> ModuleType:
    path = Path(__file__).with_name("tiny_lm.py")
    spec = importlib.util.spec_from_file_location("coordexp_backends_tests_tiny_lm", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tiny_lm = _load_tiny_lm()


@pytest.fixture(scope="session")
def tiny() -> ModuleType:
    """The tiny model helpers module (builders, requests)."""
    return tiny_lm


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    return tiny_lm.build_tokenizer()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer: Any) -> Path:
    """The tiny model saved once per session (seed 0)."""
    path = tmp_path_factory.mktemp("tiny-qwen3")
    return tiny_lm.save(tiny_lm.build_model(tokenizer), tokenizer, path)


@pytest.fixture
def model(tokenizer: Any) -> Any:
    """A fresh tiny model (seed 0) per test: tests may change its mode or weights."""
    return tiny_lm.build_model(tokenizer)
