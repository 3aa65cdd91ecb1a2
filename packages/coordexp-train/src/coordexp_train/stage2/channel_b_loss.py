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

import torch

from coordexp_train.losses import CoordWeights, coord_terms, weighted_token_ce
from coordexp_train.stage2.channel_b_targets import ChannelBTargets


@dataclass(frozen=True)
class ChannelBLossOutput:
    """The total loss and its detached parts.

    Attributes:
        total: differentiable float32 scalar.
        parts: detached float32 scalars: ``token_ce`` (when a token has CE weight),
            ``coord_ce`` (when weighted), and the parts of ``coord_terms``.
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


def channel_b_loss(
    logits: torch.Tensor,
    samples: Sequence[tuple[ChannelBTargets, int]],
    coord_token_ids: torch.Tensor,
    weights: CoordWeights,
    *,
    coord_ce_weight: float = 0.0,
) -> ChannelBLossOutput:
    """Loss of teacher-forced Channel-B answers (deterministic for identical inputs).

    Args:
        logits: ``[N, V]`` flattened logits of the batch or pack; row ``r`` predicts the
            token at input position ``r + 1``.
        samples: each answer's targets with the row of its first answer token (so answer
            token ``i`` is predicted by row ``start + i − 1``).
        coord_token_ids: ``[1000]`` token id of each coord bin.
        weights: coordinate-term weights (``stage2_ab``'s box weights plus the soft-CE /
            W1 / gate shapes, e.g. a ``Stage1LossWeights``).
        coord_ce_weight: ``stage2_ab.coord_ce_weight``: token CE at coord positions
            against the target bin's token.

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
    if coord_ce_weight > 0 and coord_rows.numel():
        coord_ids = coord_token_ids.to(logits.device).long()
        ones = torch.ones(coord_rows.numel(), device=logits.device)
        ce_sum, _ = weighted_token_ce(logits, coord_rows, coord_ids[coord_bins], ones)
        parts["coord_ce"] = ce_sum / coord_rows.numel()
        total = total + coord_ce_weight * parts["coord_ce"]
    coords = coord_terms(logits, coord_rows, coord_bins, coord_token_ids, weights, box_index)
    parts.update(coords.parts)
    total = total + coords.total
    if logits.requires_grad and not total.requires_grad:
        total = total + logits.reshape(-1)[0].float() * 0.0  # keep a graph for backward()
    return ChannelBLossOutput(total=total, parts={k: v.detach() for k, v in parts.items()})
