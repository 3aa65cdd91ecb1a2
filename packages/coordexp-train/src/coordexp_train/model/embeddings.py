"""Typed access to a model's token embedding and LM head matrices."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel


def input_embedding(model: PreTrainedModel) -> torch.Tensor:
    """The input token embedding matrix, shape (rows, hidden)."""
    weight = model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    return weight


def output_embedding(model: PreTrainedModel) -> torch.Tensor | None:
    """The LM head matrix, shape (rows, hidden), or None when the model has no head.

    It is the same tensor as :func:`input_embedding` when the weights are tied.
    """
    head = model.get_output_embeddings()  # type: ignore[no-untyped-call]
    if head is None:
        return None
    weight = head.weight
    assert isinstance(weight, torch.Tensor)
    return weight
