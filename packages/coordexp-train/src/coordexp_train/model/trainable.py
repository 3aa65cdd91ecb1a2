"""How many parameters train, by group and kind: the line a run prints before training."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from coordexp_train.param_groups import GROUP_NAMES, GroupName, group_of

#: Name fragments of the LoRA matrices and the trainable coord rows in a peft model.
_LORA_MARK = ".lora_"
_TOKEN_ROWS_MARK = "trainable_tokens_delta"


@dataclass(frozen=True, slots=True)
class TrainableCount:
    """Parameter counts of a model.

    Attributes:
        total: every parameter (frozen base weights and adapters included).
        by_group: trainable parameters per group (vision tower, aligner, llm).
        lora: trainable LoRA matrices (0 for full fine-tuning).
        token_rows: trainable embedding/LM-head rows of peft's trainable tokens.
    """

    total: int
    by_group: dict[GroupName, int]
    lora: int
    token_rows: int

    @property
    def trainable(self) -> int:
        """The number of parameters the optimizer updates."""
        return sum(self.by_group.values())

    def describe(self) -> str:
        """One line: ``trainable parameters: T of N (P%): vision_tower 0, aligner …, llm …``.

        LoRA models add ``; LoRA matrices L, coord-token rows R``.
        """
        share = 100.0 * self.trainable / self.total if self.total else 0.0
        groups = ", ".join(f"{g} {n:,}" for g, n in self.by_group.items())
        line = f"trainable parameters: {self.trainable:,} of {self.total:,} ({share:.2f}%)"
        line += f": {groups}"
        if self.lora or self.token_rows:
            line += f"; LoRA matrices {self.lora:,}, coord-token rows {self.token_rows:,}"
        return line


def count_trainable(model: nn.Module) -> TrainableCount:
    """Count ``model``'s parameters (those with ``requires_grad`` train)."""
    total = lora = rows = 0
    by_group: dict[GroupName, int] = dict.fromkeys(GROUP_NAMES, 0)
    for name, param in model.named_parameters():
        total += param.numel()
        if not param.requires_grad:
            continue
        by_group[group_of(name)] += param.numel()
        if _LORA_MARK in name:
            lora += param.numel()
        elif _TOKEN_ROWS_MARK in name:
            rows += param.numel()
    return TrainableCount(total=total, by_group=by_group, lora=lora, token_rows=rows)
