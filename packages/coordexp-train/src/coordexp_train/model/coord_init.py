"""Initialising the embedding and LM-head rows of the coord tokens.

For a matrix W (input embedding or LM head), with μ and σ the per-dimension mean and
standard deviation of the *reference rows* (the ordinary tokens), u = k / 999 and d the
dimension index, row ``coord_k`` becomes::

    W[coord_k, d] = μ[d] + scale · σ[d] · √2 · cos(π · f_d · u + φ_d)
    f_d = 1 + (d mod 8),   φ_d = 2π · frac(d · 0.6180339887)

The offsets have unit RMS per dimension and vary smoothly with k: neighbouring bins
start nearly equal and distant bins differ, so what the model learns about one bin
carries over to its neighbours, and a coord token's input embedding already encodes
roughly where it is. Two scales are used:

* :data:`EXPAND_SCALE` (0.1) for ``expand-vocab`` on a pretrained checkpoint: every coord
  row starts close to the typical token, so the first forward passes behave as before;
* :data:`BUILTIN_SCALE` (1.0) for the random-initialised built-in models: coord rows are
  as spread as the random rows around them. Measured with configs/demo/stage1_tiny.yaml
  (252 steps, tiny model, last logged step): soft-CE 6.04 vs 6.26 and W1 0.158 vs 0.188
  against coord rows left at the random initialisation.

Deterministic: no random numbers are drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from coordexp_parse import MAX_BIN, NUM_BINS

EXPAND_SCALE = 0.1
BUILTIN_SCALE = 1.0
_GOLDEN = 0.6180339887


def coord_offsets(dim: int) -> torch.Tensor:
    """The unit-RMS per-bin offsets ``√2 · cos(π · f_d · u + φ_d)``, shape (1000, dim)."""
    u = torch.arange(NUM_BINS, dtype=torch.float64)[:, None] / MAX_BIN
    d = torch.arange(dim, dtype=torch.float64)[None, :]
    freq = 1 + torch.remainder(d, 8)
    phase = 2 * math.pi * torch.frac(d * _GOLDEN)
    return math.sqrt(2) * torch.cos(math.pi * freq * u + phase)


def init_coord_rows(
    weight: torch.Tensor, coord_ids: Sequence[int], reference_rows: int, *, scale: float
) -> None:
    """Overwrite ``weight[coord_ids]`` (bin order) by the rule above, in place.

    Args:
        weight: the (rows, dim) matrix.
        coord_ids: the row of each bin, ``coord_ids[k]`` for ``<|coord_k|>``.
        reference_rows: μ and σ are taken over ``weight[:reference_rows]``.
        scale: :data:`EXPAND_SCALE`, :data:`BUILTIN_SCALE` or another offset size.
    """
    with torch.no_grad():
        ref = weight[:reference_rows].to(torch.float64)
        mu, sigma = ref.mean(dim=0), ref.std(dim=0)
        rows = mu + scale * sigma * coord_offsets(weight.shape[1])
        weight[list(coord_ids)] = rows.to(weight.dtype)
