"""One rollout interface with HF, vLLM colocate and vLLM server backends."""

from importlib.metadata import version as _version

__version__ = _version("coordexp-backends")

__all__ = ["__version__"]
