"""The `RolloutBackend` protocol every backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from coordexp_backends.rollout import DecodeParams, Rollout, RolloutRequest


@runtime_checkable
class RolloutBackend(Protocol):
    """Generation plus weight sync, with the same contract for HF and vLLM.

    Attributes:
        name: ``hf``, ``vllm-colocate`` or ``vllm-server`` (copied into each rollout).
    """

    name: str

    def generate(self, requests: Sequence[RolloutRequest], params: DecodeParams) -> list[Rollout]:
        """Roll out every request and return one rollout per request, in request order.

        Requests are templated by the backend (see `RolloutRequest`) and decoded in
        microbatches of ``decode_batch_size``. Greedy decoding of the same weights gives
        the same response token ids in every backend.

        Raises:
            RolloutError: a request could not be rolled out (names the request ids, and
                the server for the server backend).
        """
        ...

    def sync_weights(self, model: Any) -> None:
        """Make the next rollouts come from ``model``'s current weights."""
        ...

    def sleep(self) -> None:
        """Release the engine's memory until `wake_up` (no-op where unsupported)."""
        ...

    def wake_up(self) -> None:
        """Re-acquire the memory released by `sleep`."""
        ...

    def close(self) -> None:
        """Release the engine, its processes and connections."""
        ...
