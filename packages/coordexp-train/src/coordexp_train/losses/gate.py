"""The coord-vocab gate: the one helper every consumer calls (seed 000).

At a coord position the gate is ``−log`` of the probability mass the model puts on the
1000 coord tokens, at temperature ``T``::

    gate = max(0, logsumexp(full / T) − logsumexp(coord / T))      coord_mass = exp(−gate)

At a supervised text position the optional mirror term pushes that mass away::

    mirror = −log(max(1 − coord_mass, 1e-6))

Both are computed from fenced float32 logits (see :mod:`coordexp_train.losses.fences`) and
the outputs pass through ``nan_to_num``. The Stage-1 loss, the training metrics and the
rollout-matching path (Stage 2) all call :func:`coord_vocab_gate`; none re-implements it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from coordexp_train.losses.fences import fence_logits, finite_or_zero
from coordexp_train.losses.rows import row_logsumexp_and_pick

NON_COORD_MASS_FLOOR = 1.0e-6

GateSide = Literal["coord", "text"]


@dataclass(frozen=True)
class GateTerms:
    """Per-position gate output.

    Attributes:
        loss: float32 ``[R]``: the gate (``side="coord"``) or its mirror (``side="text"``).
        coord_mass: float32 ``[R]``: probability mass on the coord sub-vocabulary at ``T``.
    """

    loss: torch.Tensor
    coord_mass: torch.Tensor


def coord_vocab_gate(
    full_logits: torch.Tensor,
    coord_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    side: GateSide = "coord",
    rows: torch.Tensor | None = None,
) -> GateTerms:
    """Compute the coord-vocab gate (or its text-side mirror) per position.

    Args:
        full_logits: ``[N, V]`` full-vocabulary logits (any float dtype).
        coord_logits: ``[R, 1000]`` logits of the coord tokens at the gated positions.
        temperature: ``T > 0`` applied to both log-sum-exps.
        side: ``"coord"`` for ``−log coord_mass``; ``"text"`` for ``−log(1 − coord_mass)``
            with the non-coord mass floored at 1e-6.
        rows: optional ``[R]`` indices of the gated positions in ``full_logits``; when
            omitted, ``R == N`` and row ``i`` of both tensors is position ``i``. Passing
            rows avoids copying the full-vocabulary rows.

    Returns:
        :class:`GateTerms` (float32, finite). Deterministic for identical inputs.

    Raises:
        ValueError: on shape mismatches, an unknown ``side`` or ``temperature <= 0``.
    """
    if side not in ("coord", "text"):
        raise ValueError(f"side must be 'coord' or 'text', got {side!r}")
    if not temperature > 0:
        raise ValueError(f"gate temperature must be > 0, got {temperature}")
    if rows is None:
        rows = torch.arange(full_logits.shape[0], device=full_logits.device)
    if coord_logits.dim() != 2 or coord_logits.shape[0] != rows.shape[0]:
        raise ValueError(
            f"coord_logits must be [R, K] with R = {rows.shape[0]} gated positions, "
            f"got {tuple(coord_logits.shape)}"
        )
    no_cols = torch.empty((rows.shape[0], 0), dtype=torch.long, device=rows.device)
    lse_full, _ = row_logsumexp_and_pick(full_logits, rows, no_cols, temperature)
    lse_coord = torch.logsumexp(fence_logits(coord_logits) / temperature, dim=1)
    gate = (lse_full - lse_coord).clamp(min=0.0)
    coord_mass = torch.exp(-gate)
    if side == "coord":
        loss = gate
    else:
        loss = -torch.log((-torch.expm1(-gate)).clamp(min=NON_COORD_MASS_FLOOR))
    return GateTerms(loss=finite_or_zero(loss), coord_mass=finite_or_zero(coord_mass))
