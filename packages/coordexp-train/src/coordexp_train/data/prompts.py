"""The built-in prompts: what the model is told before it writes its answer.

Two variants (``template.prompt_variant``): ``default`` spells out the answer format and
``short`` is a one-sentence instruction. Each has a system prompt (used unless
``template.system_prompt`` overrides it) and a user instruction that follows the image.
The ``object_field_order`` changes the example entry in the ``default`` instruction so
the prompt never contradicts the supervised answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

PromptVariant: TypeAlias = Literal["default", "short"]
FieldOrder: TypeAlias = Literal["desc_first", "geometry_first"]

PROMPT_VARIANTS: tuple[PromptVariant, ...] = ("default", "short")

_SYSTEM = {
    "default": (
        "You are a careful object detector. You look at one image and list every visible "
        "object as JSON."
    ),
    "short": "You detect objects in images.",
}

_EXAMPLE_BOX = '"bbox_2d": ["<|coord_120|>", "<|coord_40|>", "<|coord_380|>", "<|coord_300|>"]'
_EXAMPLE_ENTRY = {
    "desc_first": f'"object_1": {{"desc": "red square", {_EXAMPLE_BOX}}}',
    "geometry_first": f'"object_1": {{{_EXAMPLE_BOX}, "desc": "red square"}}',
}

_DEFAULT_USER = (
    "Detect every object in the image. Answer with one JSON object on a single line and "
    "nothing else. Its keys are object_1, object_2, ... for example {{{example}}}. Each "
    'value has a plain-English "desc" and exactly one geometry: "bbox_2d" with 4 '
    'coordinates, or "poly" with at least 3 points. Every coordinate is one token '
    "<|coord_k|> with k from 0 (left or top edge) to 999 (right or bottom edge). Use "
    "double quotes and one space after each colon and comma. If there is nothing to "
    "detect, answer {{}}."
)

_SHORT_USER = "List every object in the image as CoordExp JSON."


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """How a sample's prompt is worded (mirrors the ``template`` config section).

    Attributes:
        variant: ``default`` or ``short``.
        field_order: ``desc_first`` or ``geometry_first`` (also used for the answer).
        system_prompt: overrides the variant's system prompt when not None; an empty
            string means "no system message".
    """

    variant: PromptVariant = "default"
    field_order: FieldOrder = "desc_first"
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.variant not in PROMPT_VARIANTS:
            raise ValueError(
                f"prompt variant must be one of {PROMPT_VARIANTS}, got {self.variant!r}"
            )
        if self.field_order not in _EXAMPLE_ENTRY:
            raise ValueError(
                f"field order must be one of {tuple(_EXAMPLE_ENTRY)}, got {self.field_order!r}"
            )

    def system_text(self) -> str | None:
        """The system message, or None when there is none."""
        text = _SYSTEM[self.variant] if self.system_prompt is None else self.system_prompt
        return text or None

    def user_text(self) -> str:
        """The instruction that follows the image in the user message."""
        if self.variant == "short":
            return _SHORT_USER
        return _DEFAULT_USER.format(example=_EXAMPLE_ENTRY[self.field_order])


def all_prompt_texts() -> list[str]:
    """Every built-in system and user text (the tiny tokenizer trains on them)."""
    texts: list[str] = []
    for variant in PROMPT_VARIANTS:
        for order in _EXAMPLE_ENTRY:
            spec = PromptSpec(variant=variant, field_order=order)  # type: ignore[arg-type]
            texts.extend(t for t in (spec.system_text(), spec.user_text()) if t is not None)
    return sorted(set(texts))
