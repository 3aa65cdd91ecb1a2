"""Same input, same output: byte for byte across processes with different hash seeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Packs a fixed battery of seeded inputs through every public entry point and prints the
# result as JSON; the last line is hash("probe"), which must differ between hash seeds.
BATTERY = r"""
import json, math, random
from coordexp_pack import CarryPacker, Segment, accumulation_windows, pack, pack_segments

rng = random.Random(7)
out = []
for case in range(60):
    capacity = rng.choice((64, 8192, 16384))
    n = rng.choice((0, 5, 16, 64, 256))
    lengths = [min(capacity, 1 + int(rng.lognormvariate(math.log(capacity / 12), 1.0)))
               for _ in range(n)]
    out.append(pack(lengths, capacity))
    ids = ["".join(rng.choice("abcxyzé✓0") for _ in range(6)) + f"-{i}" for i in range(n)]
    extra = [rng.randint(0, capacity // 8) for _ in range(n)]
    segments = [Segment(i, a + b) for i, a, b in zip(ids, lengths, extra)]
    packs = pack_segments(segments, capacity, "own_pack")
    out.append([p.ids for p in packs])
    plan = accumulation_windows(packs, rng.randint(1, 40), drop_last=rng.random() < 0.5)
    out.append([[p.ids for p in w.packs] for w in plan.windows] + [[p.ids for p in plan.dropped]])
    packer = CarryPacker(capacity, min_fill_ratio=rng.choice((0.0, 0.9, 0.97)),
                         drop_last=True, oversize="own_pack", max_carry_calls=2)
    for start in range(0, len(segments), 7):
        r = packer.add(segments[start:start + 7])
        out.append([[p.ids for p in r.packs], [s.id for s in r.carried]])
    r = packer.flush()
    out.append([[p.ids for p in r.packs], [s.id for s in r.dropped]])
print(json.dumps(out, ensure_ascii=False))
print(hash("probe"))
"""


def run_battery(hash_seed: str) -> tuple[bytes, bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", BATTERY], capture_output=True, env=env, check=True, timeout=120
    )
    result, probe = done.stdout.rstrip(b"\n").rsplit(b"\n", 1)
    return result, probe


def test_outputs_are_identical_byte_for_byte_under_different_hash_seeds() -> None:
    runs = {seed: run_battery(seed) for seed in ("0", "1", "4242", "987654321")}
    probes = {probe for _, probe in runs.values()}
    assert len(probes) == len(runs), "hash seeds did not take effect; the test proves nothing"
    results = {result for result, _ in runs.values()}
    assert len(results) == 1
    assert len(json.loads(next(iter(results)))) > 100
