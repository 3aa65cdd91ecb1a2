"""Channel-A soft self-context: coord-slot embeddings from the model's own coord beliefs.

After a forward pass, the input embedding of each coord token is replaced by the expected
coord embedding under the distribution the previous position predicted,
``Σ_k softmax(z_k / τ)·E[k]`` over the 1000 coord bins (``stage2_ab.softctx_temperature``
= τ), before the next forward. ``stage2_ab.softctx_mode`` picks ``soft`` (the mixture) or
``straight_through`` (the argmax bin's embedding forward, the mixture's gradient
backward); ``stage2_ab.softctx_grad_mode`` picks ``unroll`` (gradients flow back into the
previous forward's logits) or ``em_detach`` (the distribution is a constant; the coord
embedding rows still receive gradient, as teacher-forced embeddings do).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import torch

SoftctxMode: TypeAlias = Literal["soft", "straight_through"]
SoftctxGradMode: TypeAlias = Literal["unroll", "em_detach"]


def expected_coord_embedding(
    coord_logits: torch.Tensor,
    coord_embeddings: torch.Tensor,
    *,
    temperature: float = 1.0,
    mode: SoftctxMode = "soft",
    grad_mode: SoftctxGradMode = "unroll",
) -> torch.Tensor:
    """The coord embedding expected under ``softmax(coord_logits / temperature)``.

    Args:
        coord_logits: ``[..., 1000]`` logits over the coord bins.
        coord_embeddings: ``[1000, D]`` input embeddings of the coord tokens, in bin order.
        temperature: softmax temperature (> 0).
        mode: ``soft`` (the mixture) or ``straight_through`` (forward the argmax bin's
            embedding, backward the mixture's gradient).
        grad_mode: ``unroll`` or ``em_detach`` (no gradient into ``coord_logits``).

    Returns:
        ``[..., D]`` in ``coord_embeddings``' dtype; the mixture is computed in float32.
        Deterministic (argmax ties go to the lowest bin).

    Raises:
        ValueError: bad temperature, mode or grad mode, or mismatched bin counts.
    """
    if not temperature > 0:
        raise ValueError(f"stage2_ab.softctx_temperature must be > 0, got {temperature}")
    if mode not in ("soft", "straight_through"):
        raise ValueError(f"stage2_ab.softctx_mode must be soft or straight_through, got {mode!r}")
    if grad_mode not in ("unroll", "em_detach"):
        raise ValueError(
            f"stage2_ab.softctx_grad_mode must be unroll or em_detach, got {grad_mode!r}"
        )
    if coord_embeddings.dim() != 2 or coord_logits.shape[-1] != coord_embeddings.shape[0]:
        raise ValueError(
            f"coord_logits [..., K] and coord_embeddings [K, D] disagree: "
            f"{tuple(coord_logits.shape)} and {tuple(coord_embeddings.shape)}"
        )
    logits = coord_logits.float()
    if grad_mode == "em_detach":
        logits = logits.detach()
    probs = torch.softmax(logits / temperature, dim=-1)
    table = coord_embeddings.float()
    soft = probs @ table
    if mode == "straight_through":
        hard = table[probs.argmax(dim=-1)]
        soft = hard + (soft - soft.detach())
    return soft.to(coord_embeddings.dtype)


def softctx_inputs_embeds(
    inputs_embeds: torch.Tensor,
    logits: torch.Tensor,
    coord_mask: torch.Tensor,
    coord_token_ids: torch.Tensor,
    embedding_weight: torch.Tensor,
    *,
    temperature: float = 1.0,
    mode: SoftctxMode = "soft",
    grad_mode: SoftctxGradMode = "unroll",
) -> torch.Tensor:
    """The next Channel-A forward's input embeddings.

    Args:
        inputs_embeds: ``[B, T, D]`` teacher-forced input embeddings.
        logits: ``[B, T, V]`` logits of the previous forward (row ``t`` predicts input
            ``t + 1``).
        coord_mask: ``[B, T]`` bool, True at input positions holding a coord token.
        coord_token_ids: ``[1000]`` token id of each coord bin.
        embedding_weight: ``[V, D]`` the model's input embedding matrix.
        temperature: ``stage2_ab.softctx_temperature``.
        mode: ``stage2_ab.softctx_mode``.
        grad_mode: ``stage2_ab.softctx_grad_mode``.

    Returns:
        ``[B, T, D]``: ``inputs_embeds`` with each coord position ``t`` replaced by the
        expected coord embedding of ``logits[:, t − 1]`` (other positions unchanged).

    Raises:
        ValueError: mismatched shapes, or a coord position at ``t = 0`` (nothing predicts it).
    """
    b, t = coord_mask.shape
    if inputs_embeds.shape[:2] != (b, t) or logits.shape[:2] != (b, t):
        raise ValueError(
            f"inputs_embeds {tuple(inputs_embeds.shape)}, logits {tuple(logits.shape)} and "
            f"coord_mask {tuple(coord_mask.shape)} must share [B, T]"
        )
    if bool(coord_mask[:, 0].any()):
        raise ValueError("a coord token at position 0 has no preceding prediction")
    batch_idx, pos_idx = coord_mask.nonzero(as_tuple=True)
    ids = coord_token_ids.to(logits.device).long()
    # one gather of the [K, 1000] coord columns, never a [K, V] copy of whole rows
    coord_logits = logits[batch_idx[:, None], (pos_idx - 1)[:, None], ids[None, :]]
    mixed = expected_coord_embedding(
        coord_logits,
        embedding_weight[ids],
        temperature=temperature,
        mode=mode,
        grad_mode=grad_mode,
    )
    return inputs_embeds.index_put((batch_idx, pos_idx), mixed.to(inputs_embeds.dtype))
