"""Chat samples: the messages shown to the model and the answer it must write.

A sample is ``[system?] user(image, instruction) → assistant(answer)``. The answer is
coordexp-parse's canonical rendering of the record's objects in norm1000 bins; with no
objects it is ``{}`` (the model learns to answer "nothing here" explicitly).

Object order (``data.object_order``): ``sorted`` is coordexp-parse's canonical order (top
to bottom, then left to right; polygons start at their top-most vertex and run
clockwise); ``random`` shuffles the canonical list with a generator seeded by
``(seed, sample index)``, so a sample always gets the same order (its token length is
fixed before training starts).
"""

from __future__ import annotations

import random
from typing import Any, Literal, TypeAlias

from coordexp_parse import DetObject, Record, canonical_object, canonical_order, render_objects
from coordexp_train.data.prompts import PromptSpec

ObjectOrder: TypeAlias = Literal["sorted", "random"]
OBJECT_ORDERS: tuple[ObjectOrder, ...] = ("sorted", "random")


def prompt_messages(prompt: PromptSpec) -> list[dict[str, Any]]:
    """The messages before the answer: optional system, then user (image + instruction)."""
    messages: list[dict[str, Any]] = []
    system = prompt.system_text()
    if system is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
    messages.append(
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": prompt.user_text()}],
        }
    )
    return messages


def answer_objects(record: Record, *, order: ObjectOrder, seed: int, index: int) -> list[DetObject]:
    """The record's objects in norm1000 bins, in answer order (see the module docstring)."""
    if order not in OBJECT_ORDERS:
        raise ValueError(f"object order must be one of {OBJECT_ORDERS}, got {order!r}")
    objects = canonical_order([canonical_object(o) for o in record.det_objects()])
    if order == "random":
        random.Random(f"{seed}:{index}").shuffle(objects)
    return objects


def answer_text(objects: list[DetObject], prompt: PromptSpec) -> str:
    """The assistant answer (without the end-of-turn token)."""
    return render_objects(objects, field_order=prompt.field_order)
