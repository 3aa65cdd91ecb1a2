"""Straightforward quadratic packers: test oracles and benchmark baselines.

Each scans every open pack for every segment, O(n × packs). They implement the same
placement and tie rules as the fast packers in :mod:`coordexp_pack.bin_packing` and
return the same layout (indices ascending in each pack, packs ordered by first index),
so the fast ones can be checked against them exactly. Lengths are not validated.
"""

from __future__ import annotations

from collections.abc import Sequence


def first_fit_scan(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First fit in input order: each segment goes to the first-opened pack with room."""
    rooms: list[int] = []
    members: list[list[int]] = []
    for i, length in enumerate(lengths):
        for slot, room in enumerate(rooms):
            if room >= length:
                rooms[slot] -= length
                members[slot].append(i)
                break
        else:
            rooms.append(capacity - length)
            members.append([i])
    return members


def best_fit_decreasing_scan(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit-decreasing: longest first (ties: input order), into the tightest pack.

    The tightest pack is the one with the least room that still fits the segment; among
    equal rooms, the pack opened first.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rooms: list[int] = []
    members: list[list[int]] = []
    for i in order:
        length = lengths[i]
        best = -1
        for slot, room in enumerate(rooms):
            if length <= room and (best < 0 or room < rooms[best]):
                best = slot
        if best < 0:
            rooms.append(capacity - length)
            members.append([i])
        else:
            rooms[best] -= length
            members[best].append(i)
    return sorted((sorted(m) for m in members), key=lambda p: p[0])
