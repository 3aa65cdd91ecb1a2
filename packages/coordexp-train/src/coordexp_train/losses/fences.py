"""Numeric fences applied to every logit before a coordinate or gate loss reads it.

The rule (one place, used by every loss): compute in float32; NaN → 0; +Inf → +1e4;
−Inf → −1e4; clamp to [−1e4, 1e4]. Outputs of the losses are passed through
:func:`finite_or_zero` so that a pathological batch never injects NaN into the optimizer.
The gradient of the fence is 1 where the raw logit was finite and inside the clamp range,
else 0.
"""

from __future__ import annotations

import torch

LOGIT_FENCE = 1.0e4


def fence_logits(logits: torch.Tensor) -> torch.Tensor:
    """Return ``logits`` as float32 with NaN → 0, ±Inf → ±1e4 and values clamped to ±1e4."""
    x = torch.nan_to_num(logits.float(), nan=0.0, posinf=LOGIT_FENCE, neginf=-LOGIT_FENCE)
    return x.clamp(-LOGIT_FENCE, LOGIT_FENCE)


def fence_pass_mask(logits: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the logits whose gradient passes the fence (finite, |x| < 1e4)."""
    return torch.isfinite(logits) & (logits.abs() < LOGIT_FENCE)


def finite_or_zero(values: torch.Tensor) -> torch.Tensor:
    """Replace NaN by 0 and ±Inf by ±1e4 in a loss output (keeps its dtype)."""
    return torch.nan_to_num(values, nan=0.0, posinf=LOGIT_FENCE, neginf=-LOGIT_FENCE)
