"""The carry buffer: min_fill_ratio, max_carry_calls, drop_last, and nothing lost."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_pack import CarryPacker, PackRound, Segment, bin_packing, carry
from coordexp_pack import segments as segments_module


def segs(prefix: str, *lengths: int) -> list[Segment]:
    return [Segment(f"{prefix}{i}", n) for i, n in enumerate(lengths)]


def ids(result: PackRound) -> list[tuple[str, ...]]:
    return [p.ids for p in result.packs]


def test_zero_ratio_returns_every_pack_and_carries_nothing() -> None:
    packer = CarryPacker(10)
    result = packer.add(segs("a", 6, 5))
    assert ids(result) == [("a0",), ("a1",)]
    assert result.carried == ()
    assert packer.carry == ()


def test_under_filled_packs_wait_and_fill_up_with_the_next_call() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.8)
    first = packer.add(segs("a", 6, 5))
    assert first.packs == ()
    assert [s.id for s in first.carried] == ["a0", "a1"]
    second = packer.add(segs("b", 4, 5))
    assert ids(second) == [("a0", "b0"), ("a1", "b1")]
    assert second.carried == ()
    assert packer.carry == ()


def test_a_segment_that_waited_max_carry_calls_is_returned_below_the_ratio() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.9, max_carry_calls=2)
    assert packer.add(segs("a", 6, 7)).packs == ()
    assert packer.add([]).packs == ()
    third = packer.add([])
    assert ids(third) == [("a0",), ("a1",)]
    assert packer.carry == ()


def test_default_max_carry_calls_is_one() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.9)
    packer.add(segs("a", 6))
    late = packer.add(segs("b", 7))
    # a0 waited once: its pack goes out under-filled; b0 is new and waits.
    assert ids(late) == [("a0",)]
    assert [s.id for s in late.carried] == ["b0"]


def test_flush_returns_the_buffer_without_drop_last() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.5)
    packer.add(segs("a", 3))
    result = packer.flush()
    assert ids(result) == [("a0",)]
    assert result.dropped == ()
    assert packer.carry == ()


def test_flush_under_drop_last_reports_the_dropped_segments() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.5, drop_last=True)
    assert packer.add(segs("a", 3, 1)).packs == ()
    result = packer.flush()
    assert result.packs == ()
    assert [s.id for s in result.dropped] == ["a0", "a1"]
    assert packer.carry == ()


def test_carried_segments_that_fill_up_are_returned_and_flush_drops_the_rest() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.9, drop_last=True, max_carry_calls=3)
    assert packer.add(segs("a", 6, 7)).packs == ()
    assert ids(packer.add(segs("b", 3))) == [("a1", "b0")]  # 7 + 3 fill a pack; 6 waits
    result = packer.flush()
    assert ids(result) == []
    assert [s.id for s in result.dropped] == ["a0"]


def test_an_id_already_waiting_is_rejected_and_the_buffer_is_kept() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.9)
    packer.add(segs("a", 3))
    with pytest.raises(ValueError, match=r"segment id 'a0' is already waiting in the carry buffer"):
        packer.add(segs("a", 4))
    assert [s.id for s in packer.carry] == ["a0"]


def test_a_repeated_id_in_a_batch_is_named_by_its_positions_in_that_batch() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.9)
    packer.add(segs("a", 3, 2))
    with pytest.raises(ValueError, match=r"segment id 'b' appears at positions 0 and 1"):
        packer.add([Segment("b", 1), Segment("b", 2)])
    with pytest.raises(ValueError, match=r"item at position 1 must be a Segment, got int"):
        packer.add([Segment("c", 1), 4])  # type: ignore[list-item]
    assert [s.id for s in packer.carry] == ["a0", "a1"]


def test_an_oversize_segment_error_keeps_the_buffer() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.9)
    packer.add(segs("a", 3))
    with pytest.raises(ValueError, match=r"segment 'b0' has length 11"):
        packer.add(segs("b", 11))
    assert [s.id for s in packer.carry] == ["a0"]


def test_own_pack_policy_returns_oversize_segments_at_once() -> None:
    packer = CarryPacker(10, min_fill_ratio=0.9, oversize="own_pack")
    result = packer.add(segs("a", 11, 2))
    assert ids(result) == [("a0",)]
    assert result.packs[0].oversize
    assert [s.id for s in result.carried] == ["a1"]


def test_segments_are_checked_once_when_they_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[list[str]] = []
    check = carry.check_segments

    def counting(segments: Sequence[Segment]) -> None:
        checked.append([s.id for s in segments])
        check(segments)

    def never(*args: object) -> None:
        raise AssertionError("segments were checked again while packing")

    monkeypatch.setattr(carry, "check_segments", counting)
    monkeypatch.setattr(segments_module, "check_segments", never)
    monkeypatch.setattr(bin_packing, "check_capacity", never)
    packer = CarryPacker(10, min_fill_ratio=0.9)
    packer.add(segs("a", 3))
    packer.add(segs("b", 4, 5))
    packer.flush()
    assert checked == [["a0"], ["b0", "b1"]]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, r"pack capacity must be an int >= 1, got 0"),
        (
            {"capacity": 10, "min_fill_ratio": 1.5},
            r"min_fill_ratio \(training\.packing_min_fill_ratio\) must be a number in \[0, 1\], "
            r"got 1\.5",
        ),
        ({"capacity": 10, "min_fill_ratio": True}, r"min_fill_ratio .*got True"),
        ({"capacity": 10, "oversize": "cut"}, r"oversize policy must be one of .*got 'cut'"),
        ({"capacity": 10, "max_carry_calls": 0}, r"max_carry_calls must be an int >= 1, got 0"),
    ],
)
def test_bad_settings_are_rejected_naming_them(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CarryPacker(**kwargs)  # type: ignore[arg-type]


calls = st.lists(st.lists(st.integers(1, 30), max_size=12), min_size=1, max_size=8)
knobs = st.tuples(st.sampled_from([0.0, 0.5, 0.8, 0.95, 1.0]), st.booleans(), st.integers(1, 3))


@settings(max_examples=150)
@given(calls, knobs)
def test_every_segment_is_packed_carried_or_dropped_exactly_once(
    batches: list[list[int]], knob: tuple[float, bool, int]
) -> None:
    ratio, drop_last, max_calls = knob
    packer = CarryPacker(30, min_fill_ratio=ratio, drop_last=drop_last, max_carry_calls=max_calls)
    given_ids: list[str] = []
    packed: list[str] = []
    dropped: list[str] = []
    waited: dict[str, int] = {}
    for c, lengths in enumerate(batches):
        batch = segs(f"c{c}-", *lengths)
        given_ids += [s.id for s in batch]
        result = packer.add(batch)
        for p in result.packs:
            assert p.length <= 30
            overdue = any(waited.get(i, 0) >= max_calls for i in p.ids)
            assert p.fill >= ratio or overdue
        packed += [i for p in result.packs for i in p.ids]
        waited = {s.id: waited.get(s.id, 0) + 1 for s in result.carried}
        assert all(w <= max_calls for w in waited.values())
        assert sorted(packed + list(waited)) == sorted(given_ids)
    final = packer.flush()
    packed += [i for p in final.packs for i in p.ids]
    dropped += [s.id for s in final.dropped]
    assert packer.carry == ()
    assert sorted(packed + dropped) == sorted(given_ids)
    assert len(set(packed + dropped)) == len(given_ids)
    if not drop_last:
        assert dropped == []


@settings(max_examples=75)
@given(calls, knobs)
def test_same_calls_give_the_same_rounds(
    batches: list[list[int]], knob: tuple[float, bool, int]
) -> None:
    ratio, drop_last, max_calls = knob

    def run() -> list[PackRound]:
        packer = CarryPacker(
            30, min_fill_ratio=ratio, drop_last=drop_last, max_carry_calls=max_calls
        )
        rounds = [packer.add(segs(f"c{c}-", *lengths)) for c, lengths in enumerate(batches)]
        return [*rounds, packer.flush()]

    assert run() == run()
