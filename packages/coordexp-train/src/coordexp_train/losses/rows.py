"""Memory-light reads of selected rows of a ``[N, V]`` logits matrix.

:func:`row_logsumexp_and_pick` returns, for the rows ``rows`` of a (possibly bf16) logits
matrix, the fenced float32 ``logsumexp(x / T)`` over the whole vocabulary and the fenced
float32 values of chosen columns. It never builds a float32 copy of all rows at once: rows
are processed in chunks, only the integer indices are saved for backward, and the backward
pass recomputes the softmax chunk by chunk into a single gradient buffer in the logits'
dtype. This is what keeps a 152k-vocabulary loss within a small multiple of the logits'
own size (see ``benchmarks/bench_loss_memory.py``).
"""

from __future__ import annotations

from typing import Any

import torch

from coordexp_train.losses.fences import fence_logits, fence_pass_mask

# Elements of float32 work per chunk (32 Mi elements = 128 MiB).
CHUNK_ELEMENTS = 1 << 25


def _chunk_rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, vocab))


class _RowLogSumExpPick(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        rows: torch.Tensor,
        cols: torch.Tensor,
        temperature: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        step = _chunk_rows(logits.shape[1])
        lse = torch.empty(rows.shape[0], dtype=torch.float32, device=logits.device)
        picked = torch.empty(cols.shape, dtype=torch.float32, device=logits.device)
        for start in range(0, rows.shape[0], step):
            sl = slice(start, start + step)
            x = fence_logits(logits.index_select(0, rows[sl]))
            lse[sl] = torch.logsumexp(x / temperature, dim=1)
            picked[sl] = x.gather(1, cols[sl])
        ctx.save_for_backward(logits, rows, cols, lse)
        ctx.temperature = temperature
        return lse, picked

    @staticmethod
    def backward(
        ctx: Any, grad_lse: torch.Tensor | None, grad_picked: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, None, None, None]:
        logits, rows, cols, lse = ctx.saved_tensors
        temperature: float = ctx.temperature
        grad = torch.zeros_like(logits)
        step = _chunk_rows(logits.shape[1])
        for start in range(0, rows.shape[0], step):
            sl = slice(start, start + step)
            raw = logits.index_select(0, rows[sl])
            g = torch.zeros(raw.shape, dtype=torch.float32, device=raw.device)
            if grad_lse is not None:
                x = fence_logits(raw)
                g = torch.exp(x / temperature - lse[sl, None]) * (grad_lse[sl, None] / temperature)
            if grad_picked is not None:
                g.scatter_add_(1, cols[sl], grad_picked[sl].float())
            g = g * fence_pass_mask(raw)
            grad.index_add_(0, rows[sl], g.to(grad.dtype))
        return grad, None, None, None


def row_logsumexp_and_pick(
    logits: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fenced ``logsumexp(logits[r] / T)`` and fenced ``logits[r, c]`` for selected rows.

    Args:
        logits: ``[N, V]`` logits, any float dtype; differentiable.
        rows: ``[R]`` int64 row indices (repeats allowed).
        cols: ``[R, K]`` int64 column indices to read from each selected row.
        temperature: softmax temperature ``T > 0`` of the log-sum-exp (not of the picks).

    Returns:
        ``(lse, picked)``: float32 ``[R]`` and float32 ``[R, K]``. Gradients flow to
        ``logits`` only (fenced: zero where a logit was non-finite or beyond ±1e4).

    Raises:
        ValueError: on shape mismatches or a non-positive temperature.
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [N, V], got shape {tuple(logits.shape)}")
    if rows.dim() != 1 or cols.dim() != 2 or cols.shape[0] != rows.shape[0]:
        raise ValueError(
            f"rows must be [R] and cols [R, K]; got {tuple(rows.shape)} and {tuple(cols.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    lse, picked = _RowLogSumExpPick.apply(  # type: ignore[no-untyped-call]
        logits, rows.long(), cols.long(), float(temperature)
    )
    return lse, picked
