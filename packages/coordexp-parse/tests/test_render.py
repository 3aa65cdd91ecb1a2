"""Rendering: one canonical spelling, both field orders, parse(render(x)) == x."""

from __future__ import annotations

import re

import pytest
from coordexp_parse_testing import object_lists
from hypothesis import given

from coordexp_parse import DetObject, parse_text, render_objects

CAT = DetObject("black cat", "bbox_2d", (110, 310, 410, 705))
TRI = DetObject("café", "poly", (1, 2, 30, 4, 5, 60))


def test_canonical_spelling_desc_first() -> None:
    assert render_objects([CAT, TRI]) == (
        '{"object_1": {"desc": "black cat", "bbox_2d": ["<|coord_110|>", "<|coord_310|>", '
        '"<|coord_410|>", "<|coord_705|>"]}, "object_2": {"desc": "café", "poly": '
        '["<|coord_1|>", "<|coord_2|>", "<|coord_30|>", "<|coord_4|>", "<|coord_5|>", '
        '"<|coord_60|>"]}}'
    )


def test_geometry_first_puts_the_geometry_before_desc() -> None:
    assert render_objects([CAT], field_order="geometry_first") == (
        '{"object_1": {"bbox_2d": ["<|coord_110|>", "<|coord_310|>", "<|coord_410|>", '
        '"<|coord_705|>"], "desc": "black cat"}}'
    )


def test_no_objects_renders_empty_object() -> None:
    assert render_objects([]) == "{}"


def test_desc_escapes_only_what_json_requires() -> None:
    text = render_objects([DetObject('a "q" \\ é\n', "bbox_2d", (0, 0, 1, 1))])
    assert '"desc": "a \\"q\\" \\\\ é\\n"' in text


def test_unknown_field_order_is_an_error() -> None:
    with pytest.raises(ValueError, match="field_order must be one of"):
        render_objects([CAT], field_order="random")  # type: ignore[arg-type]


def test_desc_with_a_stop_string_cannot_be_rendered() -> None:
    with pytest.raises(ValueError, match=re.escape("stop string '<|im_end|>'")):
        render_objects([DetObject("cat<|im_end|>", "bbox_2d", (0, 0, 1, 1))])


def test_parsed_objects_render_like_det_objects() -> None:
    parsed = parse_text(render_objects([CAT, TRI])).objects
    assert render_objects(parsed) == render_objects([CAT, TRI])


@given(object_lists())
def test_parse_of_render_gives_the_objects_back_desc_first(objects: list[DetObject]) -> None:
    parse = parse_text(render_objects(objects))
    assert [o.to_det_object() for o in parse.objects] == objects
    assert [o.index for o in parse.objects] == list(range(1, len(objects) + 1))
    assert parse.dropped == {}
    assert parse.ending == "closed"


@given(object_lists())
def test_parse_of_render_gives_the_objects_back_geometry_first(objects: list[DetObject]) -> None:
    parse = parse_text(render_objects(objects, field_order="geometry_first"))
    assert [o.to_det_object() for o in parse.objects] == objects
