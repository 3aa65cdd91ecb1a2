"""The coordinate terms at a set of coord positions, given their target bins.

Shared by the Stage-1 objective (targets from the labels) and by Stage-2 paths, where the
target bin of a rollout's coord position comes from the matched ground truth rather than
from the token at that position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from coordexp_train.losses.box import ciou_loss, smooth_l1
from coordexp_train.losses.coord_dist import (
    MAX_BIN,
    expected_coord,
    gaussian_bin_target,
    soft_ce,
    w1_distance,
)
from coordexp_train.losses.gate import coord_vocab_gate


class CoordWeights(Protocol):
    """The weights and shapes the coordinate terms read."""

    @property
    def soft_ce_weight(self) -> float: ...  # noqa: D102
    @property
    def soft_ce_sigma(self) -> float: ...  # noqa: D102
    @property
    def soft_ce_truncation_radius(self) -> float | None: ...  # noqa: D102
    @property
    def w1_weight(self) -> float: ...  # noqa: D102
    @property
    def gate_weight(self) -> float: ...  # noqa: D102
    @property
    def gate_temperature(self) -> float: ...  # noqa: D102
    @property
    def bbox_smoothl1_weight(self) -> float: ...  # noqa: D102
    @property
    def bbox_ciou_weight(self) -> float: ...  # noqa: D102
    @property
    def smoothl1_beta(self) -> float: ...  # noqa: D102
    @property
    def coord_temperature(self) -> float: ...  # noqa: D102


@dataclass(frozen=True)
class CoordTermsOutput:
    """Weighted sum and parts of the coordinate terms.

    Attributes:
        total: differentiable float32 scalar (0 with a graph when nothing applies).
        parts: differentiable float32 scalars: ``coord_mass`` (when there are positions),
            ``gate``, ``soft_ce``, ``w1``, ``bbox_smoothl1``, ``bbox_ciou`` (when weighted).
        gate_per_position: detached ``[M]`` gate values, None without positions.
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor]
    gate_per_position: torch.Tensor | None


def _mean(values: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    return values.mean() if values.numel() else anchor.sum() * 0.0


def coord_terms(
    logits: torch.Tensor,
    rows: torch.Tensor,
    target_bins: torch.Tensor,
    coord_token_ids: torch.Tensor,
    weights: CoordWeights,
    box_index: torch.Tensor | None = None,
) -> CoordTermsOutput:
    """Gate, soft-CE, W1 and box terms at coord positions.

    Args:
        logits: ``[N, V]`` logits (any float dtype).
        rows: ``[M]`` rows of ``logits`` that predict a coordinate.
        target_bins: ``[M]`` their target bins in 0..999.
        coord_token_ids: ``[1000]`` token id of each bin.
        weights: term weights (a term with weight 0 is not computed; the gate always is,
            for ``coord_mass``).
        box_index: optional ``[K, 4]`` indices into ``rows`` of each box's x1, y1, x2, y2.

    Returns:
        :class:`CoordTermsOutput`; means over positions (gate, soft-CE, W1), over box
        coordinates (SmoothL1) and over boxes (CIoU).

    Raises:
        ValueError: ``rows`` and ``target_bins`` differ in length, or bad box indices.
    """
    if rows.shape != target_bins.shape:
        raise ValueError(
            f"rows and target_bins must have one shape, got {tuple(rows.shape)} and "
            f"{tuple(target_bins.shape)}"
        )
    coord_ids = coord_token_ids.to(logits.device).long()
    coord_logits = logits[rows[:, None], coord_ids[None, :]]
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=logits.device)
    gate_values = None
    if rows.numel():
        gate = coord_vocab_gate(
            logits, coord_logits, temperature=weights.gate_temperature, rows=rows
        )
        gate_values = gate.loss.detach()
        parts["coord_mass"] = gate.coord_mass.mean()
        if weights.gate_weight > 0:
            parts["gate"] = gate.loss.mean()
            total = total + weights.gate_weight * parts["gate"]
    t = weights.coord_temperature
    if weights.soft_ce_weight > 0 or weights.w1_weight > 0:
        q = gaussian_bin_target(
            target_bins, weights.soft_ce_sigma, weights.soft_ce_truncation_radius
        )
        if weights.soft_ce_weight > 0:
            parts["soft_ce"] = _mean(soft_ce(coord_logits, q, t), coord_logits)
            total = total + weights.soft_ce_weight * parts["soft_ce"]
        if weights.w1_weight > 0:
            parts["w1"] = _mean(w1_distance(coord_logits, q, t), coord_logits)
            total = total + weights.w1_weight * parts["w1"]
    boxed = weights.bbox_smoothl1_weight > 0 or weights.bbox_ciou_weight > 0
    if boxed and box_index is not None and box_index.numel():
        if box_index.dim() != 2 or box_index.shape[1] != 4:
            raise ValueError(f"box_index must be [K, 4], got {tuple(box_index.shape)}")
        if int(box_index.min()) < 0 or int(box_index.max()) >= rows.numel():
            raise ValueError(f"box_index must index the {rows.numel()} coord positions")
        pred = expected_coord(coord_logits, t)[box_index]
        gt = target_bins[box_index].float() / MAX_BIN
        if weights.bbox_smoothl1_weight > 0:
            parts["bbox_smoothl1"] = smooth_l1(pred, gt, weights.smoothl1_beta).mean()
            total = total + weights.bbox_smoothl1_weight * parts["bbox_smoothl1"]
        if weights.bbox_ciou_weight > 0:
            parts["bbox_ciou"] = ciou_loss(pred, gt).mean()
            total = total + weights.bbox_ciou_weight * parts["bbox_ciou"]
    return CoordTermsOutput(total=total, parts=parts, gate_per_position=gate_values)
