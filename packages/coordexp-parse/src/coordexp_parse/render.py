r"""Rendering objects as the assistant answer text (the one canonical spelling).

The answer is one JSON object on one line::

    {"object_1": {"desc": "black cat", "bbox_2d": ["<|coord_110|>", ...]}, "object_2": {...}}

Keys are ``object_1..object_n`` in list order; separators are ``", "`` and ``": "``; a
``desc`` is written with ``json.dumps(..., ensure_ascii=False)`` (only ``"``, ``\`` and
control characters are escaped); every coordinate is the quoted coord token; a ``poly``
is one flat list. No objects renders ``{}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Literal, Protocol, TypeAlias

from coordexp_parse.codec import coord_token

FieldOrder: TypeAlias = Literal["desc_first", "geometry_first"]
FIELD_ORDERS: tuple[FieldOrder, ...] = ("desc_first", "geometry_first")

#: Texts that end a response wherever they appear (the Qwen end-of-turn and end-of-text).
STOP_STRINGS: tuple[str, ...] = ("<|im_end|>", "<|endoftext|>")


class ObjectLike(Protocol):
    """Anything with a ``desc``, a geometry ``kind`` and flat norm1000 ``coords``."""

    @property
    def desc(self) -> str: ...  # noqa: D102

    @property
    def kind(self) -> str: ...  # noqa: D102

    @property
    def coords(self) -> tuple[int, ...]: ...  # noqa: D102


def _check_field_order(field_order: str) -> None:
    if field_order not in FIELD_ORDERS:
        raise ValueError(f"field_order must be one of {FIELD_ORDERS}, got {field_order!r}")


def render_value(obj: ObjectLike, field_order: FieldOrder = "desc_first") -> str:
    """Render one object's value: ``{"desc": ..., "<kind>": [...]}`` (or geometry first).

    Raises:
        ValueError: the desc contains a stop string (it would end the answer early), a
            coordinate is not a bin in 0..999, or ``field_order`` is unknown.
    """
    _check_field_order(field_order)
    desc = obj.desc
    for stop in STOP_STRINGS:
        if stop in desc:
            raise ValueError(
                f"desc {desc!r} contains the stop string {stop!r}; it cannot be rendered"
            )
    desc_part = '"desc": ' + json.dumps(desc, ensure_ascii=False)
    geom_part = f'"{obj.kind}": [' + ", ".join(f'"{coord_token(k)}"' for k in obj.coords) + "]"
    if field_order == "desc_first":
        return "{" + desc_part + ", " + geom_part + "}"
    return "{" + geom_part + ", " + desc_part + "}"


def render_entries(
    objects: Iterable[ObjectLike], start_index: int = 1, field_order: FieldOrder = "desc_first"
) -> list[str]:
    """Render ``"object_N": {...}`` entries numbered from ``start_index``, without separators."""
    return [
        f'"object_{start_index + i}": {render_value(obj, field_order)}'
        for i, obj in enumerate(objects)
    ]


def render_objects(objects: Sequence[ObjectLike], field_order: FieldOrder = "desc_first") -> str:
    """Render objects as the canonical assistant answer (keys ``object_1..object_n``).

    Accepts :class:`~coordexp_parse.DetObject` or parsed objects (anything with ``desc``,
    ``kind``, ``coords``). The output is deterministic, and ``parse_text(render_objects(x))``
    gives back ``x`` (desc, kind, coords, in order) for every valid object list.

    Raises:
        ValueError: see :func:`render_value`.
    """
    return "{" + ", ".join(render_entries(objects, 1, field_order)) + "}"
