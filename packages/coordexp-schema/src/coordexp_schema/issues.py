"""Config problems as values: one ``ConfigIssue`` per problem, one ``ConfigError`` per load."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a config.

    Attributes:
        path: dotted config path of the offending key, with list indices
            (``rollout_matching.vllm.server.servers[0].base_url``); ``""`` for problems
            about a whole file (YAML syntax, ``extends``).
        message: what is wrong, what was expected and what to do.
        location: ``file:line:column`` (or an override's text) where the key was written,
            when known.
    """

    path: str
    message: str
    location: str | None = None

    def __str__(self) -> str:
        head = " ".join(p for p in (self.path, f"({self.location})" if self.location else "") if p)
        return f"{head}: {self.message}" if head else self.message


class ConfigError(ValueError):
    """A config failed to load; ``.issues`` lists every problem found in one pass.

    ``str(error)`` is a headline followed by one line per issue.
    """

    def __init__(self, issues: Iterable[ConfigIssue], source: str | None = None) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        self.source = source
        n = len(self.issues)
        origin = f" {source}" if source else ""
        lines = [f"Invalid config{origin}: {n} problem{'s' if n != 1 else ''}"]
        lines.extend(f"  - {issue}" for issue in self.issues)
        super().__init__("\n".join(lines))
