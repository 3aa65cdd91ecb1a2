"""Repeat-terminate: the pure detector that ends degenerate rollouts early.

Three rules, each off when its limit is None, checked after every response token:

* ``token_repeat``: one token id at more than ``max_consecutive_token_repeats``
  consecutive positions (a run of length limit + 1 fires).
* ``ngram_repeat``: the last ``ngram_size * ngram_repeats`` tokens are one n-gram of
  ``ngram_size`` tokens written ``ngram_repeats`` times back to back.
* ``object_keys``: more than ``max_object_keys`` ``"object_N"`` keys in the decoded
  response text (a cheap incremental count of quoted ``object_<digits>`` strings over
  the tokens' text pieces; parsing proper belongs to coordexp-parse).

No rule fires before ``min_new_tokens`` tokens have been seen. The verdict names the
rule and the 0-based position of the token at which it fired. Backends plug this in by
forcing an end-of-sequence token right after that token, so the response ends
``[..., trigger, eos]`` in every backend and ``finish_reason`` is ``repeat_terminated``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from coordexp_backends.rollout import RepeatTerminateParams

StopRule: TypeAlias = Literal["token_repeat", "ngram_repeat", "object_keys"]

_OBJECT_KEY = re.compile(r'"object_[0-9]+"')
_TAIL_CHARS = 64  # longer than any key the counter must see across a piece boundary


@dataclass(frozen=True, slots=True)
class StopVerdict:
    """Why and where a rollout must stop.

    Attributes:
        rule: the rule that fired.
        position: 0-based index, in the response, of the token at which it fired.
        detail: a human-readable account (the repeated token, n-gram or key count).
    """

    rule: StopRule
    position: int
    detail: str


class RepeatTerminate:
    """Incremental repeat-terminate detector over one response's token ids.

    Feed token ids one at a time with `feed` (stateful; once it has fired it keeps
    returning the same verdict) or check a whole sequence with `check` (stateless: a
    fresh detector with the same rules). Both give the same verdict for the same ids.
    Deterministic: the verdict is a function of the ids and the rules only.

    Args:
        params: the rules.
        token_text: maps a token id to its decoded text piece; required when
            ``params.max_object_keys`` is set.

    Raises:
        ValueError: a limit is < 1 (``min_new_tokens`` < 0), only one of ``ngram_size`` /
            ``ngram_repeats`` is set, or ``max_object_keys`` is set without ``token_text``.
    """

    def __init__(
        self, params: RepeatTerminateParams, token_text: Callable[[int], str] | None = None
    ) -> None:
        _check_params(params)
        if params.max_object_keys is not None and token_text is None:
            raise ValueError(
                "repeat_terminate.max_object_keys needs the tokenizer's token texts: pass "
                "token_text=lambda i: tokenizer.decode([i]) to RepeatTerminate"
            )
        self.params = params
        self._token_text = token_text
        self.reset()

    def reset(self) -> None:
        """Forget every token fed so far."""
        self._n = 0
        self._last: int | None = None
        self._run = 0
        self._history: list[int] = []
        self._periodic = 0
        self._tail = ""
        self._keys = 0
        self._verdict: StopVerdict | None = None

    @property
    def tokens_seen(self) -> int:
        """How many token ids were fed since the last reset."""
        return self._n

    @property
    def verdict(self) -> StopVerdict | None:
        """The verdict reached so far, or None."""
        return self._verdict

    def feed(self, token_id: int) -> StopVerdict | None:
        """Add the next response token; return the verdict if the rollout must stop."""
        if self._verdict is not None:
            return self._verdict
        p = self.params
        pos = self._n
        self._n += 1
        self._run = self._run + 1 if token_id == self._last else 1
        self._last = token_id
        if p.ngram_size is not None:
            n = p.ngram_size
            self._history.append(token_id)
            h = self._history
            self._periodic = self._periodic + 1 if len(h) > n and h[-1] == h[-1 - n] else 0
            if len(h) > n + 1:
                del h[0]
        if p.max_object_keys is not None:
            assert self._token_text is not None
            window = self._tail + self._token_text(token_id)
            boundary = len(self._tail)
            self._keys += sum(1 for m in _OBJECT_KEY.finditer(window) if m.end() > boundary)
            self._tail = window[-_TAIL_CHARS:]
        if self._n < p.min_new_tokens:
            return None
        self._verdict = self._judge(pos, token_id)
        return self._verdict

    def feed_all(self, token_ids: Iterable[int]) -> StopVerdict | None:
        """Feed every id in order, stopping at the first verdict; return it or None."""
        for t in token_ids:
            if self.feed(t) is not None:
                break
        return self._verdict

    def check(self, token_ids: Iterable[int]) -> StopVerdict | None:
        """Verdict for a whole response, from a fresh detector (this one is untouched)."""
        return RepeatTerminate(self.params, self._token_text).feed_all(token_ids)

    def _judge(self, pos: int, token_id: int) -> StopVerdict | None:
        p = self.params
        limit = p.max_consecutive_token_repeats
        if limit is not None and self._run > limit:
            return StopVerdict(
                "token_repeat", pos, f"token {token_id} repeated {self._run} times in a row"
            )
        if p.ngram_size is not None and p.ngram_repeats is not None:
            n, k = p.ngram_size, p.ngram_repeats
            # n*(k-1) consecutive positions t with h[t] == h[t-n]: the tail is k copies.
            if self._periodic >= n * (k - 1):
                gram = self._history[-n:]
                return StopVerdict("ngram_repeat", pos, f"{n}-gram {gram} repeated {k} times")
        if p.max_object_keys is not None and self._keys > p.max_object_keys:
            return StopVerdict(
                "object_keys", pos, f"{self._keys} object keys > max {p.max_object_keys}"
            )
        return None


def _check_params(p: RepeatTerminateParams) -> None:
    if p.min_new_tokens < 0:
        raise ValueError(f"repeat_terminate.min_new_tokens must be >= 0, got {p.min_new_tokens}")
    for name in ("max_consecutive_token_repeats", "ngram_size", "ngram_repeats", "max_object_keys"):
        value = getattr(p, name)
        if value is not None and value < 1:
            raise ValueError(f"repeat_terminate.{name} must be >= 1 or None, got {value}")
    if (p.ngram_size is None) != (p.ngram_repeats is None):
        raise ValueError(
            "repeat_terminate.ngram_size and ngram_repeats go together: set both or neither, "
            f"got ngram_size={p.ngram_size}, ngram_repeats={p.ngram_repeats}"
        )
    if p.ngram_repeats is not None and p.ngram_repeats < 2:
        raise ValueError(
            f"repeat_terminate.ngram_repeats must be >= 2 (one occurrence is no repeat), "
            f"got {p.ngram_repeats}"
        )
