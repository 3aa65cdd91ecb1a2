"""One rollout interface with HF, vLLM colocate and vLLM server backends.

vLLM is imported only inside the vLLM backends, so this package imports without it.
"""

from importlib.metadata import version as _version

from coordexp_backends.errors import RolloutError, ServerError
from coordexp_backends.factory import create_backend, decode_params
from coordexp_backends.hf import HFBackend
from coordexp_backends.protocol import RolloutBackend
from coordexp_backends.repeat_terminate import RepeatTerminate, StopRule, StopVerdict
from coordexp_backends.rollout import (
    FINISH_REASONS,
    DecodeParams,
    FinishReason,
    RepeatTerminateParams,
    Rollout,
    RolloutRequest,
    Timings,
)

__version__ = _version("coordexp-backends")

__all__ = [
    "FINISH_REASONS",
    "DecodeParams",
    "FinishReason",
    "HFBackend",
    "RepeatTerminate",
    "RepeatTerminateParams",
    "Rollout",
    "RolloutBackend",
    "RolloutError",
    "RolloutRequest",
    "ServerError",
    "StopRule",
    "StopVerdict",
    "Timings",
    "__version__",
    "create_backend",
    "decode_params",
]
