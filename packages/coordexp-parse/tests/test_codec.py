"""The coord-token codec: token texts, recognition and the norm1000 rounding rule."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordexp_parse import (
    MAX_BIN,
    NUM_BINS,
    all_coord_tokens,
    bin_to_pixel,
    bin_to_unit,
    coord_token,
    coord_value,
    is_coord_token,
    pixel_to_bin,
)

bins = st.integers(0, MAX_BIN)
sides = st.integers(2, 10_000)


def test_token_text_and_value_round_trip_for_every_bin() -> None:
    tokens = all_coord_tokens()
    assert len(tokens) == NUM_BINS == 1000
    assert tokens[0] == "<|coord_0|>"
    assert tokens[999] == "<|coord_999|>"
    assert [coord_value(t) for t in tokens] == list(range(NUM_BINS))
    assert all(coord_token(k) == t for k, t in enumerate(tokens))


@pytest.mark.parametrize(
    "text", ["<|coord_1000|>", "<|coord_01|>", "<|coord_-1|>", "<|coord_ 1|>", "coord_1", ""]
)
def test_non_canonical_spellings_are_not_coord_tokens(text: str) -> None:
    assert coord_value(text) is None
    assert not is_coord_token(text)


@pytest.mark.parametrize("bad", [-1, 1000, 1.0, True, "3"])
def test_coord_token_rejects_non_bins(bad: object) -> None:
    with pytest.raises(ValueError, match=r"0\.\.999"):
        coord_token(bad)  # type: ignore[arg-type]


def test_grid_ends_map_to_unit_interval_ends() -> None:
    assert bin_to_unit(0) == 0.0
    assert bin_to_unit(999) == 1.0
    assert pixel_to_bin(0, 640) == 0
    assert pixel_to_bin(639, 640) == 999
    assert bin_to_pixel(999, 640) == 639.0


def test_rounding_is_half_up_then_clamped() -> None:
    # side 1000: v * 999 / 999 = v exactly, so x.5 sits on the rounding boundary.
    assert pixel_to_bin(10.5, 1000) == 11
    assert pixel_to_bin(10.4999, 1000) == 10
    assert pixel_to_bin(-3.0, 1000) == 0
    assert pixel_to_bin(1000.0, 1000) == 999
    assert pixel_to_bin(5.0, 1) == 0
    assert pixel_to_bin(10**400, 1000) == 999
    assert pixel_to_bin(-(10**400), 1000) == 0


@given(bins, sides)
def test_bin_to_pixel_to_bin_is_identity(k: int, side: int) -> None:
    assert pixel_to_bin(bin_to_pixel(k, side), side) == k


@given(st.floats(0, 20_000, allow_nan=False), sides)
def test_pixel_bin_pixel_is_stable_after_one_trip(v: float, side: int) -> None:
    k = pixel_to_bin(v, side)
    assert pixel_to_bin(bin_to_pixel(k, side), side) == k
    if v <= side - 1:  # inside the image the error is at most half a bin
        assert abs(bin_to_pixel(k, side) - v) <= (side - 1) / MAX_BIN / 2 + 1e-9


@given(st.floats(0, 5000, allow_nan=False), st.floats(0, 5000, allow_nan=False), sides)
def test_pixel_to_bin_is_monotone(a: float, b: float, side: int) -> None:
    lo, hi = sorted((a, b))
    assert pixel_to_bin(lo, side) <= pixel_to_bin(hi, side)


@pytest.mark.parametrize(("v", "side"), [(math.nan, 10), (math.inf, 10), (1.0, 0)])
def test_pixel_to_bin_rejects_bad_input(v: float, side: int) -> None:
    with pytest.raises(ValueError, match=r"finite|>= 1"):
        pixel_to_bin(v, side)


def test_bin_to_pixel_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"0\.\.999"):
        bin_to_pixel(1000, 10)
    with pytest.raises(ValueError, match=">= 1"):
        bin_to_pixel(3, 0)
