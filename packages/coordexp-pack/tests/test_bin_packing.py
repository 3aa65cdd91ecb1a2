"""pack(): the layout contract, errors, the oracle packers, and the quality properties."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_pack import lower_bound, pack
from coordexp_pack.bin_packing import best_fit_decreasing, first_fit
from coordexp_pack.reference import best_fit_decreasing_scan, first_fit_scan


@st.composite
def lengths_and_capacity(draw: st.DrawFn, max_size: int = 60) -> tuple[list[int], int]:
    capacity = draw(st.integers(1, 64))
    lengths = draw(st.lists(st.integers(1, capacity), max_size=max_size))
    return lengths, capacity


def long_tailed_lengths(rng: random.Random, n: int) -> list[int]:
    """Token lengths in 200..3000 with a long right tail (median ~600)."""
    return [min(3000, 200 + int(rng.lognormvariate(math.log(400), 0.9))) for _ in range(n)]


def test_empty_input_gives_no_packs() -> None:
    assert pack([], 10) == []


def test_layout_is_input_order_within_packs_and_packs_by_first_index() -> None:
    # Longest first: 7 opens a pack, the 5s share the second, 3 tops up the 7.
    assert pack([3, 5, 7, 5], 10) == [[0, 2], [1, 3]]


def test_first_fit_wins_where_best_fit_decreasing_needs_an_extra_pack() -> None:
    lengths = [5, 3, 2, 4, 4, 2]  # BFD: {5,4} {4,3,2} {2}; first fit in order: {5,3,2} {4,4,2}
    assert len(best_fit_decreasing(lengths, 10)) == 3
    assert pack(lengths, 10) == [[0, 1, 2], [3, 4, 5]]


def test_best_fit_picks_the_tightest_pack_and_the_earliest_on_ties() -> None:
    # The 6s open A and B (room 4 each); 4 ties between them and takes A, the earlier;
    # 3 takes B (room 1 left); 2 fits nowhere and opens C.
    assert best_fit_decreasing([6, 6, 4, 3, 2], 10) == [[0, 2], [1, 3], [4]]


def test_lower_bound_is_ceiling_of_total_over_capacity() -> None:
    assert lower_bound([5, 5, 1], 10) == 2
    assert lower_bound([5, 5], 10) == 1
    assert lower_bound([], 10) == 0


def test_over_capacity_segment_error_names_index_and_length() -> None:
    with pytest.raises(
        ValueError, match=r"index 2 has length 11, longer than the pack capacity 10"
    ):
        pack([3, 4, 11], 10)


@pytest.mark.parametrize(
    ("lengths", "capacity", "message"),
    [
        ([3, 0], 10, r"segment at index 1: length must be an int >= 1, got 0"),
        ([3, 2.5], 10, r"segment at index 1: length must be an int >= 1, got 2.5"),
        ([True], 10, r"segment at index 0: length must be an int >= 1, got True"),
        ([3], 0, r"pack capacity must be an int >= 1, got 0"),
        ([3], 8.0, r"pack capacity must be an int >= 1, got 8.0"),
    ],
)
def test_bad_lengths_and_capacity_are_rejected_with_the_index(
    lengths: list[int], capacity: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        pack(lengths, capacity)


@settings(max_examples=150)
@given(lengths_and_capacity())
def test_fast_packers_equal_the_scanning_oracles(case: tuple[list[int], int]) -> None:
    lengths, capacity = case
    assert best_fit_decreasing(lengths, capacity) == best_fit_decreasing_scan(lengths, capacity)
    assert first_fit(lengths, capacity) == first_fit_scan(lengths, capacity)


def test_fast_packers_equal_the_scanning_oracles_on_realistic_pools() -> None:
    rng = random.Random(5)
    for _ in range(12):
        capacity = rng.choice((8192, 16384))
        lengths = long_tailed_lengths(rng, rng.choice((64, 256, 600)))
        assert best_fit_decreasing(lengths, capacity) == best_fit_decreasing_scan(lengths, capacity)
        assert first_fit(lengths, capacity) == first_fit_scan(lengths, capacity)


@settings(max_examples=150)
@given(lengths_and_capacity())
def test_pack_is_the_better_of_best_fit_decreasing_and_first_fit(
    case: tuple[list[int], int],
) -> None:
    lengths, capacity = case
    bfd = best_fit_decreasing_scan(lengths, capacity)
    ff = first_fit_scan(lengths, capacity)
    assert pack(lengths, capacity) == (ff if len(ff) < len(bfd) else bfd)


@settings(max_examples=100)
@given(lengths_and_capacity(), st.integers(1, 80))
def test_first_fit_gives_up_only_when_it_cannot_beat_the_limit(
    case: tuple[list[int], int], limit: int
) -> None:
    lengths, capacity = case
    full = first_fit_scan(lengths, capacity)
    result = first_fit(lengths, capacity, give_up_at=limit)
    if len(full) < limit:
        assert result == full
    else:
        assert result is None


@settings(max_examples=200)
@given(lengths_and_capacity())
def test_every_index_is_packed_once_in_input_order_within_capacity(
    case: tuple[list[int], int],
) -> None:
    lengths, capacity = case
    packs = pack(lengths, capacity)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in p) <= capacity for p in packs)
    assert all(p == sorted(p) and p for p in packs)
    assert [p[0] for p in packs] == sorted(p[0] for p in packs)


@settings(max_examples=200)
@given(lengths_and_capacity())
def test_never_more_packs_than_first_fit_in_input_order(case: tuple[list[int], int]) -> None:
    lengths, capacity = case
    assert lower_bound(lengths, capacity) <= len(pack(lengths, capacity))
    assert len(pack(lengths, capacity)) <= len(first_fit_scan(lengths, capacity))


@settings(max_examples=100)
@given(lengths_and_capacity())
def test_same_input_gives_the_same_packs(case: tuple[list[int], int]) -> None:
    lengths, capacity = case
    assert pack(list(lengths), capacity) == pack(tuple(lengths), capacity)


def test_within_one_of_the_lower_bound_on_95_percent_of_realistic_pools() -> None:
    rng = random.Random(20261123)
    cases = 200
    within = 0
    for _ in range(cases):
        n = rng.choice((16, 64, 256, 1024))
        capacity = rng.choice((8192, 16384))
        if rng.random() < 0.5:
            lengths = long_tailed_lengths(rng, n)
        else:
            lengths = [rng.randint(200, 3000) for _ in range(n)]
        within += len(pack(lengths, capacity)) <= lower_bound(lengths, capacity) + 1
    assert within / cases >= 0.95
