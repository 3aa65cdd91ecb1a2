"""Regression and overlap losses on decoded boxes ``[x1, y1, x2, y2]`` in the unit square.

Overlap losses canonicalise each box (``min``/``max`` per axis) and clip it to ``[0, 1]``
before measuring; the union gets ``eps`` so degenerate boxes stay finite. All functions
return float32 per-box (or per-coordinate) values and are differentiable in ``pred``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from coordexp_train.losses.fences import finite_or_zero

BOX_EPS = 1.0e-7


def _check_boxes(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.dim() != 2 or pred.shape[1] != 4 or pred.shape != target.shape:
        raise ValueError(
            f"boxes must both be [K, 4], got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Elementwise ``|pred − target|`` (float32, same shape)."""
    return finite_or_zero((pred.float() - target.float()).abs())


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Elementwise SmoothL1 (Huber/β): ``0.5 d²/β`` below ``β``, ``|d| − 0.5β`` above.

    Raises:
        ValueError: ``beta <= 0``.
    """
    if not beta > 0:
        raise ValueError(f"smooth_l1 beta must be > 0, got {beta}")
    d = (pred.float() - target.float()).abs()
    return finite_or_zero(torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta))


def canonical_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Reorder each box to ``x1 <= x2``, ``y1 <= y2`` and clip it to ``[0, 1]``."""
    b = boxes.float()
    x1 = torch.minimum(b[:, 0], b[:, 2])
    x2 = torch.maximum(b[:, 0], b[:, 2])
    y1 = torch.minimum(b[:, 1], b[:, 3])
    y2 = torch.maximum(b[:, 1], b[:, 3])
    return torch.stack([x1, y1, x2, y2], dim=1).clamp(0.0, 1.0)


class _Overlap(NamedTuple):
    iou: torch.Tensor
    union: torch.Tensor
    enclosing: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor


def _overlap(pred: torch.Tensor, target: torch.Tensor) -> _Overlap:
    _check_boxes(pred, target)
    p, t = canonical_boxes(pred), canonical_boxes(target)
    iw = (torch.minimum(p[:, 2], t[:, 2]) - torch.maximum(p[:, 0], t[:, 0])).clamp(min=0)
    ih = (torch.minimum(p[:, 3], t[:, 3]) - torch.maximum(p[:, 1], t[:, 1])).clamp(min=0)
    inter = iw * ih
    area_p = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    area_t = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    union = area_p + area_t - inter + BOX_EPS
    enclosing = torch.stack(
        [
            torch.minimum(p[:, 0], t[:, 0]),
            torch.minimum(p[:, 1], t[:, 1]),
            torch.maximum(p[:, 2], t[:, 2]),
            torch.maximum(p[:, 3], t[:, 3]),
        ],
        dim=1,
    )
    return _Overlap(inter / union, union, enclosing, p, t)


def iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-box IoU of canonicalised, clipped boxes, float32 ``[K]``."""
    return _overlap(pred, target).iou


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-box ``1 − GIoU`` in ``[0, 2]``, float32 ``[K]``."""
    o = _overlap(pred, target)
    enc = o.enclosing
    area_c = (enc[:, 2] - enc[:, 0]) * (enc[:, 3] - enc[:, 1]) + BOX_EPS
    return finite_or_zero(1.0 - (o.iou - (area_c - o.union) / area_c))


def ciou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-box ``1 − CIoU`` (IoU, centre distance over enclosing diagonal, aspect term).

    ``CIoU = IoU − ρ²/c² − α·v`` with ``v = 4/π² (atan(w_t/h_t) − atan(w_p/h_p))²`` and
    ``α = v / (1 − IoU + v + eps)`` treated as a constant (no gradient), as is usual.
    """
    o = _overlap(pred, target)
    p, t, enc = o.pred, o.target, o.enclosing
    cx_p, cy_p = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
    cx_t, cy_t = (t[:, 0] + t[:, 2]) / 2, (t[:, 1] + t[:, 3]) / 2
    rho2 = (cx_p - cx_t) ** 2 + (cy_p - cy_t) ** 2
    c2 = (enc[:, 2] - enc[:, 0]) ** 2 + (enc[:, 3] - enc[:, 1]) ** 2 + BOX_EPS
    w_p, h_p = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1] + BOX_EPS
    w_t, h_t = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1] + BOX_EPS
    v = (4 / math.pi**2) * (torch.atan(w_t / h_t) - torch.atan(w_p / h_p)) ** 2
    with torch.no_grad():
        alpha = v / (1 - o.iou + v + BOX_EPS)
    return finite_or_zero(1.0 - (o.iou - rho2 / c2 - alpha * v))
