"""Segments, packs of segments and the oversize policy."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordexp_pack import Pack, Segment, pack, pack_segments


def segs(*lengths: int) -> list[Segment]:
    return [Segment(f"s{i}", n) for i, n in enumerate(lengths)]


def test_pack_segments_follows_pack_layout() -> None:
    segments = segs(3, 5, 7, 5)
    packs = pack_segments(segments, 10)
    assert [p.ids for p in packs] == [("s0", "s2"), ("s1", "s3")]
    assert [[int(i[1:]) for i in p.ids] for p in packs] == pack([3, 5, 7, 5], 10)
    assert [p.length for p in packs] == [10, 10]
    assert all(p.capacity == 10 and p.fill == 1.0 and not p.oversize for p in packs)


def test_oversize_error_names_segment_id_both_lengths_and_the_config_keys() -> None:
    with pytest.raises(
        ValueError,
        match=r"segment 'long' has length 12, longer than the pack capacity 10; .*"
        r"training\.packing_length.*training\.packing_oversize: own_pack",
    ):
        pack_segments([Segment("a", 3), Segment("long", 12)], 10)


def test_oversize_error_is_the_default_policy() -> None:
    with pytest.raises(ValueError, match="longer than the pack capacity"):
        pack_segments([Segment("long", 12)], 10, "error")


def test_own_pack_gives_an_oversize_segment_a_flagged_pack_in_input_position() -> None:
    segments = [Segment("a", 4), Segment("long", 12), Segment("b", 6), Segment("c", 3)]
    packs = pack_segments(segments, 10, "own_pack")
    assert [p.ids for p in packs] == [("a", "b"), ("long",), ("c",)]
    assert [p.oversize for p in packs] == [False, True, False]
    assert packs[1].fill == pytest.approx(1.2)


def test_unknown_oversize_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"one of \['error', 'own_pack'\].*got 'truncate'"):
        pack_segments(segs(1), 10, "truncate")  # type: ignore[arg-type]


def test_repeated_id_names_both_positions() -> None:
    with pytest.raises(ValueError, match=r"segment id 'x' appears at positions 0 and 2"):
        pack_segments([Segment("x", 1), Segment("y", 1), Segment("x", 2)], 10)


def test_non_segment_item_is_rejected_with_its_position() -> None:
    with pytest.raises(ValueError, match=r"item at position 1 must be a Segment, got tuple"):
        pack_segments([Segment("a", 1), ("b", 2)], 10)  # type: ignore[list-item]


def test_bad_capacity_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"pack capacity must be an int >= 1, got -1"):
        pack_segments(segs(1), -1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "", "length": 3}, r"segment id must be a non-empty string, got ''"),
        ({"id": 7, "length": 3}, r"segment id must be a non-empty string, got 7"),
        ({"id": "a", "length": 0}, r"segment 'a': length must be an int >= 1, got 0"),
        ({"id": "a", "length": "9"}, r"segment 'a': length must be an int >= 1, got '9'"),
        (
            {"id": "a", "length": 3, "supervised_tokens": 4},
            r"segment 'a': supervised_tokens must be None or an int in 0\.\.3 .*got 4",
        ),
        (
            {"id": "a", "length": 3, "supervised_tokens": -1},
            r"segment 'a': supervised_tokens must be None or an int in 0\.\.3 .*got -1",
        ),
    ],
)
def test_bad_segment_is_rejected_naming_its_id(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Segment(**kwargs)  # type: ignore[arg-type]


def test_loss_tokens_default_to_the_length() -> None:
    assert Segment("a", 9).loss_tokens == 9
    assert Segment("a", 9, supervised_tokens=4).loss_tokens == 4
    assert Segment("a", 9, supervised_tokens=0).loss_tokens == 0


def test_pack_properties() -> None:
    p = Pack((Segment("a", 3), Segment("b", 4)), 10)
    assert (p.length, p.fill, p.oversize, p.ids) == (7, 0.7, False, ("a", "b"))


@st.composite
def segment_lists(draw: st.DrawFn) -> tuple[list[Segment], int]:
    capacity = draw(st.integers(1, 40))
    lengths = draw(st.lists(st.integers(1, capacity + 10), max_size=40))
    ids = draw(
        st.lists(
            st.text(min_size=1, max_size=6),
            min_size=len(lengths),
            max_size=len(lengths),
            unique=True,
        )
    )
    return [Segment(i, n) for i, n in zip(ids, lengths, strict=True)], capacity


@settings(max_examples=150)
@given(segment_lists())
def test_own_pack_conserves_segments_and_keeps_input_order(case: tuple[list[Segment], int]) -> None:
    segments, capacity = case
    packs = pack_segments(segments, capacity, "own_pack")
    position = {s.id: i for i, s in enumerate(segments)}
    assert sorted(position[i] for p in packs for i in p.ids) == list(range(len(segments)))
    for p in packs:
        order = [position[i] for i in p.ids]
        assert order == sorted(order)
        assert p.length <= capacity or len(p.segments) == 1
        assert p.oversize == (p.length > capacity)
    firsts = [position[p.ids[0]] for p in packs]
    assert firsts == sorted(firsts)


@settings(max_examples=100)
@given(segment_lists())
def test_ids_do_not_influence_the_layout(case: tuple[list[Segment], int]) -> None:
    segments, capacity = case
    renamed = [Segment(f"other-{len(segments) - k}", s.length) for k, s in enumerate(segments)]

    def layout(items: list[Segment]) -> list[list[int]]:
        position = {s.id: i for i, s in enumerate(items)}
        return [[position[i] for i in p.ids] for p in pack_segments(items, capacity, "own_pack")]

    assert layout(segments) == layout(renamed)
