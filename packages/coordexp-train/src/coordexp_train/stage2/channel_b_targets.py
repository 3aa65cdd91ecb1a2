"""Channel-B per-token targets: the seed-003 mask policy over an FN-injected rollout.

Input is ``coordexp_parse.build_injection``'s :class:`~coordexp_parse.InjectedAnswer` (token
ids with per-token owner/role/ordinal labels), the ``coordexp_match.MatchResult`` that
chose which predictions are matched and which ground-truth objects were injected, and the
ground-truth objects. The policy is a table lookup on (owner, role):

=========  =====================  ========================  ==================  =========
owner      STRUCTURE              DESC                      COORD               CLOSE/END
=========  =====================  ========================  ==================  =========
MATCHED    CE 1                   masked                    coord losses (GT)   —
FP         masked                 masked                    masked              —
FN         CE × drop multiplier   CE × ``desc_ce_weight``   coord losses (GT)   —
NONE       masked                 masked                    masked              see below
=========  =====================  ========================  ==================  =========

The outermost ``}`` and ``<|im_end|>`` are masked when ``stop_neutral`` is true, else
supervised with CE 1 (× the drop multiplier: they are part of the tail). The drop
multiplier (``drop_invalid_struct_ce_multiplier``) applies only to samples whose rollout
had invalid objects dropped. Coord tokens never get token CE here: they carry target bins
for the coordinate losses instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from coordexp_match import MatchResult
from coordexp_parse import InjectedAnswer, ObjectLike, Owner, Role, RolloutParse


class ChannelBPolicy(Protocol):
    """The ``stage2_ab.channel_b`` options the targets read (the schema section fits)."""

    @property
    def stop_neutral(self) -> bool: ...  # noqa: D102
    @property
    def drop_invalid_struct_ce_multiplier(self) -> float: ...  # noqa: D102
    @property
    def desc_ce_weight(self) -> float: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class ChannelBTargets:
    """Supervision of one FN-injected answer, aligned with its ``token_ids``.

    Attributes:
        token_ids: the answer's token ids (the CE targets).
        ce_weights: token-CE weight of each token (0 = masked; always 0 at coord tokens).
        coord_positions: positions (into ``token_ids``) of coord tokens with a coordinate
            loss, ascending.
        coord_bins: the target bin (0..999) of each entry of ``coord_positions``.
        coord_object: for each entry of ``coord_positions``, its supervised object,
            numbered 0, 1, … in answer order.
        box_index: for each supervised box, the indices into ``coord_positions`` of its
            x1, y1, x2, y2 (for the box losses).
        unsupervised_coord_objects: matched predictions whose geometry cannot take the
            matched ground truth's coordinates (see :func:`channel_b_targets`), so their
            coord tokens get no loss.
    """

    token_ids: tuple[int, ...]
    ce_weights: tuple[float, ...]
    coord_positions: tuple[int, ...]
    coord_bins: tuple[int, ...]
    coord_object: tuple[int, ...]
    box_index: tuple[tuple[int, int, int, int], ...]
    unsupervised_coord_objects: int


def _enclosing_box(coords: Sequence[int]) -> tuple[int, ...]:
    xs, ys = coords[0::2], coords[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


def _target_coords(pred_kind: str, n_pred: int, gt: ObjectLike) -> tuple[int, ...] | None:
    """The GT coordinates a prediction of ``pred_kind`` with ``n_pred`` coords learns."""
    gt_coords = tuple(gt.coords)
    if pred_kind == "bbox_2d" and gt.kind != "bbox_2d":
        return _enclosing_box(gt_coords)
    if pred_kind == gt.kind and n_pred == len(gt_coords):
        return gt_coords
    return None


def _check_consistent(
    answer: InjectedAnswer, result: MatchResult, gts: Sequence[ObjectLike]
) -> None:
    if len(answer.fn_coord_positions) != len(result.fn):
        raise ValueError(
            f"the injected answer holds {len(answer.fn_coord_positions)} FN objects but the "
            f"match has {len(result.fn)}: build_injection must get [gts[j] for j in result.fn]"
        )
    n_pred = len(answer.pred_coord_positions)
    bad_pred = [p for p, _ in result.pairs if not 0 <= p < n_pred]
    bad_gt = [g for _, g in result.pairs if not 0 <= g < len(gts)]
    bad_gt += [g for g in result.fn if not 0 <= g < len(gts)]
    if bad_pred or bad_gt:
        raise ValueError(
            f"match indices out of range: preds {bad_pred} (answer has {n_pred} parsed "
            f"objects), gts {bad_gt} (there are {len(gts)} ground-truth objects)"
        )
    matched = {p for p, _ in result.pairs}
    for p, positions in enumerate(answer.pred_coord_positions):
        labelled = answer.owners[positions[0]] is Owner.MATCHED
        if labelled != (p in matched):
            raise ValueError(
                f"parsed object {p} is labelled {'MATCHED' if labelled else 'FP'} in the answer "
                f"but the match {'leaves it unmatched' if labelled else 'matches it'}: "
                "build_injection must get matched=[p for p, _ in result.pairs]"
            )


def channel_b_targets(
    parse: RolloutParse,
    answer: InjectedAnswer,
    result: MatchResult,
    gts: Sequence[ObjectLike],
    policy: ChannelBPolicy,
) -> ChannelBTargets:
    """Apply the seed-003 mask policy to an FN-injected answer (deterministic, pure).

    Args:
        parse: the token parse of the rollout.
        answer: ``build_injection(parse, [gts[j] for j in result.fn], tokenizer,
            matched=[p for p, _ in result.pairs])``.
        result: the match of ``parse.objects`` against ``gts``.
        gts: the ground-truth objects (norm1000 bins).
        policy: ``stage2_ab.channel_b`` (or any object with its three fields). When the
            rollout had invalid entries dropped (``parse.num_dropped > 0``) the tail's
            structure CE is multiplied by ``drop_invalid_struct_ce_multiplier``.

    Returns:
        :class:`ChannelBTargets`. A matched bbox learns its GT's box (a polygon GT's
        enclosing box); a matched polygon learns a polygon GT with as many coordinates;
        any other pairing leaves the prediction's coord tokens unsupervised and is counted
        in ``unsupervised_coord_objects``. Injected FN objects learn their own coords.

    Raises:
        ValueError: ``answer`` and ``result`` disagree (FN count, matched labels, indices
            out of range), or ``answer`` was not built from ``parse``.
    """
    if len(parse.objects) != len(answer.pred_coord_positions):
        raise ValueError(
            f"the answer holds {len(answer.pred_coord_positions)} parsed objects but the "
            f"parse has {len(parse.objects)}: build the answer from this parse"
        )
    _check_consistent(answer, result, gts)
    pred_kinds = [obj.kind for obj in parse.objects]
    tail = policy.drop_invalid_struct_ce_multiplier if parse.num_dropped else 1.0
    stop = 0.0 if policy.stop_neutral else tail
    weight_of = {(owner, role): 0.0 for owner in Owner for role in Role}
    weight_of.update({(owner, role): stop for owner in Owner for role in (Role.CLOSE, Role.END)})
    weight_of[Owner.MATCHED, Role.STRUCTURE] = 1.0
    weight_of[Owner.FN, Role.STRUCTURE] = tail
    weight_of[Owner.FN, Role.DESC] = policy.desc_ce_weight
    weights = tuple(map(weight_of.__getitem__, zip(answer.owners, answer.roles, strict=True)))

    groups: list[tuple[tuple[int, ...], tuple[int, ...], bool]] = []
    unsupervised = 0
    for p, g in result.pairs:
        positions = answer.pred_coord_positions[p]
        target = _target_coords(pred_kinds[p], len(positions), gts[g])
        if target is None:
            unsupervised += 1
            continue
        groups.append((positions, target, pred_kinds[p] == "bbox_2d"))
    for k, g in enumerate(result.fn):
        gt = gts[g]
        groups.append((answer.fn_coord_positions[k], tuple(gt.coords), gt.kind == "bbox_2d"))
    groups.sort(key=lambda group: group[0][0])  # answer order (objects have coords)

    positions_out: list[int] = []
    bins_out: list[int] = []
    objects_out: list[int] = []
    boxes: list[tuple[int, int, int, int]] = []
    for number, (positions, target, is_box) in enumerate(groups):
        start = len(positions_out)
        positions_out.extend(positions)
        bins_out.extend(target)
        objects_out.extend([number] * len(positions))
        if is_box:
            boxes.append((start, start + 1, start + 2, start + 3))
    return ChannelBTargets(
        token_ids=answer.token_ids,
        ce_weights=weights,
        coord_positions=tuple(positions_out),
        coord_bins=tuple(bins_out),
        coord_object=tuple(objects_out),
        box_index=tuple(boxes),
        unsupervised_coord_objects=unsupervised,
    )
