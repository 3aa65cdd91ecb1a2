"""One Channel-B sample, from rollout token ids to targets, with its per-step statistics.

The fixed composition of the shared components: ``coordexp_parse.parse_rollout`` →
``coordexp_match.match`` (options from the normalised ``rollout_matching`` section) →
``coordexp_parse.build_injection`` of the missed ground truth → :func:`channel_b_targets`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from coordexp_match import MatchResult, match
from coordexp_parse import (
    FieldOrder,
    InjectedAnswer,
    ObjectLike,
    RolloutParse,
    TokenizerLike,
    build_injection,
    parse_rollout,
)
from coordexp_train.stage2.channel_b_targets import (
    ChannelBPolicy,
    ChannelBTargets,
    channel_b_targets,
)
from coordexp_train.stage2.timing import PhaseTimes


class MatchingOptions(Protocol):
    """The ``rollout_matching`` fields matching reads (the schema section fits)."""

    @property
    def maskiou_gate(self) -> float: ...  # noqa: D102
    @property
    def candidate_top_k(self) -> int | None: ...  # noqa: D102
    @property
    def fp_cost(self) -> float: ...  # noqa: D102
    @property
    def fn_cost(self) -> float: ...  # noqa: D102
    @property
    def maskiou_resolution(self) -> int: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class ChannelBSample:
    """Everything a Channel-B step learned about one rollout.

    Attributes:
        parse: the token parse of the rollout.
        result: the match of the parsed objects against the ground truth.
        answer: the FN-injected, teacher-forced answer with its token labels.
        targets: the per-token supervision of ``answer``.
        rollout_tokens: the number of response token ids the rollout had.
    """

    parse: RolloutParse
    result: MatchResult
    answer: InjectedAnswer
    targets: ChannelBTargets
    rollout_tokens: int


def build_channel_b_sample(
    response_ids: Sequence[int],
    gts: Sequence[ObjectLike],
    tokenizer: TokenizerLike,
    matching: MatchingOptions,
    policy: ChannelBPolicy,
    *,
    field_order: FieldOrder = "desc_first",
    times: PhaseTimes | None = None,
) -> ChannelBSample:
    """Parse, match, inject and label one rollout (a pure function of its inputs).

    Args:
        response_ids: the rollout's response token ids (any backend).
        gts: the sample's ground-truth objects (norm1000 bins).
        tokenizer: the tokenizer the rollout was generated with.
        matching: ``rollout_matching`` (gate, top-k, costs, mask resolution).
        policy: ``stage2_ab.channel_b``.
        field_order: field order of the injected FN entries.
        times: when given, the seconds spent in ``parse``, ``match`` and ``targets``
            (FN injection and target building) are added to it.

    Raises:
        ValueError: a ground-truth object cannot be matched or rendered (named by
            ``coordexp_match`` / ``coordexp_parse``).
    """
    clock = times if times is not None else PhaseTimes()
    with clock.phase("parse"):
        parse = parse_rollout(response_ids, tokenizer)
    with clock.phase("match"):
        result = match(
            parse.objects,
            gts,
            gate=matching.maskiou_gate,
            top_k=matching.candidate_top_k,
            fp_cost=matching.fp_cost,
            fn_cost=matching.fn_cost,
            resolution=matching.maskiou_resolution,
        )
    with clock.phase("targets"):
        answer = build_injection(
            parse,
            [gts[j] for j in result.fn],
            tokenizer,
            matched=[p for p, _ in result.pairs],
            field_order=field_order,
        )
        targets = channel_b_targets(parse, answer, result, gts, policy)
    return ChannelBSample(parse, result, answer, targets, len(response_ids))


def step_stats(samples: Sequence[ChannelBSample]) -> dict[str, float]:
    """Per-step Channel-B statistics for the metrics log (deterministic key order).

    Returns:
        ``rollouts``, ``truncated``, ``matched``, ``fp``, ``fn``, ``dropped`` (all
        reasons) and ``dropped/<reason>`` for each reason that occurred (sorted),
        ``coord_unsupervised`` (matched objects without coord loss), ``rollout_len_mean``
        / ``rollout_len_max`` (response tokens) and ``answer_len_mean`` (teacher-forced
        answer tokens). Means are 0 for no samples.
    """
    n = len(samples)
    dropped: Counter[str] = Counter()
    for s in samples:
        dropped.update(s.parse.dropped)
    lengths = [s.rollout_tokens for s in samples]
    stats: dict[str, float] = {
        "rollouts": float(n),
        "truncated": float(sum(s.parse.truncated for s in samples)),
        "matched": float(sum(len(s.result.pairs) for s in samples)),
        "fp": float(sum(len(s.result.fp) for s in samples)),
        "fn": float(sum(len(s.result.fn) for s in samples)),
        "dropped": float(sum(dropped.values())),
    }
    stats.update({f"dropped/{reason}": float(dropped[reason]) for reason in sorted(dropped)})
    stats["coord_unsupervised"] = float(sum(s.targets.unsupervised_coord_objects for s in samples))
    stats["rollout_len_mean"] = sum(lengths) / n if n else 0.0
    stats["rollout_len_max"] = float(max(lengths, default=0))
    stats["answer_len_mean"] = sum(len(s.answer.token_ids) for s in samples) / n if n else 0.0
    return stats
