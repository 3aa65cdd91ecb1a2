"""Building the Stage-2 trainer's data, rollout backend and runtime from a loaded config.

Runtime checks only (the config was validated by coordexp-schema): the starting
checkpoint must exist, and the rollout backend is constructed here (a vLLM server fleet
must be reachable within ``rollout_matching.vllm.server.timeout_s``). The backend uses
the run's processor, whose image size :mod:`coordexp_train.run` has set from the template
at load, so rollout prompts equal training prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainingArguments

from coordexp_backends import RolloutBackend, create_backend
from coordexp_schema import TrainingConfig
from coordexp_train.data import datasets_from_config, encoder_from_config
from coordexp_train.model import BUILTIN_PREFIX, LoadedModel
from coordexp_train.model.loading import refuse_adapter_folder
from coordexp_train.model.lora import adapter_groups
from coordexp_train.settings import group_settings, stage2_settings, vllm_max_lora_rank
from coordexp_train.stage1_data import Stage1Data, trainer_inputs
from coordexp_train.stage2.monitor import MONITOR_DIR, MonitorDump
from coordexp_train.stage2.rollout_data import RolloutCollator, RolloutDataset
from coordexp_train.stage2.trainer import Stage2Runtime, Stage2Trainer

#: How the CPU demo's Stage-1 checkpoint is made (named when a start checkpoint is missing).
STAGE1_DEMO_COMMAND = "uv run coordexp-train --config configs/demo/stage1_tiny.yaml"

#: Where the vLLM server fleet reads synced weights from (under ``training.output_dir``).
ROLLOUT_WEIGHTS_DIR = "rollout_weights"


def check_start_checkpoint(model_ref: str) -> None:
    """Fail early, with the way out, when Stage 2's starting checkpoint does not exist.

    Raises:
        FileNotFoundError: ``model_ref`` is a LoRA adapter folder (the message names the
            merged ``final/``), or a path without ``config.json`` (the message says to
            train Stage 1 first and names the demo's Stage-1 command).
    """
    if model_ref.startswith(BUILTIN_PREFIX):
        return
    path = Path(model_ref).expanduser()
    refuse_adapter_folder(model_ref, path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model.model: {model_ref!r} is not a checkpoint (no config.json there). Stage 2 "
            "starts from a Stage-1 checkpoint: run the Stage-1 config that writes it first "
            f"(its final model is <training.output_dir>/final); for the CPU demo: "
            f"{STAGE1_DEMO_COMMAND}"
        )


def build_stage2_data(
    cfg: TrainingConfig, loaded: LoadedModel, cache_dir: Path | None = None
) -> Stage1Data:
    """The Stage-2 datasets: one rollout item per training sample (never pre-packed).

    Channel-B samples are packed after the rollout (``training.packing_length``), so
    ``training.packing`` does not pack the dataset here; ``per_device_train_batch_size``
    counts samples.

    Raises:
        SampleError: under ``data.on_invalid: error``, the first bad sample.
    """
    encoder = encoder_from_config(cfg, loaded.processor)
    splits = datasets_from_config(cfg, encoder, cache_dir=cache_dir)
    return Stage1Data(
        train=RolloutDataset(splits.train),
        eval=splits.val,
        collator=RolloutCollator(int(loaded.processor.tokenizer.pad_token_id)),
        num_samples=len(splits.train),
        skipped=splits.skipped(),
    )


def lora_engine_kwargs(cfg: TrainingConfig, model: Any) -> dict[str, Any]:
    """The vLLM engine arguments that serving ``model``'s LoRA adapters needs.

    Empty unless ``tuner.train_type: lora`` and ``rollout_matching.vllm.enable_lora``
    (which ``create_backend`` passes itself); then ``max_lora_rank`` is the smallest rank
    vLLM accepts that is at least ``tuner.lora_rank`` (vLLM takes 1, 8, 16, 32, …), and
    ``enable_tower_connector_lora`` is set when adapters sit in the vision tower or the
    aligner (without it vLLM adapts the language model only, and an adapter sync falls
    back to merged weights).

    Raises:
        UnsupportedSetting: ``tuner.lora_rank`` above vLLM's largest rank.
    """
    rollout = cfg.rollout_matching
    if rollout is None or cfg.tuner.train_type != "lora" or not rollout.vllm.enable_lora:
        return {}
    kwargs: dict[str, Any] = {"max_lora_rank": vllm_max_lora_rank(cfg.tuner.lora_rank)}
    if adapter_groups(model) - {"llm"}:
        kwargs["enable_tower_connector_lora"] = True
    return kwargs


def build_backend(cfg: TrainingConfig, loaded: LoadedModel) -> RolloutBackend:
    """The rollout backend ``rollout_matching`` names, for the loaded model.

    HF generates with the training model itself (under LoRA: the peft model, adapters
    active); vLLM colocate starts from the model's folder (with the LoRA engine arguments
    of :func:`lora_engine_kwargs`); the server fleet reads synced weights from
    ``<output_dir>/rollout_weights``.
    """
    rollout = cfg.rollout_matching
    if rollout is None:
        raise ValueError("the Stage-2 trainer needs the rollout_matching section")
    engine_kwargs = None
    if rollout.rollout_backend == "vllm" and rollout.vllm.mode == "colocate":
        engine_kwargs = lora_engine_kwargs(cfg, loaded.model) or None
    return create_backend(
        rollout,
        processor=loaded.processor,
        model=loaded.model,
        model_path=loaded.directory,
        engine_kwargs=engine_kwargs,
        weights_dir=Path(cfg.training.output_dir) / ROLLOUT_WEIGHTS_DIR,
    )


def build_runtime(cfg: TrainingConfig, loaded: LoadedModel) -> Stage2Runtime:
    """Backend, tokenizer, prompt and token ids of the Stage-2 trainer."""
    encoder = encoder_from_config(cfg, loaded.processor)
    rollout = cfg.rollout_matching
    monitor = None
    if rollout is not None and rollout.monitor_dump.enabled:
        dump = rollout.monitor_dump
        out = Path(dump.out_dir) if dump.out_dir else Path(cfg.training.output_dir) / MONITOR_DIR
        monitor = MonitorDump(dump, out)
    tokenizer: Any = encoder.tokenizer
    return Stage2Runtime(
        backend=build_backend(cfg, loaded),
        tokenizer=tokenizer,
        prompt=encoder.prompt,
        pad_token_id=int(tokenizer.pad_token_id),
        monitor=monitor,
    )


def build_stage2_trainer(
    cfg: TrainingConfig,
    loaded: LoadedModel,
    data: Stage1Data,
    args: TrainingArguments,
    *,
    callbacks: Sequence[TrainerCallback] = (),
    runtime: Stage2Runtime | None = None,
) -> Stage2Trainer:
    """The Stage-2 trainer of ``cfg`` over ``data`` (parameter groups from ``tuner``/lr keys).

    ``runtime`` defaults to :func:`build_runtime` (which builds the rollout backend).
    """
    settings = stage2_settings(cfg)
    return Stage2Trainer(
        **trainer_inputs(loaded, data, args, callbacks),
        loss_weights=settings.weights,
        group_settings=group_settings(cfg),
        settings=settings,
        runtime=runtime if runtime is not None else build_runtime(cfg, loaded),
    )
