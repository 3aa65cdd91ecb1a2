"""LoRA training (``tuner.train_type: lora``): where adapters go and what else trains.

Under LoRA every base weight is frozen and three kinds of parameters train:

* **LoRA adapters** (rank ``tuner.lora_rank``, scale ``lora_alpha / lora_rank``, dropout
  ``lora_dropout``) on each module whose qualified name matches an entry of
  ``tuner.lora_target_modules`` the way peft matches a list (the name equals the entry or
  ends with ``.<entry>``) **and** lies in a parameter group that ``tuner.freeze_*`` leaves
  unfrozen (groups as in :mod:`coordexp_train.param_groups`). In Qwen3-VL the default
  entries (``q_proj`` … ``down_proj``) name language-model layers only; ``linear_fc1`` /
  ``linear_fc2`` name the MLPs of both the vision tower and the aligner, so with
  ``freeze_vision_tower: true`` only the aligner's get adapters.
* **The 1000 coord-token rows** of the input embedding and of the LM head (peft's
  trainable tokens), unless ``freeze_llm``. The coord tokens are new to a pretrained
  checkpoint (``expand-vocab`` starts their rows near the mean row) and every coordinate
  loss reads the LM head's coord columns, so frozen rows would leave the model to find
  1000 nearly equal output directions through its adapters alone. The other rows stay
  frozen; on a tied checkpoint one set of rows serves both.
* nothing else: every other weight, norm and bias ends bit-identical.

Saving: checkpoints hold the adapter (``adapter_model.safetensors``: LoRA matrices and
coord rows) plus the optimizer state, which exact resume needs; at the end of a run
:func:`save_merged` writes the merged model, a plain checkpoint every consumer loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import check_target_module_exists
from torch import nn
from transformers import PreTrainedModel

from coordexp_schema import TunerConfig
from coordexp_train.param_groups import GroupName, group_of

#: The layer types peft's LoRA adapts.
_ADAPTABLE = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_FREEZE_FLAG: dict[GroupName, str] = {
    "vision_tower": "tuner.freeze_vision_tower",
    "aligner": "tuner.freeze_aligner",
    "llm": "tuner.freeze_llm",
}


class LoraTargetError(ValueError):
    """``tuner.lora_target_modules`` names a module the model lacks, or only frozen ones."""


def frozen_target_matches(
    model: nn.Module, names: Sequence[str], frozen: frozenset[GroupName]
) -> list[str]:
    """Check ``tuner.lora_target_modules``; return the matches that lie in frozen groups.

    Args:
        model: the model before wrapping.
        names: ``tuner.lora_target_modules``.
        frozen: the groups that ``tuner.freeze_*`` freezes.

    Returns:
        Qualified names of the modules an entry matches inside a frozen group (peft's
        ``exclude_modules``), in ``named_modules()`` order.

    Raises:
        LoraTargetError: an entry matches no module, only modules of frozen groups, or a
            module LoRA cannot adapt (not a linear, embedding or convolution layer); the
            message names the entry, the freeze flag or the module, and what to name.
    """
    modules = dict(model.named_modules())
    del modules[""]
    excluded: list[str] = []
    for entry in names:
        single = LoraConfig(target_modules=[entry])
        hits = [m for m in modules if check_target_module_exists(single, m)]
        if not hits:
            raise LoraTargetError(
                f"tuner.lora_target_modules: {entry!r} matches no module of the model (a "
                "target matches a module whose name equals it or ends with '.<target>'); "
                f"{type(model).__name__} offers linear layers named "
                f"{_linear_leaf_names(model)}"
            )
        open_hits = [m for m in hits if group_of(m) not in frozen]
        if not open_hits:
            groups = sorted({group_of(m) for m in hits})
            flags = ", ".join(f"{_FREEZE_FLAG[g]}: true" for g in groups)
            raise LoraTargetError(
                f"tuner.lora_target_modules: {entry!r} matches only modules of frozen groups "
                f"({flags}); unfreeze the group or remove the entry"
            )
        unsupported = [m for m in open_hits if not isinstance(modules[m], _ADAPTABLE)]
        if unsupported:
            first = unsupported[0]
            raise LoraTargetError(
                f"tuner.lora_target_modules: {entry!r} matches {first}, a "
                f"{type(modules[first]).__name__}; LoRA adapts linear, embedding and "
                "convolution layers: name the layers inside it (e.g. "
                f"{_linear_leaf_names(modules[first])})"
            )
        excluded += [m for m in hits if m not in open_hits and m not in excluded]
    return excluded


def _linear_leaf_names(model: nn.Module) -> list[str]:
    linear = (name for name, m in model.named_modules() if isinstance(m, nn.Linear))
    return sorted({name.rsplit(".", 1)[-1] for name in linear})


def lora_config(
    model: nn.Module,
    tuner: TunerConfig,
    coord_ids: Sequence[int],
    frozen: frozenset[GroupName],
) -> LoraConfig:
    """The peft config of ``tuner`` for ``model`` (see the module docstring).

    Raises:
        LoraTargetError: see :func:`frozen_target_matches`.
    """
    excluded = frozen_target_matches(model, tuner.lora_target_modules, frozen)
    coord_rows = None
    if "llm" not in frozen:
        coord_rows = {name: list(coord_ids) for name in _coord_row_modules(model)}
    return LoraConfig(
        r=tuner.lora_rank,
        lora_alpha=tuner.lora_alpha,
        lora_dropout=tuner.lora_dropout,
        target_modules=list(tuner.lora_target_modules),
        exclude_modules=excluded or None,
        trainable_token_indices=coord_rows,
        bias="none",
    )


def _coord_row_modules(model: nn.Module) -> list[str]:
    """Qualified names of the input embedding and (when not tied to it) the LM head."""
    get_out = getattr(model, "get_output_embeddings", None)
    wanted = [model.get_input_embeddings()]  # type: ignore[operator]
    head = get_out() if get_out is not None else None
    if head is not None and head.weight is not wanted[0].weight:
        wanted.append(head)
    return [name for name, m in model.named_modules() if any(m is w for w in wanted)]


def build_lora_model(
    model: PreTrainedModel,
    tuner: TunerConfig,
    coord_ids: Sequence[int],
    frozen: frozenset[GroupName],
) -> Any:
    """Wrap ``model`` with LoRA adapters and trainable coord rows; freeze everything else.

    Args:
        model: the loaded model (modified in place: its target modules are replaced).
        tuner: the ``tuner`` section (``train_type: lora``).
        coord_ids: the coord token ids in bin order.
        frozen: the groups ``tuner.freeze_*`` freezes.

    Returns:
        The ``peft.PeftModel``; ``generate``, ``get_input_embeddings`` and the forward go
        through the adapters. Deterministic for a given torch seed (LoRA's A matrices
        are drawn from it; B starts at zero, so the wrapped model first equals the base).

    Raises:
        LoraTargetError: a bad ``tuner.lora_target_modules`` entry (see
            :func:`frozen_target_matches`) or a target peft cannot adapt (the message is peft's,
            prefixed with the config path).
    """
    config = lora_config(model, tuner, coord_ids, frozen)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise LoraTargetError(f"tuner.lora_target_modules: {exc}") from None


def adapter_groups(model: nn.Module) -> frozenset[GroupName]:
    """The parameter groups that hold LoRA matrices (empty for a plain model)."""
    return frozenset(group_of(name) for name, _ in model.named_parameters() if ".lora_A." in name)


def save_merged(model: Any, directory: Path) -> None:
    """Merge the adapters and coord rows into the base weights and save a plain checkpoint.

    The result loads like any checkpoint (``model.model``, ``coordexp-eval``, vLLM).
    Destructive: ``model`` (a ``PeftModel``) is unwrapped in place; call it after training.
    """
    if not isinstance(model, PeftModel):
        raise TypeError(f"save_merged needs a peft model, got {type(model).__name__}")
    merged = model.merge_and_unload()
    merged.save_pretrained(str(directory))
