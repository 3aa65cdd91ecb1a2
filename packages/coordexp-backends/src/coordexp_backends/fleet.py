"""Health bookkeeping for a fleet of rollout servers: a small state machine per server.

States: ``healthy`` (takes work), ``dead`` (failed a request or a health check),
``stale`` (answers health checks again but has not received the current weights). A
dead server is never re-admitted on liveness alone: it becomes ``stale`` when it
answers, and ``healthy`` only after a weight sync reached it.

Not thread-safe, and needs no lock: the server backend reads and changes it only on the
thread that calls ``generate``/``sync_weights``; its worker threads only do HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

ServerState: TypeAlias = Literal["healthy", "dead", "stale"]


@dataclass
class Fleet:
    """The servers (base URLs, in configuration order), their states and last failures."""

    servers: list[str]
    states: dict[str, ServerState] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.servers:
            raise ValueError("rollout_matching.vllm.server.servers is empty: list at least one")
        if len(set(self.servers)) != len(self.servers):
            raise ValueError(
                f"rollout_matching.vllm.server.servers lists a base_url twice: {self.servers}"
            )
        for url in self.servers:
            self.states.setdefault(url, "healthy")

    def healthy(self) -> list[str]:
        """Base URLs that take work, in configuration order."""
        return [url for url in self.servers if self.states[url] == "healthy"]

    def state(self, url: str) -> ServerState:
        """The server's current state."""
        return self.states[url]

    def mark_dead(self, url: str, cause: str) -> None:
        """Record a failure: the server takes no more work until it is synced again."""
        self.states[url] = "dead"
        self.last_error[url] = cause

    def mark_alive(self, url: str) -> None:
        """A dead server answers again: it is stale until it receives weights."""
        if self.states[url] == "dead":
            self.states[url] = "stale"

    def mark_synced(self, url: str) -> None:
        """A live server received the current weights: it takes work."""
        self.states[url] = "healthy"

    def describe(self) -> str:
        """``url=state (last error)`` for every server, for error messages."""
        parts = []
        for url in self.servers:
            err = self.last_error.get(url)
            parts.append(f"{url}={self.states[url]}" + (f" ({err})" if err else ""))
        return ", ".join(parts)
