"""The Channel-B loss: weighted token CE plus the coordinate terms at target bins.

Composes the shared losses (:func:`~coordexp_train.losses.weighted_token_ce`,
:func:`~coordexp_train.losses.coord_terms`) over :class:`ChannelBTargets` placed in a
batch or pack of flattened logits. Normalisation follows the Stage-1 objective: token CE
is ``Σ wᵢ·ceᵢ`` over tokens with ``wᵢ > 0`` divided by their count; the coord terms are
means over coord positions (box terms over boxes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from coordexp_train.losses import (
    MAX_BIN,
    CoordWeights,
    coord_log_probs,
    coord_terms,
    expected_coord,
    l1,
    smooth_l1,
    weighted_token_ce,
)
from coordexp_train.stage2.channel_b_targets import ChannelBTargets


class Stage2CoordWeights(Protocol):
    """The ``stage2_ab`` coordinate-term weights (the schema section fits)."""

    @property
    def coord_ce_weight(self) -> float: ...  # noqa: D102
    @property
    def coord_el1_weight(self) -> float: ...  # noqa: D102
    @property
    def coord_ehuber_weight(self) -> float: ...  # noqa: D102
    @property
    def coord_ehuber_delta(self) -> float: ...  # noqa: D102
    @property
    def coord_entropy_weight(self) -> float: ...  # noqa: D102


@dataclass(frozen=True)
class ChannelBLossOutput:
    """The total loss and its detached parts.

    Attributes:
        total: differentiable float32 scalar.
        parts: detached float32 scalars: ``token_ce`` (when a token has CE weight),
            ``coord_ce``, ``coord_el1``, ``coord_ehuber``, ``coord_entropy`` (when
            weighted and there are coord positions), and the parts of ``coord_terms``.
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


def _placed(
    samples: Sequence[tuple[ChannelBTargets, int]], n_rows: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    ce_rows: list[int] = []
    ce_targets: list[int] = []
    ce_weights: list[float] = []
    coord_rows: list[int] = []
    coord_bins: list[int] = []
    boxes: list[tuple[int, ...]] = []
    for k, (target, start) in enumerate(samples):
        if start < 1 or start + len(target.token_ids) > n_rows:
            raise ValueError(
                f"sample {k}: its answer starts at row {start} and has "
                f"{len(target.token_ids)} tokens; it must start at row >= 1 (after a "
                f"prompt) and end within the {n_rows} logits rows"
            )
        for i, w in enumerate(target.ce_weights):
            if w > 0:
                ce_rows.append(start + i - 1)
                ce_targets.append(target.token_ids[i])
                ce_weights.append(w)
        offset = len(coord_rows)
        coord_rows.extend(start + p - 1 for p in target.coord_positions)
        coord_bins.extend(target.coord_bins)
        boxes.extend(tuple(offset + j for j in box) for box in target.box_index)

    def as_long(values: Sequence[int] | Sequence[tuple[int, ...]]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return (
        as_long(ce_rows),
        as_long(ce_targets),
        torch.tensor(ce_weights, dtype=torch.float32, device=device),
        as_long(coord_rows),
        as_long(coord_bins),
        as_long(boxes).reshape(-1, 4),
    )


def _stage2_terms(
    logits: torch.Tensor,
    rows: torch.Tensor,
    bins: torch.Tensor,
    coord_token_ids: torch.Tensor,
    stage2: Stage2CoordWeights,
    temperature: float,
) -> dict[str, tuple[float, torch.Tensor]]:
    """``name -> (weight, mean term)`` of the weighted ``stage2_ab`` coordinate terms."""
    ids = coord_token_ids.to(logits.device).long()
    terms: dict[str, tuple[float, torch.Tensor]] = {}
    if stage2.coord_ce_weight > 0:
        ones = torch.ones(rows.numel(), device=logits.device)
        ce_sum, _ = weighted_token_ce(logits, rows, ids[bins], ones)
        terms["coord_ce"] = (stage2.coord_ce_weight, ce_sum / rows.numel())
    coord_logits = logits[rows[:, None], ids[None, :]]
    if stage2.coord_el1_weight > 0 or stage2.coord_ehuber_weight > 0:
        pred = expected_coord(coord_logits, temperature)
        gt = bins.float() / MAX_BIN
        if stage2.coord_el1_weight > 0:
            terms["coord_el1"] = (stage2.coord_el1_weight, l1(pred, gt).mean())
        if stage2.coord_ehuber_weight > 0:
            delta = stage2.coord_ehuber_delta
            huber = delta * smooth_l1(pred, gt, delta)
            terms["coord_ehuber"] = (stage2.coord_ehuber_weight, huber.mean())
    if stage2.coord_entropy_weight > 0:
        log_p = coord_log_probs(coord_logits, temperature)
        entropy = -(log_p.exp() * log_p).sum(dim=1)
        terms["coord_entropy"] = (stage2.coord_entropy_weight, entropy.mean())
    return terms


def channel_b_loss(
    logits: torch.Tensor,
    samples: Sequence[tuple[ChannelBTargets, int]],
    coord_token_ids: torch.Tensor,
    weights: CoordWeights,
    stage2: Stage2CoordWeights | None = None,
) -> ChannelBLossOutput:
    """Loss of teacher-forced Channel-B answers (deterministic for identical inputs).

    Args:
        logits: ``[N, V]`` flattened logits of the batch or pack; row ``r`` predicts the
            token at input position ``r + 1``.
        samples: each answer's targets with the row of its first answer token (so answer
            token ``i`` is predicted by row ``start + i − 1``; see ``placements``).
        coord_token_ids: ``[1000]`` token id of each coord bin.
        weights: the shared coordinate terms' weights and shapes (gate, soft-CE, W1, box
            SmoothL1/CIoU, temperatures; e.g. a ``Stage1LossWeights``).
        stage2: ``stage2_ab``'s extra coordinate terms, each a mean over coord positions:
            token CE against the target bin's token (``coord_ce_weight``), L1 and Huber
            (δ = ``coord_ehuber_delta``, in unit coordinates) of the expectation-decoded
            coordinate, and the entropy of the coord distribution; None = none of them.

    Returns:
        :class:`ChannelBLossOutput`; a masked token or unsupervised coord position reads
        no logit, so it contributes neither loss nor gradient.

    Raises:
        ValueError: ``logits`` is not 2-D, or an answer does not fit in the rows.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, V], got shape {tuple(logits.shape)}")
    ce_rows, ce_targets, ce_w, coord_rows, coord_bins, box_index = _placed(
        samples, logits.shape[0], logits.device
    )
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=logits.device)
    if ce_rows.numel():
        ce_sum, _ = weighted_token_ce(logits, ce_rows, ce_targets, ce_w)
        parts["token_ce"] = ce_sum / ce_rows.numel()
        total = total + parts["token_ce"]
    coords = coord_terms(logits, coord_rows, coord_bins, coord_token_ids, weights, box_index)
    parts.update(coords.parts)
    total = total + coords.total
    if stage2 is not None and coord_rows.numel():
        extra = _stage2_terms(
            logits, coord_rows, coord_bins, coord_token_ids, stage2, weights.coord_temperature
        )
        for name, (weight, value) in extra.items():
            parts[name] = value
            total = total + weight * value
    if logits.requires_grad and not total.requires_grad:
        total = total + logits.reshape(-1)[0].float() * 0.0  # keep a graph for backward()
    return ChannelBLossOutput(total=total, parts={k: v.detach() for k, v in parts.items()})
