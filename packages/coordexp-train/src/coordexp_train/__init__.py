"""CoordExp trainers, coordinate losses, data pipeline and the coordexp-train CLI."""

from importlib.metadata import version as _version

__version__ = _version("coordexp-train")

__all__ = ["__version__"]
