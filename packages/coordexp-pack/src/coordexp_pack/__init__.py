"""Deterministic packing of segments into fixed-capacity packs, and accumulation windows."""

from importlib.metadata import version as _version

__version__ = _version("coordexp-pack")

__all__ = ["__version__"]
