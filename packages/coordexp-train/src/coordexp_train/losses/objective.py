"""The Stage-1 objective: weighted token CE plus the CoordExp coordinate terms.

Inputs follow the transformers convention: ``labels`` are aligned with ``input_ids``
(``-100`` = not supervised) and the logits at position ``t`` predict the label at
``t + 1``. A supervised position whose label is one of the 1000 coord token ids is a
*coord position*; every other supervised position is a *text position*.

Normalisation: token CE is ``Σ wᵢ·ceᵢ`` over supervised positions divided by the number of
positions with ``wᵢ > 0``; the coord terms (soft-CE, W1, gate) are means over coord
positions; the text gate is a mean over text positions; SmoothL1 is a mean over box
coordinates and CIoU a mean over boxes. A term whose weight is 0 is not computed. An empty
set (no coord position, no box) contributes an exact 0 that still carries a gradient path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from coordexp_train.losses.coord_terms import coord_terms
from coordexp_train.losses.gate import coord_vocab_gate
from coordexp_train.losses.token_ce import weighted_token_ce

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Stage1LossWeights:
    """Weights and shapes of the Stage-1 terms (defaults: the research Stage-1 config).

    ``smoothl1_beta`` is in unit-square coordinates; ``coord_temperature`` is the softmax
    temperature of the expectation decode, soft-CE and W1; ``gate_temperature`` that of the
    gate.
    """

    text_ce_weight: float = 1.0
    coord_ce_weight: float = 0.0
    soft_ce_weight: float = 1.0
    soft_ce_sigma: float = 2.0
    soft_ce_truncation_radius: float | None = None
    w1_weight: float = 1.0
    gate_weight: float = 1.0
    gate_temperature: float = 1.0
    text_gate_weight: float = 0.0
    bbox_smoothl1_weight: float = 0.0
    bbox_ciou_weight: float = 0.0
    smoothl1_beta: float = 0.1
    coord_temperature: float = 1.0


@dataclass(frozen=True)
class SupervisedPositions:
    """Where the loss reads the logits, derived once from ``labels``.

    Attributes:
        rows: ``[R]`` rows of the flattened ``[B·T, V]`` logits that predict a label.
        targets: ``[R]`` the label ids they predict.
        is_coord: ``[R]`` bool, target is a coord token.
        bins: ``[R]`` the coord bin of the target (−1 for text positions).
        label_index: ``[B·T]`` for each flattened label position, its index in ``rows``
            (−1 where unsupervised).
    """

    rows: torch.Tensor
    targets: torch.Tensor
    is_coord: torch.Tensor
    bins: torch.Tensor
    label_index: torch.Tensor


def supervised_positions(
    labels: torch.Tensor, coord_token_ids: torch.Tensor, vocab_size: int
) -> SupervisedPositions:
    """Locate supervised positions and their coord bins (``coord_token_ids[k]`` is bin k).

    Raises:
        ValueError: ``labels`` is not ``[B, T]``, or a label id lies outside the vocabulary.
    """
    if labels.dim() != 2:
        raise ValueError(f"labels must be [B, T], got shape {tuple(labels.shape)}")
    b, t = labels.shape
    flat = labels.reshape(-1)
    pos = torch.arange(b * t, device=labels.device)
    keep = (flat != IGNORE_INDEX) & (pos % t != 0)
    label_pos = pos[keep]
    targets = flat[label_pos]
    if targets.numel() and (targets.min() < 0 or targets.max() >= vocab_size):
        raise ValueError(
            f"label ids must be -100 or in [0, {vocab_size}); got range "
            f"[{int(targets.min())}, {int(targets.max())}]"
        )
    bin_of = torch.full((vocab_size,), -1, dtype=torch.long, device=labels.device)
    bin_of[coord_token_ids.to(labels.device).long()] = torch.arange(
        coord_token_ids.numel(), device=labels.device
    )
    bins = bin_of[targets]
    label_index = torch.full((b * t,), -1, dtype=torch.long, device=labels.device)
    label_index[label_pos] = torch.arange(label_pos.numel(), device=labels.device)
    return SupervisedPositions(label_pos - 1, targets, bins >= 0, bins, label_index)


@dataclass(frozen=True)
class Stage1LossOutput:
    """The total loss and its detached parts.

    Attributes:
        total: differentiable float32 scalar.
        parts: detached float32 scalars by name (``token_ce``, ``soft_ce``, ``w1``,
            ``gate``, ``text_gate``, ``bbox_smoothl1``, ``bbox_ciou``, ``coord_mass``);
            only computed terms appear, ``coord_mass`` whenever there are coord positions.
        gate_per_position: detached ``[M]`` gate values at the coord positions.
    """

    total: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)
    gate_per_position: torch.Tensor | None = None


def stage1_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    coord_token_ids: torch.Tensor,
    weights: Stage1LossWeights,
    bbox_label_positions: torch.Tensor | None = None,
) -> Stage1LossOutput:
    """Compute the Stage-1 objective without a full-vocabulary float32 softmax.

    Args:
        logits: ``[B, T, V]`` model logits (bf16 or float32).
        labels: ``[B, T]`` label ids aligned with the inputs, ``-100`` where unsupervised.
        coord_token_ids: ``[1000]`` token id of each coord bin.
        weights: term weights and shapes.
        bbox_label_positions: optional ``[K, 4]`` flat positions in ``labels`` of the
            ``x1, y1, x2, y2`` coord labels of each ground-truth box (for the box losses).

    Returns:
        :class:`Stage1LossOutput`. Deterministic for identical inputs.

    Raises:
        ValueError: on shape mismatches, or a box position that is not a coord label.
    """
    if logits.dim() != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"logits must be [B, T, V] matching labels [B, T]; got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    vocab = logits.shape[2]
    flat = logits.reshape(-1, vocab)
    sup = supervised_positions(labels, coord_token_ids, vocab)
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=flat.device)

    ce_w = torch.where(sup.is_coord, weights.coord_ce_weight, weights.text_ce_weight)
    if bool((ce_w > 0).any()):
        ce_sum, _ = weighted_token_ce(flat, sup.rows, sup.targets, ce_w)
        parts["token_ce"] = ce_sum / (ce_w > 0).sum()
        total = total + parts["token_ce"]

    box_index = None
    if bbox_label_positions is not None and bbox_label_positions.numel():
        box_index = _box_coord_index(sup, bbox_label_positions)
    coords = coord_terms(
        flat,
        sup.rows[sup.is_coord],
        sup.bins[sup.is_coord],
        coord_token_ids,
        weights,
        box_index,
    )
    parts.update(coords.parts)
    total = total + coords.total

    if weights.text_gate_weight > 0:
        coord_ids = coord_token_ids.to(flat.device).long()
        rows_t = sup.rows[~sup.is_coord]
        text_coord_logits = flat[rows_t[:, None], coord_ids[None, :]]
        mirror = coord_vocab_gate(
            flat, text_coord_logits, temperature=weights.gate_temperature, rows=rows_t, side="text"
        )
        parts["text_gate"] = mirror.loss.mean() if rows_t.numel() else text_coord_logits.sum() * 0.0
        total = total + weights.text_gate_weight * parts["text_gate"]

    if flat.requires_grad and not total.requires_grad:
        total = total + flat.reshape(-1)[0].float() * 0.0  # keep a graph for backward()
    detached = {k: v.detach().float() for k, v in parts.items()}
    return Stage1LossOutput(total=total, parts=detached, gate_per_position=coords.gate_per_position)


def _box_coord_index(sup: SupervisedPositions, bbox_label_positions: torch.Tensor) -> torch.Tensor:
    """``[K, 4]`` indices into the coord positions of each box's x1, y1, x2, y2 labels."""
    idx = sup.label_index[bbox_label_positions.long().reshape(-1)]
    if bool((idx < 0).any()) or not bool(sup.is_coord[idx.clamp(min=0)].all()):
        raise ValueError(
            "bbox_label_positions must point at supervised coord labels; got positions "
            f"{bbox_label_positions.tolist()[:4]}..."
        )
    coord_index = torch.cumsum(sup.is_coord.long(), 0) - 1
    return coord_index[idx].reshape(-1, 4)
