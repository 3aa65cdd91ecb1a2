"""Peak memory of the Stage-1 loss (forward + backward) against a naive implementation.

Case: 2 sequences × 2,048 positions, a 152,064-token vocabulary, bf16 logits; every
position supervised, one in four a coord token. Each variant runs in a fresh subprocess;
peak memory is the process's peak RSS (``ru_maxrss``) minus its RSS just before the loss,
i.e. what the loss and its backward add on top of the logits.

    OMP_NUM_THREADS=1 uv run python packages/coordexp-train/benchmarks/bench_loss_memory.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

BATCH, SEQ, VOCAB = 2, 2048, 152_064
COORD_START = VOCAB - 1000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _inputs():  # type: ignore[no-untyped-def]
    import torch

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(BATCH, SEQ, VOCAB, generator=g, dtype=torch.bfloat16)
    labels = torch.randint(0, COORD_START, (BATCH, SEQ), generator=g)
    coord = torch.rand(BATCH, SEQ, generator=g) < 0.25
    labels[coord] = COORD_START + torch.randint(0, 1000, (int(coord.sum()),), generator=g)
    return logits.requires_grad_(), labels, torch.arange(COORD_START, VOCAB)


def _naive(logits, labels, coord_ids):  # type: ignore[no-untyped-def]
    """The straightforward version: one float32 log-softmax over every position."""
    import torch
    import torch.nn.functional as F

    logp = logits.float().log_softmax(-1)[:, :-1].reshape(-1, VOCAB)
    targets = labels[:, 1:].reshape(-1)
    is_coord = targets >= COORD_START
    text_targets = torch.where(is_coord, torch.full_like(targets, -100), targets)
    ce = F.nll_loss(logp, text_targets, ignore_index=-100)
    coord_logp = logp[is_coord][:, coord_ids]
    gate = -torch.logsumexp(coord_logp, 1)  # −log coord mass
    bins = (targets[is_coord] - COORD_START).float()
    grid = torch.arange(1000, dtype=torch.float32)
    q = torch.exp(-0.5 * ((grid[None] - bins[:, None]) / 2.0) ** 2)
    q = q / q.sum(1, keepdim=True)
    cl = coord_logp.log_softmax(-1)
    soft = -(q * cl).sum(1)
    w1 = (cl.exp().cumsum(1) - q.cumsum(1)).abs().sum(1) / 999
    return ce + gate.mean() + soft.mean() + w1.mean()


def _ours(logits, labels, coord_ids):  # type: ignore[no-untyped-def]
    from coordexp_train.losses import Stage1LossWeights, stage1_loss

    return stage1_loss(logits, labels, coord_ids, Stage1LossWeights()).total


def run_variant(name: str) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    logits, labels, coord_ids = _inputs()
    fn = {"naive": _naive, "ours": _ours}[name]
    before = _rss_bytes()
    t0 = time.perf_counter()
    loss = fn(logits, labels, coord_ids)
    loss.backward()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "loss": float(loss),
        "seconds": seconds,
        "added_peak_gib": (peak - before) / 2**30,
        "logits_gib": logits.numel() * logits.element_size() / 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=["naive", "ours"])
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant)))
        return
    results = {}
    for name in ("naive", "ours"):
        cmd = [sys.executable, __file__, "--variant", name]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    n, o = results["naive"], results["ours"]
    gib = n["logits_gib"]
    print(f"case: {BATCH} x {SEQ} positions, vocab {VOCAB}, bf16 logits ({gib:.2f} GiB)")
    print(f"{'variant':8} {'added peak GiB':>15} {'seconds':>8} {'loss':>10}")
    for name, r in results.items():
        print(f"{name:8} {r['added_peak_gib']:15.2f} {r['seconds']:8.1f} {r['loss']:10.4f}")
    ratio = o["added_peak_gib"] / n["added_peak_gib"]
    print(f"memory ratio ours/naive: {ratio:.2f}x (goal <= 0.5x)")


if __name__ == "__main__":
    main()
