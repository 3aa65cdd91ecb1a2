"""Loads the test helpers under a package-unique module name (tests use importlib mode)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from hypothesis import settings

_NAME = "coordexp_parse_testing"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        _NAME, Path(__file__).with_name("parse_testing.py")
    )
    assert _spec is not None
    assert _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)

# `uv run pytest packages/coordexp-parse --hypothesis-profile=parse-stress` runs the
# properties with many more examples (tests with their own max_examples keep theirs).
settings.register_profile("parse-stress", max_examples=3000, deadline=None)
