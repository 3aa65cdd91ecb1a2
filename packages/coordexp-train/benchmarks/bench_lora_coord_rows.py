"""Does LoRA need the coord-token rows to train? Full vs LoRA + coord rows vs LoRA alone.

Builds the tiny Qwen3-VL *without* coord tokens and adds them with ``expand-vocab``, so the
coord rows start as on a real pretrained checkpoint (the mean row plus a small smooth
offset, ``EXPAND_SCALE``), then trains Stage 1 on synthetic shapes three ways with the
same seed, data and steps, and prints the held-out coordinate figures side by side:

* ``full``: every language-model weight trains (vision tower frozen, the default);
* ``lora+rows``: LoRA on the default projections plus the 1000 coord rows of the
  embedding and LM head (what ``tuner.train_type: lora`` does);
* ``lora``: the same LoRA adapters with the coord rows frozen.

    OMP_NUM_THREADS=1 uv run python packages/coordexp-train/benchmarks/bench_lora_coord_rows.py \\
        [--steps 200] [--lr 5e-3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model
from transformers import PrinterCallback

from coordexp_schema import load_config
from coordexp_train.arguments import build_training_arguments
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.model import (
    BUILTIN_SPECS,
    build_tiny_model,
    expand_vocab,
    load_model_and_processor,
)
from coordexp_train.model.lora import lora_config
from coordexp_train.model.processor import set_image_size
from coordexp_train.model.trainable import count_trainable
from coordexp_train.param_groups import apply_freezing
from coordexp_train.settings import group_settings, stage1_loss_weights
from coordexp_train.stage1_data import build_stage1_data, trainer_inputs
from coordexp_train.stage1_trainer import Stage1Trainer

CONFIG = """\
model: {{model: {model}, dtype: float32}}
template: {{max_pixels: 16384}}
data: {{train_jsonl: {data}/train.jsonl, val_jsonl: {data}/val.jsonl}}
tuner: {{train_type: {train_type}, lora_rank: 8, lora_alpha: 16, lora_dropout: 0.0}}
training: {{output_dir: {out}, max_steps: {steps}, per_device_train_batch_size: 4,
  learning_rate: {lr}, lr_scheduler_type: constant, logging_steps: 1000, seed: 0}}
custom: {{trainer_variant: stage1_sft}}
global_max_length: 1024
"""
VARIANTS = ("full", "lora+rows", "lora")


def _model(variant: str, cfg: Any, loaded: Any) -> Any:
    frozen = group_settings(cfg).frozen
    if variant == "full":
        apply_freezing(loaded.model, frozen)
        return loaded.model
    config = lora_config(loaded.model, cfg.tuner, loaded.coord_vocab.ids, frozen)
    if variant == "lora":
        config = dataclasses.replace(config, trainable_token_indices=None)
    torch.manual_seed(0)
    return get_peft_model(loaded.model, config)


def _run(variant: str, root: Path, model_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    train_type = "full" if variant == "full" else "lora"
    text = CONFIG.format(
        model=model_dir,
        data=root / "data",
        out=root / variant,
        train_type=train_type,
        steps=args.steps,
        lr=args.lr,
    )
    (root / f"{variant}.yaml").write_text(text)
    cfg = load_config(root / f"{variant}.yaml")
    torch.manual_seed(0)
    loaded = load_model_and_processor(cfg.model)
    set_image_size(loaded.processor, cfg.template.max_pixels, cfg.template.min_pixels)
    data = build_stage1_data(cfg, loaded)
    loaded = dataclasses.replace(loaded, model=_model(variant, cfg, loaded))
    trainable = count_trainable(loaded.model).trainable
    trainer = Stage1Trainer(
        **trainer_inputs(loaded, data, build_training_arguments(cfg, 1), []),
        loss_weights=stage1_loss_weights(cfg.custom),
        group_settings=group_settings(cfg),
    )
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    figures = trainer.evaluate()
    return {"trainable": float(trainable), "seconds": seconds, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per variant")
    parser.add_argument("--lr", type=float, default=5e-3, help="learning rate (all variants)")
    parser.add_argument("--train", type=int, default=256, help="training images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_synthetic_dataset(root / "data", SceneSpec(), num_train=args.train, num_val=32)
        stock, model_dir = root / "stock", root / "expanded"
        build_tiny_model(BUILTIN_SPECS["tiny-qwen3-vl"], stock, coord_token_mode=None)
        expand_vocab(stock, model_dir)
        results = {v: _run(v, root, model_dir, args) for v in VARIANTS}
    keys = (
        "trainable",
        "seconds",
        "eval_loss",
        "eval_coord_mass",
        "eval_coord_mae",
        "eval_coord_accuracy",
    )
    print(f"{args.steps} steps x 4 images, lr {args.lr}, held-out: 32 images")
    print(f"{'variant':<12}" + "".join(f"{k.removeprefix('eval_'):>16}" for k in keys))
    for variant, r in results.items():
        print(f"{variant:<12}" + "".join(f"{r[k]:>16.4g}" for k in keys))
    lora, rows = results["lora"], results["lora+rows"]
    print(
        f"coord MAE lora / lora+rows: {lora['eval_coord_mae'] / rows['eval_coord_mae']:.2f}x; "
        f"coord mass lora+rows / lora: "
        f"{rows['eval_coord_mass'] / lora['eval_coord_mass']:.2f}x"
    )


if __name__ == "__main__":
    main()
