"""Field declarations for config dataclasses: defaults, documentation and numeric bounds.

Every config field is declared with :func:`knob`, so the strict parser, the JSON Schema
and the generated reference read the same facts from one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

REQUIRED: Any = dataclasses.MISSING
"""Marker for a field without a default: a config that omits it fails to load."""


@dataclass(frozen=True)
class Bounds:
    """Inclusive (``ge``/``le``) and exclusive (``gt``/``lt``) numeric limits of a field."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, value: float) -> str | None:
        """Return a message when ``value`` breaks a limit, else None."""
        ok = (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )
        return None if ok else f"must be {self.describe()}, got {value!r}"

    def describe(self) -> str:
        """Human wording of the limits, e.g. ``in (0, 1]`` or ``>= 1``."""
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            left = "[" if self.ge is not None else "("
            right = "]" if self.le is not None else ")"
            return f"in {left}{_num(low)}, {_num(high)}{right}"
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {_num(low)}"
        if high is not None:
            return f"{'<=' if self.le is not None else '<'} {_num(high)}"
        return "any number"

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.ge, self.gt, self.le, self.lt))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def knob(
    default: Any = REQUIRED,
    *,
    doc: str,
    factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """Declare a config field.

    Args:
        default: the default value; omit it (or pass ``REQUIRED``) for a required field.
        doc: one or two sentences for the generated reference and the JSON Schema.
        factory: builds the default instead of ``default`` (nested sections).
        ge: inclusive lower bound, checked after the shape is valid (None is exempt).
        gt: exclusive lower bound.
        le: inclusive upper bound.
        lt: exclusive upper bound.

    Returns:
        A ``dataclasses.field`` carrying ``doc`` and ``Bounds`` in its metadata.
    """
    metadata = {"doc": doc, "bounds": Bounds(ge=ge, gt=gt, le=le, lt=lt)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_doc(f: dataclasses.Field[Any]) -> str:
    """The documentation string of a field declared with :func:`knob`."""
    return str(f.metadata.get("doc", ""))


def field_bounds(f: dataclasses.Field[Any]) -> Bounds:
    """The numeric bounds of a field declared with :func:`knob` (empty when none)."""
    bounds = f.metadata.get("bounds")
    return bounds if isinstance(bounds, Bounds) else Bounds()


def is_required(f: dataclasses.Field[Any]) -> bool:
    """True when the field has neither a default nor a default factory."""
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def rejected_keys(cls: type) -> Mapping[str, str]:
    """Keys a section rejects with a dedicated message (removed or misplaced knobs).

    A dataclass declares them as ``REJECTED_KEYS: ClassVar[Mapping[str, str]]``,
    key → guidance.
    """
    found = getattr(cls, "REJECTED_KEYS", None)
    return found if isinstance(found, Mapping) else {}
