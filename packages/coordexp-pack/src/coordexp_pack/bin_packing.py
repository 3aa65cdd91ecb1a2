"""Packing segment lengths into fixed-capacity packs: best-fit-decreasing, guarded by first fit."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from itertools import accumulate


def lower_bound(lengths: Sequence[int], capacity: int) -> int:
    """Fewest packs any packing can use: ``ceil(sum(lengths) / capacity)``."""
    return -(-sum(lengths) // capacity)


def pack(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Pack segments of the given token lengths into as few packs of ``capacity`` as found.

    Best-fit-decreasing: segments are placed longest first (ties: input order), each into
    the open pack with the least room that still fits it (ties: the pack opened first),
    else into a new pack. When that uses more packs than :func:`lower_bound`, first fit
    in input order is run too and wins if it uses fewer packs, so the result never uses
    more packs than first fit in input order. Segments are never split.

    Cost: O(n log n) comparisons. Open packs sit in a sorted list of integer keys found
    by bisection; the list's inserts and deletes are a C ``memmove`` over the open packs
    (linear in their number at worst), never a Python-level scan.

    Args:
        lengths: the token length of each segment, ints >= 1.
        capacity: the token capacity of one pack, an int >= 1.

    Returns:
        One list per pack with the input indices of its segments in layout order
        (ascending, i.e. input order); packs are ordered by their first index. Every
        index appears exactly once and no pack's lengths sum above ``capacity``. The
        result is a pure function of ``lengths`` and ``capacity``.

    Raises:
        ValueError: ``capacity`` is not an int >= 1, a length is not an int >= 1, or a
            length exceeds ``capacity``; the message names the index and the length.
    """
    check_capacity(capacity)
    for i, length in enumerate(lengths):
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"segment at index {i}: length must be an int >= 1, got {length!r}")
        if length > capacity:
            raise ValueError(
                f"segment at index {i} has length {length}, longer than the pack capacity "
                f"{capacity}; segments are never split: shorten it or raise the capacity"
            )
    return packing(lengths, capacity)


def packing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """:func:`pack` of lengths already known to be ints in 1..``capacity`` (unchecked)."""
    if not lengths:
        return []
    best = best_fit_decreasing(lengths, capacity)
    if len(best) > lower_bound(lengths, capacity):
        first = first_fit(lengths, capacity, give_up_at=len(best))
        if first is not None:
            best = first
    return best


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing packing of lengths that all fit (unchecked); layout as :func:`pack`."""
    n = len(lengths)
    if n == 0:
        return []
    # A stable sort with reverse=True keeps input order among equal lengths.
    order = sorted(range(n), key=lengths.__getitem__, reverse=True)
    smallest = lengths[order[-1]]
    # Open pack p with room r has key r * n + p: bisecting for length * n finds the
    # least room >= length, and among equal rooms the pack opened first.
    keys: list[int] = []
    members: list[list[int]] = []
    for i in order:
        length = lengths[i]
        at = bisect_left(keys, length * n)
        if at < len(keys):
            key = keys.pop(at)
            slot = key % n
            room = key // n - length
            members[slot].append(i)
        else:
            slot = len(members)
            room = capacity - length
            members.append([i])
        if room >= smallest:  # a pack with less room than any segment is closed for good
            insort(keys, room * n + slot)
    return _layout(members)


def first_fit(
    lengths: Sequence[int], capacity: int, give_up_at: int | None = None
) -> list[list[int]] | None:
    """First fit in input order of lengths that all fit (unchecked); layout as :func:`pack`.

    Each segment goes to the first-opened pack with room for it. A max-tree over pack
    slots finds that pack in O(log n).

    Args:
        lengths: the token length of each segment.
        capacity: the token capacity of one pack.
        give_up_at: stop and return None as soon as the packing is certain to need at
            least this many packs (None: never stop early).
    """
    n = len(lengths)
    if n == 0:
        return []
    limit = n + 1 if give_up_at is None else give_up_at
    size = 1 << (n - 1).bit_length()
    tree = [capacity] * (2 * size)  # tree[size + s] = room of slot s; unopened slots are empty
    # later_min[i]: the shortest segment from i on; a pack with less room is closed for good.
    later_min = list(accumulate(reversed(lengths), min))
    later_min.reverse()
    later_min.append(capacity + 1)
    total = sum(lengths)
    closed_waste = 0
    members: list[list[int]] = []
    for i, length in enumerate(lengths):
        node = 1
        while node < size:
            node <<= 1
            if tree[node] < length:
                node += 1
        slot = node - size
        if slot == len(members):
            members.append([i])
            if len(members) >= limit:
                return None
        else:
            members[slot].append(i)
        room = tree[node] - length
        tree[node] = room
        if room < later_min[i + 1]:
            closed_waste += room
            if -(-(total + closed_waste) // capacity) >= limit:
                return None
        node >>= 1
        while node:
            left, right = tree[2 * node], tree[2 * node + 1]
            top = left if left > right else right
            if tree[node] == top:
                break
            tree[node] = top
            node >>= 1
    return _layout(members)


def _layout(members: list[list[int]]) -> list[list[int]]:
    packs = [sorted(m) for m in members]
    packs.sort(key=lambda p: p[0])
    return packs


def check_capacity(capacity: int) -> None:
    """Raise ValueError unless ``capacity`` is an int >= 1."""
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"pack capacity must be an int >= 1, got {capacity!r}")
