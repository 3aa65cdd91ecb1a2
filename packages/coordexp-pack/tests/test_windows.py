"""Accumulation windows: sample budget per optimizer step, partial windows, loss figures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_pack import Pack, Segment, Window, accumulation_windows


def make_packs(*samples_per_pack: int, length: int = 2) -> list[Pack]:
    """Packs holding the given numbers of segments, each ``length`` tokens, ids p<k>-<j>."""
    return [
        Pack(tuple(Segment(f"p{k}-{j}", length) for j in range(n)), capacity=100)
        for k, n in enumerate(samples_per_pack)
    ]


def test_a_window_closes_when_its_samples_reach_the_batch_size() -> None:
    packs = make_packs(3, 1, 4, 2, 3, 1)
    plan = accumulation_windows(packs, 5, drop_last=False)
    assert [w.samples for w in plan.windows] == [8, 5, 1]
    assert [len(w.packs) for w in plan.windows] == [3, 2, 1]
    assert plan.dropped == ()


def test_the_final_partial_window_is_dropped_and_reported_under_drop_last() -> None:
    packs = make_packs(3, 1, 4, 2, 3, 1)
    plan = accumulation_windows(packs, 5, drop_last=True)
    assert [w.samples for w in plan.windows] == [8, 5]
    assert plan.dropped == (packs[5],)


def test_an_exact_fit_leaves_no_partial_window() -> None:
    plan = accumulation_windows(make_packs(2, 2, 4), 4, drop_last=True)
    assert [w.samples for w in plan.windows] == [4, 4]
    assert plan.dropped == ()


def test_a_pack_larger_than_the_batch_is_a_window_of_its_own() -> None:
    plan = accumulation_windows(make_packs(9, 1), 4, drop_last=False)
    assert [w.samples for w in plan.windows] == [9, 1]


def test_no_packs_give_no_windows() -> None:
    assert accumulation_windows([], 4, drop_last=True).windows == ()


def test_window_reports_samples_tokens_and_loss_tokens() -> None:
    a, b, c = Segment("a", 10, 4), Segment("b", 6), Segment("c", 5, 0)
    window = Window((Pack((a, b), 16), Pack((c,), 16)))
    assert (window.samples, window.tokens, window.loss_tokens) == (3, 21, 10)


@pytest.mark.parametrize("size", [0, -3, 2.0, True])
def test_bad_batch_size_is_rejected_naming_the_config_key(size: int) -> None:
    with pytest.raises(
        ValueError,
        match=r"effective_batch_size \(training\.effective_batch_size\) must be an int >= 1, got",
    ):
        accumulation_windows(make_packs(1), size, drop_last=False)


@settings(max_examples=150)
@given(st.lists(st.integers(1, 9), max_size=30), st.integers(1, 20), st.booleans())
def test_windows_are_minimal_ordered_and_lose_nothing(
    sizes: list[int], batch: int, drop_last: bool
) -> None:
    packs = make_packs(*sizes)
    plan = accumulation_windows(packs, batch, drop_last=drop_last)
    laid_out = [p for w in plan.windows for p in w.packs] + list(plan.dropped)
    assert laid_out == packs
    full = plan.windows if drop_last or not plan.windows else plan.windows[:-1]
    for w in full:
        assert w.samples >= batch
        assert w.samples - len(w.packs[-1].segments) < batch
    if plan.windows and not drop_last:
        assert plan.windows[-1].samples >= 1
    assert sum(len(p.segments) for p in plan.dropped) < batch
    if drop_last:
        assert all(w.samples >= batch for w in plan.windows)
