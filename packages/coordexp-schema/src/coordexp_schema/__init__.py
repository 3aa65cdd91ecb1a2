"""Strict typed YAML configuration for CoordExp."""

from importlib.metadata import version as _version

__version__ = _version("coordexp-schema")

__all__ = ["__version__"]
