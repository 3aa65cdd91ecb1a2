"""Time split of one Channel-B step of the Stage-2 trainer on the tiny model (CPU).

Runs the trainer's own ``training_step`` (``rollout_matching_sft``: every step is B) on
synthetic shapes images with HF rollouts, and prints per phase — weight sync, rollout,
parse, match, target building (FN injection + targets + teacher-forced samples), packing
(planning + collation), forward/backward — the mean seconds per step and the share of the
step, then the share of parse + match + targets + packing (goal: <= 5 %).

    OMP_NUM_THREADS=1 uv run python packages/coordexp-train/benchmarks/bench_stage2_step.py \\
        [--model output/demo/stage1_tiny/final] [--samples 8] [--steps 5]

A random-initialised model (the default ``builtin:tiny-qwen3-vl``) rolls out garbage with
no objects, which makes parse and match trivially cheap; the Stage-1 demo checkpoint
(``uv run coordexp-train --config configs/demo/stage1_tiny.yaml``) writes real objects.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from coordexp_schema import load_config
from coordexp_train.arguments import build_training_arguments
from coordexp_train.data.synthetic import write_synthetic_dataset
from coordexp_train.data.synthetic_scene import SceneSpec
from coordexp_train.model import load_model_and_processor
from coordexp_train.model.processor import set_image_size
from coordexp_train.stage2.setup import build_stage2_data, build_stage2_trainer
from coordexp_train.stage2.trainer import CPU_PHASES, PHASES

CONFIG = """\
model: {{model: {model}, dtype: float32}}
template: {{prompt_variant: short, max_pixels: 16384}}
data: {{train_jsonl: {data}/train.jsonl}}
training: {{output_dir: {out}, per_device_train_batch_size: {samples}, packing_length: 1024,
  learning_rate: 1.0e-4, logging_steps: 1}}
custom: {{trainer_variant: rollout_matching_sft}}
global_max_length: 1024
rollout_matching: {{rollout_backend: hf, decode_batch_size: {samples}, max_new_tokens: 160}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:tiny-qwen3-vl")
    parser.add_argument("--samples", type=int, default=8, help="rollouts per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up)")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_synthetic_dataset(root / "data", SceneSpec(), num_train=args.samples, num_val=1)
        text = CONFIG.format(data=root / "data", out=root / "out", **vars(args))
        (root / "bench.yaml").write_text(text)
        cfg = load_config(root / "bench.yaml")
        loaded = load_model_and_processor(cfg.model)
        set_image_size(loaded.processor, cfg.template.max_pixels, cfg.template.min_pixels)
        data = build_stage2_data(cfg, loaded)
        trainer = build_stage2_trainer(cfg, loaded, data, build_training_arguments(cfg, 1))
        trainer.current_gradient_accumulation_steps = 1
        items = [data.train[i] for i in range(args.samples)]
        trainer.training_step(trainer.model, data.collator(items))  # warm-up
        trainer._window_log()  # reset the counters
        for step in range(1, args.steps + 1):
            trainer.state.global_step = step  # one optimizer step each (per-step means)
            trainer.training_step(trainer.model, data.collator(items))
            loaded.model.zero_grad(set_to_none=True)
        log = trainer._window_log()
    step = sum(log[f"time/{p}"] for p in PHASES)
    print(f"model {args.model}: {args.samples} rollouts per step, mean of {args.steps} steps")
    print(
        f"rollout tokens mean {log['rollout_len_mean']:.1f}, objects matched "
        f"{log['matched']:.1f}, FP {log['fp']:.1f}, FN {log['fn']:.1f}, packs {log['packs']:.1f}"
    )
    print(f"{'phase':<18}{'s/step':>10}{'share':>9}")
    for p in PHASES:
        print(f"{p:<18}{log[f'time/{p}']:>10.4f}{log[f'time/{p}'] / step:>9.1%}")
    cpu = sum(log[f"time/{p}"] for p in CPU_PHASES)
    print(f"{'step':<18}{step:>10.4f}")
    print(f"parse+match+targets+packing: {cpu / step:.2%} of the step (goal <= 5%)")


if __name__ == "__main__":
    main()
