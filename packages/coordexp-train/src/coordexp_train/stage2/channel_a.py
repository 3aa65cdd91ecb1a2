"""The Channel-A forward: ``n_softctx_iter`` passes with soft self-context at coord slots.

The first pass is plain teacher forcing. Each later pass feeds the same inputs, but the
input embedding layer's output is rewritten at coord positions with the expected coord
embedding under the previous pass's coord distribution (:func:`softctx_inputs_embeds`),
through a forward hook on the embedding module. Everything downstream of the embedding
lookup (image features merged at image-pad positions, mRoPE positions from ``input_ids``,
packed-sample masking from ``position_ids``) runs exactly as in a plain forward. The last
pass's logits are supervised like Stage 1 by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from coordexp_train.model.embeddings import input_embedding
from coordexp_train.stage2.softctx import SoftctxGradMode, SoftctxMode, softctx_inputs_embeds


def channel_a_logits(
    model: PreTrainedModel,
    model_inputs: Mapping[str, Any],
    labels: torch.Tensor,
    coord_token_ids: torch.Tensor,
    *,
    n_softctx_iter: int,
    temperature: float = 1.0,
    mode: SoftctxMode = "soft",
    grad_mode: SoftctxGradMode = "unroll",
    last_forward: nn.Module | None = None,
) -> torch.Tensor:
    """The logits of the last of ``n_softctx_iter`` soft self-context forwards.

    Args:
        model: a causal LM (e.g. Qwen3-VL) whose ``get_input_embeddings()`` module embeds
            ``model_inputs["input_ids"]`` once per forward.
        model_inputs: keyword arguments of the forward (``Batch.model_inputs()``).
        labels: ``[B, T]`` labels aligned with the inputs; the supervised positions whose
            label is a coord token are the coord slots that get self-context.
        coord_token_ids: ``[1000]`` token id of each coord bin.
        n_softctx_iter: ``stage2_ab.n_softctx_iter`` (1 = one plain forward).
        temperature: ``stage2_ab.softctx_temperature``.
        mode: ``stage2_ab.softctx_mode``.
        grad_mode: ``stage2_ab.softctx_grad_mode``; with ``em_detach`` the earlier passes
            run without a graph (their distributions are constants).
        last_forward: the module that runs the last (supervised) pass, e.g. the DDP
            wrapper of ``model`` so gradients are all-reduced once per step; earlier passes
            and the embedding hooks use ``model``. Default ``model``.

    Returns:
        ``[B, T, V]`` logits of the last pass (deterministic for identical inputs).

    Raises:
        ValueError: ``n_softctx_iter < 1``, or options rejected by
            :func:`~coordexp_train.stage2.softctx.expected_coord_embedding`.
    """
    if n_softctx_iter < 1:
        raise ValueError(f"stage2_ab.n_softctx_iter must be >= 1, got {n_softctx_iter}")
    embedding = model.get_input_embeddings()
    weight = input_embedding(model)
    ids = coord_token_ids.to(labels.device)
    coord_mask = torch.isin(labels, ids)

    def hook_for(context: torch.Tensor) -> Callable[[nn.Module, Any, torch.Tensor], torch.Tensor]:
        def hook(_: nn.Module, __: Any, out: torch.Tensor) -> torch.Tensor:
            return softctx_inputs_embeds(
                out,
                context,
                coord_mask,
                ids,
                weight,
                temperature=temperature,
                mode=mode,
                grad_mode=grad_mode,
            )

        return hook

    def forward(context: torch.Tensor | None, keep_graph: bool, module: nn.Module) -> torch.Tensor:
        handle = None if context is None else embedding.register_forward_hook(hook_for(context))
        try:
            with nullcontext() if keep_graph else torch.no_grad():
                logits: torch.Tensor = module(**model_inputs).logits
        finally:
            if handle is not None:
                handle.remove()
        return logits

    detach = grad_mode == "em_detach"
    last = model if last_forward is None else last_forward
    logits = forward(
        None, not detach or n_softctx_iter == 1, last if n_softctx_iter == 1 else model
    )
    for step in range(1, n_softctx_iter):
        final = step == n_softctx_iter - 1
        logits = forward(logits, not detach or final, last if final else model)
    return logits
