"""The coord-token codec: `<|coord_k|>` tokens and the norm1000 grid.

A coordinate is one of 1000 bins, k ∈ 0..999. Bin k stands for the fraction k / 999 of
the image side, so 0 ↔ 0.0 (the first pixel) and 999 ↔ 1.0 (the last pixel).

Rounding rule (pixels → bins), for an image side of ``side`` pixels::

    k = clamp(floor(v * 999 / (side - 1) + 0.5), 0, 999)      (side > 1; side == 1 → 0)

i.e. round half up, then clamp. Bins → pixels is the exact inverse scaling
``v = k * (side - 1) / 999`` (a float). Consequences, tested: ``pixel_to_bin(bin_to_pixel(k))
== k`` for every k and side > 1, and pixel → bin → pixel → bin is stable after one trip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

NUM_BINS = 1000
MAX_BIN = NUM_BINS - 1

#: What every coord token text starts with.
COORD_PREFIX = "<|coord_"
#: Regular expression (source, no groups) matching exactly one canonical coord token text.
COORD_PATTERN = r"<\|coord_(?:0|[1-9][0-9]{0,2})\|>"
#: Coord token text → bin, for the 1000 canonical tokens (read-only by contract).
COORD_BINS: Mapping[str, int] = {f"{COORD_PREFIX}{k}|>": k for k in range(NUM_BINS)}


def coord_token(k: int) -> str:
    """Return the token text ``<|coord_k|>`` for bin ``k``.

    Raises:
        ValueError: ``k`` is not an int in 0..999.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_BIN:
        raise ValueError(f"coord bin must be an int in 0..{MAX_BIN}, got {k!r}")
    return f"{COORD_PREFIX}{k}|>"


def coord_value(token: str) -> int | None:
    """Return the bin of a coord token text, or None when ``token`` is not exactly one.

    Only the canonical spelling is recognised: no leading zeros, no spaces, k ≤ 999.
    """
    return COORD_BINS.get(token) if isinstance(token, str) else None


def is_coord_token(token: str) -> bool:
    """Whether ``token`` is exactly one canonical coord token."""
    return coord_value(token) is not None


def all_coord_tokens() -> list[str]:
    """The 1000 coord token texts in bin order (what a tokenizer must contain)."""
    return list(COORD_BINS)


def pixel_to_bin(v: float, side: int) -> int:
    """Map a pixel coordinate on an axis of ``side`` pixels to its norm1000 bin.

    Values outside the image are clamped to 0 or 999 (see the module docstring for the
    exact rule).

    Raises:
        ValueError: ``side`` < 1 or ``v`` is not finite.
    """
    if side < 1:
        raise ValueError(f"image side must be >= 1 pixel, got {side}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"pixel coordinate must be finite, got {v!r}")
    if side == 1 or v <= 0:
        return 0
    if v >= side - 1:  # (also keeps huge ints away from float division)
        return MAX_BIN
    return min(math.floor(v * MAX_BIN / (side - 1) + 0.5), MAX_BIN)


def bin_to_pixel(k: int, side: int) -> float:
    """Map a norm1000 bin back to a pixel coordinate on an axis of ``side`` pixels."""
    if side < 1:
        raise ValueError(f"image side must be >= 1 pixel, got {side}")
    if not 0 <= k <= MAX_BIN:
        raise ValueError(f"coord bin must be in 0..{MAX_BIN}, got {k}")
    return k * (side - 1) / MAX_BIN


def bin_to_unit(k: int) -> float:
    """Map a bin to the unit interval: 0 → 0.0, 999 → 1.0."""
    return k / MAX_BIN
