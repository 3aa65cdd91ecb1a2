"""Where built-in models and datasets are cached.

The root is ``$COORDEXP_CACHE_DIR``, else ``$XDG_CACHE_HOME/coordexp``, else
``~/.cache/coordexp``; models go under ``models/``, datasets under ``datasets/``. Every
entry is a folder named ``<name>-<first 16 hex digits of its recipe's SHA-256>``, built in
a temporary sibling and moved into place with one rename, so a finished folder is never
rewritten and concurrent builders are safe (the first rename wins).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    """The cache root (see the module docstring for the lookup order)."""
    if explicit := os.environ.get("COORDEXP_CACHE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "coordexp"


def cached_build(folder: Path, build: Callable[[Path], Any]) -> Path:
    """Return ``folder``, first running ``build(staging_dir)`` and renaming it there if absent.

    ``build`` fills the empty staging folder it is given; its return value is ignored.
    """
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        build(staging)
        try:
            staging.rename(folder)
        except OSError:
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
