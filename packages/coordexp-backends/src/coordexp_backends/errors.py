"""Errors a backend raises when a rollout cannot be produced."""

from __future__ import annotations


class RolloutError(RuntimeError):
    """Rollouts failed; the message names the request ids, and the server when there is one."""


class ServerError(RolloutError):
    """A vLLM server failed, timed out or is unreachable.

    Attributes:
        server: the server's base URL.
        request_ids: ids of the requests left without a rollout (from `generate`: every
            request of the call not answered, in request order; may be empty).
    """

    def __init__(self, server: str, request_ids: list[str], cause: str) -> None:
        ids = ", ".join(request_ids) if request_ids else "none"
        super().__init__(f"vLLM server {server}: {cause} (request ids: {ids})")
        self.server = server
        self.request_ids = request_ids
        self.cause = cause
