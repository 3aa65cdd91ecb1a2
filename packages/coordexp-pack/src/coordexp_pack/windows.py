"""Gradient-accumulation windows: consecutive packs trained before one optimizer step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from coordexp_pack.segments import Pack


@dataclass(frozen=True, slots=True)
class Window:
    """The packs of one optimizer step, with the figures that normalise its loss.

    Attributes:
        packs: in training order.
    """

    packs: tuple[Pack, ...]

    @property
    def samples(self) -> int:
        """Raw samples (segments) in the window: the divisor of a per-sample mean."""
        return sum(len(p.segments) for p in self.packs)

    @property
    def tokens(self) -> int:
        """Tokens in the window, summed over segment lengths."""
        return sum(p.length for p in self.packs)

    @property
    def loss_tokens(self) -> int:
        """Tokens carrying loss (:attr:`Segment.loss_tokens` summed): a per-token mean's divisor."""
        return sum(s.loss_tokens for p in self.packs for s in p.segments)


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """An epoch's packs grouped into accumulation windows.

    Attributes:
        windows: windows in order; every one but possibly the last holds at least
            ``effective_batch_size`` samples.
        dropped: the packs of a final partial window left out under ``drop_last``.
    """

    windows: tuple[Window, ...]
    dropped: tuple[Pack, ...]


def accumulation_windows(
    packs: Iterable[Pack], effective_batch_size: int, *, drop_last: bool
) -> WindowPlan:
    """Group consecutive packs into windows of ``effective_batch_size`` raw samples.

    A window takes packs in order and closes as soon as its sample count reaches
    ``effective_batch_size``, so a full window holds at least that many samples and fewer
    without its last pack. Packs are never split or reordered; the count overshoots by
    less than the samples of the window's last pack. The packs left after the last full
    window form a partial window, kept as the last window or, under ``drop_last``,
    reported in ``dropped``.

    Args:
        packs: one epoch's packs in training order.
        effective_batch_size: raw samples per optimizer step
            (``training.effective_batch_size``), an int >= 1.
        drop_last: whether to leave out a final partial window.

    Returns:
        The windows and the dropped packs; every pack is in exactly one of them, in
        input order. A pure function of its arguments.

    Raises:
        ValueError: ``effective_batch_size`` is not an int >= 1.
    """
    if (
        isinstance(effective_batch_size, bool)
        or not isinstance(effective_batch_size, int)
        or effective_batch_size < 1
    ):
        raise ValueError(
            "effective_batch_size (training.effective_batch_size) must be an int >= 1, "
            f"got {effective_batch_size!r}"
        )
    windows: list[Window] = []
    current: list[Pack] = []
    samples = 0
    for p in packs:
        current.append(p)
        samples += len(p.segments)
        if samples >= effective_batch_size:
            windows.append(Window(tuple(current)))
            current, samples = [], 0
    if current and drop_last:
        return WindowPlan(tuple(windows), tuple(current))
    if current:
        windows.append(Window(tuple(current)))
    return WindowPlan(tuple(windows), ())
