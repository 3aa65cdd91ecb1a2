"""One training run (Stage 1, rollout-matching SFT or Stage-2 AB), composed from components.

Order (each step fails with an actionable message before the next, costlier one starts):

1. config-time refusals (:func:`coordexp_train.settings.check_supported`);
2. ``TrainingArguments`` (accumulation for the actual world size, DeepSpeed file);
3. the resume checkpoint, if one is asked for;
4. seed; then, on the first process of each node before the others (so a cache is
   filled once): the records files (built-in synthetic datasets are written on first
   use), model + processor + coord vocabulary (the built-in tiny model is built on first
   use; a checkpoint without coord tokens is refused), every record checked, datasets
   and collator;
5. what trains: the configured parameter groups are frozen (``train_type: full``), or the
   model is wrapped with LoRA adapters (``train_type: lora``, :mod:`coordexp_train.model.lora`);
   the main process prints how many parameters train;
6. Stage 1 with ``training.eval_steps``: detection metrics on the validation split at
   every evaluation (:mod:`coordexp_train.evaluation.periodic`);
7. ``Stage1Trainer.train`` (progress bar, JSONL metrics, checkpoints), the final save
   under ``<output_dir>/final`` (under LoRA: the merged model there, the adapter under
   ``<output_dir>/final_adapter``) and a :class:`~coordexp_train.summary.RunSummary`.

The rollout variants differ in steps 4 and 7 only: the processor sizes images from the
template, the data are rollout items (:mod:`coordexp_train.stage2.setup`) and the trainer
is :class:`~coordexp_train.stage2.trainer.Stage2Trainer` with its rollout backend.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from transformers import PrinterCallback, set_seed

from coordexp_backends import RolloutError
from coordexp_schema import TrainingConfig
from coordexp_train.arguments import (
    BatchSizeError,
    build_training_arguments,
    tensorboard_enabled,
    world_size_from_env,
)
from coordexp_train.checkpoints import FINAL_ADAPTER_DIR, FINAL_DIR, checkpoints, resolve_resume
from coordexp_train.data import DetectionDataset
from coordexp_train.evaluation.periodic import detection_eval_for
from coordexp_train.metrics_log import METRICS_FILE, JsonlMetrics
from coordexp_train.model import (
    CoordVocabError,
    ExpandVocabError,
    LoadedModel,
    load_model_and_processor,
)
from coordexp_train.model.lora import (
    LoraTargetError,
    build_lora_model,
    save_merged,
)
from coordexp_train.model.processor import set_image_size
from coordexp_train.model.trainable import count_trainable
from coordexp_train.param_groups import GroupName, apply_freezing
from coordexp_train.progress import ProgressBar
from coordexp_train.settings import (
    UnsupportedSetting,
    check_supported,
    group_settings,
    stage1_loss_weights,
)
from coordexp_train.stage1_data import (
    DATA_ERRORS,
    build_stage1_data,
    prepare_data_files,
    trainer_inputs,
)
from coordexp_train.stage1_trainer import Stage1Trainer
from coordexp_train.stage2.progress import Stage2ProgressBar
from coordexp_train.stage2.setup import (
    build_stage2_data,
    build_stage2_trainer,
    check_start_checkpoint,
)
from coordexp_train.summary import RunSummary

logger = logging.getLogger(__name__)

# Problems a user fixes in their config, files or checkpoint; the CLI prints them plainly.
RUNTIME_ERRORS: tuple[type[Exception], ...] = (
    UnsupportedSetting,
    BatchSizeError,
    CoordVocabError,
    ExpandVocabError,
    FileNotFoundError,
    LoraTargetError,
    RolloutError,
    *DATA_ERRORS,
)


def train(cfg: TrainingConfig, *, cache_dir: Path | None = None) -> RunSummary | None:
    """Run training for ``cfg`` (any ``custom.trainer_variant``).

    Args:
        cfg: a validated config.
        cache_dir: cache root for built-in models (default: ``COORDEXP_CACHE_DIR`` or
            ``~/.cache/coordexp``).

    Returns:
        The summary on the main process; None on the other processes of a distributed run.

    Raises:
        UnsupportedSetting, CoordVocabError, FileNotFoundError, or a data error (see
        :data:`RUNTIME_ERRORS`), each naming what to change.
    """
    check_supported(cfg)
    stage1 = cfg.custom.trainer_variant == "stage1_sft"
    args = build_training_arguments(cfg, world_size_from_env())
    output_dir = Path(cfg.training.output_dir)
    resume = resolve_resume(cfg.training.resume_from_checkpoint, output_dir)
    set_seed(cfg.training.seed)
    # the first process of each node fills the cache (built-in model and datasets) alone
    with args.main_process_first(desc="model and data preparation"):
        data_files = prepare_data_files(cfg, cache_dir)
        if not stage1:
            check_start_checkpoint(cfg.model.model)
        loaded = load_model_and_processor(
            cfg.model, coord_token_mode=cfg.custom.coord_token_mode, cache_dir=cache_dir
        )
        set_image_size(loaded.processor, cfg.template.max_pixels, cfg.template.min_pixels)
        if stage1:
            data = build_stage1_data(cfg, loaded, cache_dir)
        else:
            data = build_stage2_data(cfg, loaded, cache_dir)
    groups = group_settings(cfg)
    loaded = _trainable_model(cfg, loaded, groups.frozen)
    if args.process_index == 0:
        print(count_trainable(loaded.model).describe(), flush=True)
    for split, report in data.skipped.items():
        logger.warning("%s: %s", split, report.summary())

    metrics = JsonlMetrics(output_dir / METRICS_FILE)
    detection_eval = None
    if stage1 and cfg.training.eval_steps is not None and isinstance(data.eval, DetectionDataset):
        detection_eval = detection_eval_for(data.eval, cfg.training.per_device_eval_batch_size)
    if stage1:
        trainer = Stage1Trainer(
            **trainer_inputs(loaded, data, args, [metrics, ProgressBar()]),
            loss_weights=stage1_loss_weights(cfg.custom),
            group_settings=groups,
            detection_eval=detection_eval,
        )
    else:
        trainer = build_stage2_trainer(
            cfg, loaded, data, args, callbacks=[metrics, Stage2ProgressBar()]
        )
    trainer.remove_callback(PrinterCallback)  # the progress bar and metrics.jsonl report logs
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    runtime = time.perf_counter() - started

    final = output_dir / FINAL_DIR
    lora = cfg.tuner.train_type == "lora"
    # under LoRA the Trainer saves the adapter; the merged model is the final checkpoint
    trainer.save_model(str(output_dir / FINAL_ADAPTER_DIR if lora else final))
    if not trainer.is_world_process_zero():
        return None
    if lora:
        save_merged(loaded.model, final)
    loaded.processor.save_pretrained(str(final))
    tensorboard = output_dir / "runs" if tensorboard_enabled(cfg) else None
    return RunSummary(
        output_dir=output_dir,
        final_model=final,
        metrics_file=metrics.path,
        tensorboard_dir=tensorboard,
        checkpoints=checkpoints(output_dir),
        model_source=loaded.directory,
        train_files=tuple(str(p) for p in data_files),
        num_samples=data.num_samples,
        skipped={split: report.summary() for split, report in data.skipped.items()},
        global_step=result.global_step,
        train_loss=float(result.training_loss),
        final_logs=metrics.last_train_log,
        runtime_s=runtime,
    )


def _trainable_model(
    cfg: TrainingConfig, loaded: LoadedModel, frozen: frozenset[GroupName]
) -> LoadedModel:
    """``loaded`` with its groups frozen (full fine-tuning) or its model wrapped by LoRA."""
    if cfg.tuner.train_type == "lora":
        model = build_lora_model(loaded.model, cfg.tuner, loaded.coord_vocab.ids, frozen)
        return replace(loaded, model=model)
    apply_freezing(loaded.model, frozen)
    return loaded
