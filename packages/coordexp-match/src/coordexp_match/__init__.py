"""Geometry and exact Hungarian matching of predicted objects to ground truth."""

from importlib.metadata import version as _version

__version__ = _version("coordexp-match")

__all__ = ["__version__"]
