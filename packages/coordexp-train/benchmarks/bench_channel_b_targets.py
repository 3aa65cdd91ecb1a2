"""Time the CPU side of one Channel-B sample: parse, match, FN injection, target building.

Tiny-tokenizer bbox rollouts of 1, 20 and 60 objects, every other prediction a false
positive (so half the ground truth is injected). Prints the best of 30 runs per stage, in µs.

    OMP_NUM_THREADS=1 uv run python packages/coordexp-train/benchmarks/bench_channel_b_targets.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from coordexp_match import match
from coordexp_parse import DetObject, build_injection, parse_rollout, render_objects
from coordexp_schema.sections.rollout import RolloutMatchingConfig
from coordexp_schema.sections.stage2_ab import ChannelBConfig
from coordexp_train.model import BUILTIN_SPECS
from coordexp_train.model.tiny_tokenizer import tokenizer_corpus, train_tiny_tokenizer
from coordexp_train.stage2 import build_channel_b_sample, channel_b_targets

REPEATS = 30


def best_us(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times) * 1e6


def scene(n: int) -> tuple[list[DetObject], list[DetObject]]:
    gts = [
        DetObject("cat", "bbox_2d", (10 * i, 10 * i, 10 * i + 50, 10 * i + 40)) for i in range(n)
    ]
    preds = [
        gt if i % 2 == 0 else DetObject("dog", "bbox_2d", (900, 5 * i, 990, 5 * i + 9))
        for i, gt in enumerate(gts)
    ]
    return preds, gts


def main() -> None:
    spec = BUILTIN_SPECS["tiny-qwen3-vl"]
    tokenizer = train_tiny_tokenizer(tokenizer_corpus(), bpe_vocab_size=spec.bpe_vocab_size)
    rollout_cfg, policy = RolloutMatchingConfig(), ChannelBConfig()
    stages = ("parse", "match", "inject", "targets", "sample")
    print(f"{'objects':>8} " + " ".join(f"{s:>9}" for s in stages) + "   (µs, best of 30)")
    for n in (1, 20, 60):
        preds, gts = scene(n)
        ids = tokenizer.encode(render_objects(preds), add_special_tokens=False)
        parse = parse_rollout(ids, tokenizer)
        result = match(parse.objects, gts)
        fn = [gts[j] for j in result.fn]
        matched = [p for p, _ in result.pairs]
        answer = build_injection(parse, fn, tokenizer, matched=matched)
        row = [
            best_us(parse_rollout, ids, tokenizer),
            best_us(match, parse.objects, gts),
            best_us(build_injection, parse, fn, tokenizer, matched=matched),
            best_us(channel_b_targets, parse, answer, result, gts, policy),
            best_us(build_channel_b_sample, ids, gts, tokenizer, rollout_cfg, policy),
        ]
        print(f"{n:>8} " + " ".join(f"{v:>9.0f}" for v in row))


if __name__ == "__main__":
    main()
