"""Diagnostics of the coord-token predictions, logged next to the losses.

These numbers are computed without gradients from the same logits the loss sees, through
the same helpers (:func:`coordexp_train.losses.coord_vocab_gate` for the gate and the coord
mass), so a metric and its loss term can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from coordexp_train.losses import (
    MAX_BIN,
    coord_vocab_gate,
    expected_coord,
    supervised_positions,
)


@dataclass(frozen=True)
class CoordTokenMetrics:
    """Coord-position diagnostics of one batch.

    Attributes:
        gate_per_position: ``[M]`` gate values (−log coord mass) at the coord positions.
        coord_mass: mean probability mass on the coord sub-vocabulary at coord positions.
        expected_coord_mae: mean |expectation-decoded − true| coordinate, unit square.
        coord_argmax_accuracy: fraction of coord positions whose argmax bin is the truth.
        coord_positions: M.
    """

    gate_per_position: torch.Tensor
    coord_mass: float
    expected_coord_mae: float
    coord_argmax_accuracy: float
    coord_positions: int


@torch.no_grad()
def coord_token_metrics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    coord_token_ids: torch.Tensor,
    *,
    gate_temperature: float = 1.0,
    coord_temperature: float = 1.0,
) -> CoordTokenMetrics:
    """Measure coord-position behaviour of ``logits`` (shapes as in ``stage1_loss``).

    Returns zeros (and an empty gate tensor) when the batch has no coord position.
    """
    vocab = logits.shape[-1]
    flat = logits.reshape(-1, vocab)
    sup = supervised_positions(labels, coord_token_ids, vocab)
    rows = sup.rows[sup.is_coord]
    bins = sup.bins[sup.is_coord]
    if rows.numel() == 0:
        return CoordTokenMetrics(torch.zeros(0), 0.0, 0.0, 0.0, 0)
    coord_ids = coord_token_ids.to(flat.device).long()
    coord_logits = flat[rows[:, None], coord_ids[None, :]]
    gate = coord_vocab_gate(flat, coord_logits, temperature=gate_temperature, rows=rows)
    decoded = expected_coord(coord_logits, coord_temperature)
    return CoordTokenMetrics(
        gate_per_position=gate.loss,
        coord_mass=float(gate.coord_mass.mean()),
        expected_coord_mae=float((decoded - bins.float() / MAX_BIN).abs().mean()),
        coord_argmax_accuracy=float((coord_logits.argmax(1) == bins).float().mean()),
        coord_positions=int(rows.numel()),
    )
