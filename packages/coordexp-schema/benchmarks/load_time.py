"""Cost of strict loading next to plain YAML parsing, and of one preflight call.

Run: uv run python packages/coordexp-schema/benchmarks/load_time.py
"""

from __future__ import annotations

import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import yaml

from coordexp_schema import load_config
from coordexp_schema.yaml_files import load_yaml_with_extends

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "configs/stage2_ab/vllm_server.yaml"
FILES = [
    CONFIG,
    CONFIG.parent / "base.yaml",
    REPO / "configs/rollout_matching/hf.yaml",
    REPO / "configs/base.yaml",
]


def per_call(fn: Callable[[], object], n: int) -> float:
    """Best-of-7 mean time of ``n`` calls (the minimum filters out a busy machine)."""
    return min(timeit.repeat(fn, number=n, repeat=7)) / n


def main() -> None:
    n = 30
    plain = per_call(lambda: [yaml.safe_load(p.read_text()) for p in FILES], n)
    merged = per_call(lambda: load_yaml_with_extends(CONFIG), n)
    strict = per_call(lambda: load_config(CONFIG), n)
    print(f"config: {CONFIG.relative_to(REPO)} (4 files through extends), best of 7 x {n} loads")
    print(f"{'step':<42}{'ms/load':>10}{'ratio':>8}")
    for name, t in (
        ("yaml.safe_load of the 4 files", plain),
        ("+ locations, duplicates, extends merge", merged),
        ("load_config (+ strict parse, semantics)", strict),
    ):
        print(f"{name:<42}{t * 1e3:>10.2f}{t / plain:>8.2f}")
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "coordexp_schema.preflight", "--config", str(CONFIG)],
        check=True,
        capture_output=True,
    )
    elapsed_ms = (time.perf_counter() - start) * 1e3
    print(f"{'coordexp-preflight (fresh interpreter)':<42}{elapsed_ms:>10.1f}")


if __name__ == "__main__":
    main()
