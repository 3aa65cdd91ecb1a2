"""Losses on the distribution over the 1000 coord bins (CoordExp).

Bin ``k`` stands for ``k / 999`` of the image side. ``coord_logits`` are the fenced logits
of the 1000 coord tokens at positions whose target is a coord token. All functions return
float32, are pure, and are differentiable in ``coord_logits``.
"""

from __future__ import annotations

import torch

from coordexp_train.losses.fences import fence_logits, finite_or_zero

NUM_BINS = 1000
MAX_BIN = NUM_BINS - 1


def _check(coord_logits: torch.Tensor, temperature: float) -> None:
    if coord_logits.dim() != 2 or coord_logits.shape[1] != NUM_BINS:
        raise ValueError(f"coord_logits must be [M, {NUM_BINS}], got {tuple(coord_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def coord_log_probs(coord_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log_softmax(fenced(coord_logits) / T)`` over the 1000 bins, float32 ``[M, 1000]``."""
    _check(coord_logits, temperature)
    return torch.log_softmax(fence_logits(coord_logits) / temperature, dim=1)


def expected_coord(coord_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Expectation decode: ``Σₖ softmax(z/T)ₖ · k / 999``, float32 ``[M]`` in ``[0, 1]``."""
    probs = coord_log_probs(coord_logits, temperature).exp()
    grid = torch.arange(NUM_BINS, dtype=torch.float32, device=probs.device) / MAX_BIN
    return finite_or_zero(probs @ grid).clamp(0.0, 1.0)


def gaussian_bin_target(
    target_bins: torch.Tensor, sigma: float, truncation: float | None = None
) -> torch.Tensor:
    """Normalised Gaussian over the bins centred on each target bin.

    ``qᵢ ∝ exp(−½((i − t)/σ)²)``, set to 0 where ``|i − t| > truncation`` (when given).

    Args:
        target_bins: ``[M]`` target bins (int or float) in ``[0, 999]``.
        sigma: width in bins, > 0.
        truncation: optional radius in bins, >= 0; the centre bin is always kept.

    Returns:
        float32 ``[M, 1000]`` rows summing to 1.

    Raises:
        ValueError: ``sigma <= 0``, ``truncation < 0`` or a target outside ``[0, 999]``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 bins, got {sigma}")
    if truncation is not None and truncation < 0:
        raise ValueError(f"truncation radius must be >= 0 bins, got {truncation}")
    t = target_bins.float()
    if t.numel() and (t.min() < 0 or t.max() > MAX_BIN):
        raise ValueError(f"target bins must lie in [0, {MAX_BIN}]")
    grid = torch.arange(NUM_BINS, dtype=torch.float32, device=t.device)
    dist = grid[None, :] - t[:, None]
    weights = torch.exp(-0.5 * (dist / sigma) ** 2)
    if truncation is not None:
        weights = weights * (dist.abs() <= max(truncation, 0.5))
    return weights / weights.sum(dim=1, keepdim=True)


def soft_ce(
    coord_logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Soft cross-entropy ``−Σᵢ qᵢ log softmax(z/T)ᵢ`` per position, float32 ``[M]``."""
    logp = coord_log_probs(coord_logits, temperature)
    return finite_or_zero(-(target.float() * logp).sum(dim=1))


def w1_distance(
    coord_logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """1-Wasserstein distance on the unit grid: ``Σᵢ |CDF_p(i) − CDF_q(i)| / 999``, ``[M]``."""
    probs = coord_log_probs(coord_logits, temperature).exp()
    cdf_gap = torch.cumsum(probs, dim=1) - torch.cumsum(target.float(), dim=1)
    return finite_or_zero(cdf_gap.abs().sum(dim=1) / MAX_BIN)
