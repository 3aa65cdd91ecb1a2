"""The A/B schedule: a deterministic function of the optimizer step and b_ratio."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_train.stage2 import channel_at_step, needs_weight_sync

RATIOS = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(RATIOS)
def test_b_count_over_1000_steps_is_within_one_step_of_the_ratio(r: float) -> None:
    b_steps = sum(channel_at_step(s, r) == "B" for s in range(1000))
    assert abs(b_steps - 1000 * r) <= 1


@settings(max_examples=100, deadline=None)
@given(RATIOS, st.integers(min_value=1, max_value=400))
def test_b_steps_are_spread_evenly_over_every_window(r: float, n: int) -> None:
    b_steps = sum(channel_at_step(s, r) == "B" for s in range(n))
    assert abs(b_steps - n * r) <= 1


def test_ratio_0_is_always_a_and_ratio_1_always_b() -> None:
    assert {channel_at_step(s, 0.0) for s in range(1000)} == {"A"}
    assert {channel_at_step(s, 1.0) for s in range(1000)} == {"B"}


def test_half_ratio_alternates_starting_with_a() -> None:
    assert [channel_at_step(s, 0.5) for s in range(6)] == ["A", "B", "A", "B", "A", "B"]


@settings(max_examples=50, deadline=None)
@given(RATIOS)
def test_two_evaluations_agree(r: float) -> None:
    first = [channel_at_step(s, r) for s in range(300)]
    second = [channel_at_step(s, r) for s in range(300)]
    assert first == second


_RATIOS = [0.0, 0.05, 0.1, 1 / 3, 0.25, 0.5, 2 / 3, 0.7, 0.95, 1.0]


def _schedule_in_subprocess(hash_seed: str) -> list[str]:
    code = (
        "import json; from coordexp_train.stage2 import channel_at_step; "
        "print(json.dumps([''.join(channel_at_step(s, r) for s in range(1000)) "
        f"for r in {_RATIOS!r}]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    result: list[str] = json.loads(out.stdout)
    return result


def test_identical_in_a_subprocess_with_another_hash_seed() -> None:
    here = ["".join(channel_at_step(s, r) for s in range(1000)) for r in _RATIOS]
    other = "12345" if os.environ.get("PYTHONHASHSEED") != "12345" else "54321"
    assert _schedule_in_subprocess(other) == here


@pytest.mark.parametrize(
    ("step", "ratio", "message"),
    [
        (-1, 0.5, "optimizer step must be an int >= 0, got -1"),
        (1.0, 0.5, "optimizer step must be an int >= 0, got 1.0"),
        (True, 0.5, "optimizer step must be an int >= 0, got True"),
        (0, 1.5, r"stage2_ab.schedule.b_ratio must be in \[0, 1\], got 1.5"),
        (0, float("nan"), r"stage2_ab.schedule.b_ratio must be in \[0, 1\], got nan"),
    ],
)
def test_bad_arguments_are_refused_with_the_key_named(
    step: object, ratio: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        channel_at_step(step, ratio)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(RATIOS, st.integers(min_value=1, max_value=8))
def test_b_steps_roll_out_with_weights_less_than_k_updates_old(r: float, k: int) -> None:
    synced, syncs = 0, []
    for step in range(200):
        if channel_at_step(step, r) == "B":
            if needs_weight_sync(step, synced, k):
                synced = step
                syncs.append(step)
            assert step - synced < k
    # a sync happens only when the weights would otherwise be k updates old
    previous = [0, *syncs]
    assert all(s - p >= k for p, s in zip(previous, syncs, strict=False))


def test_every_step_sync_pushes_before_each_b_step_after_an_update() -> None:
    assert not needs_weight_sync(0, 0, 1)  # the engine starts from the checkpoint
    assert needs_weight_sync(1, 0, 1)
    assert not needs_weight_sync(5, 3, 3)
    assert needs_weight_sync(6, 3, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 4, 1), r"synced_step must be in 0\.\.3 \(the current step\), got 4"),
        ((3, -1, 1), r"synced_step must be in 0\.\.3 \(the current step\), got -1"),
        ((3, 0, 0), r"stage2_ab\.weight_sync_every_steps must be >= 1, got 0"),
    ],
)
def test_bad_sync_arguments_are_refused(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        needs_weight_sync(*args)
