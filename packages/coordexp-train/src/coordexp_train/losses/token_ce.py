"""Token cross-entropy with per-token weights."""

from __future__ import annotations

import torch

from coordexp_train.losses.fences import finite_or_zero
from coordexp_train.losses.rows import row_logsumexp_and_pick


def weighted_token_ce(
    logits: torch.Tensor,
    rows: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy at selected rows, multiplied by per-token weights.

    Args:
        logits: ``[N, V]`` logits (any float dtype), fenced before use.
        rows: ``[R]`` rows of ``logits`` that predict a supervised token.
        targets: ``[R]`` target token ids.
        weights: ``[R]`` non-negative float weights (e.g. text 1.0, coord 0.0).

    Returns:
        ``(weighted_sum, per_token)``: the float32 scalar ``Σ wᵢ·ceᵢ`` and the unweighted
        float32 ``[R]`` cross-entropies. Callers choose the normaliser (the Stage-1 loss
        divides by the number of positions with ``w > 0``).

    Raises:
        ValueError: when ``rows``, ``targets`` and ``weights`` differ in length.
    """
    if not rows.shape == targets.shape == weights.shape:
        raise ValueError(
            f"rows, targets and weights must have one shape, got {tuple(rows.shape)}, "
            f"{tuple(targets.shape)}, {tuple(weights.shape)}"
        )
    lse, picked = row_logsumexp_and_pick(logits, rows, targets.long()[:, None])
    per_token = finite_or_zero(lse - picked[:, 0])
    return (per_token * weights.float()).sum(), per_token
