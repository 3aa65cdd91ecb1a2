"""From the typed config to ``transformers.TrainingArguments``.

:func:`gradient_accumulation_steps` turns ``training.effective_batch_size`` into an
accumulation count for the actual world size; :func:`training_arguments_kwargs` is the
pure mapping (tested without building the arguments); :func:`build_training_arguments`
builds them.
"""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from coordexp_schema import TrainingConfig
from coordexp_train.settings import UnsupportedSetting


class BatchSizeError(ValueError):
    """The effective batch cannot be reached on this world size."""


def world_size_from_env() -> int:
    """The number of training processes: ``WORLD_SIZE`` as set by torchrun/accelerate, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def gradient_accumulation_steps(
    effective_batch_size: int | None, per_device_batch_size: int, world_size: int
) -> int:
    """Micro-batches per optimizer step so that ``per_device × world × steps == effective``.

    Raises:
        BatchSizeError: when the effective batch is not a multiple of ``per_device × world``;
            the message names ``training.effective_batch_size`` and the nearest valid values.
    """
    if world_size < 1:
        raise BatchSizeError(f"world size must be >= 1, got {world_size}")
    if effective_batch_size is None:
        return 1
    per_step = per_device_batch_size * world_size
    if effective_batch_size % per_step:
        lower = max(per_step, effective_batch_size // per_step * per_step)
        raise BatchSizeError(
            f"training.effective_batch_size {effective_batch_size} is not a multiple of "
            f"per_device_train_batch_size {per_device_batch_size} x world size {world_size} "
            f"= {per_step}; use {lower} or {lower + per_step}"
        )
    return effective_batch_size // per_step


def deepspeed_setting(cfg: TrainingConfig) -> str | dict[str, Any] | None:
    """The ZeRO config handed to the Trainer: a JSON file path or an inline mapping.

    Raises:
        FileNotFoundError: ``deepspeed.config`` names a file that does not exist.
    """
    if not cfg.deepspeed.enabled:
        return None
    setting = cfg.deepspeed.config
    if isinstance(setting, str) and not Path(setting).is_file():
        raise FileNotFoundError(
            f"deepspeed.config: {setting!r} is not a file; give a DeepSpeed JSON config path "
            "(relative to the working directory) or an inline mapping"
        )
    return setting


def training_arguments_kwargs(cfg: TrainingConfig, world_size: int) -> dict[str, Any]:
    """Keyword arguments of ``TrainingArguments`` for ``cfg`` on ``world_size`` processes."""
    t = cfg.training
    if t.warmup_ratio >= 1.0:
        # transformers reads a warm-up value >= 1 as a step count
        raise UnsupportedSetting(
            "training.warmup_ratio 1.0 (warm up for the whole run) is not supported; "
            "use a ratio below 1 or training.warmup_steps"
        )
    kwargs: dict[str, Any] = {
        "output_dir": t.output_dir,
        "num_train_epochs": t.num_train_epochs,
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "per_device_eval_batch_size": t.per_device_eval_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps(
            t.effective_batch_size, t.per_device_train_batch_size, world_size
        ),
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler_type,
        "warmup_steps": t.warmup_steps if t.warmup_steps else t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm if t.max_grad_norm is not None else 0.0,
        "bf16": t.bf16,
        "gradient_checkpointing": t.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "eval_strategy": "steps" if t.eval_steps is not None else "no",
        "eval_steps": t.eval_steps,
        "save_strategy": "steps" if t.save_steps is not None else "no",
        "save_steps": t.save_steps if t.save_steps is not None else 500,
        "save_total_limit": t.save_total_limit,
        "seed": t.seed,
        "data_seed": t.seed,
        "dataloader_num_workers": cfg.data.num_workers,
        "dataloader_pin_memory": torch.cuda.is_available(),
        # without CUDA, accelerate only forms a multi-process (gloo) group when told "cpu"
        "use_cpu": not torch.cuda.is_available(),
        "ddp_find_unused_parameters": False,
        "report_to": ["tensorboard"] if tensorboard_enabled(cfg) else [],
        "remove_unused_columns": False,
        "label_names": ["labels"],
        "prediction_loss_only": True,
        "disable_tqdm": True,
        "save_only_model": False,
        "deepspeed": deepspeed_setting(cfg),
    }
    return kwargs


def tensorboard_enabled(cfg: TrainingConfig) -> bool:
    """Whether TensorBoard logging is asked for and a TensorBoard writer is installed.

    Event files then go under ``<output_dir>/runs/``.
    """
    wanted = "tensorboard" in cfg.training.report_to
    return wanted and any(find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def build_training_arguments(cfg: TrainingConfig, world_size: int) -> TrainingArguments:
    """``TrainingArguments`` for ``cfg`` (see :func:`training_arguments_kwargs`)."""
    return TrainingArguments(**training_arguments_kwargs(cfg, world_size))
